// Row normalisation, one workgroup per row of x: (rows, d).
//   MODE 0, RMSNorm:   y = x / sqrt(mean(x^2) + eps) * w
//   MODE 1, LayerNorm: y = (x - mean(x)) / sqrt(var(x) + eps) * w (+ b with HAS_BIAS)
//   MODE 2, L2:        y = x / max(sqrt(sum(x^2)), eps)   (w and b unused)
// Statistics are reduced with reduce_sum (reduce.wgsl, or reduce_subgroup.wgsl where the
// adapter has subgroups); LayerNorm takes the variance about the mean in a second pass for
// accuracy. Thread tid takes elements tid + j * WG, U of them per iteration, so that U loads
// are in flight at once: a real GPU otherwise waits out one memory latency per element.

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
}

override WG: u32 = 256u;
override MODE: u32 = 0u;
override HAS_BIAS: bool = false;
const U: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> b: array<WORD_b>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// x[base + i + j * WG] for j < U, and which of them are in the row.
fn load_u(base: u32, i: u32) -> array<f32, U> {
    var v: array<f32, U>;
    for (var j = 0u; j < U; j = j + 1u) {
        let at = i + j * WG;
        v[j] = select(0.0, x[base + min(at, p.d - 1u)], at < p.d);
    }
    return v;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    // Whole workgroups leave together, so the reductions stay in uniform control flow.
    if (row >= p.rows) {
        return;
    }
    let tid = lid.x;
    let base = row * p.d;
    let inv_d = 1.0 / f32(p.d);

    var mean = 0.0;
    if (MODE == 1u) {
        var s = 0.0;
        for (var i = tid; i < p.d; i = i + U * WG) {
            let v = load_u(base, i);
            for (var j = 0u; j < U; j = j + 1u) {
                s = s + v[j];
            }
        }
        mean = reduce_sum(s, tid) * inv_d;
    }
    var sq = 0.0;
    for (var i = tid; i < p.d; i = i + U * WG) {
        let v = load_u(base, i);
        for (var j = 0u; j < U; j = j + 1u) {
            let c = select(0.0, v[j] - mean, i + j * WG < p.d);
            sq = fma(c, c, sq);
        }
    }
    let total = reduce_sum(sq, tid);
    var scale = inverseSqrt(total * inv_d + p.eps);
    if (MODE == 2u) {
        scale = 1.0 / max(sqrt(total), p.eps);
    }
    for (var i = tid; i < p.d; i = i + U * WG) {
        let v = load_u(base, i);
        for (var j = 0u; j < U; j = j + 1u) {
            let at = i + j * WG;
            if (at < p.d) {
                var o = (v[j] - mean) * scale;
                if (MODE != 2u) {
                    o = o * load_w(at);
                }
                if (HAS_BIAS) {
                    o = o + load_b(at);
                }
                y[base + at] = o;
            }
        }
    }
}
