// The 32 elements of a row of x that one weight block multiplies, as 8 vec4s from vec4
// index `at` of gemv_block.wgsl's x, which every lane of the subgroup shares: lane i of each
// subgroup (i < 8; `lane8` is x_lane()'s) reads vec4 i alone and broadcasts it. On CPU
// adapters a read at a lane-dependent address costs a load per lane, and the compiler does
// not see that these addresses are the same in every lane; so this is one such read where
// each lane reading all 8 is eight. Needs subgroups of at least 8 (the host checks), and
// uniform control flow.

// The caller's subgroup invocation index mod 8, which x_block's `lane8` must be: counted
// among the active invocations, so called where the whole subgroup is (the top of main).
// WGSL does not say how invocations map to subgroups, so it is not local_invocation_index.
fn x_lane() -> u32 {
    return subgroupExclusiveAdd(1u) & 7u;
}

fn x_block(at: u32, lane8: u32) -> array<vec4<f32>, 8> {
    let mine = x[at + lane8];
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
