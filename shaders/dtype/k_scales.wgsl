// Scales of Q4_K and Q5_K blocks in array ARR: from word p.ARR_meta, 5 words per block: the
// f16 pair (d, dmin), then the eight 6-bit scales and the eight 6-bit mins a byte each
// (unpacked at load from ggml's 12 bytes). Returns (d * scale, dmin * min) of sub-block s
// (0..8) of block b.
fn scale_min_ARR(b: u32, s: u32) -> vec2<f32> {
    let m_ARR = p.ARR_meta + b * 5u;
    let shift_ARR = (s & 3u) * 8u;
    let sc_ARR = (ARR[m_ARR + 1u + (s >> 2u)] >> shift_ARR) & 255u;
    let mn_ARR = (ARR[m_ARR + 3u + (s >> 2u)] >> shift_ARR) & 255u;
    return unpack2x16float(ARR[m_ARR]) * vec2<f32>(f32(sc_ARR), f32(mn_ARR));
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
