// Standalone elementwise op: y[i] = epilogue(a[i]) over a (rows, cols) tensor. Used for the
// elementwise ops the scheduler could not fuse into a producer. bias is indexed by column.

struct Params {
    count: u32,
    cols: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.count) {
        y[i] = epilogue(a[i], i % p.cols, i);
    }
}
