//! Every WGSL kernel against its plain-Rust CPU twin, on every adapter, on seeded random
//! inputs with sizes that are not multiples of the tiles. Tolerances are `atol + rtol*|ref|`,
//! stated per test. Weights are tested in F32, F16 and BF16, and F16 both natively and packed
//! where the adapter has SHADER_F16.

mod common;

use common::*;
use kiln::kernels::Gemm;
use kiln::ops::{elementwise as ew, matmul as mm, norm, softmax as sm};
use kiln::{Act, DType, Feed, Gpu, Graph, Plan, Target};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// For matmuls: also with every matmul as GEMM, in each GEMM kernel the adapter can run,
/// and every one as GEMV, so every kernel sees every shape whatever the adapter's own choice.
fn matmul_targets(gpu: &Gpu) -> Vec<Target> {
    let mut out = targets(gpu);
    let t = Target::of(gpu);
    for gemm in Gemm::available(gpu) {
        out.push(Target {
            gemv_max_rows: Some(0),
            gemm,
            ..t
        });
    }
    out.push(Target {
        gemv_max_rows: Some(usize::MAX),
        ..t
    });
    out
}

/// One step of one sequence of `tokens` tokens at position 0.
fn run(
    gpu: &Gpu,
    target: Target,
    g: &Graph,
    feeds: &[(&str, Feed)],
    tokens: usize,
) -> kiln::Outputs {
    run_on(gpu, target, g, feeds, &at(0, tokens))
}

/// Matmul (tiled GEMM for m > 1, GEMV for m == 1), weights split into parts or whole.
fn check_matmul(m: usize, k: usize, n: usize, max_part_rows: Option<usize>) {
    for gpu in gpus() {
        for dtype in DTYPES {
            let mut rng = Rng::new(7 + (m * k * n) as u64);
            let max_part = max_part_rows.map(|rows| (rows * k * dtype.size()) as u64);
            let w = weight(gpu, "w", &[n, k], dtype, &mut rng, 1.0, max_part);
            if let Some(rows) = max_part_rows {
                assert_eq!(
                    w.tensor.parts().len(),
                    n.div_ceil(rows),
                    "the weight was split"
                );
            }
            let x = rng.uniform(m * k, 1.0);
            let g = Graph::new();
            let xi = g.input("x", m, k);
            let y = g.matmul(xi, g.weight(&w.tensor));
            g.output("y", y);
            let want = mm::matmul(&x, &w.values, m, n, k);
            for target in matmul_targets(gpu) {
                let got = run(gpu, target, &g, &[("x", Feed::F32(&x))], m);
                // f32 accumulation over k products of values in [-1, 1].
                let what = format!(
                    "matmul {m}x{k}x{n} {dtype} f16={} gemv up to {:?} rows, else {:?}, on {}",
                    target.has_f16,
                    target.gemv_max_rows,
                    target.gemm,
                    label(gpu)
                );
                assert_close(&got["y"], &want, 1e-4, 1e-4, &what);
            }
        }
    }
}

#[test]
fn gemm_matches_reference_off_tile_sizes() {
    check_matmul(37, 83, 45, None);
    check_matmul(70, 130, 67, None);
    // More than one tile in both dimensions (tiles are 64 x 128, or 128 x 64 on CPU
    // adapters), ragged in both.
    check_matmul(131, 40, 261, None);
    check_matmul(300, 70, 150, None);
}

#[test]
fn gemv_matches_reference_off_tile_sizes() {
    check_matmul(1, 83, 45, None);
    check_matmul(1, 301, 130, None);
    // A few rows at once: one block of 8 rows and a partial one.
    check_matmul(11, 83, 45, None);
}

#[test]
fn matmul_over_a_weight_split_into_parts() {
    check_matmul(5, 40, 45, Some(16));
    check_matmul(1, 40, 45, Some(16));
}

/// y = act(x @ Wg^T + b) * (x @ Wu^T) + res: fused into the matmuls' epilogues.
#[test]
fn fused_epilogues_match_reference() {
    for gpu in gpus() {
        for (m, act) in [
            (1, Act::Silu),
            (13, Act::Silu),
            (9, Act::GeluTanh),
            (1, Act::GeluErf),
            (6, Act::Relu),
        ] {
            let (k, n) = (50, 37);
            let mut rng = Rng::new(99 + m as u64);
            let wg = weight(gpu, "wg", &[n, k], DType::F32, &mut rng, 0.5, None);
            let wu = weight(gpu, "wu", &[n, k], DType::F16, &mut rng, 0.5, None);
            let b = weight(gpu, "b", &[n], DType::F32, &mut rng, 0.5, None);
            let x = rng.uniform(m * k, 1.0);
            let res = rng.uniform(m * n, 1.0);
            let g = Graph::new();
            let xi = g.input("x", m, k);
            let ri = g.input("res", m, n);
            let gate = g.linear(xi, g.weight(&wg.tensor), Some(g.weight(&b.tensor)));
            let up = g.matmul(xi, g.weight(&wu.tensor));
            let y = g.add(ri, g.glu(gate, up, act));
            g.output("y", y);
            let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
            assert_eq!(
                plan.dispatches.len(),
                2,
                "glu and add fused into the matmuls"
            );
            assert_eq!(plan.memory.fused_ops, 2);

            let gate_v = ew::tail(
                &mm::matmul(&x, &wg.values, m, n, k),
                n,
                Some(&b.values),
                Act::Identity,
                None,
                None,
            );
            let up_v = mm::matmul(&x, &wu.values, m, n, k);
            let want = ew::tail(
                &gate_v,
                n,
                None,
                act,
                Some((&up_v, Act::Identity)),
                Some(&res),
            );
            let got = run(
                gpu,
                Target::of(gpu),
                &g,
                &[("x", Feed::F32(&x)), ("res", Feed::F32(&res))],
                m,
            );
            let what = format!("fused {act:?} m={m} on {}", label(gpu));
            assert_close(&got["y"], &want, 1e-4, 1e-4, &what);
        }
    }
}

/// Elementwise ops with nothing to fuse into: add, mul, each activation, glu.
#[test]
fn elementwise_ops_match_reference() {
    for gpu in gpus() {
        let (rows, cols) = (7, 301);
        let mut rng = Rng::new(3);
        let a = rng.uniform(rows * cols, 4.0);
        let b = rng.uniform(rows * cols, 4.0);
        let g = Graph::new();
        let (ai, bi) = (g.input("a", rows, cols), g.input("b", rows, cols));
        g.output("add", g.add(ai, bi));
        g.output("mul", g.mul(ai, bi));
        for act in Act::ALL {
            g.output(&format!("{act:?}"), g.act(ai, act));
        }
        g.output("glu", g.glu(ai, bi, Act::GeluTanh));
        let got = run(
            gpu,
            Target::of(gpu),
            &g,
            &[("a", Feed::F32(&a)), ("b", Feed::F32(&b))],
            rows,
        );
        let tail = |act, aux: Option<(&[f32], Act)>, res: Option<&[f32]>| {
            ew::tail(&a, cols, None, act, aux, res)
        };
        let what = |op: &str| format!("{op} on {}", label(gpu));
        assert_close(
            &got["add"],
            &tail(Act::Identity, None, Some(&b)),
            1e-6,
            1e-6,
            &what("add"),
        );
        assert_close(
            &got["mul"],
            &tail(Act::Identity, Some((&b, Act::Identity)), None),
            1e-6,
            1e-6,
            &what("mul"),
        );
        for act in Act::ALL {
            // The GPU's exp/tanh and the erf approximation (|err| < 1.5e-7) against f64.
            assert_close(
                &got[&format!("{act:?}")],
                &tail(act, None, None),
                2e-6,
                2e-5,
                &what(&format!("{act:?}")),
            );
        }
        let glu = tail(Act::GeluTanh, Some((&b, Act::Identity)), None);
        assert_close(&got["glu"], &glu, 1e-5, 2e-5, &what("glu"));
    }
}

#[test]
fn norms_match_reference() {
    for gpu in gpus() {
        for dtype in DTYPES {
            // Rows shorter than the 256-thread workgroup, longer, and over 4 x 256 (the
            // elements a thread loads per pass), none of them a multiple of either, nor of
            // CPU adapters' 8 threads a row (each run below under both counts).
            for (rows, d) in [(5, 77), (3, 300), (2, 2500)] {
                let mut rng = Rng::new(11 + d as u64);
                let w = weight(gpu, "w", &[d], dtype, &mut rng, 1.0, None);
                let b = weight(gpu, "b", &[d], dtype, &mut rng, 1.0, None);
                // An offset makes LayerNorm's mean matter.
                let x: Vec<f32> = rng.uniform(rows * d, 3.0).iter().map(|v| v + 1.5).collect();
                let g = Graph::new();
                let xi = g.input("x", rows, d);
                let (wv, bv) = (g.weight(&w.tensor), g.weight(&b.tensor));
                g.output("rms", g.rms_norm(xi, wv, 1e-5));
                g.output("ln", g.layer_norm(xi, wv, Some(bv), 1e-5));
                g.output("ln_nobias", g.layer_norm(xi, wv, None, 1e-6));
                g.output("l2", g.l2_normalize(xi, 1e-12));
                let threads = [norm::WG, kiln::kernels::CPU_ROW_THREADS];
                for (t, row_threads) in targets(gpu)
                    .into_iter()
                    .flat_map(|t| threads.map(|n| (t, n)))
                {
                    let target = Target { row_threads, ..t };
                    let got = run(gpu, target, &g, &[("x", Feed::F32(&x))], rows);
                    let what = |op: &str| {
                        format!(
                            "{op} {rows}x{d} {dtype}, {row_threads} threads a row, on {}",
                            label(gpu)
                        )
                    };
                    assert_close(
                        &got["rms"],
                        &norm::rms_norm(&x, &w.values, d, 1e-5),
                        1e-5,
                        1e-4,
                        &what("rms"),
                    );
                    let ln = norm::layer_norm(&x, &w.values, Some(&b.values), d, 1e-5);
                    assert_close(&got["ln"], &ln, 1e-5, 1e-4, &what("layernorm"));
                    let ln = norm::layer_norm(&x, &w.values, None, d, 1e-6);
                    assert_close(
                        &got["ln_nobias"],
                        &ln,
                        1e-5,
                        1e-4,
                        &what("layernorm without bias"),
                    );
                    // Unit-norm rows: f32 sums of squares against f64.
                    let l2 = norm::l2_normalize(&x, d, 1e-12);
                    assert_close(&got["l2"], &l2, 1e-6, 1e-5, &what("l2 normalisation"));
                }
            }
        }
    }
}

#[test]
fn softmax_is_stable_and_matches_reference() {
    for gpu in gpus() {
        for (rows, d) in [(7, 1000), (3, 5)] {
            let mut rng = Rng::new(5);
            // Logits up to +-80: exp would overflow f32 without subtracting the max.
            let x = rng.uniform(rows * d, 80.0);
            let g = Graph::new();
            let xi = g.input("x", rows, d);
            g.output("y", g.softmax(xi));
            let got = run(gpu, Target::of(gpu), &g, &[("x", Feed::F32(&x))], rows);
            let what = format!("softmax {rows}x{d} on {}", label(gpu));
            assert!(
                got["y"].iter().all(|v| v.is_finite()),
                "{what}: non-finite output"
            );
            assert_close(&got["y"], &sm::softmax(&x, d), 1e-6, 1e-4, &what);
        }
    }
}

#[test]
fn copy_kernel_copies() {
    for gpu in gpus() {
        let mut rng = Rng::new(1);
        // Not a multiple of the 256-thread workgroup, in f32s or in vec4s.
        let data = rng.uniform(1000 * 3 + 4, 1.0);
        for vec4 in [false, true] {
            let got = pollster::block_on(kiln::bench::copy_once(gpu, &data, vec4)).expect("copy");
            let what = format!("copy (vec4 {vec4}) on {}", label(gpu));
            assert_close(&got, &data, 0.0, 0.0, &what);
        }
    }
}

/// The rooflines' own kernels (`ops::roofline`) against their CPU twins. The read-only pass
/// over 12,345 vec4s (a multiple neither of the 256-thread workgroup nor of a thread's 8):
/// every workgroup's sum within 2e-3 (f32 sums of ~8,000 values in [-1, 1), added in
/// another order). The multiply-add kernel, 1,000 threads (not a multiple of 256) of 1,000
/// iterations, enough to move every chain well off its start: f32 within 1e-3, and f16
/// (where the adapter has SHADER_F16) within 0.05, of the CPU's chains rounded as the GPU
/// keeps them.
#[test]
fn roofline_kernels_match_their_cpu_twins() {
    use kiln::ops::roofline::{fma_reference, read_reference};
    for gpu in gpus() {
        let data = Rng::new(7).uniform(12_345 * 4, 1.0);
        let got = pollster::block_on(kiln::bench::read_once(gpu, &data)).expect("read");
        let what = format!("read on {}", label(gpu));
        assert!(got.len() > 1, "{what}: {} workgroups", got.len());
        assert_close(&got, &read_reference(&data, got.len()), 2e-3, 0.0, &what);
        let f16 = gpu.device().features().contains(wgpu::Features::SHADER_F16);
        for (half, tol) in [(false, 1e-3), (true, 0.05)] {
            if half && !f16 {
                continue;
            }
            let (threads, iterations) = (1000, 1000);
            let got = pollster::block_on(kiln::bench::fma_once(gpu, threads, iterations, half));
            let got = got.expect("fma");
            let want: Vec<f32> = (0..threads as u32)
                .map(|i| fma_reference(i, iterations, half))
                .collect();
            let what = format!("fma (f16 {half}) on {}", label(gpu));
            assert_close(&got, &want, tol, 0.0, &what);
        }
    }
}
