// Reader for Q4_K blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 32 words of nibbles per 256-element block, then the scales (k_scales.wgsl).
// Element value: d * scale * q - dmin * min, per sub-block of 32.
fn load4_ARR(i: u32) -> vec4<f32> {
    let b_ARR = i >> 8u;
    let sm_ARR = scale_min_ARR(b_ARR, (i & 255u) >> 5u);
    return vec4<f32>(k_nibbles4_ARR(b_ARR * 32u, i)) * sm_ARR.x - sm_ARR.y;
}

fn load_ARR(i: u32) -> f32 {
    return load4_ARR(i & ~3u)[i & 3u];
}

// 32-element block s, sub-block s % 8 of block s / 8 (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let b_ARR = s >> 3u;
    let sub_ARR = s & 7u;
    let base_ARR = b_ARR * 32u + (sub_ARR >> 1u) * 8u;
    let sh_ARR = (sub_ARR & 1u) * 4u;
    let lo_ARR = words4_ARR(base_ARR);
    let hi_ARR = words4_ARR(base_ARR + 4u);
    let sm_ARR = scale_min_ARR(b_ARR, sub_ARR);
    return QBlock_ARR(
        (lo_ARR >> vec4<u32>(sh_ARR)) & vec4<u32>(0x0f0f0f0fu),
        (hi_ARR >> vec4<u32>(sh_ARR)) & vec4<u32>(0x0f0f0f0fu),
        vec4<f32>(sm_ARR.x, sm_ARR.x, -sm_ARR.y, -sm_ARR.y),
    );
}
