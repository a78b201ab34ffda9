// 8 rows of matmul_columns.wgsl's staged x tile at vec4 column q: rows r0 + i * TY, which
// every thread of a subgroup shares (the host runs this twin where the subgroup size is 8
// or 16, so that it divides TX). Lane i of each subgroup (i < 8) reads row i alone and
// broadcasts it: on CPU adapters a read at a lane-dependent address costs a load per lane,
// so this reads the rows once where each thread reading its own reads them 8 times.
// `lane` is the thread's index mod 8.

fn tile_rows(q: u32, r0: u32, lane: u32) -> array<vec4<f32>, 8> {
    let mine = xs[(r0 + lane * TY) * BK4 + q];
    return array<vec4<f32>, 8>(
        subgroupBroadcast(mine, 0u),
        subgroupBroadcast(mine, 1u),
        subgroupBroadcast(mine, 2u),
        subgroupBroadcast(mine, 3u),
        subgroupBroadcast(mine, 4u),
        subgroupBroadcast(mine, 5u),
        subgroupBroadcast(mine, 6u),
        subgroupBroadcast(mine, 7u),
    );
}
