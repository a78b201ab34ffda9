// Reader for Q5_0 blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 5 words of quants per block (q5_bits.wgsl), then the f16 scales (half_meta.wgsl).
// Element value: d * (q - 16).
fn load4_ARR(i: u32) -> vec4<f32> {
    return (vec4<f32>(quants4_ARR(i)) - 16.0) * d_ARR(i >> 5u);
}

fn load_ARR(i: u32) -> f32 {
    return (f32(quant_ARR(i)) - 16.0) * d_ARR(i >> 5u);
}

// 32-element block s (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let q_ARR = q5_words_ARR(s);
    let sc_ARR = d_ARR(s);
    return QBlock_ARR(q_ARR[0], q_ARR[1], vec4<f32>(sc_ARR, sc_ARR, -16.0 * sc_ARR, -16.0 * sc_ARR));
}
