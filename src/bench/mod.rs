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
use crate::kernels::grid;
use crate::ops::attention::{Heads, Mask};
use crate::ops::copy;
use crate::schedule::{Plan, Target};
use std::time::{Duration, Instant};

mod exchange;
mod matmul;
mod model;

pub use exchange::{all_reduce, exchange};
use matmul::matmul_program;
pub use matmul::{matmul_shapes, parse_shapes, random_weight, time_matmul, time_matmuls};
pub use model::{ModelBench, ModelReport, model};

/// Run a copy kernel once over `data` (a multiple of 4 values for `vec4`) and read the copy
/// back (the kernels' own test).
pub async fn copy_once(gpu: &Gpu, data: &[f32], vec4: bool) -> Result<Vec<f32>> {
    let (src, dst, copy) = copy_setup(gpu, data.len(), vec4).await?;
    gpu.queue()
        .write_buffer(&src, 0, bytemuck::cast_slice(data));
    copy.submit(gpu);
    gpu.read_f32(&dst, data.len()).await
}

/// A ready copy dispatch over two buffers.
struct CopyJob {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: [u32; 3],
}

impl CopyJob {
    fn submit(&self, gpu: &Gpu) {
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            let [x, y, z] = self.grid;
            pass.dispatch_workgroups(x, y, z);
        }
        gpu.queue().submit([enc.finish()]);
    }
}

/// Two buffers of `n` f32 and a copy between them, 4 or 16 (`vec4`) bytes per thread.
async fn copy_setup(
    gpu: &Gpu,
    n: usize,
    vec4: bool,
) -> Result<(wgpu::Buffer, wgpu::Buffer, CopyJob)> {
    let items = if vec4 { n / 4 } else { n };
    let bytes = n as u64 * 4;
    let src = gpu.storage_buffer("copy src", bytes).await?;
    let dst = gpu.storage_buffer("copy dst", bytes).await?;
    let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
    let params = gpu.create_buffer("copy params", 16, uniform).await?;
    let p = copy::Params {
        count: items as u32,
        offset: 0,
    };
    gpu.queue().write_buffer(&params, 0, bytemuck::bytes_of(&p));
    let compiled = crate::kernels::PipelineCache::compiled(gpu, &copy::kernel(vec4)).await?;
    let bind_group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("copy"),
        layout: &compiled.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: src.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: dst.as_entire_binding(),
            },
        ],
    });
    let groups = (items as u64).div_ceil(u64::from(copy::WG));
    let job = CopyJob {
        pipeline: compiled.pipeline,
        bind_group,
        grid: grid(groups, gpu.limits().max_compute_workgroups_per_dimension),
    };
    Ok((src, dst, job))
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
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.adapter)?;
        let roof = roofline(&self.figures);
        let f32_rate = self
            .figures
            .iter()
            .find(|x| x.name.starts_with("gemv F32"))
            .map(Figure::gweights);
        for x in &self.figures {
            let ms = x.median.as_secs_f64() * 1e3;
            write!(f, "  {:<32} median {ms:>9.3} ms", x.name)?;
            if x.bytes > 0.0 {
                write!(f, "  {:>8.2} GB/s", x.gbps())?;
                if let (Some(roof), false) = (roof, x.name.starts_with("copy")) {
                    write!(f, " ({:>5.1}% of best copy)", 100.0 * x.gbps() / roof)?;
                }
            }
            if x.flops > 0.0 {
                write!(f, "  {:>8.2} GFLOP/s", x.gflops())?;
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

/// Both copy kernels over buffers of `mib` MiB (fewer where the adapter's binding limit
/// is lower): the bandwidth roofline is the faster of the two.
pub async fn copy_figures(gpu: &Gpu, mib: usize, samples: usize) -> Result<Vec<Figure>> {
    let l = gpu.limits();
    let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    let mib = mib.min((limit >> 20) as usize).max(1);
    let n = (mib << 20) / 4;
    let mut out = Vec::new();
    for vec4 in [false, true] {
        let (_src, _dst, copy) = copy_setup(gpu, n, vec4).await?;
        let t = measure(gpu, samples, async || {
            copy.submit(gpu);
            Ok(())
        })
        .await?;
        out.push(Figure {
            name: format!("copy{} {mib} MiB", if vec4 { " vec4" } else { "" }),
            median: t,
            bytes: 2.0 * (n * 4) as f64,
            flops: 0.0,
            weights: 0.0,
        });
    }
    Ok(out)
}

/// The best copy bandwidth among `figures`, in GB/s.
pub fn roofline(figures: &[Figure]) -> Option<f64> {
    figures
        .iter()
        .filter(|x| x.name.starts_with("copy"))
        .map(Figure::gbps)
        .reduce(f64::max)
}

/// Measure one adapter, with GEMV as tuned for it (tuning first where the cache has no
/// choice for a format: minutes on CPU adapters, once; `log` hears about it).
pub async fn run(gpu: &Gpu, size: Size, log: &mut dyn FnMut(&str)) -> Result<Report> {
    crate::tune::ensure(gpu, &DType::ALL, log).await?;
    let samples = 7;
    let (copy_mib, gemv_nk, gemm_mnk) = match size {
        Size::Small => (
            32usize,
            (2048usize, 2048usize),
            (128usize, 512usize, 512usize),
        ),
        Size::Large => (512, (8192, 8192), (2048, 4096, 4096)),
    };
    let mut figures = Vec::new();

    figures.extend(copy_figures(gpu, copy_mib, samples).await?);

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
