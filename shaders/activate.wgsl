// Elementwise activations by code (0 identity, 1 SiLU, 2 GELU (tanh), 3 GELU (erf), 4 ReLU):
// `activate(x, kind)`, for the fused epilogue and for kernels with an activation of their own
// (the convolution).

// Abramowitz & Stegun 7.1.26; absolute error below 1.5e-7.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-a * a));
}

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

