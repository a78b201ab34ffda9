// GEMV for one row of activations (decode): y[n_off + n] = epilogue(sum_k w[n, k] * x[k]).
//
// Each workgroup computes ROWS output rows with LANES threads per row. A row's lanes stride
// through k four elements at a time (vector loads of the weight), then reduce their partial
// sums in workgroup memory. LANES must be a power of two. Rows are laid out over a 2-D grid
// so that N may exceed the 65535 workgroups one dimension allows.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_off: u32,
    ldy: u32,
}

override LANES: u32 = 32u;
override ROWS: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, LANES * ROWS>;

@compute @workgroup_size(LANES, ROWS, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let lane = lid.x;
    let n = (wid.x + wid.y * nwg.x) * ROWS + lid.y;
    var acc = 0.0;
    if (n < p.n) {
        let base = n * p.k;
        let k4 = p.k & ~3u;
        for (var k = lane * 4u; k < k4; k = k + LANES * 4u) {
            let xv = vec4<f32>(x[k], x[k + 1u], x[k + 2u], x[k + 3u]);
            acc = acc + dot(load4_w(base + k), xv);
        }
        for (var k = k4 + lane; k < p.k; k = k + LANES) {
            acc = fma(load_w(base + k), x[k], acc);
        }
    }
    let slot = lid.y * LANES;
    partial[slot + lane] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            partial[slot + lane] = partial[slot + lane] + partial[slot + lane + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && n < p.n) {
        let col = p.n_off + n;
        y[col] = epilogue(partial[slot], col, col);
    }
}
