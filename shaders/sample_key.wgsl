// What the sampler and the vocabulary shards' candidate proposals share: one sequence's
// sampling parameters (as the host writes them each step), the order-preserving key of an
// f32, the repetition penalty, the workgroup's argmax (WG threads), and the search for a
// threshold key (top-k, top-p). The including kernel defines `Row` (a sequence's row of
// logits) and `scaled(r: Row, i: u32) -> f32` (token i's logit after the penalty and the
// temperature), and includes reduce.wgsl or reduce_subgroup.wgsl.

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

// The thresholds (top-k, top-p) are the largest key t at which a count or a mass of the
// tokens with key >= t still reaches a bound. Both fall as t rises, so t is found bit by bit
// from the top, two bits a pass over the vocabulary: a pass measures the three candidates
// the next two bits could make at once, reduces them together (reduce_sum4), and keeps the
// largest that passes. Each candidate's sum runs over the same tokens in the same order as a
// pass for it alone would, so the thresholds are those of a one-bit bisection, with half the
// passes and half the reductions: on CPU adapters a pass costs its loads and its exp per
// token, and a reduction its barriers.

// For the three candidates t | j << shift (j = 1, 2, 3): how many tokens have a scaled logit
// with key >= the candidate (`mass` false), or their weight exp(l - m) (`mass` true), counting
// only tokens with key >= floor too; then the largest j (0 if none) whose total reaches
// `bound`.
fn next_digit(r: Row, t: u32, shift: u32, floor: u32, m: f32, bound: f32, mass: bool, tid: u32) -> u32 {
    let cand = max(vec3<u32>(t) | (vec3<u32>(1u, 2u, 3u) << vec3<u32>(shift)), vec3<u32>(floor));
    var sums = vec3<f32>(0.0);
    for (var i = tid; i < p.vocab; i = i + WG) {
        let l = scaled(r, i);
        var w = 1.0;
        if (mass) {
            w = exp(l - m);
        }
        sums = sums + select(vec3<f32>(0.0), vec3<f32>(w), vec3<u32>(key(l)) >= cand);
    }
    let total = reduce_sum4(vec4<f32>(sums, 0.0), tid);
    return select(0u, 1u, total.x >= bound) + select(0u, 1u, total.y >= bound)
        + select(0u, 1u, total.z >= bound);
}

// The largest key t with the count (mass false) or the mass (mass true) of the tokens with
// key >= max(t, floor) at least `bound`.
fn threshold(r: Row, floor: u32, m: f32, bound: f32, mass: bool, tid: u32) -> u32 {
    var t = 0u;
    for (var shift = 30i; shift >= 0; shift = shift - 2) {
        let at = u32(shift);
        t = t | (next_digit(r, t, at, floor, m, bound, mass, tid) << at);
    }
    return t;
}
