// Reader for Q8_0 blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 32 int8 quants per block (8 words), then the f16 scales (half_meta.wgsl).
// Element value: d * q.
fn load4_ARR(i: u32) -> vec4<f32> {
    let word_ARR = ARR[i >> 2u];
    let q_ARR = bitcast<vec4<i32>>(vec4<u32>(word_ARR << 24u, word_ARR << 16u, word_ARR << 8u, word_ARR)) >> vec4<u32>(24u);
    return vec4<f32>(q_ARR) * d_ARR(i >> 5u);
}

fn load_ARR(i: u32) -> f32 {
    let q_ARR = bitcast<i32>(ARR[i >> 2u] << (24u - (i & 3u) * 8u)) >> 24u;
    return f32(q_ARR) * d_ARR(i >> 5u);
}

// 32-element block s (qblock.wgsl).
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let w_ARR = s * 8u;
    let sc_ARR = d_ARR(s);
    return QBlock_ARR(
        words4_ARR(w_ARR),
        words4_ARR(w_ARR + 4u),
        vec4<f32>(sc_ARR, sc_ARR, 0.0, 0.0),
    );
}
