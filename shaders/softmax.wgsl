// Numerically stable softmax over each row of x: (rows, d); one workgroup per row.
// y = exp(x - max) / sum(exp(x - max)). The reductions come from reduce.wgsl.

struct Params {
    rows: u32,
    d: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

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

    var m = -3.0e38;
    for (var i = tid; i < p.d; i = i + WG) {
        m = max(m, x[base + i]);
    }
    m = reduce_max(m, tid);
    var sum = 0.0;
    for (var i = tid; i < p.d; i = i + WG) {
        sum = sum + exp(x[base + i] - m);
    }
    let inv = 1.0 / reduce_sum(sum, tid);
    for (var i = tid; i < p.d; i = i + WG) {
        y[base + i] = exp(x[base + i] - m) * inv;
    }
}
