// Token sampling on the GPU, so that only the chosen token ids ever leave it.
//
// One workgroup per sequence s of the step (skipped when it sits the step out) reads its
// logits row (vocab values) and:
//  1. marks its input ids as seen (the prompt, in prefill) in its slot's flags;
//  2. applies the repetition penalty to seen tokens (l > 0 ? l / r : l * r);
//  3. greedy (temperature 0 or top_k 1): takes the argmax, lowest id on ties;
//     otherwise scales by 1/temperature and keeps the tokens at or above a threshold that is
//     the tightest of top-k (the k-th largest value), top-p (the smallest set, largest first,
//     whose probability reaches top_p, among the top-k) and min-p (probability at least
//     min_p times the largest); thresholds are found exactly by bisection over the bits
//     of an order-preserving u32 key of each value, two bits a pass;
//  4. draws u in [0, 1) from its random bits and picks, in id order, the first kept
//     token whose cumulative weight exp(l - max) reaches u times the kept total;
//  5. writes the token to its slot and marks it seen.
// Each sequence has its own parameters (sampling[s]). reduce_sum comes from reduce.wgsl (or
// reduce_subgroup.wgsl where the adapter has subgroups), the WG workgroup size from the
// override below, Seq from seq.wgsl, Sampling, key, penalise, best_of and threshold from
// sample_key.wgsl.

struct Params {
    seqs: u32,
    vocab: u32,
    tokens: u32,
    slots: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> sampling: array<Sampling>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> seen: array<u32>;
@group(0) @binding(6) var<storage, read_write> token: array<u32>;

// This workgroup's sequence: its parameters, and where its logits and flags start.
struct Row {
    sp: Sampling,
    lbase: u32,
    sbase: u32,
}

var<workgroup> prefix: array<f32, WG>;

fn penalised(r: Row, i: u32) -> f32 {
    return penalise(logits[r.lbase + i], seen[r.sbase + i] != 0u, r.sp.penalty);
}

// Scaled logit of token i (temperature applied).
fn scaled(r: Row, i: u32) -> f32 {
    return penalised(r, i) / r.sp.temperature;
}

// The weight exp(l - m) of tokens with key >= t.
fn mass_at_least(r: Row, t: u32, m: f32, tid: u32) -> f32 {
    var total = 0.0;
    for (var i = tid; i < p.vocab; i = i + WG) {
        let l = scaled(r, i);
        total = total + select(0.0, exp(l - m), key(l) >= t);
    }
    return reduce_sum(total, tid);
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.x;
    let s = wid.x;
    if (s >= p.seqs) {
        return;
    }
    let sq = seqs[s];
    if (sq.len == 0u || sq.slot >= p.slots) {
        return;
    }
    let r = Row(sampling[s], s * p.vocab, sq.slot * p.vocab);
    let step = r.sp;
    let n_ids = min(sq.len, p.tokens);
    for (var i = tid; i < n_ids; i = i + WG) {
        seen[r.sbase + ids[s * p.tokens + i]] = 1u;
    }
    storageBarrier();
    workgroupBarrier();

    // Argmax of the penalised logits (temperature does not change the order).
    var bv = -3.0e38;
    var bi = 0u;
    for (var i = tid; i < p.vocab; i = i + WG) {
        let l = penalised(r, i);
        if (l > bv) {
            bv = l;
            bi = i;
        }
    }
    best_of(bv, bi, tid);
    var chosen = best_i[0];

    if (step.greedy == 0u) {
        let m = best_v[0] / step.temperature;
        var thr = 0u;
        if (step.top_k > 0u && step.top_k < p.vocab) {
            thr = threshold(r, 0u, m, f32(step.top_k), false, tid);
        }
        if (step.top_p < 1.0) {
            let need = step.top_p * mass_at_least(r, thr, m, tid);
            thr = max(thr, threshold(r, thr, m, need, true, tid));
        }
        if (step.min_p > 0.0) {
            thr = max(thr, key(m + log(step.min_p)));
        }

        // Cumulative weights over contiguous chunks, one per thread, in id order.
        let chunk = (p.vocab + WG - 1u) / WG;
        let lo = tid * chunk;
        let hi = min(lo + chunk, p.vocab);
        var local = 0.0;
        for (var i = lo; i < hi; i = i + 1u) {
            let l = scaled(r, i);
            local = local + select(0.0, exp(l - m), key(l) >= thr);
        }
        prefix[tid] = local;
        workgroupBarrier();
        // Inclusive scan (Hillis-Steele).
        for (var off = 1u; off < WG; off = off << 1u) {
            var add = 0.0;
            if (tid >= off) {
                add = prefix[tid - off];
            }
            workgroupBarrier();
            prefix[tid] = prefix[tid] + add;
            workgroupBarrier();
        }
        let total = prefix[WG - 1u];
        let u = f32(step.rand >> 8u) / 16777216.0;
        let goal = u * total;
        // The inclusive scan's previous entry, so that the threads' intervals
        // [before, prefix[tid]) meet exactly.
        var before = 0.0;
        if (tid > 0u) {
            before = prefix[tid - 1u];
        }
        // The one thread whose chunk holds the goal walks it. Should rounding leave its own
        // running sum short of the goal, it takes the chunk's last kept token (never an
        // excluded one); if rounding leaves the goal beyond the total, the greedy choice
        // stands.
        if (goal >= before && goal < prefix[tid] && local > 0.0) {
            var acc = before;
            var pick = lo;
            for (var i = lo; i < hi; i = i + 1u) {
                let l = scaled(r, i);
                if (key(l) >= thr) {
                    pick = i;
                    acc = acc + exp(l - m);
                    if (acc > goal) {
                        break;
                    }
                }
            }
            best_i[0] = pick;
        }
        workgroupBarrier();
        chosen = best_i[0];
    }
    if (tid == 0u) {
        token[sq.slot] = chosen;
        seen[r.sbase + chosen] = 1u;
    }
}
