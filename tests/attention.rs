//! Attention on every adapter, against its CPU twin: over KV caches (prefill then decode,
//! causal and not, sliding windows), sequences of a batch in their own cache slots, encoder
//! self-attention under padding, and cross-attention with an explicit key count over given
//! or projected keys. Tolerances are `atol + rtol * |ref|`, stated per test.

mod common;

use common::*;
use kiln::ops::attention::{Heads, Mask, attend};
use kiln::reference::graph::{Host, evaluate};
use kiln::{DType, Feed, Gpu, Graph, Plan, Program, State, Target};

/// A KV-cache attention graph: q, k, v inputs (S, t, ...), k and v written into caches of
/// `slots` x `cap` positions, attention over them.
fn cache_graph(seqs: usize, t: usize, h: Heads, slots: usize, cap: usize, mask: Mask) -> Graph {
    let g = Graph::batch(seqs);
    let kvw = h.kv_heads * h.head_dim;
    let q = g.input("q", t, h.heads * h.head_dim);
    let k = g.kv_write(g.input("k", t, kvw), g.state("kc", &[slots, cap, kvw]));
    let v = g.kv_write(g.input("v", t, kvw), g.state("vc", &[slots, cap, kvw]));
    g.output("o", g.attention(q, k, v, h, mask));
    g
}

/// The attention kernels, each forced for every step: the per-row kernel; row blocks
/// (where the head width allows them; otherwise the per-row kernel again); and decode
/// programs' keys split into 32 ranges of row blocks, then merged (prefill as by default).
/// Only the first where the adapter's target keeps it for every step (GL: see
/// `Target::of`).
fn kernels(gpu: &Gpu) -> Vec<(&'static str, Target)> {
    let t = Target::of(gpu);
    let mut out = vec![(
        "per row",
        Target {
            attention_rows: Some(usize::MAX),
            attention_splits: Some(0),
            ..t
        },
    )];
    if t.attention_rows.is_none() {
        out.push((
            "row blocks",
            Target {
                attention_rows: Some(0),
                attention_splits: Some(0),
                ..t
            },
        ));
        out.push((
            "split decode",
            Target {
                attention_splits: Some(32),
                ..t
            },
        ));
    }
    out
}

/// [`check_steps`] under each of [`kernels`], from the same starting host state.
fn check_kernels(
    gpu: &Gpu,
    graphs: &[&Graph],
    host: &mut Host,
    steps: &[(usize, kiln::Step, Inputs)],
    tol: (f32, f32),
    what: &str,
) {
    let start = host.clone();
    for (kernel, target) in kernels(gpu) {
        *host = start.clone();
        check_steps_for(
            gpu,
            target,
            graphs,
            host,
            steps,
            tol,
            &format!("{what} ({kernel})"),
        );
    }
}

fn qkv(rng: &mut Rng, rows: usize, h: Heads) -> Vec<(&'static str, Vec<f32>)> {
    let kvw = h.kv_heads * h.head_dim;
    vec![
        ("q", rng.uniform(rows * h.heads * h.head_dim, 2.0)),
        ("k", rng.uniform(rows * kvw, 2.0)),
        ("v", rng.uniform(rows * kvw, 2.0)),
    ]
}

fn cache_host(slots: usize, cap: usize, h: Heads) -> Host {
    let mut host = Host::default();
    let n = slots * cap * h.kv_heads * h.head_dim;
    host.states.insert("kc".into(), vec![0.0; n]);
    host.states.insert("vc".into(), vec![0.0; n]);
    host
}

/// Prefill (many queries, more keys than one block of 64) then decode against the same
/// caches: grouped-query heads, causal and not.
#[test]
fn attention_prefill_then_decode_over_a_cache() {
    let h = Heads {
        heads: 6,
        kv_heads: 2,
        head_dim: 20,
    };
    for gpu in gpus() {
        for mask in [Mask::Causal, Mask::Full] {
            let cap = 80;
            let (prefill, decode) = (
                cache_graph(1, 70, h, 1, cap, mask),
                cache_graph(1, 1, h, 1, cap, mask),
            );
            let mut rng = Rng::new(31);
            let mut host = cache_host(1, cap, h);
            let steps = vec![
                (0, at(0, 70), qkv(&mut rng, 70, h)),
                (1, at(70, 1), qkv(&mut rng, 1, h)),
                (1, at(71, 1), qkv(&mut rng, 1, h)),
            ];
            check_kernels(
                gpu,
                &[&prefill, &decode],
                &mut host,
                &steps,
                (1e-5, 1e-4),
                &format!("attention {mask:?}"),
            );
        }
    }
}

/// Decode of a batch over long caches, as split key ranges: every split count a target may
/// ask for, heads of 64 and 128, sequences at different positions in permuted slots (one
/// sitting the step out, one at position 0), causal and in a sliding window.
#[test]
fn split_decode_matches_the_reference() {
    for head_dim in [64, 128] {
        let h = Heads {
            heads: 6,
            kv_heads: 2,
            head_dim,
        };
        for gpu in gpus() {
            if Target::of(gpu).attention_rows.is_some() {
                continue; // GL never splits (see `Target::of`); `kernels` covers it.
            }
            for mask in [Mask::Causal, Mask::Window(300)] {
                let (slots, cap) = (4, 700);
                let (prefill, decode) = (
                    cache_graph(3, 600, h, slots, cap, mask),
                    cache_graph(3, 1, h, slots, cap, mask),
                );
                let mut rng = Rng::new(71);
                let start = cache_host(slots, cap, h);
                let steps = vec![
                    (
                        0,
                        step(&[(0, 600, 2), (0, 37, 0), (0, 0, 3)]),
                        qkv(&mut rng, 1800, h),
                    ),
                    (
                        1,
                        step(&[(600, 1, 2), (37, 0, 0), (0, 1, 3)]),
                        qkv(&mut rng, 3, h),
                    ),
                    (
                        1,
                        step(&[(601, 1, 2), (37, 1, 0), (1, 1, 3)]),
                        qkv(&mut rng, 3, h),
                    ),
                ];
                for splits in [2, 4, 16, 48, 64] {
                    let target = Target {
                        attention_splits: Some(splits),
                        ..Target::of(gpu)
                    };
                    check_steps_for(
                        gpu,
                        target,
                        &[&prefill, &decode],
                        &mut start.clone(),
                        &steps,
                        (1e-5, 1e-4),
                        &format!("split decode, {splits} ranges, head_dim {head_dim}, {mask:?}"),
                    );
                }
            }
        }
    }
}

/// Wide heads (the row-block kernel's widest, 128, and 64) over a prompt that comes in two
/// chunks of rows that are not multiples of its 16-row blocks, the second chunk behind keys
/// already cached: causal and in a sliding window shorter than the prompt.
#[test]
fn attention_over_a_prompt_in_chunks_with_wide_heads() {
    for head_dim in [128, 64] {
        let h = Heads {
            heads: 4,
            kv_heads: 2,
            head_dim,
        };
        for gpu in gpus() {
            for mask in [Mask::Causal, Mask::Window(40)] {
                let cap = 96;
                let g = cache_graph(1, 50, h, 1, cap, mask);
                let mut rng = Rng::new(43);
                let mut host = cache_host(1, cap, h);
                let steps = vec![
                    (0, at(0, 37), qkv(&mut rng, 50, h)),
                    (0, at(37, 50), qkv(&mut rng, 50, h)),
                ];
                check_kernels(
                    gpu,
                    &[&g],
                    &mut host,
                    &steps,
                    (1e-5, 1e-4),
                    &format!("attention over chunks, head_dim {head_dim}, {mask:?}"),
                );
            }
        }
    }
}

/// Three sequences in permuted slots of a 4-slot cache, at different positions and
/// lengths (one sitting a step out), causal and in a sliding window.
#[test]
fn attention_keeps_each_sequence_in_its_own_slot() {
    let h = Heads {
        heads: 4,
        kv_heads: 4,
        head_dim: 16,
    };
    for gpu in gpus() {
        for mask in [Mask::Causal, Mask::Window(5)] {
            let (slots, cap, t) = (4, 40, 9);
            let g = cache_graph(3, t, h, slots, cap, mask);
            let mut rng = Rng::new(57);
            let mut host = cache_host(slots, cap, h);
            let steps = vec![
                (
                    0,
                    step(&[(0, 9, 2), (0, 4, 0), (0, 7, 3)]),
                    qkv(&mut rng, 3 * t, h),
                ),
                (
                    0,
                    step(&[(9, 3, 2), (4, 0, 0), (7, 9, 3)]),
                    qkv(&mut rng, 3 * t, h),
                ),
                (
                    0,
                    step(&[(12, 1, 2), (4, 6, 0), (16, 2, 3)]),
                    qkv(&mut rng, 3 * t, h),
                ),
            ];
            check_kernels(
                gpu,
                &[&g],
                &mut host,
                &steps,
                (1e-5, 1e-4),
                &format!("batched attention {mask:?}"),
            );
            // Two live sequences in one slot would race on its cache: refused.
            let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
            let e = pollster::block_on(async {
                let state = State::new(gpu, &[&plan]).await.expect("state");
                let prog = Program::new(gpu, plan, Some(&state))
                    .await
                    .expect("program");
                let st = step(&[(0, 2, 1), (0, 0, 1), (0, 3, 1)]);
                let x = qkv(&mut rng, 3 * t, h);
                let feeds: Vec<(&str, Feed)> = x.iter().map(|(n, x)| (*n, Feed::F32(x))).collect();
                prog.run(&st, &feeds)
                    .await
                    .err()
                    .expect("shared slot")
                    .to_string()
            });
            assert!(e.contains("sequences 0 and 2 both use slot 1"), "{e}");
        }
    }
}

/// Encoder self-attention over a step's own padded sequences: each sees its own keys only,
/// so what the padding rows hold cannot change the result.
#[test]
fn encoder_attention_masks_padding() {
    let h = Heads {
        heads: 4,
        kv_heads: 2,
        head_dim: 12,
    };
    for gpu in gpus() {
        let t = 7;
        let g = Graph::batch(3);
        let kvw = h.kv_heads * h.head_dim;
        let (q, k, v) = (
            g.input("q", t, 48),
            g.input("k", t, kvw),
            g.input("v", t, kvw),
        );
        g.output("o", g.attention(q, k, v, h, Mask::Full));
        let st = step(&[(0, 5, 0), (0, 2, 0), (0, 7, 0)]);
        let mut rng = Rng::new(71);
        let inputs = qkv(&mut rng, 3 * t, h);
        let mut host = Host::default();
        check_kernels(
            gpu,
            &[&g],
            &mut host,
            &[(0, st.clone(), inputs.clone())],
            (1e-5, 1e-4),
            "encoder attention",
        );
        // Garbage in the padding rows of k and v: the same result.
        let mut noisy = inputs.clone();
        for (name, x) in noisy.iter_mut().skip(1) {
            for (s, len) in [(0, 5), (1, 2)] {
                x[(s * t + len) * kvw..(s + 1) * t * kvw].fill(1e4);
            }
            host.inputs.insert(name.to_string(), x.clone());
        }
        let feeds = |xs: &[(&'static str, Vec<f32>)]| {
            run_gpu(
                gpu,
                &g,
                &xs.iter()
                    .map(|(n, x)| (*n, Feed::F32(x)))
                    .collect::<Vec<_>>(),
                &st,
            )
        };
        let (clean, dirty) = (feeds(&inputs), feeds(&noisy));
        assert_close(
            &dirty["o"],
            &clean["o"],
            0.0,
            0.0,
            &format!("padding leaked on {}", label(gpu)),
        );
    }
}

/// Cross-attention: queries of one sequence over the first `keys` rows of another's keys
/// and values, checked against a direct computation too.
#[test]
fn cross_attention_reads_an_explicit_key_count() {
    let h = Heads {
        heads: 6,
        kv_heads: 3,
        head_dim: 12,
    };
    for gpu in gpus() {
        let (t, tk, keys) = (3, 50, 37);
        let kvw = h.kv_heads * h.head_dim;
        let g = Graph::batch(2);
        let q = g.input("q", t, 72);
        let k = g.input_dense("enc_k", tk, kvw);
        let v = g.input_dense("enc_v", tk, kvw);
        g.output("o", g.cross_attention(q, k, v, h, keys));
        let mut rng = Rng::new(91);
        let (qs, ks, vs) = (
            rng.uniform(2 * t * 72, 2.0),
            rng.uniform(2 * tk * kvw, 2.0),
            rng.uniform(2 * tk * kvw, 2.0),
        );
        let st = step(&[(0, 3, 0), (0, 2, 0)]);
        let mut host = Host::default();
        host.inputs.insert("q".into(), qs.clone());
        host.inputs.insert("enc_k".into(), ks.clone());
        host.inputs.insert("enc_v".into(), vs.clone());
        let want = evaluate(&g, &mut host, &st).expect("reference")["o"].clone();
        // Sequence 1, query 1, directly: keys 0..37 of sequence 1.
        let (r, kr) = (t + 1, tk * kvw);
        let direct = attend(
            &qs[r * 72..(r + 1) * 72],
            &ks[kr..kr + keys * kvw],
            &vs[kr..kr + keys * kvw],
            h,
            0,
            1.0 / 12f32.sqrt(),
        );
        assert_close(
            &want[r * 72..(r + 1) * 72],
            &direct,
            1e-6,
            1e-6,
            "the twin against a direct computation",
        );
        let inputs = vec![("q", qs), ("enc_k", ks), ("enc_v", vs)];
        check_kernels(
            gpu,
            &[&g],
            &mut host,
            &[(0, st, inputs)],
            (1e-5, 1e-4),
            "cross-attention",
        );

        // Keys and values projected in the graph from an encoder's output, during a
        // one-token step: every encoder row must be computed, not just the step's tokens.
        let enc_w = 16;
        let wk = weight(gpu, "wk", &[kvw, enc_w], DType::F32, &mut rng, 0.5, None);
        let wv = weight(gpu, "wv", &[kvw, enc_w], DType::F32, &mut rng, 0.5, None);
        let g = Graph::batch(2);
        let q = g.input("q", 1, 72);
        let enc = g.input_dense("enc", tk, enc_w);
        let k = g.matmul(enc, g.weight(&wk.tensor));
        let v = g.matmul(enc, g.weight(&wv.tensor));
        g.output("o", g.cross_attention(q, k, v, h, keys));
        let mut host = Host::default();
        host.weights.insert("wk".into(), wk.values.clone());
        host.weights.insert("wv".into(), wv.values.clone());
        let inputs = vec![
            ("q", rng.uniform(2 * 72, 2.0)),
            ("enc", rng.uniform(2 * tk * enc_w, 1.0)),
        ];
        let st = step(&[(4, 1, 0), (9, 1, 0)]);
        let what = "cross-attention over projected keys";
        check_kernels(
            gpu,
            &[&g],
            &mut host,
            &[(0, st, inputs)],
            (1e-5, 1e-4),
            what,
        );
    }
}

#[test]
fn ops_that_read_every_row_refuse_padded_inputs() {
    let h = Heads {
        heads: 2,
        kv_heads: 2,
        head_dim: 4,
    };
    let g = Graph::batch(2);
    let (q, k, v) = (g.input("q", 3, 8), g.input("k", 5, 8), g.input("v", 5, 8));
    g.output("o", g.cross_attention(q, k, v, h, 4));
    let e = g.check().err().expect("padded keys").to_string();
    assert!(e.contains("cross-attention") && e.contains("dense"), "{e}");
    let g = Graph::batch(2);
    let (q, k) = (g.input("q", 3, 8), g.input_dense("k", 5, 8));
    g.output("o", g.cross_attention(q, k, g.input_dense("v", 6, 8), h, 4));
    let e = g.check().err().expect("k and v differ").to_string();
    assert!(e.contains("differ in shape"), "{e}");
    let Some(gpu) = gpus().first() else { return };
    let g = Graph::new();
    let w = weight(
        gpu,
        "w",
        &[4, 8, 3],
        DType::F32,
        &mut Rng::new(1),
        1.0,
        None,
    );
    g.output(
        "y",
        g.conv1d(g.input("x", 10, 8), g.weight(&w.tensor), None, 1, 1),
    );
    let e = g.check().err().expect("padded conv input").to_string();
    assert!(e.contains("conv1d") && e.contains("dense"), "{e}");
}
