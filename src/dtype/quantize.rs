//! Quantizing f32 weights into ggml blocks (as a GGUF file stores them), for `--dtype` on
//! load and for benchmarks.
//!
//! Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 follow ggml's reference quantizers (`quantize_row_*_ref`)
//! operation for operation in f32, so their bytes equal ggml's and the `gguf` Python
//! package's (a test checks that). The K-quants use the plain min/max form of their
//! schemes: Q4_K and Q5_K a scale and a min per sub-block of 32, each quantized to 6 bits
//! against the block's f16 `d` and `dmin`; Q6_K an int8 scale per 16 weights. llama.cpp's
//! iterative search for the best scales is not done (its effect on perplexity is measured,
//! not assumed).

use super::DType;
use crate::error::{Error, Result};

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Index of the value of largest magnitude (the first, on ties), as ggml picks it.
fn amax_index(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if v.abs() > x[best].abs() {
            best = i;
        }
    }
    best
}

fn inverse(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

/// Pack 32 values below 16 as ggml's nibbles: byte j holds j (low) and j + 16 (high).
fn nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0xf) | (q[j + 16] << 4))
}

/// The fifth bits of 32 quants, bit j for element j.
fn high_bits(q: &[u8; 32]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, v) in q.iter().enumerate() {
        qh |= u32::from(v >> 4) << j;
    }
    qh.to_le_bytes()
}

fn block32(dtype: DType, x: &[f32], out: &mut Vec<u8>) {
    let max = x.iter().copied().fold(f32::MIN, f32::max);
    let min = x.iter().copied().fold(f32::MAX, f32::min);
    match dtype {
        DType::Q8_0 => {
            let d = x.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
            let id = inverse(d);
            out.extend(f16_bytes(d));
            out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
        }
        DType::Q4_0 | DType::Q5_0 => {
            let (levels, offset) = if dtype == DType::Q4_0 {
                (-8.0, 8.5)
            } else {
                (-16.0, 16.5)
            };
            let d = x[amax_index(x)] / levels;
            let id = inverse(d);
            let cap = if dtype == DType::Q4_0 { 15.0 } else { 31.0 };
            let q: [u8; 32] =
                std::array::from_fn(|j| (x[j] * id + offset).trunc().clamp(0.0, cap) as u8);
            out.extend(f16_bytes(d));
            if dtype == DType::Q5_0 {
                out.extend(high_bits(&q));
            }
            out.extend(nibbles(&q));
        }
        DType::Q4_1 | DType::Q5_1 => {
            let cap = if dtype == DType::Q4_1 { 15.0 } else { 31.0 };
            let d = (max - min) / cap;
            let id = inverse(d);
            let q: [u8; 32] =
                std::array::from_fn(|j| ((x[j] - min) * id + 0.5).trunc().clamp(0.0, cap) as u8);
            out.extend(f16_bytes(d));
            out.extend(f16_bytes(min));
            if dtype == DType::Q5_1 {
                out.extend(high_bits(&q));
            }
            out.extend(nibbles(&q));
        }
        _ => unreachable!("32-element formats only"),
    }
}

/// Q4_K and Q5_K: d, dmin, 12 bytes of 6-bit scales and mins, (Q5_K: 32 bytes of fifth
/// bits,) 128 bytes of nibbles.
fn block_k(dtype: DType, x: &[f32], out: &mut Vec<u8>) {
    let levels = if dtype == DType::Q5K { 31.0 } else { 15.0 };
    // Per sub-block of 32: x ~ scale * q - min, q in 0..=levels, min >= 0.
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for s in 0..8 {
        let sub = &x[s * 32..(s + 1) * 32];
        let lo = sub.iter().copied().fold(0.0f32, f32::min);
        let hi = sub.iter().copied().fold(f32::MIN, f32::max);
        scales[s] = (hi - lo) / levels;
        mins[s] = -lo;
    }
    let d = scales.iter().copied().fold(0.0f32, f32::max) / 63.0;
    let dmin = mins.iter().copied().fold(0.0f32, f32::max) / 63.0;
    // The 6-bit codes are taken against d and dmin as the file stores them (f16).
    let (dh, dminh) = (
        half::f16::from_f32(d).to_f32(),
        half::f16::from_f32(dmin).to_f32(),
    );
    let sc: [u8; 8] =
        std::array::from_fn(|s| (scales[s] * inverse(dh)).round().clamp(0.0, 63.0) as u8);
    let mn: [u8; 8] =
        std::array::from_fn(|s| (mins[s] * inverse(dminh)).round().clamp(0.0, 63.0) as u8);
    // ggml's get_scale_min_k4 layout, inverted.
    let mut packed = [0u8; 12];
    for s in 0..4 {
        packed[s] = sc[s] | ((sc[s + 4] >> 4) << 6);
        packed[s + 4] = mn[s] | ((mn[s + 4] >> 4) << 6);
        packed[s + 8] = (sc[s + 4] & 0xf) | ((mn[s + 4] & 0xf) << 4);
    }
    let mut q = [0u8; 256];
    for (s, qs) in q.chunks_exact_mut(32).enumerate() {
        let step = dh * f32::from(sc[s]);
        let m = dminh * f32::from(mn[s]);
        for (j, v) in qs.iter_mut().enumerate() {
            *v = ((x[s * 32 + j] + m) * inverse(step))
                .round()
                .clamp(0.0, levels) as u8;
        }
    }
    out.extend(f16_bytes(d));
    out.extend(f16_bytes(dmin));
    out.extend(packed);
    if dtype == DType::Q5K {
        // Bit s of byte l: the fifth bit of element l of sub-block s.
        out.extend((0..32).map(|l| (0..8).fold(0u8, |b, s| b | ((q[s * 32 + l] >> 4) << s))));
    }
    // Byte c * 32 + l holds sub-block 2c (low nibble) and 2c + 1 (high), element l.
    for c in 0..4 {
        out.extend((0..32).map(|l| (q[c * 64 + l] & 0xf) | ((q[c * 64 + 32 + l] & 0xf) << 4)));
    }
}

/// Q6_K: ql[128], qh[64], 16 int8 scales (one per 16 weights), d.
fn block_q6k(x: &[f32], out: &mut Vec<u8>) {
    // Per sub-block of 16: x ~ scale * (q - 32), q in 0..=63.
    let scales: [f32; 16] =
        std::array::from_fn(|s| x[s * 16 + amax_index(&x[s * 16..(s + 1) * 16])] / -32.0);
    let d = scales.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
    let dh = half::f16::from_f32(d).to_f32();
    let sc: [i8; 16] =
        std::array::from_fn(|s| (scales[s] * inverse(dh)).round().clamp(-127.0, 127.0) as i8);
    let q: [u8; 256] = std::array::from_fn(|j| {
        let step = dh * f32::from(sc[j / 16]);
        ((x[j] * inverse(step)).round() + 32.0).clamp(0.0, 63.0) as u8
    });
    // Element 128 n + 32 quarter + l: ql byte 64 n + 32 (quarter % 2) + l (high nibble when
    // quarter >= 2), bits 2 quarter of qh byte 32 n + l.
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for (j, v) in q.iter().enumerate() {
        let (n, quarter, l) = (j / 128, (j % 128) / 32, j % 32);
        ql[64 * n + 32 * (quarter % 2) + l] |= (v & 0xf) << (4 * (quarter / 2));
        qh[32 * n + l] |= (v >> 4) << (2 * quarter);
    }
    out.extend(ql);
    out.extend(qh);
    out.extend(sc.map(|v| v as u8));
    out.extend(f16_bytes(d));
}

/// The dtypes [`quantize`] produces.
pub const TARGETS: [DType; 8] = DType::QUANTIZED;

/// Quantize `values` (rows of `row_len`) into ggml blocks of `dtype`, as a file stores them.
pub fn quantize(dtype: DType, values: &[f32], row_len: usize) -> Result<Vec<u8>> {
    let block = dtype.block_elems();
    if !TARGETS.contains(&dtype) {
        return Err(Error::Invalid(format!(
            "{dtype} is not a block format to quantize to"
        )));
    }
    if !row_len.is_multiple_of(block) || !values.len().is_multiple_of(row_len.max(1)) {
        return Err(Error::Shape(format!(
            "rows of {row_len} values are not a whole number of {dtype} blocks of {block}"
        )));
    }
    let mut out = Vec::with_capacity(dtype.file_bytes(values.len()));
    for x in values.chunks_exact(block) {
        match dtype {
            DType::Q4K | DType::Q5K => block_k(dtype, x, &mut out),
            DType::Q6K => block_q6k(x, &mut out),
            _ => block32(dtype, x, &mut out),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::blocks::dequantize_file;

    #[test]
    fn round_trips_within_half_a_step() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        for dtype in TARGETS {
            let back = dequantize_file(dtype, &quantize(dtype, &x, 256).unwrap());
            let err = x
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // Magnitudes up to 0.3: half a step of 8 bits ~0.0012, of 5 bits ~0.01; Q4_0 and
            // Q5_0 clip their largest positive code, a whole step; the K-quants' 6-bit
            // scales add a little.
            let bound = match dtype {
                DType::Q8_0 => 0.003,
                DType::Q6K => 0.008,
                DType::Q5_0 | DType::Q5_1 | DType::Q5K => 0.02,
                _ => 0.04,
            };
            assert!(err <= bound, "{dtype}: max error {err} > {bound}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_make() {
        assert!(
            quantize(DType::F16, &[0.0; 256], 256)
                .unwrap_err()
                .to_string()
                .contains("F16")
        );
        assert!(
            quantize(DType::Q8_0, &[0.0; 48], 48)
                .unwrap_err()
                .to_string()
                .contains("whole number")
        );
    }
}
