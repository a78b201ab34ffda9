// What both attention kernels share: their parameters and the keys a query row sees.
//
// q, o: (seqs, tokens, heads * head_dim). Query head h reads KV head h / (heads / kv_heads).
// k, v: rows of kv_heads * head_dim, kv_rows of them per sequence: a KV cache
// (slots, capacity, ...) read at each sequence's slot when by_slot is 1, or a step's own
// activations (seqs, kv_rows, ...) read at the sequence's index otherwise.
// Query t of sequence s (t < len; padding rows get zeros) sees keys [first, n):
//   n = keys                      when keys > 0 (cross-attention: an explicit key count)
//   n = base + t + 1              when causal (base = pos over a cache, 0 otherwise)
//   n = base + len                otherwise (the sequence's own keys; padding masked)
//   first = n - window            with a sliding window, else 0.
// splits > 0 asks attention_rows.wgsl for partials over that many key ranges of each row
// (see there); the other kernels take 0.

struct Params {
    seqs: u32,
    tokens: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    kv_rows: u32,
    by_slot: u32,
    causal: u32,
    window: u32,
    keys: u32,
    scale: f32,
    splits: u32,
}

// Where query row t of sequence sq (index s) reads keys: the first row of its sequence's
// keys in k and v, and the range [first, n) it sees there.
struct Keys {
    row0: u32,
    first: u32,
    n: u32,
}

fn keys_of(p: Params, sq: Seq, s: u32, t: u32) -> Keys {
    var base = 0u;
    var kv_seq = s;
    if (p.by_slot != 0u) {
        base = sq.pos;
        kv_seq = sq.slot;
    }
    var n = base + sq.len;
    if (p.keys > 0u) {
        n = p.keys;
    } else if (p.causal != 0u) {
        n = base + t + 1u;
    }
    n = min(n, p.kv_rows);
    var first = 0u;
    if (p.window > 0u && n > p.window) {
        first = n - p.window;
    }
    return Keys(kv_seq * p.kv_rows, first, n);
}
