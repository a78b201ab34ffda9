// Reader for an f32 weight array named ARR (storage type array<f32>).
fn load_ARR(i: u32) -> f32 {
    return ARR[i];
}

fn load4_ARR(i: u32) -> vec4<f32> {
    return vec4<f32>(ARR[i], ARR[i + 1u], ARR[i + 2u], ARR[i + 3u]);
}
