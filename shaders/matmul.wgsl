// Tiled GEMM against an HF-layout weight: y[m, n_off + n] = epilogue(sum_k x[m, k] * w[n, k]).
//
// x: (M, K) f32 activations. w: (N, K) weight rows of this part of the tensor (a weight larger
// than one binding is split by rows into parts, one dispatch each; n_off places the part).
// y: (M, ldy) f32. Each workgroup of TX*TY threads computes a BM x BN = (TY*R) x (TX*R) tile,
// staging BK-wide slices of x and w in workgroup memory. Edges are masked, so M, N and K need
// not be multiples of anything.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

override TX: u32 = 16u;
override TY: u32 = 16u;
override BK: u32 = 16u;
// Outputs per thread in each dimension (the host's GEMM_R).
const R: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

var<workgroup> xs: array<f32, BK * TY * R>;
var<workgroup> ws: array<f32, BK * TX * R>;

@compute @workgroup_size(TX, TY, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let bm = TY * R;
    let bn = TX * R;
    let m0 = wid.y * bm;
    let n0 = wid.x * bn;
    let tid = lid.y * TX + lid.x;
    let threads = TX * TY;

    var acc: array<f32, R * R>;
    for (var i = 0u; i < R * R; i = i + 1u) {
        acc[i] = 0.0;
    }

    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        // Stage x[m0.., k0..] and w[n0.., k0..], transposed so the inner loop reads rows.
        for (var e = tid; e < bm * BK; e = e + threads) {
            let row = e / BK;
            let kk = e % BK;
            let m = m0 + row;
            let k = k0 + kk;
            var v = 0.0;
            if (m < p.m && k < p.k) {
                v = x[m * p.k + k];
            }
            xs[kk * bm + row] = v;
        }
        for (var e = tid; e < bn * BK; e = e + threads) {
            let row = e / BK;
            let kk = e % BK;
            let n = n0 + row;
            let k = k0 + kk;
            var v = 0.0;
            if (n < p.n && k < p.k) {
                v = load_w(n * p.k + k);
            }
            ws[kk * bn + row] = v;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var a: array<f32, R>;
            var b: array<f32, R>;
            for (var i = 0u; i < R; i = i + 1u) {
                a[i] = xs[kk * bm + lid.y + i * TY];
                b[i] = ws[kk * bn + lid.x + i * TX];
            }
            for (var i = 0u; i < R; i = i + 1u) {
                for (var j = 0u; j < R; j = j + 1u) {
                    acc[i * R + j] = fma(a[i], b[j], acc[i * R + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < R; i = i + 1u) {
        let m = m0 + lid.y + i * TY;
        for (var j = 0u; j < R; j = j + 1u) {
            let n = n0 + lid.x + j * TX;
            if (m < p.m && n < p.n) {
                let col = p.n_off + n;
                let idx = m * p.ldy + col;
                y[idx] = epilogue(acc[i * R + j], col, idx);
            }
        }
    }
}
