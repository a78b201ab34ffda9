// The F32 GEMV of gemv.wgsl for K a multiple of 4, with the weight and the activations read
// as 16-byte vectors:
//   y[m, n_off + n] = epilogue(sum_k w[n, k] * x[m, k])   for m < M (M small)
//
// Browsers bounds-check every storage access (Dawn clamps each index); gemv.wgsl's four
// 4-byte weight loads and four activation loads per step become one of each here. Columns,
// lanes and rows of x are laid out as in gemv.wgsl, and lane_sum comes from the same
// includes.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

override LANES: u32 = 32u;
override ROWS: u32 = 4u;
// Rows of x per workgroup (a function-scope array size, so a const).
const MR: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(LANES, ROWS, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lane = lid.x;
    let n = (wid.x + wid.y * nwg.x) * ROWS + lid.y;
    let m0 = wid.z * MR;
    let rows = min(MR, p.m - m0);
    var acc: array<f32, MR>;
    for (var r = 0u; r < MR; r = r + 1u) {
        acc[r] = 0.0;
    }
    if (n < p.n) {
        let k4 = p.k / 4u;
        let base = n * k4;
        for (var k = lane; k < k4; k = k + LANES) {
            let wv = w[base + k];
            for (var r = 0u; r < rows; r = r + 1u) {
                acc[r] = acc[r] + dot(wv, x[(m0 + r) * k4 + k]);
            }
        }
    }
    lane_sum(&acc, lane, lid.y, rows);
    if (lane == 0u && n < p.n) {
        let col = p.n_off + n;
        for (var r = 0u; r < rows; r = r + 1u) {
            let idx = (m0 + r) * p.ldy + col;
            y[idx] = epilogue(acc[r], col, idx);
        }
    }
}
