//! Per-adapter tuning of the matmul kernels, like burn's autotune: on first use kiln times the
//! GEMM kernels the adapter can run ([`Gemm`](crate::kernels::Gemm)) and the candidate GEMV
//! configurations ([`Gemv`](crate::kernels::Gemv): tile, lane reduction, 8-bit activations)
//! for each weight format a model reads, keeps the fastest, and caches the choice on disk
//! under the kiln cache (`tune.json`), keyed by adapter, driver, kernel and shape class.
//!
//! [`Target::of`](crate::kernels::Target::of) plans with what was tuned for a device (kept by
//! [`crate::kernels::tuning`]), or [`GemvTable::untuned`](crate::kernels::GemvTable::untuned)
//! before tuning (one lane per column on CPU adapters). Native builds tune ([`ensure`]); in
//! the browser kiln plans with those defaults (tuning there: planned).

#[cfg(not(target_arch = "wasm32"))]
mod measure;

#[cfg(not(target_arch = "wasm32"))]
pub use measure::{
    Candidate, GEMM_SHAPE, GemmChoice, Tuned, bandwidth, ensure, narrow_shapes, remember,
    remember_bandwidth, remember_gemm, shape, tune_format, tune_gemm,
};

pub use crate::kernels::tuning::{Tuning, set, set_gemm, set_gemv_max_rows, tuned};
