//! The GPU sampler against its CPU twin on every adapter: greedy with ties and the repetition
//! penalty, and temperature with top-k, top-p and min-p over many random draws.

mod common;

use common::*;
use kiln::ops::sample::sample_reference;
use kiln::reference::graph::{Host, evaluate};
use kiln::sample::Rng as SampleRng;
use kiln::{Feed, Graph, Plan, Program, Sampling, Seq, State, Step, Target};

const V: usize = 1000;
const SLOTS: usize = 3;

/// Two sequences per step, in slots 2 and 0 of three, each with its own logits, prompt ids
/// and parameters.
fn sampler_graph() -> Graph {
    let g = Graph::batch(2);
    let logits = g.input("logits", 1, V);
    let ids = g.ids("ids", 3);
    let token = g.sample(
        logits,
        Some(ids),
        g.state("seen", &[SLOTS, V]),
        g.state("token", &[SLOTS, 1]),
    );
    g.output("token", token);
    g
}

/// Draw `draws` tokens with `s` (sequence 0) and with a greedy twin (sequence 1) on every
/// adapter, with a GPU's threads a row and a CPU adapter's, and on the CPU twin; they must
/// agree.
fn check(s: Sampling, draws: usize, logits: &[f32]) {
    let threads = [kiln::ops::sample::WG, kiln::kernels::CPU_ROW_THREADS];
    for (gpu, row_threads) in gpus().iter().flat_map(|g| threads.map(|n| (g, n))) {
        let g = sampler_graph();
        let target = Target {
            row_threads,
            ..Target::of(gpu)
        };
        let plan = Plan::new(&g, target).expect("plan");
        let mut host = Host::default();
        host.states.insert("seen".into(), vec![0.0; SLOTS * V]);
        host.states.insert("token".into(), vec![0.0; SLOTS]);
        let mut rng = SampleRng::new(s.seed);
        // The second sequence sees the logits reversed, and samples greedily.
        let both: Vec<f32> = logits
            .iter()
            .copied()
            .chain(logits.iter().rev().copied())
            .collect();
        pollster::block_on(async {
            let state = State::new(gpu, &[&plan]).await.expect("state");
            let prog = Program::new(gpu, plan, Some(&state))
                .await
                .expect("program");
            let mut ids_rng = Rng::new(5);
            for draw in 0..draws {
                let ids: Vec<u32> = (0..6).map(|_| ids_rng.below(V as u32)).collect();
                let mut a = Seq::new(0, 3).slot(2);
                a.sampling = s;
                a.rand = rng.next_u32();
                let step = Step {
                    seqs: vec![a, Seq::new(0, 2).slot(0)],
                };
                let feeds = [("logits", Feed::F32(&both)), ("ids", Feed::Ids(&ids))];
                let got = prog.run(&step, &feeds).await.expect("run");
                host.inputs.insert("logits".into(), both.clone());
                host.ids.insert("ids".into(), ids);
                let want = &evaluate(&g, &mut host, &step).expect("reference")["token"];
                let got = got.ids("token").expect("token");
                for slot in [2, 0] {
                    assert_eq!(
                        got[slot],
                        want[slot] as u32,
                        "draw {draw}, slot {slot}, with {s:?}, {row_threads} threads, on {}",
                        label(gpu)
                    );
                }
            }
            // The GPU keeps flags as u32 words; the twin as 0.0 / 1.0.
            let seen: Vec<u32> = state
                .read(gpu, "seen")
                .await
                .expect("seen")
                .iter()
                .map(|f| f.to_bits())
                .collect();
            let want: Vec<u32> = host.states["seen"].iter().map(|&f| f as u32).collect();
            let differ = seen.iter().zip(&want).filter(|(a, b)| a != b).count();
            let on = label(gpu);
            assert_eq!(
                differ, 0,
                "{differ} seen flags differ, {row_threads} threads, on {on}"
            );
        });
    }
}

fn logits(seed: u64, scale: f32) -> Vec<f32> {
    Rng::new(seed).uniform(V, scale)
}

#[test]
fn greedy_takes_the_argmax_after_the_penalty_lowest_id_on_ties() {
    let mut l = logits(1, 5.0);
    l[700] = 9.0;
    l[300] = 9.0; // a tie: the lower id wins
    check(Sampling::greedy(), 4, &l);
    // With a penalty the seen ids (drawn by the test) lose their lead.
    check(
        Sampling {
            repetition_penalty: 1.5,
            ..Sampling::greedy()
        },
        8,
        &logits(2, 5.0),
    );
}

#[test]
fn stochastic_sampling_matches_the_cpu_twin() {
    let l = logits(3, 4.0);
    let base = Sampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        seed: 9,
    };
    check(
        Sampling {
            temperature: 0.7,
            top_k: 20,
            ..base
        },
        25,
        &l,
    );
    check(Sampling { top_p: 0.8, ..base }, 25, &l);
    check(
        Sampling {
            temperature: 1.3,
            min_p: 0.1,
            ..base
        },
        25,
        &l,
    );
    check(
        Sampling {
            temperature: 0.9,
            top_k: 50,
            top_p: 0.9,
            min_p: 0.02,
            repetition_penalty: 1.2,
            seed: 4,
        },
        25,
        &l,
    );
    check(
        Sampling {
            temperature: 2.0,
            ..base
        },
        25,
        &l,
    );
}

#[test]
fn top_k_one_is_greedy() {
    let l = logits(4, 4.0);
    for rand in [0u32, 1 << 31, u32::MAX] {
        let s = Sampling {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        };
        assert_eq!(
            sample_reference(&l, &[false; V], &s, rand),
            sample_reference(&l, &[false; V], &Sampling::greedy(), rand)
        );
    }
    check(
        Sampling {
            temperature: 1.0,
            top_k: 1,
            ..Sampling::default()
        },
        5,
        &l,
    );
}

#[test]
fn the_cpu_twin_draws_from_the_right_distribution() {
    // Three live tokens with probabilities 0.5, 0.3, 0.2; everything else far below.
    let mut l = vec![-100.0f32; 10];
    l[2] = 0.5f32.ln();
    l[5] = 0.3f32.ln();
    l[7] = 0.2f32.ln();
    let s = Sampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        seed: 0,
    };
    let mut rng = SampleRng::new(11);
    let mut counts = [0usize; 10];
    let n = 20_000;
    for _ in 0..n {
        counts[sample_reference(&l, &[false; 10], &s, rng.next_u32()) as usize] += 1;
    }
    for (i, p) in [(2, 0.5), (5, 0.3), (7, 0.2)] {
        let f = counts[i] as f64 / n as f64;
        assert!(
            (f - p).abs() < 0.015,
            "token {i}: frequency {f} vs probability {p}"
        );
    }
    // top-p 0.6 keeps the first two (0.5 < 0.6 <= 0.8); min-p 0.5 keeps tokens >= 0.25.
    let top_p = Sampling { top_p: 0.6, ..s };
    let min_p = Sampling { min_p: 0.5, ..s };
    for _ in 0..2000 {
        let r = rng.next_u32();
        assert!([2, 5].contains(&sample_reference(&l, &[false; 10], &top_p, r)));
        assert!([2, 5].contains(&sample_reference(&l, &[false; 10], &min_p, r)));
    }
}

#[test]
fn bad_sampling_options_are_refused() {
    for s in [
        Sampling {
            top_p: 0.0,
            ..Sampling::default()
        },
        Sampling {
            min_p: 1.0,
            ..Sampling::default()
        },
        Sampling {
            repetition_penalty: 0.0,
            ..Sampling::default()
        },
        Sampling {
            temperature: f32::NAN,
            ..Sampling::default()
        },
    ] {
        assert!(s.validate().is_err(), "{s:?} was accepted");
    }
}
