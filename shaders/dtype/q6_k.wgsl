// Reader for Q6_K blocks in array ARR (array<u32>), repacked by kiln (src/dtype/blocks.rs):
// 48 words of quants per 256-element block (ql: 32 words of low nibbles, qh: 16 words of
// 2-bit high parts), then from word p.ARR_meta 5 words per block: 16 int8 scales and the
// f16 d. Element j = 128 n + 32 quarter + l: low nibble of ql byte 64 n + 32 (quarter % 2) + l
// (the high nibble when quarter >= 2), bits 2 quarter of qh byte 32 n + l, scale
// 8 n + 2 quarter + l / 16. Element value: d * scale * (q - 32).
fn load4_ARR(i: u32) -> vec4<f32> {
    let b_ARR = i >> 8u;
    let j_ARR = i & 255u;
    let n_ARR = j_ARR >> 7u;
    let quarter_ARR = (j_ARR >> 5u) & 3u;
    let l_ARR = j_ARR & 31u;
    let ql_ARR = ARR[b_ARR * 48u + ((n_ARR * 64u + (quarter_ARR & 1u) * 32u + l_ARR) >> 2u)];
    let qh_ARR = ARR[b_ARR * 48u + 32u + ((n_ARR * 32u + l_ARR) >> 2u)];
    let sl_ARR = (quarter_ARR >> 1u) * 4u;
    let sh_ARR = quarter_ARR * 2u;
    let lo_ARR = (vec4<u32>(ql_ARR) >> vec4<u32>(sl_ARR, sl_ARR + 8u, sl_ARR + 16u, sl_ARR + 24u)) & vec4<u32>(15u);
    let hi_ARR = (vec4<u32>(qh_ARR) >> vec4<u32>(sh_ARR, sh_ARR + 8u, sh_ARR + 16u, sh_ARR + 24u)) & vec4<u32>(3u);
    let m_ARR = p.ARR_meta + b_ARR * 5u;
    let k_ARR = n_ARR * 8u + quarter_ARR * 2u + (l_ARR >> 4u);
    let sc_ARR = bitcast<i32>(ARR[m_ARR + (k_ARR >> 2u)] << (24u - (k_ARR & 3u) * 8u)) >> 24u;
    let d_ARR = unpack2x16float(ARR[m_ARR + 4u]).x * f32(sc_ARR);
    return (vec4<f32>(lo_ARR | (hi_ARR << vec4<u32>(4u))) - 32.0) * d_ARR;
}

fn load_ARR(i: u32) -> f32 {
    return load4_ARR(i & ~3u)[i & 3u];
}

// 32-element block s: elements 32 (s % 8) .. of block s / 8 (qblock.wgsl); its halves have
// scales of their own.
fn qblock_ARR(s: u32) -> QBlock_ARR {
    let b_ARR = s >> 3u;
    let n_ARR = (s >> 2u) & 1u;
    let quarter_ARR = s & 3u;
    let ql_ARR = b_ARR * 48u + n_ARR * 16u + (quarter_ARR & 1u) * 8u;
    let qh_ARR = b_ARR * 48u + 32u + n_ARR * 8u;
    let sl_ARR = vec4<u32>((quarter_ARR >> 1u) * 4u);
    let sh_ARR = vec4<u32>(quarter_ARR * 2u);
    let m4_ARR = vec4<u32>(0x0f0f0f0fu);
    let m2_ARR = vec4<u32>(0x03030303u);
    let l0_ARR = words4_ARR(ql_ARR);
    let l1_ARR = words4_ARR(ql_ARR + 4u);
    let h0_ARR = words4_ARR(qh_ARR);
    let h1_ARR = words4_ARR(qh_ARR + 4u);
    let m_ARR = p.ARR_meta + b_ARR * 5u;
    let k_ARR = n_ARR * 8u + quarter_ARR * 2u;
    let sc_ARR = ARR[m_ARR + (k_ARR >> 2u)] >> ((k_ARR & 3u) * 8u);
    let sc0_ARR = bitcast<i32>(sc_ARR << 24u) >> 24u;
    let sc1_ARR = bitcast<i32>(sc_ARR << 16u) >> 24u;
    let d_ARR = unpack2x16float(ARR[m_ARR + 4u]).x;
    let a_ARR = vec2<f32>(d_ARR * f32(sc0_ARR), d_ARR * f32(sc1_ARR));
    return QBlock_ARR(
        ((l0_ARR >> sl_ARR) & m4_ARR) | (((h0_ARR >> sh_ARR) & m2_ARR) << vec4<u32>(4u)),
        ((l1_ARR >> sl_ARR) & m4_ARR) | (((h1_ARR >> sh_ARR) & m2_ARR) << vec4<u32>(4u)),
        vec4<f32>(a_ARR, -32.0 * a_ARR),
    );
}
