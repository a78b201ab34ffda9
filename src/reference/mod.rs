//! Plain-Rust CPU twins of every kernel, written for clarity and accumulated in f64. Tests
//! check each WGSL kernel against these, and [`graph::evaluate`] runs a whole graph with them.

pub mod graph;
pub mod llama;

use crate::kernels::Act;

/// y (m, n) = x (m, k) @ w (n, k)^T
pub fn matmul(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for l in 0..k {
                acc += f64::from(x[i * k + l]) * f64::from(w[j * k + l]);
            }
            y[i * n + j] = acc as f32;
        }
    }
    y
}

/// RMSNorm over each row of x (rows, d).
pub fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &g)| (f64::from(v) * inv * f64::from(g)) as f32)
        })
        .collect()
}

/// LayerNorm over each row of x (rows, d).
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, d: usize, eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / d as f64;
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            (0..d).map(move |i| {
                let bias = b.map_or(0.0, |b| f64::from(b[i]));
                ((f64::from(row[i]) - mean) * inv * f64::from(w[i]) + bias) as f32
            })
        })
        .collect()
}

/// Softmax over each row of x (rows, d).
pub fn softmax(x: &[f32], d: usize) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| (v / s) as f32)
        })
        .collect()
}

/// RoPE inverse frequencies: theta^(-2i / head_dim) for i < head_dim / 2.
pub fn rope_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64) as f32)
        .collect()
}

/// The RoPE table for positions 0..rows: row p = [cos(p f_i) for i < half, sin(p f_i) ...].
/// The angle is the f32 product `p * f_i`, as HF computes it; sin and cos are taken in f64.
pub fn rope_table(inv_freq: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * inv_freq.len() * 2);
    for p in 0..rows {
        let angles: Vec<f64> = inv_freq.iter().map(|&f| f64::from(p as f32 * f)).collect();
        out.extend(angles.iter().map(|a| a.cos() as f32));
        out.extend(angles.iter().map(|a| a.sin() as f32));
    }
    out
}

/// Rotate-half RoPE on x (t, heads * head_dim) with a [`rope_table`]; token j sits at
/// position pos + j.
pub fn rope(x: &[f32], table: &[f32], heads: usize, head_dim: usize, pos: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut y = x.to_vec();
    for (t, row) in y.chunks_mut(heads * head_dim).enumerate() {
        for h in 0..heads {
            let base = h * head_dim;
            for i in 0..half {
                let angles = &table[(pos + t) * head_dim..];
                let (c, s) = (f64::from(angles[i]), f64::from(angles[half + i]));
                let x1 = f64::from(x[t * heads * head_dim + base + i]);
                let x2 = f64::from(x[t * heads * head_dim + base + i + half]);
                row[base + i] = (x1 * c - x2 * s) as f32;
                row[base + i + half] = (x2 * c + x1 * s) as f32;
            }
        }
    }
    y
}

/// Grouped-query attention of q (t, heads * head_dim) over caches k, v
/// (>= pos + t rows of kv_heads * head_dim); query j sits at position pos + j and, with a
/// window, sees only the last `window` keys.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    [heads, kv_heads, head_dim]: [usize; 3],
    pos: usize,
    causal: bool,
    window: Option<usize>,
) -> Vec<f32> {
    let t = q.len() / (heads * head_dim);
    let kvw = kv_heads * head_dim;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut o = vec![0.0; q.len()];
    for j in 0..t {
        let n_keys = if causal { pos + j + 1 } else { pos + t };
        let first = window.map_or(0, |w| n_keys.saturating_sub(w));
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qrow = &q[j * heads * head_dim + h * head_dim..][..head_dim];
            let scores: Vec<f64> = (first..n_keys)
                .map(|s| {
                    let krow = &k[s * kvw + kvh * head_dim..][..head_dim];
                    qrow.iter()
                        .zip(krow)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..head_dim {
                let acc: f64 = (first..n_keys)
                    .map(|s| e[s - first] * f64::from(v[s * kvw + kvh * head_dim + d]))
                    .sum();
                o[j * heads * head_dim + h * head_dim + d] = (acc / sum) as f32;
            }
        }
    }
    o
}

/// Rows of table (vocab, d) at ids.
pub fn embedding(table: &[f32], ids: &[u32], d: usize) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| table[i as usize * d..][..d].iter().copied())
        .collect()
}

/// erf to about 1e-12: Maclaurin series near zero, asymptotic series in the tails.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = 1.0 / (2.0 * a * a);
        let series = 1.0 - z + 3.0 * z * z - 15.0 * z.powi(3) + 105.0 * z.powi(4);
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    r.copysign(x)
}

/// An activation, exactly.
pub fn act(x: f32, a: Act) -> f32 {
    let v = f64::from(x);
    let y = match a {
        Act::Identity => v,
        Act::Silu => v / (1.0 + (-v).exp()),
        Act::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())
        }
        Act::GeluErf => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
        Act::Relu => v.max(0.0),
    };
    y as f32
}

/// The epilogue: `act(x + bias[col]) * aux_act(aux) + residual`, elementwise over (rows, cols).
pub fn tail(
    x: &[f32],
    cols: usize,
    bias: Option<&[f32]>,
    a: Act,
    aux: Option<(&[f32], Act)>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let mut y = x[i] + bias.map_or(0.0, |b| b[i % cols]);
            y = act(y, a);
            if let Some((aux, aa)) = aux {
                y *= act(aux[i], aa);
            }
            if let Some(r) = residual {
                y += r[i];
            }
            y
        })
        .collect()
}

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
