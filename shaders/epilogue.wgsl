// Fused elementwise tail shared by every kernel that produces a value per output element
// (tiled matmul, GEMV, and the standalone elementwise kernel):
//
//     y = act(acc + bias[col]) * aux_act(aux[idx]) + residual[idx]
//
// Each stage is switched on by an override constant, so one source serves every fusion the
// scheduler makes. The including kernel declares `bias` (a weight, read by load_bias),
// `aux` and `residual` (f32 activations).

override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
override AUX_MUL: bool = false;
override AUX_ACT: u32 = 0u;
override RESIDUAL: bool = false;

// Abramowitz & Stegun 7.1.26; absolute error below 1.5e-7.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-a * a));
}

// 0 identity, 1 SiLU, 2 GELU (tanh), 3 GELU (erf), 4 ReLU.
fn activate(x: f32, kind: u32) -> f32 {
    switch kind {
        case 1u: {
            return x / (1.0 + exp(-x));
        }
        case 2u: {
            let inner = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (1.0 + tanh(inner));
        }
        case 3u: {
            return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476));
        }
        case 4u: {
            return max(x, 0.0);
        }
        default: {
            return x;
        }
    }
}

fn epilogue(acc: f32, col: u32, idx: u32) -> f32 {
    var y = acc;
    if (HAS_BIAS) {
        y = y + load_bias(col);
    }
    y = activate(y, ACT);
    if (AUX_MUL) {
        y = y * activate(aux[idx], AUX_ACT);
    }
    if (RESIDUAL) {
        y = y + residual[idx];
    }
    return y;
}
