//! Kernels at the shapes of real models: GEMV (one token) and GEMM (a prompt's rows) in
//! every weight format over each distinct matrix of a model, and attention by context
//! length at its head shape. Each figure goes through the planner and executor the models
//! use, so it is what a model's step pays for that matmul.

use super::matmul::matmul_program;
use super::{Clock, Figure, Group, Size, measure};
use crate::dtype::DType;
use crate::error::Result;
use crate::exec::{Feed, Profile, Program};
use crate::gpu::Gpu;
use crate::graph::{Graph, Step};
use crate::models::synthetic::{Preset, stored_dtype};
use crate::ops::attention::{Heads, Mask};
use crate::schedule::{Plan, Target};
use std::time::Duration;

/// What one sweep covers.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The models whose shapes are swept.
    pub models: Vec<&'static Preset>,
    /// Weight formats, for GEMV and GEMM.
    pub dtypes: Vec<DType>,
    /// Rows of a GEMM: the prompt tokens one prefill step multiplies.
    pub gemm_rows: usize,
    /// Context lengths a decode step's attention reads.
    pub contexts: Vec<usize>,
    /// Rows of a prefill step's causal self-attention.
    pub prefill_rows: Vec<usize>,
    /// Samples per measurement, of which the median is reported.
    pub samples: usize,
}

impl Sweep {
    /// The default at `size`: on CPU adapters (small), SmolLM2-135M's shapes, GEMM over
    /// 128 rows, attention at 256 to 4096 positions (a few minutes an adapter; SwiftShader's
    /// GEMM runs at well under 1 GFLOP/s); on GPUs (large), every preset's shapes, 512
    /// rows, 512 to 32768 positions; every weight format.
    pub fn default_for(size: Size) -> Sweep {
        let presets = &crate::models::synthetic::PRESETS;
        match size {
            Size::Small => Sweep {
                models: presets
                    .iter()
                    .filter(|p| p.name == "smollm2-135m")
                    .collect(),
                dtypes: DType::ALL.to_vec(),
                gemm_rows: 128,
                contexts: vec![256, 1024, 4096],
                prefill_rows: vec![128],
                samples: 5,
            },
            Size::Large => Sweep {
                models: presets.iter().collect(),
                dtypes: DType::ALL.to_vec(),
                gemm_rows: 512,
                contexts: vec![512, 2048, 8192, 32768],
                prefill_rows: vec![512, 2048],
                samples: 7,
            },
        }
    }
}

impl Sweep {
    /// Sweep the shapes of `list`: comma-separated preset names, or `none` (rooflines
    /// only). What `kiln bench --sweep` and the benchmark page's option take.
    pub fn set_models(&mut self, list: &str) -> Result<()> {
        self.models = match list.trim() {
            "none" => Vec::new(),
            list => list
                .split(',')
                .map(|n| crate::models::synthetic::Preset::find(n.trim()))
                .collect::<Result<_>>()?,
        };
        Ok(())
    }

    /// Every format its matrices are stored in: those asked for, and the ones K-quants fall
    /// back to where their blocks do not divide a matrix's rows.
    pub fn stored_dtypes(&self) -> Vec<DType> {
        let mut out: Vec<DType> = Vec::new();
        for p in &self.models {
            for (_, _, k) in matrices(p) {
                for &d in &self.dtypes {
                    let d = stored_dtype(d, k);
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
        out
    }
}

/// A model's distinct matrices, (name, rows n, columns k) of y = x W^T: its attention's
/// query and output projections (square in these models), keys and values, the MLP's gate
/// and up, its down, and the head (the vocabulary's logits, read at every decode step).
pub fn matrices(p: &Preset) -> Vec<(&'static str, usize, usize)> {
    let (d, q, kv) = (p.hidden, p.heads * p.head_dim, p.kv_heads * p.head_dim);
    let mut out = vec![("attn_q", q, d)];
    if q != d {
        out.push(("attn_o", d, q));
    }
    out.extend([
        ("attn_kv", kv, d),
        ("ffn_up", p.ffn, d),
        ("ffn_down", d, p.ffn),
        ("head", p.vocab, d),
    ]);
    out
}

/// Time `prog` at `step` with `feeds`: wall-clock always (back-to-back submissions, see
/// [`measure`]); where [`super::clock_of`] says so, GPU time too, from the step's first
/// dispatch's start to its last one's end, which becomes the figure's time.
pub(super) async fn time_program(
    gpu: &Gpu,
    prog: &mut Program,
    step: &Step,
    feeds: &[(&str, Feed<'_>)],
    samples: usize,
) -> Result<(Duration, Clock, Option<Duration>)> {
    let wall = measure(gpu, samples, async || {
        prog.submit(step, feeds).await.map(drop)
    })
    .await?;
    if super::clock_of(gpu) == Clock::Wall {
        return Ok((wall, Clock::Wall, None));
    }
    let profile = Profile::new();
    prog.profile_into(Some((profile.clone(), "timed"))).await?;
    let total = || profile.span("timed").unwrap_or(0.0);
    prog.run(step, feeds).await?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let before = total();
        prog.run(step, feeds).await?;
        times.push(total() - before);
    }
    prog.profile_into(None).await?;
    times.sort_by(f64::total_cmp);
    let gpu_time = Duration::from_secs_f64(times[times.len() / 2]);
    Ok((gpu_time, Clock::Gpu, Some(wall)))
}

/// A figure timed by [`time_program`].
fn timed(group: Group, name: String, t: (Duration, Clock, Option<Duration>)) -> Figure {
    let mut f = Figure::new(group, name, t.0);
    f.clock = t.1;
    f.wall = t.2;
    f
}

/// GEMV and GEMM over every matrix of every model of `sweep`, in each of its formats.
/// A K-quant whose blocks do not divide a matrix's rows is stored as llama.cpp's quantizer
/// stores it (see [`stored_dtype`]), and the figure names the format it ran.
pub async fn matmul_figures(
    gpu: &Gpu,
    sweep: &Sweep,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>> {
    let target = Target::of(gpu);
    let mut out = Vec::new();
    for p in &sweep.models {
        log(&format!("gemv and gemm at {}'s shapes", p.model));
        // One token (GEMV), then a prompt's rows (GEMM); the head runs only for the last
        // row of a prompt, so it has no GEMM.
        for m in [1, sweep.gemm_rows] {
            for &(matrix, n, k) in &matrices(p) {
                if m > 1 && matrix == "head" {
                    continue;
                }
                let mut done = Vec::new();
                for &asked in &sweep.dtypes {
                    let dtype = stored_dtype(asked, k);
                    if done.contains(&dtype) {
                        continue;
                    }
                    done.push(dtype);
                    let at = format!("{} {matrix}", p.name);
                    let (mut prog, x) = matmul_program(gpu, m, k, n, dtype, target).await?;
                    let step = Step::single(0, prog.tokens());
                    let feeds = [("x", Feed::F32(&x))];
                    let t = time_program(gpu, &mut prog, &step, &feeds, sweep.samples).await?;
                    let (group, kind) = match m {
                        1 => (Group::Gemv, "gemv"),
                        _ => (Group::Gemm, "gemm"),
                    };
                    // Shapes as `--shapes` takes them: MxKxN.
                    let name = format!("{kind} {dtype} {at} {m}x{k}x{n}");
                    let mut f = timed(group, name, t)
                        .flops(2.0 * (m * n * k) as f64)
                        .model(at);
                    if m == 1 {
                        // One token: the weights' bytes bound it.
                        f = f.bytes(dtype.bytes(n * k) as f64);
                    }
                    out.push(f.weights((n * k) as f64, dtype));
                }
            }
        }
    }
    Ok(out)
}

/// Attention at each model's head shape: one decode row over KV caches of each context
/// length (bounded by the cache's bytes), and causal prefill over each number of rows
/// (bounded by the f32 peak), as the adapter's default plan runs them.
pub async fn attention_figures(
    gpu: &Gpu,
    sweep: &Sweep,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>> {
    let target = Target::of(gpu);
    let mut out = Vec::new();
    for p in &sweep.models {
        log(&format!("attention at {}'s heads", p.model));
        let heads = Heads {
            heads: p.heads,
            kv_heads: p.kv_heads,
            head_dim: p.head_dim,
        };
        let (qw, kvw) = (p.heads * p.head_dim, p.kv_heads * p.head_dim);
        for &c in &sweep.contexts {
            let g = Graph::new();
            let q = g.input("q", 1, qw);
            let (k, v) = (g.state("k", &[1, c, kvw]), g.state("v", &[1, c, kvw]));
            g.output("o", g.attention(q, k, v, heads, Mask::Causal));
            let plan = Plan::new(&g, target)?;
            let state = crate::exec::State::new(gpu, &[&plan]).await?;
            let mut prog = Program::new(gpu, plan, Some(&state)).await?;
            let x = fill(qw, 1);
            let step = Step::single(c - 1, 1);
            let feeds = [("q", Feed::F32(&x))];
            let t = time_program(gpu, &mut prog, &step, &feeds, sweep.samples).await?;
            let pairs = (c * p.heads * p.head_dim) as f64;
            out.push(
                timed(
                    Group::Attention,
                    format!("attention decode {} c{c}", p.name),
                    t,
                )
                // The cache's K and V, read once.
                .bytes((2 * c * kvw * 4) as f64)
                .flops(4.0 * pairs)
                .model(p.name),
            );
        }
        for &rows in &sweep.prefill_rows {
            let g = Graph::new();
            let (q, k, v) = (
                g.input("q", rows, qw),
                g.input("k", rows, kvw),
                g.input("v", rows, kvw),
            );
            g.output("o", g.attention(q, k, v, heads, Mask::Causal));
            let plan = Plan::new(&g, target)?;
            let mut prog = Program::new(gpu, plan, None).await?;
            let (xq, xk, xv) = (fill(rows * qw, 1), fill(rows * kvw, 2), fill(rows * kvw, 3));
            let feeds = [
                ("q", Feed::F32(&xq)),
                ("k", Feed::F32(&xk)),
                ("v", Feed::F32(&xv)),
            ];
            let step = Step::single(0, rows);
            let t = time_program(gpu, &mut prog, &step, &feeds, sweep.samples).await?;
            let pairs = (rows * (rows + 1) / 2 * p.heads * p.head_dim) as f64;
            out.push(
                timed(
                    Group::Attention,
                    format!("attention prefill {} t{rows}", p.name),
                    t,
                )
                .flops(4.0 * pairs)
                .model(p.name),
            );
        }
    }
    Ok(out)
}

/// Made-up inputs in [-1, 1).
fn fill(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
