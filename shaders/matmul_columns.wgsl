// Tiled GEMM for CPU adapters (lavapipe, llvmpipe GL, SwiftShader):
//     y[m, n_off + n] = epilogue(sum_k x[m, k] * w[n, k]).
//
// There the lanes of a workgroup are the lanes of a SIMD register, and a read whose address
// differs from lane to lane is a loop over the lanes that costs about as much for a vec4 as
// for a scalar. So this kernel stages x and w with k contiguous and reads both as vec4s
// along k: per 4 k-steps a thread reads 16 rows and R columns (16 + R vec4s) for 16 x R x 4
// multiply-adds, where matmul.wgsl (for GPUs) reads scalars. tile_rows reads the rows: each
// thread its own, or once per subgroup and broadcast (tile_rows_*.wgsl).
//
// Each workgroup of TX*TY threads computes a (TY*16) x (TX*R) tile; thread (tx, ty) owns
// rows ty + i*TY and columns tx + j*TX. Rows and columns past the edges read the last one
// and are not stored; k is zero-padded. So M, N and K need not be multiples of anything.
// Outputs are kept in two arrays of 8 rows: one of 16 rows, or 8 columns a thread, spills
// on lavapipe and runs 3-4x slower.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

override TX: u32 = 16u;
// Rows of threads (the host's GEMM_COLUMNS_TY): a const, since tile_rows reads xs, whose
// size it sets.
const TY: u32 = 8u;
// Columns of outputs per thread (GEMM_COLUMNS_TILE_N = TX * R).
const R: u32 = 4u;
// k-steps staged at a time, in vec4s.
const BK4: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// xs[row * BK4 + q] = x[m0 + row, k0 + 4q .. 4q + 4]; ws likewise for w's rows.
var<workgroup> xs: array<vec4<f32>, TY * 16u * BK4>;
var<workgroup> ws: array<vec4<f32>, TX * R * BK4>;

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Before any branch: tile_lane counts the subgroup's invocations.
    let lane = tile_lane();
    let bm = TY * 16u;
    let bn = TX * R;
    let m0 = wid.y * bm;
    let n0 = wid.x * bn;
    let tid = lid.y * TX + lid.x;
    let threads = TX * TY;
    // Rows and columns past the edges read the last one and are not stored.
    let last_m = p.m - 1u;
    let last_n = p.n - 1u;

    // Rows ty + i * TY for i < 8 in acc0, i >= 8 in acc1.
    var acc0: array<f32, 8u * R>;
    var acc1: array<f32, 8u * R>;
    for (var i = 0u; i < 8u * R; i = i + 1u) {
        acc0[i] = 0.0;
        acc1[i] = 0.0;
    }

    for (var k0 = 0u; k0 < p.k; k0 = k0 + 4u * BK4) {
        for (var e = tid; e < bm * BK4; e = e + threads) {
            xs[e] = x4(min(m0 + e / BK4, last_m), k0 + (e % BK4) * 4u);
        }
        for (var e = tid; e < bn * BK4; e = e + threads) {
            ws[e] = w4(min(n0 + e / BK4, last_n), k0 + (e % BK4) * 4u);
        }
        workgroupBarrier();

        for (var q = 0u; q < BK4; q = q + 1u) {
            let a0 = tile_rows(q, lid.y, lane);
            let a1 = tile_rows(q, lid.y + 8u * TY, lane);
            var b: array<vec4<f32>, R>;
            for (var i = 0u; i < R; i = i + 1u) {
                b[i] = ws[(lid.x + i * TX) * BK4 + q];
            }
            for (var i = 0u; i < 8u; i = i + 1u) {
                for (var j = 0u; j < R; j = j + 1u) {
                    acc0[i * R + j] = acc0[i * R + j] + dot(a0[i], b[j]);
                    acc1[i * R + j] = acc1[i * R + j] + dot(a1[i], b[j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 16u; i = i + 1u) {
        let m = m0 + lid.y + i * TY;
        for (var j = 0u; j < R; j = j + 1u) {
            let n = n0 + lid.x + j * TX;
            if (m < p.m && n < p.n) {
                let col = p.n_off + n;
                let idx = m * p.ldy + col;
                var v = acc0[(i % 8u) * R + j];
                if (i >= 8u) {
                    v = acc1[(i % 8u) * R + j];
                }
                y[idx] = epilogue(v, col, idx);
            }
        }
    }
}
