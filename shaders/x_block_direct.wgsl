// The 32 elements of a row of x that one weight block multiplies, as 8 vec4s from vec4
// index `at` of gemv_block.wgsl's x: each lane reads its own (every adapter; `lane8` unused).

// x_block's `lane8`, which this reader does not use.
fn x_lane() -> u32 {
    return 0u;
}

fn x_block(at: u32, lane8: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        x[at], x[at + 1u], x[at + 2u], x[at + 3u],
        x[at + 4u], x[at + 5u], x[at + 6u], x[at + 7u],
    );
}
