//! Timing the GEMM kernels and the GEMV candidates on an adapter, and the on-disk cache of
//! the winners.

use super::{set, set_gemm};
use crate::dtype::{DType, WeightFormat};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{GEMV_MAX_THREADS, Gemm, Gemv, GemvTable, NARROW, Target, Width};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Bump when kernels change enough that old choices should be measured again. (4: the GEMM
/// kernel is chosen too, and GEMV's crossover to GEMM is timed against it. 5: the register
/// GEMM joins the candidates. 6: block weights widened to f32 against x broadcast per
/// subgroup, `Gemv::BLOCK_BROADCAST`.)
const VERSION: u32 = 6;

/// The GEMM timed to choose a kernel (m, k, n): a 128-token prompt through a 512 x 512
/// weight, F32 (every adapter reads it), small enough for SwiftShader (0.3 GFLOP/s).
pub const GEMM_SHAPE: (usize, usize, usize) = (128, 512, 512);

/// The weight timed (k, n): 2048 x 2048 on CPU adapters; on GPUs, 4096 x 32768, so that even
/// 4-bit blocks (75 MB) outgrow the last-level cache (50-60 MB on big GPUs) and every run
/// reads memory, as decode does.
pub fn shape(gpu: &Gpu) -> (usize, usize) {
    if gpu.info().device_type == wgpu::DeviceType::Cpu {
        (2048, 2048)
    } else {
        (4096, 32768)
    }
}

/// What tuning one format found: every candidate timed, then the GEMV-or-GEMM comparison
/// at more rows for the fastest, which sets its `max_rows`.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// Every candidate timed, in the order timed.
    pub timed: Vec<Candidate>,
    /// (rows, GEMV us, GEMM us) at 16, 32, 64 rows, as far as GEMV kept winning.
    pub crossover: Vec<(u32, f64, f64)>,
    /// The fastest candidate, with its `max_rows` set.
    pub best: Candidate,
    /// Narrow matmuls ([`NARROW`] columns at most; see [`narrow_shapes`]): every tile in
    /// every mode timed there (none on CPU adapters, which take `best` for both), and the
    /// fastest, with `best`'s `max_rows`.
    pub narrow: Vec<Candidate>,
    /// The fastest of `narrow`, with `best`'s `max_rows` (`best` itself on CPU adapters).
    pub narrow_best: Candidate,
}

/// One timed configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    /// The GEMV configuration timed.
    pub cfg: Gemv,
    /// Median time of one GEMV, in microseconds.
    pub micros: f64,
}

/// The GEMM kernels timed on an adapter ([`GEMM_SHAPE`]), and the fastest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GemmChoice {
    /// The fastest kernel.
    pub best: Gemm,
    /// Each kernel's median time, in microseconds, in [`Gemm::available`]'s order.
    pub timed: Vec<(Gemm, f64)>,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Adapter key -> kernel key -> the fastest configuration.
    adapters: BTreeMap<String, BTreeMap<String, Candidate>>,
    /// Adapter key -> the GEMM kernel chosen.
    #[serde(default)]
    gemm: BTreeMap<String, GemmChoice>,
    /// Adapter key -> its copy bandwidth, GB/s (the roofline `kiln bench` measures).
    #[serde(default)]
    bandwidth: BTreeMap<String, f64>,
}

fn cache_path() -> PathBuf {
    crate::fetch::cache_dir().join("tune.json")
}

fn adapter_key(gpu: &Gpu) -> String {
    let i = gpu.info();
    format!(
        "{} | {:?} | {} {} | kiln tune v{VERSION}",
        i.name, i.backend, i.driver, i.driver_info
    )
}

/// Narrow weights timed together on GPUs (n, k), as decode meets them: 4 of 4096 x 4096 and
/// 8 of 2048 x 4096 (75 MB in 4-bit blocks, more than a big GPU's last-level cache).
pub fn narrow_shapes() -> Vec<(usize, usize)> {
    let mut out = vec![(4096, 4096); 4];
    out.extend([(2048, 4096); 8]);
    out
}

/// The kernel and shape class a choice applies to: decode-sized steps (the crossover to GEMM
/// is part of the choice), wide or narrow.
fn kernel_key(dtype: DType, width: Width) -> String {
    match width {
        Width::Wide => format!("gemv {dtype} rows<=64"),
        Width::Narrow => format!("gemv {dtype} rows<=64 n<={NARROW}"),
    }
}

fn read_cache() -> CacheFile {
    std::fs::read(cache_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
        .filter(|c| c.version == VERSION)
        .unwrap_or_default()
}

fn write_cache(c: &CacheFile) -> Result<()> {
    let path = cache_path();
    let io = |e| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(c).map_err(|e| Error::Invalid(e.to_string()))?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Make sure the GEMM kernel is chosen on `gpu`, and GEMV tuned for each of `dtypes` (the
/// weight matrices' dtypes of a model): from the disk cache when this adapter and driver were
/// tuned before, else by timing the candidates now (a few seconds each on CPU adapters),
/// saving the winners. `log` hears what is being tuned. Returns the GEMV table later plans
/// use.
pub async fn ensure(gpu: &Gpu, dtypes: &[DType], log: &mut dyn FnMut(&str)) -> Result<GemvTable> {
    let key = adapter_key(gpu);
    let mut file = read_cache();
    let mut dirty = false;
    // The GEMM kernel first: GEMV's crossover is timed against it.
    let available = Gemm::available(gpu);
    let known = file
        .gemm
        .get(&key)
        .map(|c| c.best)
        .filter(|g| available.contains(g));
    let gemm = match known {
        Some(g) => g,
        None => {
            log(&format!(
                "tuning gemm on {} (once; cached in {})",
                gpu.describe(),
                cache_path().display()
            ));
            let choice = tune_gemm(gpu).await?;
            let best = choice.best;
            file.gemm.insert(key.clone(), choice);
            dirty = true;
            best
        }
    };
    set_gemm(gpu, gemm);
    let mut seen = Vec::new();
    for &dtype in dtypes {
        let format = dtype.weight_format(gpu.has_f16());
        if seen.contains(&format) {
            continue;
        }
        seen.push(format);
        let known = |width| {
            let c = file.adapters.get(&key)?.get(&kernel_key(dtype, width))?;
            c.cfg.fits(gpu).then_some(c.cfg)
        };
        let (wide, narrow) = match (known(Width::Wide), known(Width::Narrow)) {
            (Some(w), Some(n)) => (w, n),
            _ => {
                log(&format!(
                    "tuning {} on {} (once; cached in {})",
                    kernel_key(dtype, Width::Wide),
                    gpu.describe(),
                    cache_path().display()
                ));
                let tuned = tune_format(gpu, dtype).await?;
                let entries = file.adapters.entry(key.clone()).or_default();
                entries.insert(kernel_key(dtype, Width::Wide), tuned.best.clone());
                entries.insert(kernel_key(dtype, Width::Narrow), tuned.narrow_best.clone());
                dirty = true;
                (tuned.best.cfg, tuned.narrow_best.cfg)
            }
        };
        set(gpu, format, Width::Wide, wide);
        set(gpu, format, Width::Narrow, narrow);
    }
    if dirty {
        file.version = VERSION;
        if let Err(e) = write_cache(&file) {
            log(&format!("could not save the tuning cache: {e}"));
        }
    }
    Ok(super::tuned(gpu).gemv)
}

/// Keep what `tuned` found as the choices for `dtype` weights on `gpu`, now and in the disk
/// cache.
pub fn remember(gpu: &Gpu, dtype: DType, tuned: &Tuned) -> Result<()> {
    let mut file = read_cache();
    file.version = VERSION;
    let entries = file.adapters.entry(adapter_key(gpu)).or_default();
    entries.insert(kernel_key(dtype, Width::Wide), tuned.best.clone());
    entries.insert(kernel_key(dtype, Width::Narrow), tuned.narrow_best.clone());
    let format = dtype.weight_format(gpu.has_f16());
    set(gpu, format, Width::Wide, tuned.best.cfg);
    set(gpu, format, Width::Narrow, tuned.narrow_best.cfg);
    write_cache(&file)
}

/// Keep `choice` as the GEMM kernel on `gpu`, now and in the disk cache.
pub fn remember_gemm(gpu: &Gpu, choice: &GemmChoice) -> Result<()> {
    let mut file = read_cache();
    file.version = VERSION;
    file.gemm.insert(adapter_key(gpu), choice.clone());
    set_gemm(gpu, choice.best);
    write_cache(&file)
}

/// `gpu`'s bandwidth in GB/s, the roofline `kiln bench` measures (the fastest of the copy
/// kernels and the read-only pass, medians of 7), from the disk cache, else measured now (about a second on CPU
/// adapters) and saved. A model split across adapters shares its work by it.
pub async fn bandwidth(gpu: &Gpu, log: &mut dyn FnMut(&str)) -> Result<f64> {
    let key = adapter_key(gpu);
    if let Some(&gbps) = read_cache().bandwidth.get(&key) {
        return Ok(gbps);
    }
    log(&format!(
        "measuring the bandwidth of {} (once; cached in {})",
        gpu.describe(),
        cache_path().display()
    ));
    let mib = crate::bench::Size::for_gpu(gpu).copy_mib();
    let figures = crate::bench::bandwidth_figures(gpu, mib, 7).await?;
    let gbps = crate::bench::roofline(&figures)
        .filter(|g| g.is_finite() && *g > 0.0)
        .ok_or_else(|| Error::Gpu(format!("no bandwidth measured on {}", gpu.describe())))?;
    remember_bandwidth(gpu, gbps)?;
    Ok(gbps)
}

/// Keep `gbps` as `gpu`'s copy bandwidth in the disk cache (what `kiln bench` measured).
pub fn remember_bandwidth(gpu: &Gpu, gbps: f64) -> Result<()> {
    let mut file = read_cache();
    file.version = VERSION;
    file.bandwidth.insert(adapter_key(gpu), gbps);
    write_cache(&file)
}

/// Time each GEMM kernel `gpu` can run at [`GEMM_SHAPE`] (medians of 9, runs alternating
/// on CPU adapters: [`time_matmuls`](crate::bench::time_matmuls)), and keep the fastest.
pub async fn tune_gemm(gpu: &Gpu) -> Result<GemmChoice> {
    let (m, k, n) = GEMM_SHAPE;
    let w = [crate::bench::random_weight(gpu, n, k, DType::F32).await?];
    let kinds = Gemm::available(gpu);
    let targets: Vec<Target> = kinds
        .iter()
        .map(|&gemm| Target {
            gemm,
            gemv_max_rows: Some(0),
            ..Target::of(gpu)
        })
        .collect();
    let times = crate::bench::time_matmuls(gpu, &targets, m, &w, 9).await?;
    let timed: Vec<(Gemm, f64)> = kinds
        .into_iter()
        .zip(times)
        .map(|(g, t)| (g, t.as_secs_f64() * 1e6))
        .collect();
    let best = timed
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0)
        .ok_or_else(|| Error::Gpu("no GEMM kernel runs on the adapter".into()))?;
    Ok(GemmChoice { best, timed })
}

/// The configurations worth timing: first each mode (lane reduction, 8-bit activations for
/// block formats) at the default tile, and for block formats x broadcast per subgroup (one
/// lane a column); then tiles for the fastest mode.
fn modes(gpu: &Gpu, block: bool) -> Vec<Gemv> {
    let mut out = Vec::new();
    if block && Gemv::BLOCK_BROADCAST.fits(gpu) {
        out.push(Gemv::BLOCK_BROADCAST);
    }
    for subgroups in [false, true] {
        for int8 in [false, true] {
            let lanes = if subgroups {
                Gemv::DEFAULT.lanes.min(gpu.subgroup_min_size().max(1))
            } else {
                Gemv::DEFAULT.lanes
            };
            let cfg = Gemv {
                lanes,
                rows: GEMV_MAX_THREADS / lanes,
                subgroups,
                int8,
                ..Gemv::DEFAULT
            };
            if (block || !int8) && cfg.fits(gpu) {
                out.push(cfg);
            }
        }
    }
    out
}

fn tiles(gpu: &Gpu, mode: Gemv) -> Vec<Gemv> {
    let mut out = Vec::new();
    for lanes in [1, 2, 4, 8, 16, 32] {
        for threads in [128, 256] {
            let cfg = Gemv {
                lanes,
                rows: threads / lanes,
                ..mode
            };
            if cfg.rows >= 1 && cfg.fits(gpu) && cfg != mode {
                out.push(cfg);
            }
        }
    }
    out
}

fn fastest(timed: &[Candidate]) -> Result<Candidate> {
    timed
        .iter()
        .min_by(|a, b| a.micros.total_cmp(&b.micros))
        .cloned()
        .ok_or_else(|| Error::Gpu("no GEMV configuration fits the adapter".into()))
}

/// Time every candidate for `dtype` weights on `gpu` (GEMV of one row against a weight of
/// [`shape`], median of a few samples), modes first, then tiles of the fastest mode; then the
/// fastest against the tiled GEMM at 16, 32 and 64 rows: GEMV keeps the steps up to the
/// last row count where it still wins (16 at least, as before tuning).
pub async fn tune_format(gpu: &Gpu, dtype: DType) -> Result<Tuned> {
    let format = dtype.weight_format(gpu.has_f16());
    let (k, n) = shape(gpu);
    let w = [crate::bench::random_weight(gpu, n, k, dtype).await?];
    let mut timed = Vec::new();
    for cfg in modes(gpu, format.is_block()) {
        timed.push(time(gpu, &w, format, cfg, 1, false).await?);
    }
    for cfg in tiles(gpu, fastest(&timed)?.cfg) {
        timed.push(time(gpu, &w, format, cfg, 1, false).await?);
    }
    let mut best = fastest(&timed)?;
    let mut crossover = Vec::new();
    for rows in [16, 32, 64] {
        let gemv = time(gpu, &w, format, best.cfg, rows, false).await?.micros;
        let gemm = time(gpu, &w, format, best.cfg, rows, true).await?.micros;
        crossover.push((rows as u32, gemv, gemm));
        if gemv > gemm {
            break;
        }
        best.cfg.max_rows = best.cfg.max_rows.max(rows as u32);
    }
    let mut narrow = Vec::new();
    let narrow_best = if gpu.info().device_type == wgpu::DeviceType::Cpu {
        best.clone()
    } else {
        let mut ws = Vec::new();
        for (n, k) in narrow_shapes() {
            ws.push(crate::bench::random_weight(gpu, n, k, dtype).await?);
        }
        // Every tile in every mode: on an H200 the mode that wins at the default tile
        // (8-bit activations, 2.3x the f32 path for narrow Q4_0) need not win at others,
        // and F32 weights read 1.8 TB/s narrow at 32 lanes against 0.13 at 4. A GPU times
        // the lot in seconds.
        for mode in modes(gpu, format.is_block()) {
            narrow.push(time(gpu, &ws, format, mode, 1, false).await?);
            for cfg in tiles(gpu, mode) {
                narrow.push(time(gpu, &ws, format, cfg, 1, false).await?);
            }
        }
        fastest(&narrow)?
    };
    Ok(Tuned {
        timed,
        crossover,
        narrow,
        narrow_best: Candidate {
            cfg: Gemv {
                max_rows: best.cfg.max_rows,
                ..narrow_best.cfg
            },
            ..narrow_best
        },
        best,
    })
}

/// Matmuls of `rows` rows against each of `ws`, as GEMV with `cfg` (for matmuls of their
/// width) or as GEMM.
async fn time(
    gpu: &Gpu,
    ws: &[Tensor],
    format: WeightFormat,
    cfg: Gemv,
    rows: usize,
    gemm: bool,
) -> Result<Candidate> {
    let mut target = Target::of(gpu);
    target.gemv.set(format, Width::of(ws[0].shape()[0]), cfg);
    target.gemv_max_rows = Some(if gemm { 0 } else { usize::MAX });
    let t: Duration = crate::bench::time_matmul(gpu, target, rows, ws, 7).await?;
    Ok(Candidate {
        cfg,
        micros: t.as_secs_f64() * 1e6,
    })
}
