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

// 32-element block s, sub-block s % 8 of block s / 8 (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let b_ARR = s >> 3u;
    let sub_ARR = s & 7u;
    let base_ARR = b_ARR * 40u + (sub_ARR >> 1u) * 8u;
    let h_ARR = b_ARR * 40u + 32u;
    let sh_ARR = vec4<u32>((sub_ARR & 1u) * 4u);
    let m4_ARR = vec4<u32>(0x0f0f0f0fu);
    let m1_ARR = vec4<u32>(0x01010101u);
    let lo_ARR = words4_ARR(base_ARR);
    let hi_ARR = words4_ARR(base_ARR + 4u);
    let qlo_ARR = words4_ARR(h_ARR);
    let qhi_ARR = words4_ARR(h_ARR + 4u);
    let s5_ARR = vec4<u32>(sub_ARR);
    let sm_ARR = scale_min_ARR(b_ARR, sub_ARR);
    return QBlock_ARR(
        ((lo_ARR >> sh_ARR) & m4_ARR) | (((qlo_ARR >> s5_ARR) & m1_ARR) << vec4<u32>(4u)),
        ((hi_ARR >> sh_ARR) & m4_ARR) | (((qhi_ARR >> s5_ARR) & m1_ARR) << vec4<u32>(4u)),
        vec4<f32>(sm_ARR.x, sm_ARR.x, -sm_ARR.y, -sm_ARR.y),
    );
}
