// Peak multiply-add throughput: each thread runs four independent vec4 chains of
// `iterations` fused multiply-adds, x = fma(x, m, c), in `real` (f32 or f16, from the
// included alias), and writes the sum of its chains so the compiler keeps them. Each
// iteration is 16 FMAs, 32 flops, per thread. m = 1 - 2^-10 and c = 2^-10 (exact in f16)
// pull every chain towards 1, so values stay finite at any length.

struct Params {
    count: u32,
    iterations: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.count) {
        return;
    }
    let m = vec4<real>(real(0.9990234375));
    let c = vec4<real>(real(0.0009765625));
    let s = real(f32(i % 64u) / 64.0);
    var a = vec4<real>(s, s + real(0.25), s + real(0.5), s + real(0.75));
    var b = a * real(0.5);
    var d = a * real(0.25);
    var e = a * real(0.125);
    for (var k = 0u; k < p.iterations; k = k + 1u) {
        a = fma(a, m, c);
        b = fma(b, m, c);
        d = fma(d, m, c);
        e = fma(e, m, c);
    }
    let t = a + b + d + e;
    dst[i] = f32(t.x) + f32(t.y) + f32(t.z) + f32(t.w);
}
