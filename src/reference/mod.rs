//! Test support: a CPU evaluator for whole graphs ([`graph::evaluate`]), which runs each op's
//! CPU twin (in its module under `src/ops/`); a llama2.c-style Llama forward
//! ([`llama::Reference`]); and [`compare`]. Production code does not call into this module.

pub mod graph;
pub mod llama;

/// Whether `got` is within `atol + rtol * |want|` of `want` everywhere; on failure, a message
/// naming the worst element.
pub fn compare(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("length {} != {}", got.len(), want.len()));
    }
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        // NaN on either side counts as the worst possible miss.
        let excess = if excess.is_nan() {
            f32::INFINITY
        } else {
            excess
        };
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "element {i}: got {} want {} (|diff| {} > atol {atol} + rtol {rtol} * |want|)",
            got[i],
            want[i],
            (got[i] - want[i]).abs()
        )),
    }
}
