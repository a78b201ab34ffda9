//! Benchmarks: each adapter's measured rooflines (bandwidth, multiply-add peak, fixed
//! costs), kernels at the shapes of real models set against them, and whole models as
//! llama-bench runs them. Kernel figures go through the same planner and executor the
//! models use. Times are medians: of wall-clock samples, each many back-to-back
//! submissions (so submission overhead is included and amortised), or of the GPU's own
//! clock where the adapter has timestamp queries (see `sweep::time_program`). Results are
//! data ([`record`]): drawn as tables, CSV or plots, written as JSON and compared.

use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::copy;
use std::time::Duration;
use web_time::Instant;

mod exchange;
mod matmul;
mod model;
#[cfg(not(target_arch = "wasm32"))]
mod plot;
pub mod record;
mod render;
mod roofline;
mod serve;
mod sweep;

pub use exchange::{all_reduce, exchange};
pub use matmul::{matmul_shapes, parse_shapes, random_weight, time_matmul, time_matmuls};
pub use model::{ModelBench, ModelReport, model};
#[cfg(not(target_arch = "wasm32"))]
pub use plot::plot;
pub use render::{compare, to_csv, to_markdown};
pub use roofline::{bandwidth_figures, fma_figures, latency_figures};
pub use serve::{ServeBench, ServeRow, serve, serve_markdown};
pub use sweep::{Sweep, matrices};

/// Run a copy kernel once over `data` (a multiple of 4 values for `vec4`) and read the copy
/// back (the kernels' own test).
pub async fn copy_once(gpu: &Gpu, data: &[f32], vec4: bool) -> Result<Vec<f32>> {
    let (src, dst, copy) = roofline::copy_job(gpu, data.len(), vec4, copy::WG).await?;
    gpu.queue()
        .write_buffer(&src, 0, bytemuck::cast_slice(data));
    copy.submit(gpu);
    gpu.read_f32(&dst, data.len()).await
}

/// Run the read-only reduction once over `data` (vec4s) and read back its per-workgroup
/// sums (the kernel's own test).
pub async fn read_once(gpu: &Gpu, data: &[f32]) -> Result<Vec<f32>> {
    let src = gpu
        .storage_buffer("read src", (data.len() * 4) as u64)
        .await?;
    gpu.queue()
        .write_buffer(&src, 0, bytemuck::cast_slice(data));
    let (dst, groups, job) = roofline::read_job(gpu, &src, data.len() / 4).await?;
    job.submit(gpu);
    gpu.read_f32(&dst, groups).await
}

/// Run the multiply-add kernel once, `threads` threads of `iterations` (in f16 where
/// `f16`), and read back each thread's result (the kernel's own test).
pub async fn fma_once(gpu: &Gpu, threads: usize, iterations: u32, f16: bool) -> Result<Vec<f32>> {
    let (dst, job) = roofline::fma_job(gpu, threads, iterations, f16).await?;
    job.submit(gpu);
    gpu.read_f32(&dst, threads).await
}

/// Problem sizes: small enough for CPU adapters, or sized for real GPUs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Size {
    /// Sized for CPU adapters.
    Small,
    /// Sized for real GPUs.
    Large,
}

impl Size {
    /// MiB a copy benchmark moves at this size: 32 on CPU adapters, 512 on GPUs (past any
    /// cache).
    pub fn copy_mib(self) -> usize {
        match self {
            Size::Small => 32,
            Size::Large => 512,
        }
    }

    /// Small on software adapters, large on real GPUs.
    pub fn for_gpu(gpu: &Gpu) -> Size {
        if gpu.info().device_type == wgpu::DeviceType::Cpu {
            Size::Small
        } else {
            Size::Large
        }
    }
}

/// What a figure measures, and so which roofline bounds it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Copies and the read-only pass: the bandwidth roofline's candidates.
    Bandwidth,
    /// Peak multiply-adds.
    Compute,
    /// Fixed costs: dispatch, submission, readback.
    Latency,
    /// Matrix-vector products (decode-shaped matmuls), bounded by bandwidth.
    Gemv,
    /// Matrix-matrix products (prefill-shaped matmuls).
    Gemm,
    /// Attention kernels.
    Attention,
}

/// Which clock a time is on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// Wall-clock time on the host, of back-to-back submissions.
    Wall,
    /// The GPU's own, from timestamp queries.
    Gpu,
}

/// One measured line of the report.
#[derive(Clone, Debug)]
pub struct Figure {
    /// The line's label in the report.
    pub name: String,
    /// What it measures, and so which roofline bounds it.
    pub group: Group,
    /// The median time per run, on `clock`.
    pub median: Duration,
    /// The clock `median` was taken on.
    pub clock: Clock,
    /// Wall-clock median beside a GPU-clock one.
    pub wall: Option<Duration>,
    /// Bytes moved (copy: read + write; GEMV: weight bytes read).
    pub bytes: f64,
    /// Floating-point operations per run (a multiply-add counts two).
    pub flops: f64,
    /// Weights read (GEMV), for comparing formats by weights per second.
    pub weights: f64,
    /// The weight format measured, where there is one.
    pub dtype: Option<DType>,
    /// The model (and matrix) whose shape it has.
    pub model: Option<String>,
}

impl Figure {
    /// A figure of `group` taking `median` (wall-clock), moving and computing nothing
    /// until told otherwise.
    pub fn new(group: Group, name: impl Into<String>, median: Duration) -> Figure {
        Figure {
            name: name.into(),
            group,
            median,
            clock: Clock::Wall,
            wall: None,
            bytes: 0.0,
            flops: 0.0,
            weights: 0.0,
            dtype: None,
            model: None,
        }
    }
    /// Set the bytes moved per run.
    pub fn bytes(mut self, bytes: f64) -> Figure {
        self.bytes = bytes;
        self
    }
    /// Set the floating-point operations per run.
    pub fn flops(mut self, flops: f64) -> Figure {
        self.flops = flops;
        self
    }
    /// `weights` weights of `dtype` read.
    pub fn weights(mut self, weights: f64, dtype: DType) -> Figure {
        self.weights = weights;
        self.dtype = Some(dtype);
        self
    }
    /// Set the weight format, without a weight count.
    pub fn dtype(mut self, dtype: DType) -> Figure {
        self.dtype = Some(dtype);
        self
    }
    /// Name the model (and matrix) whose shape the figure has.
    pub fn model(mut self, model: impl Into<String>) -> Figure {
        self.model = Some(model.into());
        self
    }
    /// A figure of `bytes` moved in `median`: a bandwidth candidate.
    pub fn moved(name: String, median: Duration, bytes: f64) -> Figure {
        Figure::new(Group::Bandwidth, name, median).bytes(bytes)
    }
    /// A fixed cost: a time alone.
    pub fn latency(name: &str, median: Duration) -> Figure {
        Figure::new(Group::Latency, name, median)
    }
    /// Bandwidth achieved, in GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes / self.median.as_secs_f64() / 1e9
    }
    /// Throughput achieved, in GFLOP/s.
    pub fn gflops(&self) -> f64 {
        self.flops / self.median.as_secs_f64() / 1e9
    }
    /// Billions of weights per second.
    pub fn gweights(&self) -> f64 {
        self.weights / self.median.as_secs_f64() / 1e9
    }
    /// The roofline that bounds it: bandwidth for what moves bytes, f32 multiply-adds for
    /// what only computes; none for the peaks and fixed costs themselves.
    pub fn bound(&self) -> Option<record::Bound> {
        match self.group {
            Group::Compute | Group::Latency => None,
            _ if self.bytes > 0.0 => Some(record::Bound::Bandwidth),
            _ if self.flops > 0.0 => Some(record::Bound::F32Fma),
            _ => None,
        }
    }
}

/// Every figure for one adapter.
pub struct Report {
    /// The adapter's name.
    pub adapter: String,
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
}

/// The clock figures on `gpu` are timed on: the GPU's, from timestamp queries, on GPUs that
/// have them; wall time elsewhere, and on CPU adapters, whose per-dispatch timestamps
/// overlap and overcount (lavapipe's summed to 238 ms of "GPU time" in 137 ms steps).
/// `KILN_BENCH_CLOCK=gpu` or `wall` overrides (gpu still needs TIMESTAMP_QUERY).
pub fn clock_of(gpu: &Gpu) -> Clock {
    let stamps = gpu.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    #[cfg(not(target_arch = "wasm32"))]
    match std::env::var("KILN_BENCH_CLOCK").as_deref() {
        Ok("gpu") if stamps => return Clock::Gpu,
        Ok("wall") => return Clock::Wall,
        _ => {}
    }
    match gpu.info().device_type {
        wgpu::DeviceType::Cpu => Clock::Wall,
        _ if stamps => Clock::Gpu,
        _ => Clock::Wall,
    }
}

/// Median wall time of `run` (which submits work), from `samples` samples of enough
/// back-to-back runs to take ~50 ms each.
pub(super) async fn measure(
    gpu: &Gpu,
    samples: usize,
    mut run: impl AsyncFnMut() -> Result<()>,
) -> Result<Duration> {
    run().await?;
    gpu.flush().await;
    let t0 = Instant::now();
    run().await?;
    gpu.flush().await;
    let once = t0.elapsed().max(Duration::from_micros(1));
    let reps =
        (Duration::from_millis(50).as_secs_f64() / once.as_secs_f64()).clamp(1.0, 200.0) as u32;
    let mut times = Vec::new();
    for _ in 0..samples.max(1) {
        let t = Instant::now();
        for _ in 0..reps {
            run().await?;
        }
        gpu.flush().await;
        times.push(t.elapsed() / reps);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The best bandwidth among `figures` (the copies and the read-only pass of
/// [`bandwidth_figures`]), in GB/s: the roofline of memory-bound kernels.
pub fn roofline(figures: &[Figure]) -> Option<f64> {
    figures
        .iter()
        .filter(|x| x.name.starts_with("copy") || x.name.starts_with("read "))
        .map(Figure::gbps)
        .reduce(f64::max)
}

/// The best multiply-add throughput among `figures` in f32, in GFLOP/s: the roofline of
/// compute-bound kernels.
pub fn peak_flops(figures: &[Figure]) -> Option<f64> {
    figures
        .iter()
        .find(|x| x.name == "fma f32")
        .map(Figure::gflops)
}

/// Measure one adapter: its rooflines, then the sweep's kernels, GEMV as tuned for it
/// (tuning first where the cache has no choice for a format: minutes on CPU adapters, once;
/// `log` hears about it).
pub async fn run(
    gpu: &Gpu,
    size: Size,
    sweep: &Sweep,
    log: &mut dyn FnMut(&str),
) -> Result<Report> {
    log(&format!("{}: rooflines", gpu.describe()));
    let mut figures = roofline::figures(gpu, size, 7).await?;
    if !sweep.models.is_empty() {
        // Native builds tune GEMV per adapter (cached); the browser runs the defaults, as
        // its models do.
        #[cfg(not(target_arch = "wasm32"))]
        crate::tune::ensure(gpu, &sweep.stored_dtypes(), log).await?;
        figures.extend(sweep::matmul_figures(gpu, sweep, log).await?);
        figures.extend(sweep::attention_figures(gpu, sweep, log).await?);
    }
    Ok(Report {
        adapter: gpu.describe(),
        figures,
    })
}
