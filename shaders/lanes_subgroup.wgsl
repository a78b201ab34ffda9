// Sums each column's partial sums over its LANES lanes with subgroup shuffles, without
// workgroup memory or barriers (lanes_shared.wgsl is the fallback). A column's lanes are
// consecutive invocations, so they share a subgroup when LANES is at most the subgroup size,
// which the host guarantees. After the call every lane of the column holds its totals. Call
// from uniform control flow.

fn lane_sum(acc: ptr<function, array<f32, MR>>, lane: u32, col: u32, rows: u32) {
    for (var r = 0u; r < MR; r = r + 1u) {
        var v = (*acc)[r];
        for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
            v = v + subgroupShuffleXor(v, s);
        }
        (*acc)[r] = v;
    }
}
