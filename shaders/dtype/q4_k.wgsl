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
