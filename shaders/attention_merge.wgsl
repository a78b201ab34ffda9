// Combines the key-range partials that attention_rows.wgsl writes in split mode (decode):
// for each (row, head), with M the largest of the ranges' maxima m_s,
//   o = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s,
// zeros where no range saw a key (padding rows). One workgroup per (row, head), a thread per
// vec4 of the head.

override HD4: u32 = 16u;
const WG: u32 = 32u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> parts: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> o: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = wid.x + wid.y * nwg.x;
    let d = lid.x;
    if (g >= p.seqs * p.tokens * p.heads || d >= HD4) {
        return;
    }
    let stride = HD4 + 1u;
    let base = g * p.splits * stride;
    var top = NEG;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        top = max(top, parts[base + s * stride + HD4].x);
    }
    var total = 0.0;
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < p.splits; s = s + 1u) {
        let st = parts[base + s * stride + HD4];
        let w = exp(st.x - top);
        total = total + st.y * w;
        acc = fma(vec4<f32>(w), parts[base + s * stride + d], acc);
    }
    o[g * HD4 + d] = select(vec4<f32>(0.0), acc / total, total > 0.0);
}
