// Append a step's keys or values to a KV cache: row t < len of sequence s, src (seqs, tokens,
// width), goes to row pos + t of the sequence's slot in dst (slots, capacity, width).
// Padding rows are not written. One thread per element.

struct Params {
    seqs: u32,
    tokens: u32,
    width: u32,
    capacity: u32,
    slots: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.seqs * p.tokens * p.width) {
        return;
    }
    let r = i / p.width;
    let c = i % p.width;
    let s = r / p.tokens;
    let t = r % p.tokens;
    let q = seqs[s];
    if (t >= q.len || q.slot >= p.slots || q.pos + t >= p.capacity) {
        return;
    }
    dst[(q.slot * p.capacity + q.pos + t) * p.width + c] = src[i];
}
