// Reader for a bf16 weight array named ARR stored as pairs in u32 words (storage type
// array<u32>). A bf16 is the high half of an f32, so widening is a shift.
fn load_ARR(i: u32) -> f32 {
    let word_ARR = ARR[i >> 1u];
    return bitcast<f32>(select(word_ARR << 16u, word_ARR & 0xffff0000u, (i & 1u) == 1u));
}

fn load4_ARR(i: u32) -> vec4<f32> {
    if ((i & 1u) == 0u) {
        let lo_ARR = ARR[i >> 1u];
        let hi_ARR = ARR[(i >> 1u) + 1u];
        return bitcast<vec4<f32>>(vec4<u32>(lo_ARR << 16u, lo_ARR & 0xffff0000u, hi_ARR << 16u, hi_ARR & 0xffff0000u));
    }
    return vec4<f32>(load_ARR(i), load_ARR(i + 1u), load_ARR(i + 2u), load_ARR(i + 3u));
}
