// One row per sequence from its token rows, x (seqs, tokens, width) -> y (seqs, 1, width):
//   MODE 0: the last token, y[s, 0, c] = x[s, len - 1, c];
//   MODE 1: the mean under the padding mask, y[s, 0, c] = mean over t < len of x[s, t, c].
// A sequence sitting the step out (len 0) gets zeros when a later one runs; after the last
// running one no thread is dispatched, and its row is padding (read back as zeros).
// One thread per output element.

struct Params {
    seqs: u32,
    tokens: u32,
    width: u32,
}

override WG: u32 = 256u;
override MODE: u32 = 0u;

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
    if (MODE == 0u) {
        y[i] = x[(s * p.tokens + len - 1u) * p.width + c];
        return;
    }
    var sum = 0.0;
    for (var t = 0u; t < len; t = t + 1u) {
        sum = sum + x[(s * p.tokens + t) * p.width + c];
    }
    y[i] = sum / f32(len);
}
