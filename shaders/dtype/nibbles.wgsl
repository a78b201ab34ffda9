// Low 4 bits of the quants of 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1) in array ARR: a
// block's nibbles fill 4 words from word `base`; element j < 16 is the low nibble of byte j,
// element j + 16 the high nibble of byte j.

// Elements i..i+4 (i a multiple of 4).
fn nibbles4_ARR(base: u32, i: u32) -> vec4<u32> {
    let j_ARR = i & 31u;
    let word_ARR = ARR[base + ((j_ARR & 15u) >> 2u)];
    let s_ARR = (j_ARR >> 4u) * 4u;
    return (vec4<u32>(word_ARR) >> vec4<u32>(s_ARR, s_ARR + 8u, s_ARR + 16u, s_ARR + 24u)) & vec4<u32>(15u);
}

fn nibble_ARR(base: u32, i: u32) -> u32 {
    let j_ARR = i & 31u;
    return (ARR[base + ((j_ARR & 15u) >> 2u)] >> ((j_ARR & 3u) * 8u + (j_ARR >> 4u) * 4u)) & 15u;
}

// The nibbles of the block whose 4 words start at `base`, a byte per element: elements 0..16
// (the low nibbles) and 16..32 (the high ones), as qblock.wgsl lays them out.
fn nibble_words_ARR(base: u32) -> array<vec4<u32>, 2> {
    let w_ARR = words4_ARR(base);
    let m_ARR = vec4<u32>(0x0f0f0f0fu);
    return array<vec4<u32>, 2>(w_ARR & m_ARR, (w_ARR >> vec4<u32>(4u)) & m_ARR);
}
