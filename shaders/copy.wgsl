// Copies. `main`: dst[i] = src[offset + i], a plain copy (taking rows of a tensor, and
// measuring an adapter's bandwidth). `kv_write`: append (tokens, width) rows of src at row
// step.pos of a KV cache (capacity, width).

struct Params {
    count: u32,
    width: u32,
    capacity: u32,
    offset: u32,
}

struct Step {
    pos: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.count) {
        dst[i] = src[p.offset + i];
    }
}

@compute @workgroup_size(WG, 1, 1)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let row = step.pos + i / p.width;
    if (i < p.count && row < p.capacity) {
        dst[step.pos * p.width + i] = src[i];
    }
}
