// Rotary position embedding, rotate-half layout (HF Llama):
//   for each head, pair i < half = head_dim / 2 of token t of sequence s, at position
//   pos = seqs[s].pos + t:
//   y[i]        = x[i] * cos(pos * f_i) - x[i + half] * sin(pos * f_i)
//   y[i + half] = x[i + half] * cos(pos * f_i) + x[i] * sin(pos * f_i)
// The host supplies the table (positions, head_dim): row pos = [cos(pos * f_i)..., sin(pos * f_i)...].
// GPU sin/cos may be as coarse as 2^-11 (the Vulkan bound) and worse for large angles, so the
// table is computed once on the host in f64; theta and any frequency scaling are its choice.
// x, y: (seqs, tokens, heads * head_dim); padding rows (t >= len) are left alone.
// One thread per (row, head, pair).

struct Params {
    seqs: u32,
    tokens: u32,
    heads: u32,
    head_dim: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.head_dim / 2u;
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.seqs * p.tokens * p.heads * half) {
        return;
    }
    let i = idx % half;
    let h = (idx / half) % p.heads;
    let r = idx / (half * p.heads);
    let s = r / p.tokens;
    let t = r % p.tokens;
    if (t >= seqs[s].len) {
        return;
    }
    let base = r * p.heads * p.head_dim + h * p.head_dim;
    let row = (seqs[s].pos + t) * p.head_dim;
    let c = table[row + i];
    let sn = table[row + half + i];
    let x1 = x[base + i];
    let x2 = x[base + i + half];
    y[base + i] = x1 * c - x2 * sn;
    y[base + i + half] = x2 * c + x1 * sn;
}
