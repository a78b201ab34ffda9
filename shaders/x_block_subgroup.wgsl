// The 32 elements of a row of x that one weight block multiplies, as 8 vec4s from vec4
// index `at` of gemv_block.wgsl's x, which every lane of the subgroup shares: lane i of each
// subgroup (i < 8, its index mod 8 in `lane8`) reads vec4 i alone and broadcasts it. On CPU
// adapters a read at a lane-dependent address costs a load per lane, and the compiler does
// not see that these addresses are the same in every lane; so this is one such read where
// each lane reading all 8 is eight. Needs subgroups of at least 8 (the host checks), and
// uniform control flow.

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
