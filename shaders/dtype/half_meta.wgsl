// Block scales stored one f16 per block, two blocks to a word, from word p.ARR_meta of the
// block array ARR (Q8_0, Q4_0, Q5_0).
fn d_ARR(b: u32) -> f32 {
    let pair_ARR = unpack2x16float(ARR[p.ARR_meta + (b >> 1u)]);
    return select(pair_ARR.x, pair_ARR.y, (b & 1u) == 1u);
}
