//! What a device's matmuls run with: the GEMV configuration per weight format and any
//! GEMV/GEMM override, kept with the device's other caches. [`Target::of`](super::Target::of)
//! reads it; `kiln::tune` measures and fills it.

use super::{Gemm, Gemv, GemvTable, Width};
use crate::dtype::WeightFormat;
use crate::gpu::Gpu;
use std::sync::Mutex;

/// The device's tuned configurations, kept with its other caches.
#[derive(Default)]
struct Chosen(Mutex<Option<Tuning>>);

/// How programs on a device run their matmuls.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// The GEMV configuration per weight format, wide and narrow.
    pub gemv: GemvTable,
    /// When set, matmuls over at most this many rows run as GEMV, larger ones as GEMM,
    /// whatever was tuned per format.
    pub gemv_max_rows: Option<usize>,
    /// The GEMM kernel, where one was chosen.
    pub gemm: Option<Gemm>,
}

impl Tuning {
    /// Before tuning: [`GemvTable::untuned`] for the device's kind of adapter, GEMM as
    /// [`Target::of`](super::Target::of) picks it.
    pub fn untuned(gpu: &Gpu) -> Tuning {
        Tuning {
            gemv: GemvTable::untuned(
                gpu.info().device_type,
                gpu.has_subgroups().then(|| gpu.subgroup_min_size()),
            ),
            gemv_max_rows: None,
            gemm: None,
        }
    }
}

/// What was tuned for `gpu` (the defaults for what was not).
pub fn tuned(gpu: &Gpu) -> Tuning {
    let chosen = gpu.cache::<Chosen>();
    let guard = chosen.0.lock().unwrap_or_else(|e| e.into_inner());
    guard.unwrap_or_else(|| Tuning::untuned(gpu))
}

fn update(gpu: &Gpu, f: impl FnOnce(&mut Tuning)) {
    let chosen = gpu.cache::<Chosen>();
    let mut guard = chosen.0.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = guard.unwrap_or_else(|| Tuning::untuned(gpu));
    f(&mut t);
    *guard = Some(t);
}

/// Plan later programs on `gpu` with `cfg` for `width` matmuls of weights read in `format`.
pub fn set(gpu: &Gpu, format: WeightFormat, width: Width, cfg: Gemv) {
    update(gpu, |t| t.gemv.set(format, width, cfg));
}

/// Plan later programs on `gpu` to run GEMMs with `gemm`.
pub fn set_gemm(gpu: &Gpu, gemm: Gemm) {
    update(gpu, |t| t.gemm = Some(gemm));
}

/// Plan later programs on `gpu` to run matmuls of at most `rows` rows as GEMV (say, to
/// measure perplexity through the decode kernels).
pub fn set_gemv_max_rows(gpu: &Gpu, rows: usize) {
    update(gpu, |t| t.gemv_max_rows = Some(rows));
}
