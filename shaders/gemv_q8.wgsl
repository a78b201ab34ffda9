// GEMV on block-quantized weights with 8-bit activations, as llama.cpp's MMVQ computes it:
//   y[m, n_off + n] = epilogue(sum over 32-blocks b of  w_b . x_b)
//
// x arrives quantized (quantize_q8.wgsl, once per step, shared by every workgroup): per
// 32-element block, int8 quants of each 16-element half with its scale dx, dx times the sum
// of each half's quants, and the element of largest magnitude kept aside in f32. Each of the
// workgroup's ROWS columns has LANES lanes stride through the row's blocks: a lane decodes
// one weight block once (qblock_w: a byte per quant and the affine (a, c) of each half) and,
// for each of the workgroup's MR rows of x, dots it with the quants four at a time with
// dot4I8Packed (naga maps it to the adapter's integer dot product or to a polyfill), then
// adds the kept element times its weight. Per half h:
// sum_j (a q_j + c) x_j = a dx (q . qx) + c dx sum(qx), plus (a q_o + c) x_o for the kept one.
// Partial sums meet in lane_sum (subgroup shuffles or workgroup memory). No barrier before
// that: each lane runs through its blocks on its own, which is what lets narrow matrices
// (few workgroups, long rows) keep loads in flight. K is a whole number of 32-element blocks
// (every block format's rows are).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

override LANES: u32 = 4u;
override ROWS: u32 = 64u;
// Rows of x per workgroup (a function-scope array size, so a const).
const MR: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qx: array<QX>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// The weight of element j of block q.
fn weight_at(q: QBlock_w, j: u32) -> f32 {
    let v = (j & 15u) >> 2u;
    let word = select(q.lo[v], q.hi[v], j >= 16u);
    let quant = bitcast<i32>(word << (24u - (j & 3u) * 8u)) >> 24u;
    return select(q.ac.x, q.ac.y, j >= 16u) * f32(quant) + select(q.ac.z, q.ac.w, j >= 16u);
}

fn idot(a: vec4<u32>, b: vec4<u32>) -> i32 {
    return dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y) + dot4I8Packed(a.z, b.z)
        + dot4I8Packed(a.w, b.w);
}

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
    let nb = p.k / 32u;
    var acc: array<f32, MR>;
    for (var r = 0u; r < MR; r = r + 1u) {
        acc[r] = 0.0;
    }
    if (n < p.n) {
        let s0 = n * nb;
        for (var b = lane; b < nb; b = b + LANES) {
            let q = qblock_w(s0 + b);
            for (var r = 0u; r < rows; r = r + 1u) {
                let a = qx[(m0 + r) * nb + b];
                let lo = f32(idot(q.lo, a.q0));
                let hi = f32(idot(q.hi, a.q1));
                acc[r] = acc[r] + q.ac.x * a.s.x * lo + q.ac.y * a.s.y * hi + q.ac.z * a.s.z
                    + q.ac.w * a.s.w + weight_at(q, a.at) * a.kept;
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
