// Embedding gather: y[r, :] = table[id of row r, :] for the token rows of (seqs, tokens);
// padding rows are skipped. The id of a row is, by `source`: 0, ids[r]; 1, ids at the
// sequence's slot (a per-slot state: the token each sequence sampled last); 2, the row's
// position pos + t (learned position embeddings).
// A table larger than one binding is split by rows into parts, one dispatch each; a part
// holds rows [row_start, row_start + part_rows) and writes only the ids that fall in it.
// A table that is one adapter's vocabulary shard holds the ids [first, first + table_rows):
// every part writes zeros for ids outside it (the shards' rows are then summed).
// One thread per output element.

struct Params {
    rows: u32,
    tokens: u32,
    dim: u32,
    row_start: u32,
    part_rows: u32,
    source: u32,
    table_meta: u32,
    first: u32,
    table_rows: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seqs: array<Seq>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<WORD_table>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.rows * p.dim) {
        return;
    }
    let r = i / p.dim;
    let d = i % p.dim;
    let s = r / p.tokens;
    let t = r % p.tokens;
    let sq = seqs[s];
    if (t >= sq.len) {
        return;
    }
    var id = sq.pos + t;
    if (p.source == 0u) {
        id = ids[r];
    } else if (p.source == 1u) {
        id = ids[sq.slot];
    }
    if (id < p.first || id - p.first >= p.table_rows) {
        y[i] = 0.0;
        return;
    }
    id = id - p.first;
    if (id >= p.row_start && id < p.row_start + p.part_rows) {
        y[i] = load_table((id - p.row_start) * p.dim + d);
    }
}
