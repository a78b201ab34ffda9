// One 32-element block of activations quantized to 8 bits, as quantize_q8.wgsl writes it and
// gemv_q8.wgsl reads it: the int8 quants of each half (elements 0..16, 16..32, four to a
// word), (dx0, dx1, dx0 * sum0, dx1 * sum1), the element kept aside in f32 and its index.
// 64 bytes (QX_BYTES in ops/matmul.rs).
struct QX {
    q0: vec4<u32>,
    q1: vec4<u32>,
    s: vec4<f32>,
    kept: f32,
    at: u32,
    pad0: u32,
    pad1: u32,
}
