// GEMM without workgroup memory or arrays, for JITs that keep neither in registers
// (SwiftShader's Subzero, the browser's WebGPU on CPUs):
//     y[m, n_off + n] = epilogue(sum_k x[m, k] * w[n, k]).
//
// Each thread computes an 8 x 4 block of outputs in eight vec4 accumulators, reading its 8
// rows of x and 4 rows of w straight from storage as vec4s along k (gemm_k4.wgsl), the dot
// products of a k-step being each x vector times the matrix of the 4 weight vectors. No thread
// waits on another, and nothing is indexed at run time, so the whole tile stays in
// registers where matmul_columns.wgsl's staged tiles and accumulator arrays go through
// memory. Rows and columns past the edges read the last one and are not stored.
//
// A workgroup of TX x TY threads covers (TY * 8) rows x (TX * 4) columns; thread (tx, ty)
// owns rows m0 + ty + i * TY (i < 8) and columns n0 + tx + j * TX (j < 4).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

override TX: u32 = 16u;
override TY: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

fn store(m: u32, n: u32, v: f32) {
    if (m < p.m && n < p.n) {
        let col = p.n_off + n;
        let idx = m * p.ldy + col;
        y[idx] = epilogue(v, col, idx);
    }
}

fn store_row(m: u32, n: vec4<u32>, v: vec4<f32>) {
    store(m, n.x, v.x);
    store(m, n.y, v.y);
    store(m, n.z, v.z);
    store(m, n.w, v.w);
}

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = wid.y * TY * 8u + lid.y + vec4<u32>(0u, 1u, 2u, 3u) * TY;
    let m2 = m + 4u * TY;
    let n = wid.x * TX * 4u + lid.x + vec4<u32>(0u, 1u, 2u, 3u) * TX;
    // Reads clamp to the last row and column; their results are not stored.
    let rm = min(m, vec4<u32>(p.m - 1u));
    let rm2 = min(m2, vec4<u32>(p.m - 1u));
    let rn = min(n, vec4<u32>(p.n - 1u));
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k = k + 4u) {
        // Column j of b is weight row rn[j]: a * b is (dot(a, b[0]), ..., dot(a, b[3])).
        let b = mat4x4<f32>(w4(rn.x, k), w4(rn.y, k), w4(rn.z, k), w4(rn.w, k));
        c0 = c0 + x4(rm.x, k) * b;
        c1 = c1 + x4(rm.y, k) * b;
        c2 = c2 + x4(rm.z, k) * b;
        c3 = c3 + x4(rm.w, k) * b;
        c4 = c4 + x4(rm2.x, k) * b;
        c5 = c5 + x4(rm2.y, k) * b;
        c6 = c6 + x4(rm2.z, k) * b;
        c7 = c7 + x4(rm2.w, k) * b;
    }
    store_row(m.x, n, c0);
    store_row(m.y, n, c1);
    store_row(m.z, n, c2);
    store_row(m.w, n, c3);
    store_row(m2.x, n, c4);
    store_row(m2.y, n, c5);
    store_row(m2.z, n, c6);
    store_row(m2.w, n, c7);
}
