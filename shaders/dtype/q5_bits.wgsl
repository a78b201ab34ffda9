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
