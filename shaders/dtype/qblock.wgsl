// One 32-element block of a block-format array ARR, decoded for integer dot products
// (shaders/gemv_q8.wgsl): lo and hi hold the 8-bit quants of elements 0..16 and 16..32, four
// to a word (element 4w + i in byte i of word w), and element j's value is
// a * q_j + c, with (a, c) = ac.xz for the first half and ac.yw for the second.
// Quants are signed (Q8_0) or below 64 (every other format), so dot4I8Packed reads them.
struct QBlock_ARR {
    lo: vec4<u32>,
    hi: vec4<u32>,
    ac: vec4<f32>,
}

// Words base..base + 4 of ARR.
fn words4_ARR(base: u32) -> vec4<u32> {
    return vec4<u32>(ARR[base], ARR[base + 1u], ARR[base + 2u], ARR[base + 3u]);
}
