// GEMV on block-quantized weights with f32 activations, for steps of a few rows (batched
// decode):
//   y[m, n_off + n] = epilogue(sum_k w[n, k] * x[m, k])
//
// Each of the workgroup's ROWS columns has LANES lanes stride through the row's 32-element
// blocks. A lane decodes a block once (qblock_w: a byte per quant and the affine (a, c) of
// each half), widens it to f32 four weights at a time, and dots each four with the same four
// elements of each of the workgroup's MR rows of x (x_block: each lane reading its own, or,
// with one lane a column, where every lane of a subgroup needs the same elements, read once
// per subgroup and broadcast). What each extra row of x costs is its reads and dot products;
// the decoding is paid once, which is what makes several rows much cheaper than several
// times one on CPU adapters, where every lane's arithmetic is paid for (gemv_q8.wgsl pays
// its emulated integer dot products once per row). The row loop has a constant trip count
// so that the compiler keeps the sums in registers. K is a whole number of 32-element blocks.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

override LANES: u32 = 1u;
override ROWS: u32 = 128u;
// Rows of x per workgroup: at most MR (a function-scope array size, so a const), and RPG
// where the host knows that a step has fewer (a decode step of RPG sequences), so that the
// row loop runs no row it would skip: on CPU adapters each costs a test and a branch per
// block, 5-10% of a one-row step's time at MR.
const MR: u32 = 8u;
// The host keeps RPG within MR.
override RPG: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// Four quants, a byte each (signed for Q8_0, below 64 for the rest, so read as signed), as
// weights a * q + c.
fn widen(word: u32, a: f32, c: f32) -> vec4<f32> {
    let q = bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(q) * a + c;
}

@compute @workgroup_size(LANES, ROWS, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // Before any branch: x_lane counts the subgroup's invocations.
    let lane8 = x_lane();
    let lane = lid.x;
    let n = (wid.x + wid.y * nwg.x) * ROWS + lid.y;
    let m0 = wid.z * RPG;
    let rows = min(RPG, p.m - m0);
    let nb = p.k / 32u;
    // x's row stride in vec4s.
    let k4 = p.k / 4u;
    var acc: array<f32, MR>;
    for (var r = 0u; r < MR; r = r + 1u) {
        acc[r] = 0.0;
    }
    // Columns past the edge read the last one (not stored), so that every lane runs the
    // loop: x_block may broadcast across the subgroup.
    let s0 = min(n, p.n - 1u) * nb;
    // One lane a column: a loop the compiler sees is the same in every lane.
    let first = select(lane, 0u, LANES == 1u);
    for (var b = first; b < nb; b = b + LANES) {
        let q = qblock_w(s0 + b);
        var wq: array<vec4<f32>, 8>;
        for (var v = 0u; v < 4u; v = v + 1u) {
            wq[v] = widen(q.lo[v], q.ac.x, q.ac.z);
            wq[v + 4u] = widen(q.hi[v], q.ac.y, q.ac.w);
        }
        let at = m0 * k4 + b * 8u;
        for (var r = 0u; r < RPG; r = r + 1u) {
            if (r < rows) {
                let xs = x_block(at + r * k4, lane8);
                acc[r] = acc[r] + dot(wq[0], xs[0]) + dot(wq[1], xs[1]) + dot(wq[2], xs[2])
                    + dot(wq[3], xs[3]) + dot(wq[4], xs[4]) + dot(wq[5], xs[5])
                    + dot(wq[6], xs[6]) + dot(wq[7], xs[7]);
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
