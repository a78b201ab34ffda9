// 8 rows of matmul_columns.wgsl's staged x tile at vec4 column q: rows r0 + i * TY. Each
// thread reads its own (every adapter).

// tile_rows' `lane`, which this reader does not use.
fn tile_lane() -> u32 {
    return 0u;
}

fn tile_rows(q: u32, r0: u32, lane: u32) -> array<vec4<f32>, 8> {
    var a: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) {
        a[i] = xs[(r0 + i * TY) * BK4 + q];
    }
    return a;
}
