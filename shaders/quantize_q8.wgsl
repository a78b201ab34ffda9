// Activations quantized to 8 bits for gemv_q8.wgsl, once per step: one thread per
// 32-element block of x (m rows of k; k a whole number of blocks), as llama.cpp quantizes
// them before its MMVQ kernels. Per block, the element of largest magnitude is kept aside
// in f32 (the massive activations some layers have would otherwise set the scale and round
// the rest of the block away); the others become int8 quants qx = round(x / dx), with a
// scale dx per 16-element half (its other elements' max|x| / 127), and dx times the sum of
// each half's quants (struct QX, q8_block.wgsl). p.m is the rows the destination holds: the
// grid may cover more.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
    w_meta: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> qx: array<QX>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.m * (p.k / 32u)) {
        return;
    }
    // Block b of row r starts at r * k + b * 32 = i * 32.
    let at = i * 32u;
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
    qx[i] = QX(words[0], words[1], vec4<f32>(dx, dx * vec2<f32>(sums)), x[at + top], top, 0u, 0u);
}
