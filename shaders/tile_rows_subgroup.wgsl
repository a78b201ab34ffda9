// 8 rows of matmul_columns.wgsl's staged x tile at vec4 column q: rows r0 + i * TY, which
// every thread of a subgroup shares (the host runs this twin where the subgroup size is 8
// or 16, so that it divides TX). Lane i of each subgroup (i < 8) reads row i alone and
// broadcasts it: on CPU adapters a read at a lane-dependent address costs a load per lane,
// so this reads the rows once where each thread reading its own reads them 8 times.
// `lane` is tile_lane()'s: the thread's subgroup invocation index mod 8. Every thread of a
// subgroup must share r0 (its row of threads), which holds where subgroups are runs of
// consecutive local invocation indices, as on the CPU adapters this runs on, and TX is a
// multiple of the subgroup size.

// The subgroup invocation index mod 8, counted among the active invocations, so called
// where the whole subgroup is (the top of main). WGSL does not say how invocations map to
// subgroups, so it is not the local index mod 8.
fn tile_lane() -> u32 {
    return subgroupExclusiveAdd(1u) & 7u;
}

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
