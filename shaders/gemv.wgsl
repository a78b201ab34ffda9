// GEMV for a few rows of activations (decode, short prompts):
//   y[m, n_off + n] = epilogue(sum_k w[n, k] * x[m, k])   for m < M (M small)
//
// Each workgroup computes ROWS output columns for up to MR rows of x (workgroup z picks the
// block of rows), with LANES threads per column. A column's lanes stride through k four
// elements at a time (vector loads of the weight, read once for all MR rows), then sum
// their partials (lane_sum: subgroup shuffles or workgroup memory). LANES must be a power of
// two. Columns are laid out over a 2-D grid so that N may exceed the 65535 workgroups one
// dimension allows.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
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
        let base = n * p.k;
        let k4 = p.k & ~3u;
        for (var k = lane * 4u; k < k4; k = k + LANES * 4u) {
            let wv = load4_w(base + k);
            for (var r = 0u; r < rows; r = r + 1u) {
                let xr = (m0 + r) * p.k + k;
                acc[r] = acc[r] + dot(wv, vec4<f32>(x[xr], x[xr + 1u], x[xr + 2u], x[xr + 3u]));
            }
        }
        for (var k = k4 + lane; k < p.k; k = k + LANES) {
            let wv = load_w(base + k);
            for (var r = 0u; r < rows; r = r + 1u) {
                acc[r] = fma(wv, x[(m0 + r) * p.k + k], acc[r]);
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
