//! The kernels that follow sequences, on every adapter, against their CPU twins: RoPE at
//! each sequence's position, embedding lookups (from the host, from a per-slot state, by
//! position), pooling to the last token and the masked mean, and 1-D convolution (attention has its
//! own file, `tests/attention.rs`). Batches mix positions, lengths (padding, and sequences
//! sitting a step out) and slots. Tolerances are `atol + rtol * |ref|`, stated per test.

mod common;

use common::*;
use kiln::ops::{conv, embedding as emb, pool, rope};
use kiln::reference::graph::{Host, evaluate};
use kiln::{Act, DType, Feed, Graph, Plan, Program, State, Target};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

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
        // The last two: Whisper's stem, GELU after the convolution and a table added after.
        for (dtype, stride, padding, bias, act, add) in [
            (DType::F32, 2, 1, true, Act::Identity, false),
            (DType::F16, 1, 0, false, Act::Identity, false),
            (DType::BF16, 3, 2, true, Act::Identity, false),
            (DType::F16, 1, 1, true, Act::GeluErf, false),
            (DType::F16, 2, 1, true, Act::GeluErf, true),
        ] {
            let (s, t, c_in, c_out, k) = (2, 23, 7, 9, 3);
            let mut rng = Rng::new(5 + stride as u64);
            let w = weight(gpu, "w", &[c_out, c_in, k], dtype, &mut rng, 0.5, None);
            let b = weight(gpu, "b", &[c_out], DType::F32, &mut rng, 0.5, None);
            let t_out = (t + 2 * padding - k) / stride + 1;
            let table = weight(gpu, "pos", &[t_out, c_out], dtype, &mut rng, 1.0, None);
            let xs = rng.uniform(s * t * c_in, 1.0);
            let g = Graph::batch(s);
            let x = g.input_dense("x", t, c_in);
            let bv = bias.then(|| g.weight(&b.tensor));
            let av = add.then(|| g.weight(&table.tensor));
            g.output(
                "y",
                g.conv1d_act(x, g.weight(&w.tensor), bv, stride, padding, act, av),
            );
            let mut want = conv::conv1d(
                &xs,
                &w.values,
                bias.then_some(&b.values[..]),
                vec![s, t, c_in],
                c_out,
                k,
                stride,
                padding,
            );
            for (i, y) in want.iter_mut().enumerate() {
                let plus = if add {
                    table.values[i % (t_out * c_out)]
                } else {
                    0.0
                };
                *y = kiln::ops::elementwise::act(*y, act) + plus;
            }
            for target in targets(gpu) {
                let got = run_on(
                    gpu,
                    target,
                    &g,
                    &[("x", Feed::F32(&xs))],
                    &step(&[(0, t, 0), (0, t, 0)]),
                );
                let what = format!(
                    "conv1d {dtype} stride {stride} padding {padding} {act:?} add {add} on {}",
                    label(gpu)
                );
                // f32 accumulation over 21 products; the shader's erf is within 1.5e-7.
                assert_close(&got["y"], &want, 1e-5, 1e-5, &what);
            }
        }
    }
}
