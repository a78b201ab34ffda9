// A read-only pass over memory: each thread sums every `stride`-th vec4 of src from its
// own index, the workgroup adds its threads' sums, and one float per workgroup is written.
// Beside the copies, it bounds bandwidth where reads are cheaper than writes: the bytes
// moved are the reads alone.

struct Params {
    count: u32,
    stride: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let first = gid.x + gid.y * nwg.x * WG;
    var acc = vec4<f32>(0.0);
    for (var i = first; i < p.count; i = i + p.stride) {
        acc = acc + src[i];
    }
    let total = reduce_sum(acc.x + acc.y + acc.z + acc.w, lid.x);
    if (lid.x == 0u) {
        dst[wid.x + wid.y * nwg.x] = total;
    }
}
