// Grouped-query attention, one workgroup per (query row, head): for decode, where a step has
// a row or a few per sequence and the keys are what there is to spread over threads.
// attention_rows.wgsl serves steps with many rows. Params and the key ranges are in
// attention_keys.wgsl.
//
// Keys are visited in blocks of WG with an online softmax (running max m, running sum l,
// accumulator rescaled by exp(m_old - m_new)), so no score is ever exponentiated above zero
// and no buffer grows with the context.

override WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
// Accumulator entries per thread: head_dim <= OWN * WG (checked on the host).
const OWN: u32 = 4u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
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
    if (g >= p.seqs * p.tokens * p.heads) {
        return;
    }
    let tid = lid.x;
    let h = g % p.heads;
    let r = g / p.heads;
    let s = r / p.tokens;
    let t = r % p.tokens;
    let sq = seqs[s];
    let q_base = r * p.heads * p.head_dim + h * p.head_dim;
    if (t >= sq.len) {
        for (var d = tid; d < p.head_dim; d = d + WG) {
            o[q_base + d] = 0.0;
        }
        return;
    }
    let kvh = h / (p.heads / p.kv_heads);
    let kv_width = p.kv_heads * p.head_dim;
    let kv_off = kvh * p.head_dim;
    let keys = keys_of(p, sq, s, t);
    let kv_row0 = keys.row0;

    for (var d = tid; d < p.head_dim; d = d + WG) {
        qs[d] = q[q_base + d] * p.scale;
    }
    workgroupBarrier();

    let n_keys = keys.n;
    let first = keys.first;

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, OWN>;
    for (var i = 0u; i < OWN; i = i + 1u) {
        acc[i] = 0.0;
    }

    for (var j0 = first; j0 < n_keys; j0 = j0 + WG) {
        let j = j0 + tid;
        var score = NEG;
        if (j < n_keys) {
            let kb = (kv_row0 + j) * kv_width + kv_off;
            score = 0.0;
            for (var d = 0u; d < p.head_dim; d = d + 1u) {
                score = fma(qs[d], k[kb + d], score);
            }
        }
        sc[tid] = score;
        workgroupBarrier();
        var block_max = NEG;
        for (var jj = 0u; jj < WG; jj = jj + 1u) {
            block_max = max(block_max, sc[jj]);
        }
        let m_new = max(m, block_max);
        let correction = exp(m - m_new);
        workgroupBarrier();
        sc[tid] = select(0.0, exp(score - m_new), j < n_keys);
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
                    a = fma(sc[jj], v[(kv_row0 + j0 + jj) * kv_width + kv_off + d], a);
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
            o[q_base + d] = select(0.0, acc[i] / l, l > 0.0);
        }
    }
}
