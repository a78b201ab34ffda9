// Reader for an f16 weight array named ARR stored as pairs in u32 words (storage type
// array<u32>, element i in the low half of word i/2 when i is even). Needs no SHADER_F16.
fn load_ARR(i: u32) -> f32 {
    let pair_ARR = unpack2x16float(ARR[i >> 1u]);
    return select(pair_ARR.x, pair_ARR.y, (i & 1u) == 1u);
}

fn load4_ARR(i: u32) -> vec4<f32> {
    if ((i & 1u) == 0u) {
        let word_ARR = i >> 1u;
        return vec4<f32>(unpack2x16float(ARR[word_ARR]), unpack2x16float(ARR[word_ARR + 1u]));
    }
    return vec4<f32>(load_ARR(i), load_ARR(i + 1u), load_ARR(i + 2u), load_ARR(i + 3u));
}
