// lane_sum for GEMVs of one lane per column (LANES = 1): a column's sums are already whole,
// so there is nothing to add, and no workgroup memory or barrier. WebGPU implementations
// zero a workgroup's shared memory and add a barrier before every kernel that declares any
// (Dawn does), which on CPU adapters costs more than the one-lane sums themselves.

fn lane_sum(acc: ptr<function, array<f32, MR>>, lane: u32, col: u32, rows: u32) {}
