//! Timing GEMV candidates on an adapter, and the on-disk cache of the winners.

use super::set;
use crate::dtype::{DType, WeightFormat};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Gemv, GemvTable, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Bump when kernels change enough that old choices should be measured again.
const VERSION: u32 = 2;

/// The shape timed: one row (decode) against a 2048 x 2048 weight.
const SHAPE: (usize, usize, usize) = (1, 2048, 2048);

/// What tuning one format found: every candidate timed, then the GEMV-or-GEMM comparison
/// at more rows for the fastest, which sets its `max_rows`.
#[derive(Clone, Debug)]
pub struct Tuned {
    pub timed: Vec<Candidate>,
    /// (rows, GEMV us, GEMM us) at 16, 32, 64 rows, as far as GEMV kept winning.
    pub crossover: Vec<(u32, f64, f64)>,
    /// The fastest candidate, with its `max_rows` set.
    pub best: Candidate,
}

/// One timed configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub cfg: Gemv,
    /// Median time of one GEMV, in microseconds.
    pub micros: f64,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Adapter key -> kernel key -> the fastest configuration.
    adapters: BTreeMap<String, BTreeMap<String, Candidate>>,
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

/// The kernel and shape class a choice applies to: decode-sized steps (the crossover to GEMM
/// is part of the choice).
fn kernel_key(dtype: DType) -> String {
    format!("gemv {dtype} rows<=64")
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

/// Make sure GEMV is tuned on `gpu` for each of `dtypes` (the weight matrices' dtypes of a
/// model): from the disk cache when this adapter and driver were tuned before, else by timing
/// the candidates now (a few seconds per dtype on CPU adapters), saving the winners. `log`
/// hears what is being tuned. Returns the table later plans use.
pub async fn ensure(gpu: &Gpu, dtypes: &[DType], log: &mut dyn FnMut(&str)) -> Result<GemvTable> {
    let key = adapter_key(gpu);
    let mut file = read_cache();
    let mut dirty = false;
    let mut seen = Vec::new();
    for &dtype in dtypes {
        let format = dtype.weight_format(gpu.has_f16());
        if seen.contains(&format) {
            continue;
        }
        seen.push(format);
        let kernel = kernel_key(dtype);
        let known = file.adapters.get(&key).and_then(|m| m.get(&kernel));
        let best = match known {
            Some(c) if c.cfg.fits(gpu) => c.clone(),
            _ => {
                log(&format!(
                    "tuning {kernel} on {} (once; cached in {})",
                    gpu.describe(),
                    cache_path().display()
                ));
                let best = tune_format(gpu, dtype).await?.best;
                file.adapters
                    .entry(key.clone())
                    .or_default()
                    .insert(kernel, best.clone());
                dirty = true;
                best
            }
        };
        set(gpu, format, best.cfg);
    }
    if dirty {
        file.version = VERSION;
        if let Err(e) = write_cache(&file) {
            log(&format!("could not save the tuning cache: {e}"));
        }
    }
    Ok(super::tuned(gpu).gemv)
}

/// Keep `best` as the choice for `dtype` weights on `gpu`, now and in the disk cache.
pub fn remember(gpu: &Gpu, dtype: DType, best: &Candidate) -> Result<()> {
    let mut file = read_cache();
    file.version = VERSION;
    file.adapters
        .entry(adapter_key(gpu))
        .or_default()
        .insert(kernel_key(dtype), best.clone());
    set(gpu, dtype.weight_format(gpu.has_f16()), best.cfg);
    write_cache(&file)
}

/// The configurations worth timing: first each mode (lane reduction, 8-bit activations for
/// block formats) at the default tile, then tiles for the fastest mode.
fn modes(gpu: &Gpu, block: bool) -> Vec<Gemv> {
    let mut out = Vec::new();
    for subgroups in [false, true] {
        for int8 in [false, true] {
            let lanes = if subgroups {
                Gemv::DEFAULT.lanes.min(gpu.subgroup_min_size().max(1))
            } else {
                Gemv::DEFAULT.lanes
            };
            let cfg = Gemv {
                lanes,
                rows: 256 / lanes,
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

/// Time every candidate for `dtype` weights on `gpu` (GEMV of one row against a 2048 x 2048
/// weight, median of a few samples), modes first, then tiles of the fastest mode; then the
/// fastest against the tiled GEMM at 16, 32 and 64 rows: GEMV keeps the steps up to the
/// last row count where it still wins (16 at least, as before tuning).
pub async fn tune_format(gpu: &Gpu, dtype: DType) -> Result<Tuned> {
    let format = dtype.weight_format(gpu.has_f16());
    let mut timed = Vec::new();
    for cfg in modes(gpu, format.is_block()) {
        timed.push(time(gpu, dtype, format, cfg, 1, false).await?);
    }
    for cfg in tiles(gpu, fastest(&timed)?.cfg) {
        timed.push(time(gpu, dtype, format, cfg, 1, false).await?);
    }
    let mut best = fastest(&timed)?;
    let mut crossover = Vec::new();
    for rows in [16, 32, 64] {
        let gemv = time(gpu, dtype, format, best.cfg, rows, false)
            .await?
            .micros;
        let gemm = time(gpu, dtype, format, best.cfg, rows, true).await?.micros;
        crossover.push((rows as u32, gemv, gemm));
        if gemv > gemm {
            break;
        }
        best.cfg.max_rows = best.cfg.max_rows.max(rows as u32);
    }
    Ok(Tuned {
        timed,
        crossover,
        best,
    })
}

/// One matmul of `rows` rows against the 2048 x 2048 weight, as GEMV with `cfg` or as GEMM.
async fn time(
    gpu: &Gpu,
    dtype: DType,
    format: WeightFormat,
    cfg: Gemv,
    rows: usize,
    gemm: bool,
) -> Result<Candidate> {
    let mut target = Target::of(gpu);
    target.gemv.set(format, cfg);
    target.gemv_max_rows = Some(if gemm { 0 } else { usize::MAX });
    let (_, k, n) = SHAPE;
    let t: Duration = crate::bench::time_matmul(gpu, target, rows, k, n, dtype, 3).await?;
    Ok(Candidate {
        cfg,
        micros: t.as_secs_f64() * 1e6,
    })
}
