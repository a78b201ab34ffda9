// Scales of Q4_K and Q5_K blocks in array ARR: from word p.ARR_meta, 4 words per block: the
// f16 pair (d, dmin), then 12 bytes packing eight 6-bit scales and eight 6-bit mins (ggml's
// get_scale_min_k4). Returns (d * scale, dmin * min) of sub-block s (0..8) of block b.
fn scale_byte_ARR(m: u32, k: u32) -> u32 {
    return (ARR[m + 1u + (k >> 2u)] >> ((k & 3u) * 8u)) & 255u;
}

fn scale_min_ARR(b: u32, s: u32) -> vec2<f32> {
    let m_ARR = p.ARR_meta + b * 4u;
    let dm_ARR = unpack2x16float(ARR[m_ARR]);
    var sc_ARR: u32;
    var mn_ARR: u32;
    if (s < 4u) {
        sc_ARR = scale_byte_ARR(m_ARR, s) & 63u;
        mn_ARR = scale_byte_ARR(m_ARR, s + 4u) & 63u;
    } else {
        let hi_ARR = scale_byte_ARR(m_ARR, s + 4u);
        sc_ARR = (hi_ARR & 15u) | ((scale_byte_ARR(m_ARR, s - 4u) >> 6u) << 4u);
        mn_ARR = (hi_ARR >> 4u) | ((scale_byte_ARR(m_ARR, s) >> 6u) << 4u);
    }
    return dm_ARR * vec2<f32>(f32(sc_ARR), f32(mn_ARR));
}

// The 4-bit quants of elements i..i+4 (i a multiple of 4) of a 256-element block whose
// 128 nibble bytes start at word `base`: sub-block s = j / 32 uses the low nibbles of bytes
// (j / 64) * 32 + j % 32 when even, the high ones when odd.
fn k_nibbles4_ARR(base: u32, i: u32) -> vec4<u32> {
    let j_ARR = i & 255u;
    let word_ARR = ARR[base + (((j_ARR >> 6u) * 32u + (j_ARR & 31u)) >> 2u)];
    let s_ARR = ((j_ARR >> 5u) & 1u) * 4u;
    return (vec4<u32>(word_ARR) >> vec4<u32>(s_ARR, s_ARR + 8u, s_ARR + 16u, s_ARR + 24u)) & vec4<u32>(15u);
}
