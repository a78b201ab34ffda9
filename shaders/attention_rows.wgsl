// Grouped-query attention for steps with many query rows (prefill, encoders): a workgroup
// takes BQ consecutive rows of the step for one head, QUAD threads to a row. Params and the
// key ranges are in attention_keys.wgsl. Decode runs its split mode (below), or attention.wgsl.
//
// Each thread walks its own share of its row's keys (key j belongs to thread j % QUAD of
// the row) with its own online softmax, CH keys at a time: CH scores, one rescale of the
// running sum l and of the accumulator by exp(m_old - m_new), then the CH values. No thread
// waits on another until the end, where the QUAD partial (m, l, acc) of a row are merged in
// workgroup memory. q, k, v and o are read as vec4 (head_dim % 4 == 0, at most 4 * MAX4;
// the host checks).
//
// Split mode (p.splits > 0, decode: a row or a few, many keys): the BQ row slots of a
// workgroup are instead BQ of one row's p.splits key ranges, workgroup x being head *
// (splits / BQ) + block and y the row; or, where p.splits is a divisor of BQ, the ranges of
// BQ / p.splits consecutive heads of the row (CPU adapters: fewer threads a head, each with
// more keys, so less of the per-thread work of loading q and merging). Each range's merged
// partial (its accumulator, not yet divided, then (m, l)) goes to o, which is then (rows,
// heads, splits, HD4 + 1) vec4s, and attention_merge.wgsl combines them. This spreads a
// decode row's keys over 4 * splits threads, where the per-row kernel has 64 threads in one.
//
// On lavapipe this shape ran 30-100x faster than variants that look alike (one key per
// iteration, CH of 2 or 4, head_dim from the params rather than the override HD4, columns
// split over the row's threads with a barrier a chunk), and it compiles in seconds where
// some of those took minutes: change it only with `kiln generate --profile` at hand.

override HD4: u32 = 16u;
const WG: u32 = 64u;
const QUAD: u32 = 4u;
const BQ: u32 = WG / QUAD;
const CH: u32 = 8u;
const MAX4: u32 = 32u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> o: array<vec4<f32>>;

// Each thread's running (max, sum), then a row's merged output.
var<workgroup> stats: array<vec2<f32>, WG>;
var<workgroup> merged: array<vec4<f32>, BQ * HD4>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.x;
    let qr = tid / QUAD;
    let c = tid % QUAD;
    let split = p.splits > 0u;
    // Split mode: each head's ranges take `blocks` workgroups of BQ, or, with fewer ranges
    // than BQ (a divisor of it), BQ / per heads share one workgroup.
    let per = clamp(p.splits, 1u, BQ);
    let blocks = max(p.splits / BQ, 1u);
    let h = select(wid.x, (wid.x / blocks) * (BQ / per) + qr / per, split);
    let r = select(wid.y * BQ + qr, wid.y, split);
    let part = (wid.x % blocks) * BQ + qr % per;
    let in_step = r < p.seqs * p.tokens && h < p.heads;
    let s = min(r / p.tokens, p.seqs - 1u);
    let t = r % p.tokens;
    let sq = seqs[s];
    var keys = keys_of(p, sq, s, t);
    if (!in_step || t >= sq.len) {
        keys.n = 0u;
    }
    if (split) {
        let span = select(0u, keys.n - keys.first, keys.n > keys.first);
        let chunk = (span + p.splits - 1u) / p.splits;
        keys.first = keys.first + part * chunk;
        keys.n = min(keys.n, keys.first + chunk);
    }
    let q_base = (r * p.heads + h) * HD4;
    let kv_width4 = p.kv_heads * HD4;
    let kv_off4 = (h / (p.heads / p.kv_heads)) * HD4;

    var qv: array<vec4<f32>, MAX4>;
    var acc: array<vec4<f32>, MAX4>;
    for (var d = 0u; d < HD4; d = d + 1u) {
        acc[d] = vec4<f32>(0.0);
        if (keys.n > 0u) {
            qv[d] = q[q_base + d] * p.scale;
        }
    }
    var m = NEG;
    var l = 0.0;
    for (var j0 = keys.first + c; j0 < keys.n; j0 = j0 + QUAD * CH) {
        var sc: array<f32, CH>;
        var top = m;
        for (var i = 0u; i < CH; i = i + 1u) {
            let j = j0 + i * QUAD;
            sc[i] = NEG;
            if (j < keys.n) {
                let kb = (keys.row0 + j) * kv_width4 + kv_off4;
                var dot4 = vec4<f32>(0.0);
                for (var d = 0u; d < HD4; d = d + 1u) {
                    dot4 = fma(qv[d], k[kb + d], dot4);
                }
                sc[i] = dot4.x + dot4.y + dot4.z + dot4.w;
                top = max(top, sc[i]);
            }
        }
        let correction = exp(m - top);
        l = l * correction;
        for (var d = 0u; d < HD4; d = d + 1u) {
            acc[d] = acc[d] * correction;
        }
        for (var i = 0u; i < CH; i = i + 1u) {
            let j = j0 + i * QUAD;
            if (j < keys.n) {
                let pr = exp(sc[i] - top);
                l = l + pr;
                let vb = (keys.row0 + j) * kv_width4 + kv_off4;
                for (var d = 0u; d < HD4; d = d + 1u) {
                    acc[d] = fma(vec4<f32>(pr), v[vb + d], acc[d]);
                }
            }
        }
        m = top;
    }

    // Merge the row's QUAD partial softmaxes: weights exp(m_c - M), total L.
    stats[tid] = vec2<f32>(m, l);
    workgroupBarrier();
    var top = NEG;
    for (var i = 0u; i < QUAD; i = i + 1u) {
        top = max(top, stats[qr * QUAD + i].x);
    }
    var total = 0.0;
    for (var i = 0u; i < QUAD; i = i + 1u) {
        let st = stats[qr * QUAD + i];
        total = total + st.y * exp(st.x - top);
    }
    let own = exp(m - top);
    for (var turn = 0u; turn < QUAD; turn = turn + 1u) {
        if (c == turn) {
            for (var d = 0u; d < HD4; d = d + 1u) {
                var sum = acc[d] * own;
                if (turn > 0u) {
                    sum = sum + merged[qr * HD4 + d];
                }
                merged[qr * HD4 + d] = sum;
            }
        }
        workgroupBarrier();
    }
    if (in_step && split) {
        let at = ((r * p.heads + h) * p.splits + part) * (HD4 + 1u);
        for (var d = c; d < HD4; d = d + QUAD) {
            o[at + d] = merged[qr * HD4 + d];
        }
        if (c == 0u) {
            o[at + HD4] = vec4<f32>(top, total, 0.0, 0.0);
        }
    } else if (in_step) {
        let inv = select(0.0, 1.0 / total, total > 0.0);
        for (var d = c; d < HD4; d = d + QUAD) {
            o[q_base + d] = merged[qr * HD4 + d] * inv;
        }
    }
}
