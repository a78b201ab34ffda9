//! Timing matmuls: the GEMM kernels side by side, shapes given on the command line, and
//! the helpers tuning times its candidates with.

use super::{Figure, Group, Report};
use crate::dtype::DType;
use crate::error::Result;
use crate::exec::{Feed, Program};
use crate::gpu::Gpu;
use crate::graph::{Graph, Step};
use crate::kernels::Gemm;
use crate::schedule::{Plan, Target};
use crate::tensor::Tensor;
use std::time::Duration;
use web_time::Instant;

/// A weight (n, k) of `dtype` with random values, made quickly (rows drawn from a small
/// pool, as synthetic models make theirs).
pub async fn random_weight(gpu: &Gpu, n: usize, k: usize, dtype: DType) -> Result<Tensor> {
    let bytes = crate::models::synthetic::random_bytes(dtype, &[n, k], 7, 0.0)?;
    crate::load::upload_bytes(gpu, "w", &[n, k], dtype, &bytes).await
}

/// Median time of the matmuls y_i = x (m, k) @ w_i^T, one per weight of `ws` (all k wide),
/// planned for `target`, over `samples` runs after a warm-up: on GPUs with timestamp queries,
/// GPU time from the step's first dispatch's start to its last one's end (submission and
/// readback do not count, and a matmul of two dispatches is not charged twice the floor
/// that each profiled dispatch costs, as summing their own times would); else
/// wall-clock time of back-to-back submissions (see `measure`). CPU adapters take the
/// latter: lavapipe's per-dispatch timestamps sum to more than the step's wall time (238 ms
/// of "GPU time" in 137 ms steps), and its submissions cost little beside its kernels.
pub async fn time_matmul(
    gpu: &Gpu,
    target: Target,
    m: usize,
    ws: &[Tensor],
    samples: usize,
) -> Result<Duration> {
    let (mut prog, x) = matmul_program_for(gpu, m, ws, target).await?;
    let step = Step::single(0, prog.tokens());
    let feeds = [("x", Feed::F32(&x))];
    let (t, _, _) = super::sweep::time_program(gpu, &mut prog, &step, &feeds, samples).await?;
    Ok(t)
}

/// Median times of the matmuls of [`time_matmul`] planned for each of `targets`. On CPU
/// adapters the targets' runs alternate, sample by sample, after a warm-up of each, so that
/// what else the machine does (llvmpipe GL compiling in the background, say) falls on all
/// of them alike; on GPUs each is timed on the GPU's clock in turn.
pub async fn time_matmuls(
    gpu: &Gpu,
    targets: &[Target],
    m: usize,
    ws: &[Tensor],
    samples: usize,
) -> Result<Vec<Duration>> {
    let cpu = gpu.info().device_type == wgpu::DeviceType::Cpu;
    if !cpu {
        let mut out = Vec::new();
        for &t in targets {
            out.push(time_matmul(gpu, t, m, ws, samples).await?);
        }
        return Ok(out);
    }
    let mut progs = Vec::new();
    for &t in targets {
        let (prog, x) = matmul_program_for(gpu, m, ws, t).await?;
        for _ in 0..2 {
            let step = Step::single(0, prog.tokens());
            let _ = prog.submit(&step, &[("x", Feed::F32(&x))]).await?;
            gpu.flush().await;
        }
        progs.push((prog, x));
    }
    // Runs per sample: about 50 ms of the first target's.
    let step = Step::single(0, m);
    let t0 = Instant::now();
    if let Some((prog, x)) = progs.first() {
        let _ = prog.submit(&step, &[("x", Feed::F32(x))]).await?;
        gpu.flush().await;
    }
    let once = t0.elapsed().max(Duration::from_micros(1));
    let reps = (0.05 / once.as_secs_f64()).clamp(1.0, 200.0) as u32;
    let mut times = vec![Vec::with_capacity(samples); progs.len()];
    for _ in 0..samples.max(1) {
        for ((prog, x), times) in progs.iter().zip(&mut times) {
            let t = Instant::now();
            for _ in 0..reps {
                let _ = prog.submit(&step, &[("x", Feed::F32(x))]).await?;
            }
            gpu.flush().await;
            times.push(t.elapsed() / reps);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect())
}

/// A matmul program y = x (m, k) @ w (n, k)^T with random weights of `dtype`.
pub(super) async fn matmul_program(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n: usize,
    dtype: DType,
    target: Target,
) -> Result<(Program, Vec<f32>)> {
    let w = random_weight(gpu, n, k, dtype).await?;
    matmul_program_for(gpu, m, &[w], target).await
}

/// A program of matmuls y_i = x (m, k) @ w_i^T, and its input.
async fn matmul_program_for(
    gpu: &Gpu,
    m: usize,
    ws: &[Tensor],
    target: Target,
) -> Result<(Program, Vec<f32>)> {
    let k = ws.first().map_or(0, |w| w.shape()[1]);
    let g = Graph::new();
    let x = g.input("x", m, k);
    // One sequence of m tokens.
    for (i, w) in ws.iter().enumerate() {
        g.output(&format!("y{i}"), g.matmul(x, g.weight(w)));
    }
    let plan = Plan::new(&g, target)?;
    let x = vec![0.5f32; m * k];
    Ok((Program::new(gpu, plan, None).await?, x))
}

/// Parse `MxKxN[,MxKxN...]` (y (M, N) = x (M, K) · w (N, K)^T).
pub fn parse_shapes(text: &str) -> Result<Vec<(usize, usize, usize)>> {
    text.split(',')
        .map(|s| {
            let d: Vec<usize> = s.split('x').filter_map(|v| v.trim().parse().ok()).collect();
            match d[..] {
                [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
                _ => Err(crate::error::Error::Invalid(format!(
                    "matmul shape '{s}' is not MxKxN (e.g. 128x576x1536)"
                ))),
            }
        })
        .collect()
}

/// Matmuls of the given shapes with `dtype` weights, each run **submitted and waited for
/// alone** (as `peer-burn --sync device` times burn): the median of `runs` such runs. Every
/// GEMM kernel the adapter can run is timed (shapes of more rows than GEMV takes), runs
/// alternating, so that they compare in one run, in [`Gemm::available`]'s order.
pub async fn matmul_shapes(
    gpu: &Gpu,
    shapes: &[(usize, usize, usize)],
    dtype: DType,
    runs: usize,
) -> Result<Report> {
    let target = Target::of(gpu);
    let mut figures = Vec::new();
    for &(m, k, n) in shapes {
        let gemv = target.gemv_max_rows.unwrap_or(
            target
                .gemv
                .get(dtype.weight_format(target.has_f16), n)
                .max_rows as usize,
        );
        let kinds = if m > gemv {
            Gemm::available(gpu)
        } else {
            vec![target.gemm]
        };
        let w = random_weight(gpu, n, k, dtype).await?;
        let mut progs = Vec::new();
        for &gemm in &kinds {
            let (prog, x) =
                matmul_program_for(gpu, m, std::slice::from_ref(&w), Target { gemm, ..target })
                    .await?;
            let step = Step::single(0, prog.tokens());
            let _ = prog.submit(&step, &[("x", Feed::F32(&x))]).await?;
            gpu.flush().await;
            progs.push((prog, x, step, Vec::with_capacity(runs)));
        }
        for _ in 0..runs.max(1) {
            for (prog, x, step, times) in &mut progs {
                let t = Instant::now();
                let _ = prog.submit(step, &[("x", Feed::F32(x))]).await?;
                gpu.flush().await;
                times.push(t.elapsed());
            }
        }
        for (gemm, (_, _, _, mut times)) in kinds.iter().zip(progs) {
            times.sort();
            let name = match (kinds.len(), gemm) {
                (1, _) => "",
                (_, Gemm::Tiled) => " tiled",
                (_, Gemm::Columns) => " columns",
                (_, Gemm::ColumnsSubgroup) => " columns-sg",
                (_, Gemm::Direct) => " direct",
            };
            figures.push(
                Figure::new(
                    Group::Gemm,
                    format!("matmul {dtype} {m}x{k}x{n}{name}"),
                    times[times.len() / 2],
                )
                .flops(2.0 * (m * n * k) as f64)
                .dtype(dtype),
            );
        }
    }
    Ok(Report {
        adapter: gpu.describe(),
        figures,
    })
}
