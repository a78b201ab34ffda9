// Reader for Q4_1 blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 4 words of nibbles per block (nibbles.wgsl), then the (d, m) pairs (pair_meta.wgsl).
// Element value: d * q + m.
fn load4_ARR(i: u32) -> vec4<f32> {
    let b_ARR = i >> 5u;
    let dm = dm_ARR(b_ARR);
    return vec4<f32>(nibbles4_ARR(b_ARR * 4u, i)) * dm.x + dm.y;
}

fn load_ARR(i: u32) -> f32 {
    let b_ARR = i >> 5u;
    let dm = dm_ARR(b_ARR);
    return f32(nibble_ARR(b_ARR * 4u, i)) * dm.x + dm.y;
}

// 32-element block s (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let q_ARR = nibble_words_ARR(s * 4u);
    let dm_ARR = dm_ARR(s);
    return QBlock_ARR(q_ARR[0], q_ARR[1], vec4<f32>(dm_ARR.x, dm_ARR.x, dm_ARR.y, dm_ARR.y));
}
