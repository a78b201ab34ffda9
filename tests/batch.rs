//! Batches of sequences on every adapter. Prompts of lengths 3, 7, 1 and 12 run as one
//! batch (in permuted KV slots) through prefill and 8 decode steps give each sequence the
//! logits it gets when run alone, within 1e-4; and a session's batch generation gives each
//! sequence the tokens it gets alone, whatever the others do.

mod common;

use common::tiny::{config, text_model, weights};
use common::*;
use kiln::generate::GenerateOptions;
use kiln::models::{Cache, Llama, Logits};
use kiln::{DType, Feed, Gpu, Graph, Plan, Program, Sampling, Seq, State, Step, Target};

const CAP: usize = 24;
const LENS: [usize; 4] = [3, 7, 1, 12];
const DECODE: usize = 8;

/// Prefill (`tokens` ids per sequence) and decode (one id) programs over `seqs` sequences
/// sharing KV caches of `slots` slots, each returning the logits of every sequence's last
/// token.
fn programs(
    gpu: &Gpu,
    model: &Llama,
    seqs: usize,
    tokens: usize,
    slots: usize,
) -> (Program, Program, State) {
    let cache = Cache {
        slots,
        capacity: CAP,
    };
    let plan = |t: usize| {
        let g = Graph::batch(seqs);
        let ids = g.ids("ids", t);
        g.output("logits", model.forward(&g, ids, cache, Logits::Last));
        Plan::new(&g, Target::of(gpu)).expect("plan")
    };
    let (p1, p2) = (plan(tokens), plan(1));
    pollster::block_on(async {
        let state = State::new(gpu, &[&p1, &p2]).await.expect("state");
        let prefill = Program::new(gpu, p1, Some(&state)).await.expect("prefill");
        let decode = Program::new(gpu, p2, Some(&state)).await.expect("decode");
        (prefill, decode, state)
    })
}

fn run(p: &Program, step: &Step, ids: &[u32]) -> Vec<f32> {
    let out = pollster::block_on(p.run(step, &[("ids", Feed::Ids(ids))])).expect("run");
    out["logits"].clone()
}

#[test]
fn a_batch_gives_each_sequence_its_own_logits() {
    let cfg = config("");
    let v = cfg.vocab;
    for gpu in gpus() {
        let _turn = turn(gpu);
        let (w, _) = weights(gpu, &cfg, DType::F32);
        let model = Llama::new(cfg.clone(), &w).expect("model");
        let mut rng = Rng::new(404);
        let prompts: Vec<Vec<u32>> = LENS
            .iter()
            .map(|&n| (0..n).map(|_| rng.below(v as u32)).collect())
            .collect();
        let fed = |i: usize, k: usize| ((prompts[i][0] as usize + 13 * k + 7 * i) % v) as u32;

        // Alone: one sequence per program, its own caches.
        let mut alone = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let (prefill, decode, _state) = programs(gpu, &model, 1, p.len(), 1);
            let mut rows = vec![run(&prefill, &Step::single(0, p.len()), p)];
            for k in 0..DECODE {
                rows.push(run(&decode, &Step::single(p.len() + k, 1), &[fed(i, k)]));
            }
            alone.push(rows);
        }

        // Together: sequence i in slot (i + 1) % 4, prompts padded to 12.
        let t = *LENS.iter().max().unwrap_or(&1);
        let (prefill, decode, _state) = programs(gpu, &model, 4, t, 4);
        let slot = |i: usize| (i + 1) % 4;
        let mut ids = vec![0u32; 4 * t];
        for (i, p) in prompts.iter().enumerate() {
            ids[i * t..i * t + p.len()].copy_from_slice(p);
        }
        let step = Step {
            seqs: (0..4).map(|i| Seq::new(0, LENS[i]).slot(slot(i))).collect(),
        };
        let mut batched = vec![run(&prefill, &step, &ids)];
        for k in 0..DECODE {
            let step = Step {
                seqs: (0..4)
                    .map(|i| Seq::new(LENS[i] + k, 1).slot(slot(i)))
                    .collect(),
            };
            let ids: Vec<u32> = (0..4).map(|i| fed(i, k)).collect();
            batched.push(run(&decode, &step, &ids));
        }

        for (k, rows) in batched.iter().enumerate() {
            for (i, seq) in alone.iter().enumerate() {
                let what = format!(
                    "sequence {i} (length {}) at step {k} on {}",
                    LENS[i],
                    label(gpu)
                );
                assert_close(&rows[i * v..(i + 1) * v], &seq[k], 1e-4, 0.0, &what);
            }
        }
    }
}

#[test]
fn batch_generation_gives_each_prompt_its_own_tokens() {
    for gpu in gpus() {
        let _turn = turn(gpu);
        let model = text_model(gpu, 96);
        let mut rng = Rng::new(5);
        let prompts: Vec<Vec<u32>> = [4, 9, 1, 6]
            .iter()
            .map(|&n| (0..n).map(|_| rng.below(96)).collect())
            .collect();
        // Greedy, and seeded sampling: each sequence draws from its own stream.
        for sampling in [
            Sampling::greedy(),
            Sampling {
                seed: 11,
                temperature: 1.2,
                ..Sampling::default()
            },
        ] {
            let options = GenerateOptions {
                max_tokens: 9,
                sampling,
                ..Default::default()
            };
            let mut alone = Vec::new();
            for p in &prompts {
                let mut s = pollster::block_on(model.session(CAP)).expect("session");
                let mut g = pollster::block_on(s.generate(p, options.clone())).expect("generate");
                pollster::block_on(g.text()).expect("text");
                alone.push(g.tokens().to_vec());
            }
            let mut s = pollster::block_on(model.batch_session(CAP, 4)).expect("session");
            let mut g = pollster::block_on(s.generate_batch(&prompts, options)).expect("batch");
            pollster::block_on(g.texts()).expect("texts");
            for (i, want) in alone.iter().enumerate() {
                assert_eq!(
                    g.tokens(i),
                    want,
                    "sequence {i} with {sampling:?} on {}",
                    label(gpu)
                );
            }
        }
    }
}
