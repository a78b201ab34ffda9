//! Per-adapter tuning of the GEMV kernels, like burn's autotune: on first use kiln times the
//! candidate configurations ([`Gemv`]: tile, lane reduction, 8-bit activations) on the
//! adapter for each weight format a model reads, keeps the fastest, and caches the choice on
//! disk under the kiln cache (`tune.json`), keyed by adapter, driver, kernel and shape class.
//!
//! [`Target::of`](crate::kernels::Target::of) plans with what was tuned for a device, or
//! [`GemvTable::DEFAULT`] before tuning. Native builds tune ([`ensure`]); in the browser
//! kiln plans with the defaults (timing there needs timestamp queries: planned).

#[cfg(not(target_arch = "wasm32"))]
mod measure;

#[cfg(not(target_arch = "wasm32"))]
pub use measure::{Candidate, Tuned, ensure, remember, tune_format};

use crate::dtype::WeightFormat;
use crate::gpu::Gpu;
use crate::kernels::{Gemv, GemvTable};
use std::sync::Mutex;

/// The device's tuned configurations, kept with its other caches.
#[derive(Default)]
struct Chosen(Mutex<Option<Tuning>>);

/// How programs on a device run their matmuls.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub gemv: GemvTable,
    /// When set, matmuls over at most this many rows run as GEMV, larger ones as GEMM,
    /// whatever was tuned per format.
    pub gemv_max_rows: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            gemv: GemvTable::DEFAULT,
            gemv_max_rows: None,
        }
    }
}

/// What was tuned for `gpu` (the defaults for what was not).
pub fn tuned(gpu: &Gpu) -> Tuning {
    let chosen = gpu.cache::<Chosen>();
    let guard = chosen.0.lock().unwrap_or_else(|e| e.into_inner());
    guard.unwrap_or_default()
}

fn update(gpu: &Gpu, f: impl FnOnce(&mut Tuning)) {
    let chosen = gpu.cache::<Chosen>();
    let mut guard = chosen.0.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = guard.unwrap_or_default();
    f(&mut t);
    *guard = Some(t);
}

/// Plan later programs on `gpu` with `cfg` for weights read in `format`.
pub fn set(gpu: &Gpu, format: WeightFormat, cfg: Gemv) {
    update(gpu, |t| t.gemv.set(format, cfg));
}

/// Plan later programs on `gpu` to run matmuls of at most `rows` rows as GEMV (say, to
/// measure perplexity through the decode kernels).
pub fn set_gemv_max_rows(gpu: &Gpu, rows: usize) {
    update(gpu, |t| t.gemv_max_rows = Some(rows));
}
