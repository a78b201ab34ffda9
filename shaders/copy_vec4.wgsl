// The copy of `copy.wgsl` with 16-byte loads and stores: dst[i] = src[offset + i] over
// vec4s. Which of the two moves more bytes per second depends on the adapter; the
// benchmarks' bandwidth roofline is the faster.

struct Params {
    count: u32,
    offset: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.count) {
        dst[i] = src[p.offset + i];
    }
}
