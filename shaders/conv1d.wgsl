// 1-D convolution over time, channels last (the engine's (seqs, tokens, width) layout):
//   y[s, to, co] = act(bias[co] + sum_{ci, j} w[co, ci, j] * x[s, to * stride + j - padding, ci])
//                  + add[to, co]
// (Whisper's audio stem: GELU after each convolution, the positions added after the second.)
// x: (seqs, t_in, c_in), zero outside [0, t_in); w: (c_out, c_in, kernel), PyTorch's Conv1d
// layout; y: (seqs, t_out, c_out). One thread per output element.

struct Params {
    seqs: u32,
    t_in: u32,
    t_out: u32,
    c_in: u32,
    c_out: u32,
    kernel: u32,
    stride: u32,
    padding: u32,
}

override WG: u32 = 256u;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
override HAS_ADD: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WORD_w>;
@group(0) @binding(3) var<storage, read> bias: array<WORD_bias>;
@group(0) @binding(4) var<storage, read> add: array<WORD_add>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.seqs * p.t_out * p.c_out) {
        return;
    }
    let co = i % p.c_out;
    let to = (i / p.c_out) % p.t_out;
    let s = i / (p.c_out * p.t_out);
    var acc = 0.0;
    for (var j = 0u; j < p.kernel; j = j + 1u) {
        // Input time to * stride + j - padding, in unsigned arithmetic.
        let ti = to * p.stride + j;
        if (ti < p.padding || ti - p.padding >= p.t_in) {
            continue;
        }
        let xb = (s * p.t_in + ti - p.padding) * p.c_in;
        for (var ci = 0u; ci < p.c_in; ci = ci + 1u) {
            acc = fma(load_w((co * p.c_in + ci) * p.kernel + j), x[xb + ci], acc);
        }
    }
    if (HAS_BIAS) {
        acc = acc + load_bias(co);
    }
    var out = activate(acc, ACT);
    if (HAS_ADD) {
        out = out + load_add(to * p.c_out + co);
    }
    y[i] = out;
}
