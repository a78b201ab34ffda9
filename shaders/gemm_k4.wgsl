// Reads of 4 consecutive k for the CPU adapters' GEMMs (matmul_columns.wgsl,
// matmul_direct.wgsl): x (M, K) f32 activations and w (N, K) in its format's reader, both
// zero past K, so K need not be a multiple of 4. The including kernel declares `p` (with k),
// `x` and `w`.

// x[m, k..k+4], zero past K.
fn x4(m: u32, k: u32) -> vec4<f32> {
    let i = m * p.k + k;
    if (k + 4u <= p.k) {
        return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
    }
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (k + c < p.k) {
            v[c] = x[i + c];
        }
    }
    return v;
}

// w[n, k..k+4], zero past K.
fn w4(n: u32, k: u32) -> vec4<f32> {
    let i = n * p.k + k;
    if (k + 4u <= p.k) {
        return load4_w(i);
    }
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (k + c < p.k) {
            v[c] = load_w(i + c);
        }
    }
    return v;
}
