// The last token row of each sequence: y (seqs, 1, width) = x[s, len - 1, :] of
// x (seqs, tokens, width). A sequence sitting the step out (len 0) gets zeros when a later
// one runs; after the last running one no thread is dispatched, and its row is padding
// (the executor reads padding back as zeros).
// One thread per output element.

struct Params {
    seqs: u32,
    tokens: u32,
    width: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.seqs * p.width) {
        return;
    }
    let s = i / p.width;
    let c = i % p.width;
    let len = min(seqs[s].len, p.tokens);
    if (len == 0u) {
        y[i] = 0.0;
        return;
    }
    y[i] = x[(s * p.tokens + len - 1u) * p.width + c];
}
