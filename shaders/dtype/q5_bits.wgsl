// 5-bit quants of Q5_0 and Q5_1 blocks in array ARR: 5 words per block, 4 of low nibbles
// (nibbles.wgsl) then qh, whose bit j is element j's fifth bit.

// Elements i..i+4 (i a multiple of 4).
fn quants4_ARR(i: u32) -> vec4<u32> {
    let b_ARR = i >> 5u;
    let qh_ARR = ARR[b_ARR * 5u + 4u] >> (i & 31u);
    let hi_ARR = (vec4<u32>(qh_ARR) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return nibbles4_ARR(b_ARR * 5u, i) | (hi_ARR << vec4<u32>(4u));
}

fn quant_ARR(i: u32) -> u32 {
    let b_ARR = i >> 5u;
    return nibble_ARR(b_ARR * 5u, i) | (((ARR[b_ARR * 5u + 4u] >> (i & 31u)) & 1u) << 4u);
}

// Bit i of the four bits b moved to bit 8 i + 4: four fifth bits, one per byte.
fn spread_ARR(b: vec4<u32>) -> vec4<u32> {
    return ((b & vec4<u32>(1u)) << vec4<u32>(4u)) | ((b & vec4<u32>(2u)) << vec4<u32>(11u))
        | ((b & vec4<u32>(4u)) << vec4<u32>(18u)) | ((b & vec4<u32>(8u)) << vec4<u32>(25u));
}

// The 5-bit quants of block s, a byte per element, as qblock.wgsl lays them out.
fn q5_words_ARR(s: u32) -> array<vec4<u32>, 2> {
    let q_ARR = nibble_words_ARR(s * 5u);
    let qh_ARR = vec4<u32>(ARR[s * 5u + 4u]) >> vec4<u32>(0u, 4u, 8u, 12u);
    let m_ARR = vec4<u32>(15u);
    return array<vec4<u32>, 2>(
        q_ARR[0] | spread_ARR(qh_ARR & m_ARR),
        q_ARR[1] | spread_ARR((qh_ARR >> vec4<u32>(16u)) & m_ARR),
    );
}
