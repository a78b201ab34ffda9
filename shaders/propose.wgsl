// A vocabulary shard's sampling candidates, so that the host can merge the shards' and the
// sampler (sample.wgsl) choose from them exactly what it would choose from whole logits.
//
// One workgroup per sequence s of the step (skipped when it sits the step out; it then
// proposes nothing) reads its shard's logits row (vocab values, the ids first ..
// first + vocab of a vocabulary of `total`) and:
//  1. marks the step's ids seen in its slot's flags (slots, total): the prompt in prefill,
//     the token sampled last in decode; the sampler marks the same flags;
//  2. greedy: proposes its best penalised logit (lowest id on ties);
//     otherwise: every token whose scaled logit reaches its `want`-th largest (ties kept),
//     found by bisection over the bits of the order-preserving key (sample_key.wgsl's
//     threshold, as the sampler finds top-k). `want` is top_k plus a margin, so that
//     division rounding on another adapter cannot move a token of the global top-k out of
//     the shard's proposals.
//  3. writes out[s] = [n, id_0, bits_0, ..., id_{n-1}, bits_{n-1}]: n <= cap candidates,
//     global ids and their raw logits' bits, in no particular order (the host places each
//     by its id).
// reduce_sum comes from reduce.wgsl (or reduce_subgroup.wgsl), Seq from seq.wgsl,
// Sampling, key, penalise, best_of and threshold from sample_key.wgsl.

struct Params {
    seqs: u32,
    vocab: u32,
    first: u32,
    total: u32,
    tokens: u32,
    slots: u32,
    cap: u32,
    margin: u32,
    // 0: ids (S, tokens) from the host; 1: the token of each sequence's slot (slots, 1).
    marks: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> sampling: array<Sampling>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> seen: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;

var<workgroup> count: atomic<u32>;

// This workgroup's sequence: its parameters, and where its logits and flags start.
struct Row {
    sp: Sampling,
    lbase: u32,
    sbase: u32,
}

fn penalised(r: Row, i: u32) -> f32 {
    return penalise(logits[r.lbase + i], seen[r.sbase + p.first + i] != 0u, r.sp.penalty);
}

// Scaled logit of the shard's token i (penalty and temperature applied).
fn scaled(r: Row, i: u32) -> f32 {
    return penalised(r, i) / r.sp.temperature;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.x;
    let s = wid.x;
    if (s >= p.seqs) {
        return;
    }
    let obase = s * (1u + 2u * p.cap);
    let sq = seqs[s];
    if (sq.len == 0u || sq.slot >= p.slots) {
        if (tid == 0u) {
            out[obase] = 0u;
        }
        return;
    }
    let sp = sampling[s];
    let lbase = s * p.vocab;
    let sbase = sq.slot * p.total;
    if (p.marks == 0u) {
        let n_ids = min(sq.len, p.tokens);
        for (var i = tid; i < n_ids; i = i + WG) {
            seen[sbase + ids[s * p.tokens + i]] = 1u;
        }
    } else if (tid == 0u) {
        seen[sbase + ids[sq.slot]] = 1u;
    }
    if (tid == 0u) {
        atomicStore(&count, 0u);
    }
    storageBarrier();
    workgroupBarrier();
    let r = Row(sp, lbase, sbase);

    if (sp.greedy != 0u) {
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
        if (tid == 0u) {
            let b = best_i[0];
            out[obase] = 1u;
            out[obase + 1u] = p.first + b;
            out[obase + 2u] = bitcast<u32>(logits[lbase + b]);
        }
        return;
    }

    let want = min(sp.top_k + p.margin, p.cap);
    var thr = 0u;
    if (want < p.vocab) {
        thr = threshold(r, 0u, 0.0, f32(want), false, tid);
    }
    for (var i = tid; i < p.vocab; i = i + WG) {
        let l = scaled(r, i);
        if (key(l) >= thr) {
            let c = atomicAdd(&count, 1u);
            if (c < p.cap) {
                out[obase + 1u + 2u * c] = p.first + i;
                out[obase + 2u + 2u * c] = bitcast<u32>(logits[lbase + i]);
            }
        }
    }
    workgroupBarrier();
    if (tid == 0u) {
        out[obase] = min(atomicLoad(&count), p.cap);
    }
}
