// GEMV on block-quantized weights with 8-bit activations, as llama.cpp's MMVQ computes it:
//   y[m, n_off + n] = epilogue(sum over 32-blocks b of  w_b . x_b)
//
// Each workgroup first quantizes its MR rows of x, CHUNK elements at a time, into workgroup
// memory. Per 32-element block, the element of largest magnitude is kept aside in f32 (the
// massive activations some layers have would otherwise set the scale and round the rest of
// the block away); the others become int8 quants qx = round(x / dx), with a scale dx per
// 16-element half (its other elements' max|x| / 127), and dx times the sum of each half's
// quants. Each of the workgroup's ROWS columns then has
// LANES lanes stride through the chunk's blocks: a lane decodes one weight block once
// (qblock_w: a byte per quant and the affine (a, c) of each half) and, for every row, dots it
// with the quants four at a time with dot4I8Packed (naga maps it to the adapter's integer dot
// product or to a polyfill), then adds the kept element times its weight. Per half h:
// sum_j (a q_j + c) x_j = a dx (q . qx) + c dx sum(qx), plus (a q_o + c) x_o for the kept one.
// Partial sums meet in lane_sum (subgroup shuffles or workgroup memory). K is a whole number
// of 32-element blocks (every block format's rows are).

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
// Elements of k quantized per pass, and their blocks: MR * CB * 56 bytes of workgroup memory
// (7 KB; with lanes_shared's 8 KB of partial sums, under WebGPU's 16 KB).
const CHUNK: u32 = 512u;
const CB: u32 = CHUNK / 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// Block (r, b) of the chunk: its quants (two words of vec4: elements 0..16, 16..32), each
// half's dx and dx * sum of its quants (dx0, dx1, s0, s1), the kept element and its index.
var<workgroup> xq: array<vec4<u32>, MR * CB * 2u>;
var<workgroup> xs: array<vec4<f32>, MR * CB>;
var<workgroup> xk: array<f32, MR * CB>;
var<workgroup> xo: array<u32, MR * CB>;

// Quantize 32 elements of x from `at` into chunk block i.
fn quantize(at: u32, i: u32) {
    var top = 0u;
    var amax = abs(x[at]);
    for (var j = 1u; j < 32u; j = j + 1u) {
        let a = abs(x[at + j]);
        if (a > amax) {
            amax = a;
            top = j;
        }
    }
    var rest = vec2<f32>(0.0);
    for (var j = 0u; j < 32u; j = j + 1u) {
        let a = select(abs(x[at + j]), 0.0, j == top);
        rest[j >> 4u] = max(rest[j >> 4u], a);
    }
    let dx = rest / 127.0;
    let inv = select(vec2<f32>(0.0), 1.0 / dx, dx > vec2<f32>(0.0));
    var sums = vec2<i32>(0);
    var words: array<vec4<u32>, 2>;
    for (var h = 0u; h < 2u; h = h + 1u) {
        var half_words: vec4<u32>;
        for (var v = 0u; v < 4u; v = v + 1u) {
            let j = h * 16u + v * 4u;
            let o = at + j;
            let keep = vec4<u32>(j, j + 1u, j + 2u, j + 3u) != vec4<u32>(top);
            let xv = select(vec4<f32>(0.0), vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]), keep);
            let q = vec4<i32>(round(xv * inv[h]));
            sums[h] = sums[h] + q.x + q.y + q.z + q.w;
            half_words[v] = pack4xI8(q);
        }
        words[h] = half_words;
    }
    xq[i * 2u] = words[0];
    xq[i * 2u + 1u] = words[1];
    xs[i] = vec4<f32>(dx, dx * vec2<f32>(sums));
    xk[i] = x[at + top];
    xo[i] = top;
}

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
    @builtin(local_invocation_index) tid: u32,
) {
    let lane = lid.x;
    let n = (wid.x + wid.y * nwg.x) * ROWS + lid.y;
    let m0 = wid.z * MR;
    let rows = min(MR, p.m - m0);
    var acc: array<f32, MR>;
    for (var r = 0u; r < MR; r = r + 1u) {
        acc[r] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 = k0 + CHUNK) {
        let nb = min(CB, (p.k - k0) / 32u);
        workgroupBarrier();
        for (var t = tid; t < MR * CB; t = t + LANES * ROWS) {
            let r = t / CB;
            let b = t % CB;
            if (r < rows && b < nb) {
                quantize((m0 + r) * p.k + k0 + b * 32u, t);
            }
        }
        workgroupBarrier();
        if (n < p.n) {
            let s0 = (n * p.k + k0) / 32u;
            for (var b = lane; b < nb; b = b + LANES) {
                let q = qblock_w(s0 + b);
                for (var r = 0u; r < rows; r = r + 1u) {
                    let i = r * CB + b;
                    let d = xs[i];
                    let lo = f32(idot(q.lo, xq[i * 2u]));
                    let hi = f32(idot(q.hi, xq[i * 2u + 1u]));
                    acc[r] = acc[r] + q.ac.x * d.x * lo + q.ac.y * d.y * hi + q.ac.z * d.z
                        + q.ac.w * d.w + weight_at(q, xo[i]) * xk[i];
                }
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
