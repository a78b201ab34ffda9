// Fused elementwise tail shared by every kernel that produces a value per output element
// (tiled matmul, GEMV, and the standalone elementwise kernel):
//
//     y = act(acc + bias[col]) * aux_act(aux[idx]) + residual[idx]
//
// Each stage is switched on by an override constant, so one source serves every fusion the
// scheduler makes. `activate` comes from activate.wgsl, composed before this file. The
// including kernel declares `bias` (a weight, read by load_bias), `aux` and `residual` (f32
// activations).

override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
override AUX_MUL: bool = false;
override AUX_ACT: u32 = 0u;
override RESIDUAL: bool = false;

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
