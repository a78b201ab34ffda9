//! Sampling across vocabulary shards (`ops::candidates`): each shard's proposal and the
//! spread against their CPU twins, and the sampler fed the spread candidates against the
//! sampler fed the whole logits, token for token with the same seed, on every adapter.
//!
//! The vocabulary (1000) is cut into shards of 333, 412 and 255 ids, none a multiple of the
//! kernels' 256-thread workgroups. Two sequences per step, in slots 2 and 0 of three; the
//! second samples greedily from the reversed logits. Tolerance: none. The proposals are
//! compared as sets (the GPU writes them in any order), the spread and the tokens exactly.

mod common;

use common::*;
use kiln::ops::candidates::{CAP, Propose, Spread, WIDTH, propose_reference, spread_reference};
use kiln::reference::graph::{Host, evaluate};
use kiln::sample::Rng as SampleRng;
use kiln::{Feed, Graph, Plan, Program, Sampling, Seq, State, Step, Target};

const V: usize = 1000;
const SHARDS: [usize; 3] = [333, 412, 255];
const SLOTS: usize = 3;

/// The sampler over whole logits.
fn whole() -> Graph {
    let g = Graph::batch(2);
    let logits = g.input("logits", 1, V);
    let ids = g.ids("ids", 3);
    let seen = g.state("seen", &[SLOTS, V]);
    let token = g.sample(logits, Some(ids), seen, g.state("token", &[SLOTS, 1]));
    g.output("token", token);
    g
}

/// Each shard's proposal from its logits.
fn proposals() -> Graph {
    let g = Graph::batch(2);
    let ids = g.ids("ids", 3);
    let seen = g.state("seen", &[SLOTS, V]);
    let mut first = 0;
    for (i, n) in SHARDS.iter().enumerate() {
        let logits = g.input(&format!("logits{i}"), 1, *n);
        let p = g.apply(Propose {
            logits,
            marks: ids,
            seen,
            first,
            total: V,
            from_state: false,
        });
        g.output(&format!("proposal{i}"), p);
        first += n;
    }
    g
}

/// The gathered proposals spread into logits, and sampled.
fn merged() -> Graph {
    let g = Graph::batch(2);
    let cands = g.input("cands", 1, SHARDS.len() * WIDTH);
    let ids = g.ids("ids", 3);
    let seen = g.state("seen", &[SLOTS, V]);
    let spread = g.apply(Spread { cands, vocab: V });
    g.output("spread", spread);
    let token = g.sample(spread, Some(ids), seen, g.state("token", &[SLOTS, 1]));
    g.output("token", token);
    g
}

/// The candidates of one proposal row as sorted (id, bits) pairs.
fn pairs(row: &[f32]) -> Vec<(u32, u32)> {
    let n = row[0].to_bits() as usize;
    let mut p: Vec<(u32, u32)> = (0..n.min(CAP))
        .map(|j| (row[1 + 2 * j].to_bits(), row[2 + 2 * j].to_bits()))
        .collect();
    p.sort_unstable();
    p
}

fn check(s: Sampling, draws: usize) {
    let logits = Rng::new(3).uniform(V, 4.0);
    // Sequence 1 sees the logits reversed.
    let both: Vec<f32> = logits
        .iter()
        .copied()
        .chain(logits.iter().rev().copied())
        .collect();
    for gpu in gpus() {
        let what = format!("{s:?} on {}", label(gpu));
        let (gw, gp, gm) = (whole(), proposals(), merged());
        let target = Target::of(gpu);
        let [pw, pp, pm] = [&gw, &gp, &gm].map(|g| Plan::new(g, target).expect("plan"));
        pollster::block_on(async {
            // The whole sampler keeps its own states; the shards and the merge share theirs,
            // as the parts of a split model each keep flags for the whole vocabulary.
            let sw = State::new(gpu, &[&pw]).await.expect("state");
            let ss = State::new(gpu, &[&pp, &pm]).await.expect("state");
            let whole = Program::new(gpu, pw, Some(&sw)).await.expect("program");
            let propose = Program::new(gpu, pp, Some(&ss)).await.expect("program");
            let merge = Program::new(gpu, pm, Some(&ss)).await.expect("program");
            let mut host = Host::default();
            host.states.insert("seen".into(), vec![0.0; SLOTS * V]);
            let mut rng = SampleRng::new(s.seed);
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
                let want = whole.run(&step, &feeds).await.expect("whole");

                // Each shard's rows of both sequences' logits.
                let mut shard_logits = Vec::new();
                let mut first = 0;
                for n in SHARDS {
                    let rows: Vec<f32> = both
                        .chunks(V)
                        .flat_map(|r| r[first..first + n].iter().copied())
                        .collect();
                    shard_logits.push(rows);
                    first += n;
                }
                let names: Vec<String> = (0..SHARDS.len()).map(|i| format!("logits{i}")).collect();
                let mut feeds: Vec<(&str, Feed)> = vec![("ids", Feed::Ids(&ids))];
                for (name, l) in names.iter().zip(&shard_logits) {
                    feeds.push((name.as_str(), Feed::F32(l)));
                }
                let got = propose.run(&step, &feeds).await.expect("propose");
                for (name, l) in names.iter().zip(&shard_logits) {
                    host.inputs.insert(name.clone(), l.clone());
                }
                host.ids.insert("ids".into(), ids.clone());
                let twin = evaluate(&gp, &mut host, &step).expect("reference");
                // The gathered rows: per sequence, the shards' proposals side by side.
                let mut cands = vec![0f32; 2 * SHARDS.len() * WIDTH];
                for i in 0..SHARDS.len() {
                    let name = format!("proposal{i}");
                    let (g, w) = (&got[name.as_str()], &twin[&name]);
                    for s in 0..2 {
                        let (gr, wr) = (&g[s * WIDTH..][..WIDTH], &w[s * WIDTH..][..WIDTH]);
                        assert_eq!(
                            pairs(gr),
                            pairs(wr),
                            "{what}: draw {draw}, shard {i}, seq {s}"
                        );
                        cands[(s * SHARDS.len() + i) * WIDTH..][..WIDTH].copy_from_slice(gr);
                    }
                }
                // Sequence 1 is greedy: one candidate per shard.
                assert_eq!(cands[SHARDS.len() * WIDTH].to_bits(), 1, "{what}");

                let feeds = [("cands", Feed::F32(&cands)), ("ids", Feed::Ids(&ids))];
                let got = merge.run(&step, &feeds).await.expect("merge");
                let spread = spread_reference(&cands, 2, SHARDS.len(), V);
                let same = got["spread"]
                    .iter()
                    .zip(&spread)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{what}: draw {draw}: the spread differs from its twin"
                );
                let (got, want) = (
                    got.ids("token").expect("token"),
                    want.ids("token").expect("token"),
                );
                let flags = host.states.get_mut("seen").expect("seen");
                for slot in [2, 0] {
                    assert_eq!(got[slot], want[slot], "{what}: draw {draw}, slot {slot}");
                    // The sampler marks its choice: so must the shards' twin.
                    flags[slot * V + got[slot] as usize] = 1.0;
                }
            }
            // The shards marked the same flags as the whole sampler.
            let a = sw.read(gpu, "seen").await.expect("seen");
            let b = ss.read(gpu, "seen").await.expect("seen");
            let differ = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(differ, 0, "{what}: {differ} seen flags differ");
        });
    }
}

#[test]
fn shards_propose_what_their_cpu_twin_proposes_and_sample_as_the_whole_logits() {
    let base = Sampling {
        temperature: 1.0,
        top_k: 40,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        seed: 9,
    };
    check(Sampling::greedy(), 3);
    check(
        Sampling {
            repetition_penalty: 1.5,
            ..Sampling::greedy()
        },
        4,
    );
    check(base, 12);
    check(
        Sampling {
            temperature: 0.7,
            top_k: 20,
            top_p: 0.8,
            ..base
        },
        12,
    );
    check(
        Sampling {
            temperature: 1.3,
            top_k: 256,
            min_p: 0.05,
            repetition_penalty: 1.2,
            seed: 4,
            ..base
        },
        12,
    );
}

#[test]
fn the_cpu_twin_proposes_the_top_k_and_a_margin_with_ties() {
    let s = Sampling {
        temperature: 1.0,
        top_k: 3,
        ..Sampling::default()
    };
    // 20 logits, 12 of them tied at the top: all of the tied are proposed.
    let mut l: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
    for x in &mut l[4..16] {
        *x = 5.0;
    }
    let seen = vec![false; 20];
    let got = propose_reference(&l, &seen, &s);
    assert_eq!(got, (4..16).collect::<Vec<_>>());
    // Without ties: the top 3 + 8 of 20.
    let l: Vec<f32> = (0..20).map(|i| ((i * 7) % 20) as f32).collect();
    let got = propose_reference(&l, &seen, &s);
    assert_eq!(got.len(), 11);
    assert!(got.iter().all(|&i| l[i] >= 9.0), "{got:?}");
}
