// Reader for Q5_1 blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 5 words of quants per block (q5_bits.wgsl), then the (d, m) pairs (pair_meta.wgsl).
// Element value: d * q + m.
fn load4_ARR(i: u32) -> vec4<f32> {
    let dm = dm_ARR(i >> 5u);
    return vec4<f32>(quants4_ARR(i)) * dm.x + dm.y;
}

fn load_ARR(i: u32) -> f32 {
    let dm = dm_ARR(i >> 5u);
    return f32(quant_ARR(i)) * dm.x + dm.y;
}

// 32-element block s (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let q_ARR = q5_words_ARR(s);
    let dm_ARR = dm_ARR(s);
    return QBlock_ARR(q_ARR[0], q_ARR[1], vec4<f32>(dm_ARR.x, dm_ARR.x, dm_ARR.y, dm_ARR.y));
}
