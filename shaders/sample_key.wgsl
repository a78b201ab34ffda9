// What the sampler and the vocabulary shards' candidate proposals share: one sequence's
// sampling parameters (as the host writes them each step), the order-preserving key of an
// f32, the repetition penalty, and the workgroup's argmax (WG threads).

struct Sampling {
    rand: u32,
    top_k: u32,
    greedy: u32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    pad: u32,
}

// An order-preserving map of f32 onto u32: a < b  <=>  key(a) < key(b).
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Logit l after the repetition penalty r of a token already seen (l > 0 ? l / r : l * r).
fn penalise(l: f32, was_seen: bool, r: f32) -> f32 {
    if (r != 1.0 && was_seen) {
        return select(l * r, l / r, l > 0.0);
    }
    return l;
}

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// The workgroup's largest v and its i (the lowest i on ties) from each thread's (v, i),
// left in best_v[0] and best_i[0]. Every thread of the workgroup must call it.
fn best_of(v: f32, i: u32, tid: u32) {
    best_v[tid] = v;
    best_i[tid] = i;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half >> 1u) {
        if (tid < half) {
            let ov = best_v[tid + half];
            let oi = best_i[tid + half];
            if (ov > best_v[tid] || (ov == best_v[tid] && oi < best_i[tid])) {
                best_v[tid] = ov;
                best_i[tid] = oi;
            }
        }
        workgroupBarrier();
    }
}
