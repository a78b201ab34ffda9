// Reader for an f16 weight array named ARR with native f16 loads (storage type array<f16>;
// needs SHADER_F16 and `enable f16;`).
fn load_ARR(i: u32) -> f32 {
    return f32(ARR[i]);
}

fn load4_ARR(i: u32) -> vec4<f32> {
    return vec4<f32>(vec4<f16>(ARR[i], ARR[i + 1u], ARR[i + 2u], ARR[i + 3u]));
}
