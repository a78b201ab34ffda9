// Reader for Q5_K blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 40 words of quants per 256-element block (32 of nibbles as in Q4_K, then 8 of qh: bit s
// of qh byte j % 32 is the fifth bit of element j of sub-block s), then the scales
// (k_scales.wgsl). Element value: d * scale * q - dmin * min.
fn load4_ARR(i: u32) -> vec4<f32> {
    let b_ARR = i >> 8u;
    let j_ARR = i & 255u;
    let s_ARR = j_ARR >> 5u;
    let sm_ARR = scale_min_ARR(b_ARR, s_ARR);
    let qh_ARR = ARR[b_ARR * 40u + 32u + ((j_ARR & 31u) >> 2u)] >> s_ARR;
    let hi_ARR = (vec4<u32>(qh_ARR) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    let q_ARR = k_nibbles4_ARR(b_ARR * 40u, i) | (hi_ARR << vec4<u32>(4u));
    return vec4<f32>(q_ARR) * sm_ARR.x - sm_ARR.y;
}

fn load_ARR(i: u32) -> f32 {
    return load4_ARR(i & ~3u)[i & 3u];
}
