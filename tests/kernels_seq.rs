//! The kernels that follow sequences, on every adapter, against their CPU twins: RoPE at
//! each sequence's position, embedding lookups (from the host and from a per-slot state),
//! KV-cache writes and attention over caches in slots, encoder self-attention under padding,
//! cross-attention with an explicit key count, last-token gathers, masked mean pooling and
//! 1-D convolution. Batches mix positions, lengths (padding, and sequences sitting a step
//! out) and slots. Tolerances are `atol + rtol * |ref|`, stated per test.

mod common;

use common::*;
use kiln::ops::attention::{Heads, Mask, attend};
use kiln::ops::{conv, embedding as emb, pool, rope};
use kiln::reference::graph::{Host, evaluate};
use kiln::{DType, Feed, Gpu, Graph, Plan, Program, Seq, State, Step, Target};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn step(seqs: &[(usize, usize, usize)]) -> Step {
    Step {
        seqs: seqs
            .iter()
            .map(|&(pos, len, slot)| Seq::new(pos, len).slot(slot))
            .collect(),
    }
}

type Inputs = Vec<(&'static str, Vec<f32>)>;

/// Plan each graph, then run `steps` (graph index, step, inputs) in order on the GPU and on
/// the CPU twins, states shared by every graph and step on both sides, comparing every
/// output and, at the end, every state.
fn check_steps(
    gpu: &Gpu,
    graphs: &[&Graph],
    host: &mut Host,
    steps: &[(usize, Step, Inputs)],
    tol: (f32, f32),
    what: &str,
) {
    let plans: Vec<Plan> = graphs
        .iter()
        .map(|g| Plan::new(g, Target::of(gpu)).expect("plan"))
        .collect();
    pollster::block_on(async {
        let state = State::new(gpu, &plans.iter().collect::<Vec<_>>())
            .await
            .expect("state");
        let mut progs = Vec::new();
        for p in plans {
            progs.push(Program::new(gpu, p, Some(&state)).await.expect("program"));
        }
        for (i, (gi, st, inputs)) in steps.iter().enumerate() {
            let feeds: Vec<(&str, Feed)> = inputs.iter().map(|(n, x)| (*n, Feed::F32(x))).collect();
            let got = progs[*gi].run(st, &feeds).await.expect("run");
            for (n, x) in inputs {
                host.inputs.insert(n.to_string(), x.clone());
            }
            let want = evaluate(graphs[*gi], host, st).expect("reference");
            for (name, _) in graphs[*gi].outputs() {
                let w = format!("{what}, step {i}, output {name} on {}", label(gpu));
                assert_close(&got[name.as_str()], &want[&name], tol.0, tol.1, &w);
            }
        }
        for (name, values) in &host.states {
            let got = state.read(gpu, name).await.expect("read state");
            assert_close(
                &got,
                values,
                0.0,
                0.0,
                &format!("{what}: state {name} on {}", label(gpu)),
            );
        }
    });
}

#[test]
fn rope_turns_each_sequence_from_its_own_position() {
    for gpu in gpus() {
        let (t, heads, hd) = (5, 3, 10);
        let table = rope::rope_table(&rope::rope_inv_freq(hd, 10_000.0), 30);
        let g = Graph::batch(3);
        let x = g.input("x", t, heads * hd);
        g.output(
            "y",
            g.rope(x, g.constant("rope", &[30, hd], table.clone()), heads, hd),
        );
        let xs = Rng::new(21).uniform(3 * t * heads * hd, 2.0);
        let st = step(&[(7, 5, 0), (0, 2, 0), (12, 4, 0)]);
        // The twin against the plain rotation: sequence 0's rows at positions 7..12.
        let mut host = Host::default();
        host.inputs.insert("x".into(), xs.clone());
        let want = evaluate(&g, &mut host, &st).expect("reference");
        let rows = t * heads * hd;
        assert_eq!(
            &want["y"][..rows],
            &rope::rope(&xs[..rows], &table, heads, hd, 7)[..]
        );
        check_steps(
            gpu,
            &[&g],
            &mut host,
            &[(0, st, vec![("x", xs)])],
            (1e-6, 1e-5),
            "rope",
        );
    }
}

#[test]
fn embedding_gathers_rows_from_every_part() {
    for gpu in gpus() {
        for dtype in DTYPES {
            let (vocab, d, t) = (50, 33, 17);
            let mut rng = Rng::new(8);
            // Parts of 12 rows: 5 parts, the last partial.
            let part = Some((12 * d * dtype.size()) as u64);
            let table = weight(gpu, "emb", &[vocab, d], dtype, &mut rng, 1.0, part);
            assert_eq!(table.tensor.parts().len(), 5);
            let mut ids: Vec<u32> = (0..2 * t).map(|_| rng.below(vocab as u32)).collect();
            ids[0] = 0;
            ids[1] = vocab as u32 - 1;
            let g = Graph::batch(2);
            let idv = g.ids("ids", t);
            g.output("y", g.embedding(g.weight(&table.tensor), idv));
            // The second sequence brings 9 tokens: the rest of its rows is padding.
            let st = step(&[(0, t, 0), (3, 9, 0)]);
            let mut want = emb::embedding(&table.values, &ids, d);
            want[(t + 9) * d..].fill(0.0);
            for target in targets(gpu) {
                let plan = Plan::new(&g, target).expect("plan");
                let got = pollster::block_on(async {
                    let prog = Program::new(gpu, plan, None).await.expect("program");
                    prog.run(&st, &[("ids", Feed::Ids(&ids))])
                        .await
                        .expect("run")
                });
                let what = format!("embedding {dtype} f16={} on {}", target.has_f16, label(gpu));
                assert_close(&got["y"], &want, 0.0, 0.0, &what);
            }
        }
    }
}

#[test]
fn embedding_reads_each_sequence_slot_of_a_token_state() {
    for gpu in gpus() {
        let (vocab, d) = (40, 9);
        let table = weight(
            gpu,
            "emb",
            &[vocab, d],
            DType::F32,
            &mut Rng::new(3),
            1.0,
            None,
        );
        let g = Graph::batch(3);
        let tokens = g.state("token", &[4, 1]);
        g.output("y", g.embedding(g.weight(&table.tensor), tokens));
        let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
        let slot_tokens = [5u32, 39, 0, 17];
        // Sequences in slots 3, 0 and 2; the middle one sits the step out.
        let st = step(&[(4, 1, 3), (0, 0, 0), (9, 1, 2)]);
        let got = pollster::block_on(async {
            let state = State::new(gpu, &[&plan]).await.expect("state");
            state
                .write(gpu, "token", bytemuck::cast_slice(&slot_tokens))
                .expect("write");
            let prog = Program::new(gpu, plan, Some(&state))
                .await
                .expect("program");
            prog.run(&st, &[]).await.expect("run")
        });
        let mut want = vec![0.0; 3 * d];
        want[..d].copy_from_slice(&table.values[17 * d..18 * d]);
        want[2 * d..].copy_from_slice(&table.values[0..d]);
        assert_close(
            &got["y"],
            &want,
            0.0,
            0.0,
            &format!("embedding by slot on {}", label(gpu)),
        );
    }
}

#[test]
fn position_embedding_reads_each_token_position() {
    for gpu in gpus() {
        let (positions, d, t) = (12, 7, 4);
        let table = weight(
            gpu,
            "pos",
            &[positions, d],
            DType::F32,
            &mut Rng::new(4),
            1.0,
            None,
        );
        let g = Graph::batch(2);
        let ids = g.ids("ids", t);
        g.output("y", g.position_embedding(g.weight(&table.tensor), ids));
        // Sequence 0: tokens at positions 8..12; sequence 1: two tokens at 0 and 1.
        let st = step(&[(8, 4, 0), (0, 2, 0)]);
        let got = run_gpu(gpu, &g, &[("ids", Feed::Ids(&[0; 8]))], &st);
        let row = |p: usize| table.values[p * d..(p + 1) * d].to_vec();
        let mut want: Vec<f32> = (8..12).chain(0..2).flat_map(row).collect();
        want.extend(vec![0.0; 2 * d]);
        assert_close(
            &got["y"],
            &want,
            0.0,
            0.0,
            &format!("position embedding on {}", label(gpu)),
        );
        // A position past the table is refused before the step runs.
        let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
        let e = plan
            .check_step(&step(&[(9, 4, 0), (0, 2, 0)]))
            .err()
            .expect("past the table");
        assert!(e.to_string().contains("position embedding table"), "{e}");
    }
}

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
            check_steps(
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
            check_steps(
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
        check_steps(
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
        head_dim: 10,
    };
    for gpu in gpus() {
        let (t, tk, keys) = (3, 50, 37);
        let kvw = h.kv_heads * h.head_dim;
        let g = Graph::batch(2);
        let q = g.input("q", t, 60);
        let k = g.input_dense("enc_k", tk, kvw);
        let v = g.input_dense("enc_v", tk, kvw);
        g.output("o", g.cross_attention(q, k, v, h, keys));
        let mut rng = Rng::new(91);
        let (qs, ks, vs) = (
            rng.uniform(2 * t * 60, 2.0),
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
            &qs[r * 60..(r + 1) * 60],
            &ks[kr..kr + keys * kvw],
            &vs[kr..kr + keys * kvw],
            h,
            0,
            1.0 / 10f32.sqrt(),
        );
        assert_close(
            &want[r * 60..(r + 1) * 60],
            &direct,
            1e-6,
            1e-6,
            "the twin against a direct computation",
        );
        let inputs = vec![("q", qs), ("enc_k", ks), ("enc_v", vs)];
        check_steps(
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
        let q = g.input("q", 1, 60);
        let enc = g.input_dense("enc", tk, enc_w);
        let k = g.matmul(enc, g.weight(&wk.tensor));
        let v = g.matmul(enc, g.weight(&wv.tensor));
        g.output("o", g.cross_attention(q, k, v, h, keys));
        let mut host = Host::default();
        host.weights.insert("wk".into(), wk.values.clone());
        host.weights.insert("wv".into(), wv.values.clone());
        let inputs = vec![
            ("q", rng.uniform(2 * 60, 2.0)),
            ("enc", rng.uniform(2 * tk * enc_w, 1.0)),
        ];
        let st = step(&[(4, 1, 0), (9, 1, 0)]);
        let what = "cross-attention over projected keys";
        check_steps(
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

#[test]
fn last_token_and_mean_pool_follow_each_length() {
    for gpu in gpus() {
        let (t, w) = (6, 70);
        let g = Graph::batch(4);
        let x = g.input("x", t, w);
        g.output("last", g.last_token(x));
        g.output("mean", g.mean_pool(x));
        let xs = Rng::new(13).uniform(4 * t * w, 3.0);
        let st = step(&[(0, 6, 0), (0, 1, 0), (0, 3, 0), (0, 0, 0)]);
        let lens = [6, 1, 3, 0];
        let mut last = vec![0.0; 4 * w];
        for (s, &len) in lens.iter().enumerate().take(3) {
            let r = s * t + len - 1;
            last[s * w..(s + 1) * w].copy_from_slice(&xs[r * w..(r + 1) * w]);
        }
        let got = run_gpu(gpu, &g, &[("x", Feed::F32(&xs))], &st);
        let what = |op: &str| format!("{op} on {}", label(gpu));
        assert_close(&got["last"], &last, 0.0, 0.0, &what("last token"));
        // f32 sums of up to 6 values against f64.
        assert_close(
            &got["mean"],
            &pool::mean_pool(&xs, &lens, t, w),
            1e-6,
            1e-6,
            &what("mean pool"),
        );
    }
}

#[test]
fn conv1d_with_stride_and_padding() {
    for gpu in gpus() {
        for (dtype, stride, padding, bias) in [
            (DType::F32, 2, 1, true),
            (DType::F16, 1, 0, false),
            (DType::BF16, 3, 2, true),
        ] {
            let (s, t, c_in, c_out, k) = (2, 23, 7, 9, 3);
            let mut rng = Rng::new(5 + stride as u64);
            let w = weight(gpu, "w", &[c_out, c_in, k], dtype, &mut rng, 0.5, None);
            let b = weight(gpu, "b", &[c_out], DType::F32, &mut rng, 0.5, None);
            let xs = rng.uniform(s * t * c_in, 1.0);
            let g = Graph::batch(s);
            let x = g.input_dense("x", t, c_in);
            let bv = bias.then(|| g.weight(&b.tensor));
            g.output("y", g.conv1d(x, g.weight(&w.tensor), bv, stride, padding));
            let want = conv::conv1d(
                &xs,
                &w.values,
                bias.then_some(&b.values[..]),
                vec![s, t, c_in],
                c_out,
                k,
                stride,
                padding,
            );
            for target in targets(gpu) {
                let got = run_on(
                    gpu,
                    target,
                    &g,
                    &[("x", Feed::F32(&xs))],
                    &step(&[(0, t, 0), (0, t, 0)]),
                );
                let what = format!(
                    "conv1d {dtype} stride {stride} padding {padding} on {}",
                    label(gpu)
                );
                // f32 accumulation over 21 products.
                assert_close(&got["y"], &want, 1e-5, 1e-5, &what);
            }
        }
    }
}
