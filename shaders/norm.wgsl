// Row normalisation, one workgroup per row of x: (rows, d).
//   MODE 0, RMSNorm:   y = x / sqrt(mean(x^2) + eps) * w
//   MODE 1, LayerNorm: y = (x - mean(x)) / sqrt(var(x) + eps) * w (+ b with HAS_BIAS)
//   MODE 2, L2:        y = x / max(sqrt(sum(x^2)), eps)   (w and b unused)
// Statistics are reduced in workgroup memory; LayerNorm takes the variance about the mean
// in a second pass for accuracy. reduce_sum comes from reduce.wgsl.

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
}

override WG: u32 = 64u;
override MODE: u32 = 0u;
override HAS_BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> b: array<WORD_b>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let tid = lid.x;
    let base = row * p.d;
    let inv_d = 1.0 / f32(p.d);

    var mean = 0.0;
    if (MODE == 1u) {
        var s = 0.0;
        for (var i = tid; i < p.d; i = i + WG) {
            s = s + x[base + i];
        }
        mean = reduce_sum(s, tid) * inv_d;
    }
    var sq = 0.0;
    for (var i = tid; i < p.d; i = i + WG) {
        let c = x[base + i] - mean;
        sq = fma(c, c, sq);
    }
    let total = reduce_sum(sq, tid);
    if (MODE == 2u) {
        let inv_norm = 1.0 / max(sqrt(total), p.eps);
        for (var i = tid; i < p.d; i = i + WG) {
            y[base + i] = x[base + i] * inv_norm;
        }
        return;
    }
    let inv_rms = inverseSqrt(total * inv_d + p.eps);
    for (var i = tid; i < p.d; i = i + WG) {
        var v = (x[base + i] - mean) * inv_rms * load_w(i);
        if (HAS_BIAS) {
            v = v + load_b(i);
        }
        y[base + i] = v;
    }
}
