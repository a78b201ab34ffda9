// Reader for Q4_0 blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 4 words of nibbles per block (nibbles.wgsl), then the f16 scales (half_meta.wgsl).
// Element value: d * (q - 8).
fn load4_ARR(i: u32) -> vec4<f32> {
    let b_ARR = i >> 5u;
    return (vec4<f32>(nibbles4_ARR(b_ARR * 4u, i)) - 8.0) * d_ARR(b_ARR);
}

fn load_ARR(i: u32) -> f32 {
    let b_ARR = i >> 5u;
    return (f32(nibble_ARR(b_ARR * 4u, i)) - 8.0) * d_ARR(b_ARR);
}

// 32-element block s (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let q_ARR = nibble_words_ARR(s * 4u);
    let sc_ARR = d_ARR(s);
    return QBlock_ARR(q_ARR[0], q_ARR[1], vec4<f32>(sc_ARR, sc_ARR, -8.0 * sc_ARR, -8.0 * sc_ARR));
}
