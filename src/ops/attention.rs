//! Grouped-query attention: causal self-attention over a KV cache (decoders, optionally in a
//! sliding window), self-attention over a step's own padded sequences (encoders, padding
//! masked by each sequence's length), and cross-attention over another sequence's keys with
//! an explicit key count (encoder-decoders).
//!
//! Two kernels compute it. `shaders/attention.wgsl` gives each (query row, head) a workgroup
//! whose threads split the keys. `shaders/attention_rows.wgsl` gives a workgroup 16 rows of
//! one head, 4 threads to a row, each with its own online softmax over a quarter of the
//! row's keys, merged at the end: for prefill and encoders, where the per-row kernel spends
//! most of its time on workgroup-wide reductions. A step with more than [`ROWS_ABOVE`] rows
//! runs the second where the head width allows it (a multiple of 4, at most
//! [`ROWS_MAX_HEAD_DIM`]), except on GL (see [`Target::of`](crate::Target::of)).
//!
//! Decode programs (one token per sequence) over a KV cache split each row's keys into
//! ranges instead ([`decode_splits`], or [`Target::attention_splits`](crate::Target)): the
//! row-block kernel's split mode computes each range's partial softmax into the op's
//! scratch, and `shaders/attention_merge.wgsl` merges them: a multiple of 16 ranges fills
//! whole workgroups per head, and fewer (a divisor of 16, as CPU adapters run) put several
//! heads' ranges in one workgroup ([`split_count`]). Where the row-block kernel does
//! not fit the heads, or the target says 0 (GL), decode takes the per-row kernel. Splitting
//! is decided by `attention_splits` alone: `attention_rows` does not turn it off.

use super::token_rows;
use crate::error::Result;
use crate::graph::{Bound, Buf, Emit, Eval, Graph, Layout, GridShape, Op, Rows, Value, When};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per (row, head).
pub const WG: u32 = 64;
/// Each thread keeps head_dim / WG accumulators, at most 4.
pub const MAX_HEAD_DIM: usize = 4 * WG as usize;

/// Steps with more rows than this run the row-block kernel, in programs of more than one
/// token per sequence (unless [`Target::attention_rows`](crate::Target) says otherwise).
pub const ROWS_ABOVE: usize = 16;
/// Query rows per workgroup of the row-block kernel (the shader's `BQ`).
pub const ROWS_BQ: u32 = 16;
/// The widest head the row-block kernel keeps in registers (the shader's `4 * MAX4`).
pub const ROWS_MAX_HEAD_DIM: usize = 128;

crate::kernels::gpu_struct! {
    /// Attention's parameters, as `shaders/attention_keys.wgsl` declares and explains them.
    pub struct Params("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// Token rows per sequence (T).
        tokens: u32,
        /// Query heads.
        heads: u32,
        /// KV heads; query head h reads KV head h / (heads / kv_heads).
        kv_heads: u32,
        /// Width of one head.
        head_dim: u32,
        /// Key rows per sequence in k and v: a cache's capacity, or the keys' T.
        kv_rows: u32,
        /// 1: k and v are KV caches, read at each sequence's slot; 0: the step's own rows.
        by_slot: u32,
        /// 1: a query sees keys up to its own position.
        causal: u32,
        /// The sliding window in keys; 0: none.
        window: u32,
        /// Cross-attention: the keys every query sees; 0 otherwise.
        keys: u32,
        /// Scores are `q · k * scale`.
        scale: f32,
        /// Key ranges of the row-block kernel's split mode; 0 elsewhere.
        splits: u32,
    }
}

const BINDINGS: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::Read, Slot::Write];
const STRUCTS: &[crate::kernels::Layout] = &[Params::LAYOUT, crate::graph::SeqParams::LAYOUT];

/// The per-row kernel (`shaders/attention.wgsl`): a workgroup per (query row, head).
pub static FAMILY: Family = Family {
    name: "attention",
    source: include_str!("../../shaders/attention.wgsl"),
    includes: &[Include::Seq, Include::AttentionKeys],
    bindings: BINDINGS,
    structs: STRUCTS,
};

/// The row-block kernel (`shaders/attention_rows.wgsl`): 16 rows of one head a workgroup.
pub static ROWS: Family = Family {
    name: "attention_rows",
    source: include_str!("../../shaders/attention_rows.wgsl"),
    includes: &[Include::Seq, Include::AttentionKeys],
    bindings: BINDINGS,
    structs: STRUCTS,
};

/// Merges the split mode's partial softmaxes (`shaders/attention_merge.wgsl`).
pub static MERGE: Family = Family {
    name: "attention_merge",
    source: include_str!("../../shaders/attention_merge.wgsl"),
    includes: &[Include::Seq, Include::AttentionKeys],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: STRUCTS,
};

fn merge_kernel(head_dim: usize) -> Kernel {
    Kernel::new(&MERGE).constant("HD4", (head_dim / 4) as u32)
}

/// Key ranges a decode row is split into over a KV cache of `capacity` positions: 16 (one
/// row-block workgroup a head) per 512 positions, at most 64.
pub fn decode_splits(capacity: usize) -> usize {
    ROWS_BQ as usize * capacity.div_ceil(512).clamp(1, 4)
}

/// The key ranges the row-block kernel's split mode runs for `n` asked: a power of two below
/// [`ROWS_BQ`] (that many heads' ranges share a workgroup), else a multiple of it (0 stays 0).
pub fn split_count(n: usize) -> usize {
    let bq = ROWS_BQ as usize;
    if n < bq { n.next_power_of_two().min(bq) * usize::from(n > 0) } else { n.next_multiple_of(bq) }
}

/// Workgroups along x of the split mode for `heads` heads in `splits` ranges each.
fn split_groups(heads: usize, splits: usize) -> u32 {
    let bq = ROWS_BQ as usize;
    if splits >= bq { (heads * splits / bq) as u32 } else { heads.div_ceil(bq / splits) as u32 }
}

fn kernel() -> Kernel {
    Kernel::new(&FAMILY).constant("WG", WG)
}

fn rows_kernel(head_dim: usize) -> Kernel {
    Kernel::new(&ROWS).constant("HD4", (head_dim / 4) as u32)
}

/// Whether the row-block kernel takes heads this wide.
pub fn rows_kernel_fits(head_dim: usize) -> bool {
    head_dim.is_multiple_of(4) && head_dim <= ROWS_MAX_HEAD_DIM
}

/// Every kernel variant attention can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![
        kernel(),
        rows_kernel(64),
        rows_kernel(ROWS_MAX_HEAD_DIM),
        rows_kernel(20),
        merge_kernel(64),
        merge_kernel(ROWS_MAX_HEAD_DIM),
    ]
}

/// Query heads, key/value heads and the head width.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Width of one head, at most [`MAX_HEAD_DIM`].
    pub head_dim: usize,
}

/// Which keys a query sees.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Keys up to its own position.
    Causal,
    /// Causal, and at most this many of the latest keys (Mistral).
    Window(usize),
    /// Every key of its sequence (encoders: keys past the sequence's length are padding).
    Full,
    /// The first `n` keys of the other sequence (cross-attention).
    Keys(usize),
}

/// Grouped-query attention: see the module docs, [`Graph::attention`] and
/// [`Graph::cross_attention`].
#[derive(Clone, Debug)]
pub struct Attention {
    /// The queries, (S, T, heads * head_dim).
    pub q: Value,
    /// The keys: a KV cache (slots, capacity, kv_heads * head_dim) or activations (S, Tk,
    /// kv_heads * head_dim).
    pub k: Value,
    /// The values, shaped as `k`.
    pub v: Value,
    /// The head counts and width.
    pub heads: Heads,
    /// Which keys each query sees.
    pub mask: Mask,
    /// Scores are `q · k * scale` (1 / sqrt(head_dim) from [`Graph::attention`]).
    pub scale: f32,
}

impl Graph {
    /// Attention of q (S, T, heads * head_dim) over k, v: either KV caches (slots, capacity,
    /// kv_heads * head_dim) after this step's [`kv_write`](Graph::kv_write), or this step's
    /// own (S, T, kv_heads * head_dim) keys and values. Scaled by 1 / sqrt(head_dim).
    pub fn attention(&self, q: Value, k: Value, v: Value, heads: Heads, mask: Mask) -> Value {
        let scale = 1.0 / (heads.head_dim as f32).sqrt();
        self.apply(Attention { q, k, v, heads, mask, scale })
    }

    /// Cross-attention of q (S, T, heads * head_dim) over the first `keys` rows of another
    /// sequence's k, v: dense (S, Tk, kv_heads * head_dim) activations, e.g. computed from an
    /// encoder's output fed with `input_dense`, or states (slots, Tk, ...) written once.
    pub fn cross_attention(&self, q: Value, k: Value, v: Value, heads: Heads, keys: usize) -> Value {
        self.attention(q, k, v, heads, Mask::Keys(keys))
    }
}

impl Attention {
    /// Key ranges each row is split into on this emission (0: not split). Decode programs
    /// (one token per sequence) over a KV cache split where the row-block kernel runs and
    /// the target does not say otherwise.
    fn splits(&self, e: &Emit) -> usize {
        let (s, ks) = (e.out_shape(), e.shape(self.k));
        let cached = matches!(e.buf(self.k), Buf::State(_));
        if !cached || s[1] != 1 || !rows_kernel_fits(self.heads.head_dim) {
            return 0;
        }
        let n = e.target.attention_splits.unwrap_or_else(|| decode_splits(ks[1]));
        split_count(n)
    }

    /// (causal, window, explicit key count) as the kernel takes them.
    fn mask_params(&self) -> (bool, usize, usize) {
        match self.mask {
            Mask::Causal => (true, 0, 0),
            Mask::Window(w) => (true, w, 0),
            Mask::Full => (false, 0, 0),
            Mask::Keys(n) => (false, 0, n),
        }
    }
}

impl Op for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.q, self.k, self.v]
    }

    /// Heads split across the parts (queries with their KV heads) stay split.
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        let split = |l: &Layout| l.along(2).is_some();
        match (k == v, q, k) {
            (true, Layout::Whole, Layout::Whole) => Ok(Layout::Whole),
            (true, q, k) if split(q) && split(k) => Ok(q.clone()),
            _ => Err(format!("queries {q}, keys {k} and values {v} are not the same heads")),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, c] = g.dims3(self.q)?;
        let Heads { heads, kv_heads, head_dim } = self.heads;
        if c != heads * head_dim {
            return Err(format!("query width {c} is not {heads} x {head_dim}"));
        }
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(format!("{heads} heads do not group over {kv_heads} KV heads"));
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(format!("head_dim {head_dim} exceeds {MAX_HEAD_DIM}"));
        }
        let cached = g.is_state(self.k);
        if g.shape(self.k) != g.shape(self.v) {
            return Err(format!(
                "keys {:?} and values {:?} differ in shape",
                g.shape(self.k),
                g.shape(self.v)
            ));
        }
        for kv in [self.k, self.v] {
            let ks = g.shape(kv);
            if g.is_state(kv) != cached || ks.len() != 3 || ks[2] != kv_heads * head_dim {
                return Err(format!(
                    "keys and values {ks:?} are not both (slots or {s}, rows, {kv_heads} x {head_dim})"
                ));
            }
            if !cached && ks[0] != s {
                return Err(format!("keys and values {ks:?} are not of {s} sequences"));
            }
        }
        let rows = g.shape(self.k)[1];
        match self.mask {
            Mask::Keys(n) if n == 0 || n > rows => {
                return Err(format!("{n} keys asked of {rows} rows"));
            }
            Mask::Keys(_) if !cached && (g.ragged(self.k) || g.ragged(self.v)) => {
                return Err("cross-attention reads every key row, so its keys and values must be \
                     dense (from `input_dense`, or a state), not padded token rows"
                    .into());
            }
            Mask::Window(0) => return Err("a sliding window of 0 keys".into()),
            _ => {}
        }
        Ok(vec![s, t, c])
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let s = e.out_shape().to_vec();
        let ks = e.shape(self.k).to_vec();
        let by_slot = matches!(e.buf(self.k), Buf::State(_));
        if by_slot {
            let name = e.state_name(self.k)?;
            e.bound(Bound::Slots { what: format!("KV cache '{name}'"), slots: ks[0] });
            if !matches!(self.mask, Mask::Keys(_)) {
                let what = format!("KV cache '{name}'");
                e.bound(Bound::Positions { what, capacity: ks[1] });
            }
        }
        let (causal, window, keys) = self.mask_params();
        let h = self.heads;
        let params = Params {
            seqs: s[0] as u32,
            tokens: s[1] as u32,
            heads: h.heads as u32,
            kv_heads: h.kv_heads as u32,
            head_dim: h.head_dim as u32,
            kv_rows: ks[1] as u32,
            by_slot: u32::from(by_slot),
            causal: u32::from(causal),
            window: window as u32,
            keys: keys as u32,
            scale: self.scale,
            splits: 0,
        };
        let bindings = vec![
            Buf::Params,
            Buf::Seqs,
            e.buf(self.q),
            e.buf(self.k),
            e.buf(self.v),
            e.out(),
        ];
        let splits = self.splits(e);
        if splits > 0 {
            let scratch = e.scratch()?;
            let split = Params { splits: splits as u32, ..params };
            let shape = GridShape::RowsY { x: split_groups(h.heads, splits), per_group: 1 };
            let mut b = bindings.clone();
            b[5] = scratch.clone();
            e.dispatch(rows_kernel(h.head_dim), b, &split, e.grid(e.rows(self.q), shape));
            let merge = vec![Buf::Params, scratch, e.out()];
            e.dispatch(merge_kernel(h.head_dim), merge, &split, e.linear(self.q, h.heads, 1));
            return Ok(());
        }
        // Per-row kernel up to `cut` rows, row blocks above.
        let most = match e.rows(self.q) {
            Rows::Fixed(n) => n,
            Rows::Ragged { .. } => s[0] * s[1],
        };
        let default_cut = if s[1] > 1 { ROWS_ABOVE } else { usize::MAX };
        let cut = e.target.attention_rows.unwrap_or(default_cut);
        let blocks = rows_kernel_fits(h.head_dim) && most > cut;
        if !blocks || cut > 0 {
            let mut grid = e.linear(self.q, h.heads, 1);
            if blocks {
                grid.when = When::RowsAtMost(cut);
            }
            e.dispatch(kernel(), bindings.clone(), &params, grid);
        }
        if blocks {
            let shape = GridShape::RowsY { x: h.heads as u32, per_group: ROWS_BQ };
            let mut grid = e.grid(e.rows(self.q), shape);
            grid.when = When::RowsAbove(cut);
            e.dispatch(rows_kernel(h.head_dim), bindings, &params, grid);
        }
        Ok(())
    }

    fn scratch_bytes(&self, e: &Emit) -> u64 {
        // (rows, heads, splits, head_dim + 4) f32: each range's accumulator, then (m, l).
        let rows = e.out_shape()[..2].iter().product::<usize>();
        (rows * self.heads.heads * self.splits(e) * (self.heads.head_dim + 4) * 4) as u64
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let s = e.out_shape().to_vec();
        let ks = e.shape(self.k).to_vec();
        let by_slot = e.state_name(self.k).is_ok();
        let (causal, window, keys) = self.mask_params();
        let h = self.heads;
        let (qw, kvw) = (h.heads * h.head_dim, h.kv_heads * h.head_dim);
        let (q, k, v) = (e.value(self.q), e.value(self.k), e.value(self.v));
        let mut o = vec![0.0; q.len()];
        for (si, t, r) in token_rows(e.step, s[1]) {
            let sq = &e.step.seqs[si];
            let (base, kv_seq) = if by_slot { (sq.pos, sq.slot) } else { (0, si) };
            let n = if keys > 0 {
                keys
            } else if causal {
                base + t + 1
            } else {
                base + sq.len
            }
            .min(ks[1]);
            let first = if window > 0 { n.saturating_sub(window) } else { 0 };
            let rows = kv_seq * ks[1] * kvw..(kv_seq * ks[1] + n) * kvw;
            let out = attend(&q[r * qw..(r + 1) * qw], &k[rows.clone()], &v[rows], h, first, self.scale);
            o[r * qw..(r + 1) * qw].copy_from_slice(&out);
        }
        Ok(o)
    }
}

/// One query row (heads * head_dim) over keys `first..` of k, v (rows of kv_heads *
/// head_dim), accumulated in f64.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], h: Heads, first: usize, scale: f32) -> Vec<f32> {
    let Heads { heads, kv_heads, head_dim } = h;
    let kvw = kv_heads * head_dim;
    let n = k.len() / kvw;
    let mut o = vec![0.0; heads * head_dim];
    for hh in 0..heads {
        let kvh = hh / (heads / kv_heads);
        let qrow = &q[hh * head_dim..][..head_dim];
        let scores: Vec<f64> = (first..n)
            .map(|j| {
                let krow = &k[j * kvw + kvh * head_dim..][..head_dim];
                qrow.iter().zip(krow).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>()
                    * f64::from(scale)
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        for d in 0..head_dim {
            let acc: f64 = (first..n).map(|j| e[j - first] * f64::from(v[j * kvw + kvh * head_dim + d])).sum();
            o[hh * head_dim + d] = if sum > 0.0 { (acc / sum) as f32 } else { 0.0 };
        }
    }
    o
}

/// Causal (or not) attention of q (t, heads * head_dim), query j at position pos + j, over
/// cache rows k, v (at least pos + t of them), in a sliding window when given.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    h: Heads,
    pos: usize,
    causal: bool,
    window: Option<usize>,
) -> Vec<f32> {
    let (qw, kvw) = (h.heads * h.head_dim, h.kv_heads * h.head_dim);
    let t = q.len() / qw;
    let scale = 1.0 / (h.head_dim as f32).sqrt();
    let mut o = Vec::with_capacity(q.len());
    for j in 0..t {
        let n = if causal { pos + j + 1 } else { pos + t };
        let first = window.map_or(0, |w| n.saturating_sub(w));
        o.extend(attend(&q[j * qw..(j + 1) * qw], &k[..n * kvw], &v[..n * kvw], h, first, scale));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_fill_the_row_slots() {
        let asked = [0, 1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 48, 50];
        let got: Vec<usize> = asked.iter().map(|&n| split_count(n)).collect();
        assert_eq!(got, [0, 1, 2, 4, 4, 8, 8, 16, 16, 16, 32, 48, 64]);
        // Fewer ranges than slots: heads share workgroups, the last one partly.
        assert_eq!(split_groups(9, 4), 3);
        assert_eq!(split_groups(6, 2), 1);
        assert_eq!(split_groups(9, 1), 1);
        // Whole workgroups per head.
        assert_eq!(split_groups(9, 16), 9);
        assert_eq!(split_groups(3, 64), 12);
    }
}
