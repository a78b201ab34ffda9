// The vocabulary shards' gathered candidates spread back into whole logits rows: each
// candidate's raw logit at its id, -inf everywhere else. The sampler (sample.wgsl) then
// chooses from them exactly as from the whole logits: its top-k keeps only candidates, and
// the tokens it would not keep add exact zeros to its sums either way.
//
// One workgroup per sequence s: in[s] holds `parts` proposals of 1 + 2 cap words each
// (propose.wgsl's [n, id, bits, ...]); out[s] is a row of `vocab` logits.

struct Params {
    seqs: u32,
    vocab: u32,
    parts: u32,
    cap: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cands: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.x;
    let s = wid.x;
    if (s >= p.seqs) {
        return;
    }
    let obase = s * p.vocab;
    let none = bitcast<f32>(0xff800000u);
    for (var i = tid; i < p.vocab; i = i + WG) {
        out[obase + i] = none;
    }
    storageBarrier();
    workgroupBarrier();
    let per = 1u + 2u * p.cap;
    for (var part = 0u; part < p.parts; part = part + 1u) {
        let base = (s * p.parts + part) * per;
        let n = min(cands[base], p.cap);
        for (var j = tid; j < n; j = j + WG) {
            let id = cands[base + 1u + 2u * j];
            if (id < p.vocab) {
                out[obase + id] = bitcast<f32>(cands[base + 2u + 2u * j]);
            }
        }
    }
}
