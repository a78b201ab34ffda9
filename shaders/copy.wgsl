// A plain copy: dst[i] = src[offset + i]. It measures an adapter's bandwidth (read + write),
// the roofline the benchmarks put next to every memory-bound kernel.

struct Params {
    count: u32,
    offset: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.count) {
        dst[i] = src[p.offset + i];
    }
}
