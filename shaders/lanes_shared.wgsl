// Sums each column's partial sums over its LANES lanes in workgroup memory (the fallback for
// adapters without subgroups; lanes_subgroup.wgsl is the other). The including kernel runs
// LANES x ROWS threads, each with MR partial sums in `acc`; after the call every lane of
// column `col` holds its column's totals for the first `rows` rows. Call from uniform control
// flow.

// Room for LANES x ROWS threads of MR sums: a constant size, the host's GEMV_MAX_THREADS, to
// which Gemv::fits holds LANES x ROWS. (Sized by LANES * ROWS * MR, naga 30 gives the array an unnamed override,
// and panics processing a named override declared after it, such as gemv_block.wgsl's RPG.)
const LANE_SLOTS: u32 = 256u;
var<workgroup> partial: array<f32, LANE_SLOTS * MR>;

fn lane_sum(acc: ptr<function, array<f32, MR>>, lane: u32, col: u32, rows: u32) {
    let slot = col * MR * LANES;
    for (var r = 0u; r < MR; r = r + 1u) {
        partial[slot + r * LANES + lane] = (*acc)[r];
    }
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            for (var r = 0u; r < rows; r = r + 1u) {
                let i = slot + r * LANES + lane;
                partial[i] = partial[i] + partial[i + s];
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < rows; r = r + 1u) {
        (*acc)[r] = partial[slot + r * LANES];
    }
}
