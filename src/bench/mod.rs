//! Kernel microbenchmarks: each adapter's measured bandwidth roofline (a plain copy kernel),
//! next to GEMV bandwidth and GEMM throughput through the same planner and executor the
//! models use. Figures are medians of wall-clock samples, each sample many back-to-back
//! submissions, so submission overhead is included and amortised.

use crate::dtype::DType;
use crate::error::Result;
use crate::exec::{Feed, Program};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::graph::Step;
use crate::ops::attention::{Heads, Mask};
use crate::ops::copy;
use crate::schedule::{Plan, Target};
use std::time::{Duration, Instant};

mod exchange;
mod matmul;
mod model;
mod roofline;

pub use exchange::{all_reduce, exchange};
use matmul::matmul_program;
pub use matmul::{matmul_shapes, parse_shapes, random_weight, time_matmul, time_matmuls};
pub use model::{ModelBench, ModelReport, model};
pub use roofline::{bandwidth_figures, fma_figures, latency_figures};

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
    Small,
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

/// One measured line of the report.
#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    pub median: Duration,
    /// Bytes moved (copy: read + write; GEMV: weight bytes read).
    pub bytes: f64,
    pub flops: f64,
    /// Weights read (GEMV), for comparing formats by weights per second.
    pub weights: f64,
}

impl Figure {
    /// A figure of `bytes` moved in `median`.
    pub fn moved(name: String, median: Duration, bytes: f64) -> Figure {
        Figure {
            name,
            median,
            bytes,
            flops: 0.0,
            weights: 0.0,
        }
    }
    /// A fixed cost: a time alone.
    pub fn latency(name: &str, median: Duration) -> Figure {
        Figure {
            name: name.into(),
            median,
            bytes: 0.0,
            flops: 0.0,
            weights: 0.0,
        }
    }
    pub fn gbps(&self) -> f64 {
        self.bytes / self.median.as_secs_f64() / 1e9
    }
    pub fn gflops(&self) -> f64 {
        self.flops / self.median.as_secs_f64() / 1e9
    }
    /// Billions of weights per second.
    pub fn gweights(&self) -> f64 {
        self.weights / self.median.as_secs_f64() / 1e9
    }
}

/// Every figure for one adapter.
pub struct Report {
    pub adapter: String,
    pub figures: Vec<Figure>,
}

impl std::fmt::Display for Report {
    /// Each figure with its share of the roofline that bounds it: bandwidth for what moves
    /// bytes, f32 multiply-adds for what only computes. A figure over its roofline is
    /// flagged: the roofline would then not bound it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.adapter)?;
        let roof = roofline(&self.figures);
        let peak = peak_flops(&self.figures);
        let f32_rate = self
            .figures
            .iter()
            .find(|x| x.name.starts_with("gemv F32"))
            .map(Figure::gweights);
        for x in &self.figures {
            let ms = x.median.as_secs_f64() * 1e3;
            match ms < 1.0 && x.bytes == 0.0 && x.flops == 0.0 {
                true => write!(f, "  {:<32} median {:>9.1} us", x.name, ms * 1e3)?,
                false => write!(f, "  {:<32} median {ms:>9.3} ms", x.name)?,
            }
            let share = |f: &mut std::fmt::Formatter<'_>, v: f64, of: f64, what: &str| {
                let pct = 100.0 * v / of;
                let over = if pct > 100.5 {
                    ", ABOVE THE ROOFLINE"
                } else {
                    ""
                };
                write!(f, " ({pct:>5.1}% of {what}{over})")
            };
            if x.bytes > 0.0 {
                write!(f, "  {:>8.2} GB/s", x.gbps())?;
                if let Some(roof) = roof {
                    share(f, x.gbps(), roof, "bandwidth")?;
                }
            }
            if x.flops > 0.0 {
                write!(f, "  {:>8.2} GFLOP/s", x.gflops())?;
                if let (Some(peak), true) = (peak, x.bytes == 0.0 && !x.name.starts_with("fma")) {
                    share(f, x.gflops(), peak, "f32 FMA peak")?;
                }
            }
            if let (true, Some(base)) = (x.weights > 0.0, f32_rate) {
                write!(
                    f,
                    "  {:>6.3} Gweights/s ({:.2}x F32)",
                    x.gweights(),
                    x.gweights() / base
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
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
    for _ in 0..samples {
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

/// Measure one adapter, with GEMV as tuned for it (tuning first where the cache has no
/// choice for a format: minutes on CPU adapters, once; `log` hears about it).
pub async fn run(gpu: &Gpu, size: Size, log: &mut dyn FnMut(&str)) -> Result<Report> {
    crate::tune::ensure(gpu, &DType::ALL, log).await?;
    let samples = 7;
    let (gemv_nk, gemm_mnk) = match size {
        Size::Small => ((2048usize, 2048usize), (128usize, 512usize, 512usize)),
        Size::Large => ((8192, 8192), (2048, 4096, 4096)),
    };
    let mut figures = Vec::new();

    figures.extend(roofline::figures(gpu, size, samples).await?);

    let (n, k) = gemv_nk;
    // Every format kiln reads, F32 first (the others are compared with it).
    for dtype in DType::ALL {
        let (prog, x) = matmul_program(gpu, 1, k, n, dtype, Target::of(gpu)).await?;
        let t = measure(gpu, samples, async || {
            let step = Step::single(0, prog.tokens());
            prog.submit(&step, &[("x", Feed::F32(&x))]).await.map(drop)
        })
        .await?;
        figures.push(Figure {
            name: format!("gemv {dtype} {n}x{k}"),
            median: t,
            bytes: dtype.bytes(n * k) as f64,
            flops: 2.0 * (n * k) as f64,
            weights: (n * k) as f64,
        });
    }

    let (m, n, k) = gemm_mnk;
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4K] {
        let (prog, x) = matmul_program(gpu, m, k, n, dtype, Target::of(gpu)).await?;
        let t = measure(gpu, samples, async || {
            let step = Step::single(0, prog.tokens());
            prog.submit(&step, &[("x", Feed::F32(&x))]).await.map(drop)
        })
        .await?;
        figures.push(Figure {
            name: format!("gemm {dtype} {m}x{n}x{k}"),
            median: t,
            bytes: 0.0,
            flops: 2.0 * (m * n * k) as f64,
            weights: 0.0,
        });
    }
    figures.extend(attention_figures(gpu, samples).await?);
    Ok(Report {
        adapter: gpu.describe(),
        figures,
    })
}

/// Attention at SmolLM2's head shape by each kernel the adapter runs (GL: the per-row one
/// only, see [`Target::of`]): causal prefill of 128 rows, and one decode row over a KV
/// cache of 1024 positions, unsplit and split.
async fn attention_figures(gpu: &Gpu, samples: usize) -> Result<Vec<Figure>> {
    let heads = Heads {
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
    };
    let base = Target::of(gpu);
    let others = base.attention_rows.is_none();
    let mut out = Vec::new();
    let t = 128;
    for (name, cut) in [("per-row", usize::MAX), ("row-block", 0)] {
        if cut == 0 && !others {
            continue;
        }
        let target = Target {
            attention_rows: Some(cut),
            ..base
        };
        let (prog, qkv) = attention_program(gpu, t, heads, target).await?;
        let feeds: Vec<(&str, Feed)> = qkv.iter().map(|(n, x)| (*n, Feed::F32(x))).collect();
        let t_med = measure(gpu, samples, async || {
            let step = Step::single(0, prog.tokens());
            prog.submit(&step, &feeds).await.map(drop)
        })
        .await?;
        let pairs = (t * (t + 1) / 2 * heads.heads * heads.head_dim) as f64;
        out.push(Figure {
            name: format!("attention {name} t{t}"),
            median: t_med,
            bytes: 0.0,
            flops: 4.0 * pairs,
            weights: 0.0,
        });
    }
    let keys = 1024;
    for (name, splits) in [("per-row", Some(0)), ("split", None)] {
        if splits.is_none() && !others {
            continue;
        }
        let target = Target {
            attention_splits: splits,
            ..base
        };
        let g = Graph::new();
        let kvw = heads.kv_heads * heads.head_dim;
        let q = g.input("q", 1, heads.heads * heads.head_dim);
        let (k, v) = (g.state("k", &[1, keys, kvw]), g.state("v", &[1, keys, kvw]));
        g.output("o", g.attention(q, k, v, heads, Mask::Causal));
        let plan = Plan::new(&g, target)?;
        let state = crate::exec::State::new(gpu, &[&plan]).await?;
        let prog = Program::new(gpu, plan, Some(&state)).await?;
        let x = vec![0.5f32; heads.heads * heads.head_dim];
        let t_med = measure(gpu, samples, async || {
            let step = Step::single(keys - 1, 1);
            prog.submit(&step, &[("q", Feed::F32(&x))]).await.map(drop)
        })
        .await?;
        out.push(Figure {
            name: format!("attention decode {name} c{keys}"),
            median: t_med,
            // The cache's K and V.
            bytes: (2 * keys * kvw * 4) as f64,
            flops: 0.0,
            weights: 0.0,
        });
    }
    Ok(out)
}

/// Causal self-attention over `t` rows of a step's own q, k, v (made up).
async fn attention_program(
    gpu: &Gpu,
    t: usize,
    h: Heads,
    target: Target,
) -> Result<(Program, Vec<(&'static str, Vec<f32>)>)> {
    let g = Graph::new();
    let kvw = h.kv_heads * h.head_dim;
    let (q, k, v) = (
        g.input("q", t, h.heads * h.head_dim),
        g.input("k", t, kvw),
        g.input("v", t, kvw),
    );
    g.output("o", g.attention(q, k, v, h, Mask::Causal));
    let plan = Plan::new(&g, target)?;
    let fill = |n: usize, salt: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + salt) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    };
    let inputs = vec![
        ("q", fill(t * h.heads * h.head_dim, 1)),
        ("k", fill(t * kvw, 2)),
        ("v", fill(t * kvw, 3)),
    ];
    Ok((Program::new(gpu, plan, None).await?, inputs))
}
