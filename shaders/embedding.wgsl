// Embedding gather: y[t, :] = table[ids[t], :]. A table larger than one binding is split by
// rows into parts, one dispatch each; a part holds rows [row_start, row_start + rows) and
// writes only the tokens whose id falls in it. One thread per output element.

struct Params {
    tokens: u32,
    dim: u32,
    row_start: u32,
    rows: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<WORD_table>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.tokens * p.dim) {
        return;
    }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    if (id >= p.row_start && id < p.row_start + p.rows) {
        y[i] = load_table((id - p.row_start) * p.dim + d);
    }
}
