// Causal attention with grouped-query heads, reading the KV cache; serves prefill (many
// queries) and decode (one query) alike.
//
// q, o: (tokens, heads * head_dim); k, v: the cache, (capacity, kv_heads * head_dim), already
// holding rows [0, step.pos + tokens). Query t sits at position step.pos + t and, when causal,
// attends to keys 0..=step.pos + t. Query head h reads KV head h / (heads / kv_heads).
//
// One workgroup per (token, head). Keys are visited in blocks of WG with an online softmax
// (running max m, running sum l, accumulator rescaled by exp(m_old - m_new)), so no score is
// ever exponentiated above zero and no buffer grows with the context.

struct Params {
    tokens: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    causal: u32,
    scale: f32,
    window: u32,
}

struct Step {
    pos: u32,
}

override WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
// Accumulator entries per thread: head_dim <= OWN * WG (checked on the host).
const OWN: u32 = 4u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;

var<workgroup> qs: array<f32, MAX_HEAD_DIM>;
var<workgroup> sc: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.tokens * p.heads) {
        return;
    }
    let tid = lid.x;
    let h = g % p.heads;
    let t = g / p.heads;
    let kvh = h / (p.heads / p.kv_heads);
    let width = p.heads * p.head_dim;
    let kv_width = p.kv_heads * p.head_dim;
    let q_base = t * width + h * p.head_dim;
    let kv_off = kvh * p.head_dim;

    for (var d = tid; d < p.head_dim; d = d + WG) {
        qs[d] = q[q_base + d] * p.scale;
    }
    workgroupBarrier();

    var n_keys = step.pos + p.tokens;
    if (p.causal != 0u) {
        n_keys = step.pos + t + 1u;
    }
    n_keys = min(n_keys, p.capacity);
    var first = 0u;
    if (p.window > 0u && n_keys > p.window) {
        first = n_keys - p.window;
    }

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, OWN>;
    for (var i = 0u; i < OWN; i = i + 1u) {
        acc[i] = 0.0;
    }

    for (var j0 = first; j0 < n_keys; j0 = j0 + WG) {
        let j = j0 + tid;
        var s = NEG;
        if (j < n_keys) {
            let kb = j * kv_width + kv_off;
            s = 0.0;
            for (var d = 0u; d < p.head_dim; d = d + 1u) {
                s = fma(qs[d], k[kb + d], s);
            }
        }
        sc[tid] = s;
        workgroupBarrier();
        var block_max = NEG;
        for (var jj = 0u; jj < WG; jj = jj + 1u) {
            block_max = max(block_max, sc[jj]);
        }
        let m_new = max(m, block_max);
        let correction = exp(m - m_new);
        workgroupBarrier();
        sc[tid] = select(0.0, exp(s - m_new), j < n_keys);
        workgroupBarrier();

        let count = min(WG, n_keys - j0);
        var block_sum = 0.0;
        for (var jj = 0u; jj < count; jj = jj + 1u) {
            block_sum = block_sum + sc[jj];
        }
        l = l * correction + block_sum;
        for (var i = 0u; i < OWN; i = i + 1u) {
            let d = tid + i * WG;
            if (d < p.head_dim) {
                var a = acc[i] * correction;
                for (var jj = 0u; jj < count; jj = jj + 1u) {
                    a = fma(sc[jj], v[(j0 + jj) * kv_width + kv_off + d], a);
                }
                acc[i] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }

    for (var i = 0u; i < OWN; i = i + 1u) {
        let d = tid + i * WG;
        if (d < p.head_dim) {
            o[q_base + d] = acc[i] / l;
        }
    }
}
