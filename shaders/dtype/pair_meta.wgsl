// Block scales stored as one word per block holding the f16 pair (d, m), from word
// p.ARR_meta of the block array ARR (Q4_1, Q5_1).
fn dm_ARR(b: u32) -> vec2<f32> {
    return unpack2x16float(ARR[p.ARR_meta + b]);
}
