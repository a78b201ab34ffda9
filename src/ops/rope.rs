//! Rotary position embeddings, rotate-half layout (`shaders/rope.wgsl`), with the cos/sin
//! table computed on the host in f64.

use super::token_rows;
use crate::error::Result;
use crate::graph::{Bound, Buf, Emit, Eval, Graph, Layout, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup, one rotated pair each.
pub const WG: u32 = 64;

crate::kernels::gpu_struct! {
    /// The rotation kernel's parameters (`shaders/rope.wgsl`).
    pub struct Params("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// Token rows per sequence (T).
        tokens: u32,
        /// Heads per row.
        heads: u32,
        /// Width of one head (even).
        head_dim: u32,
    }
}

/// The rotation kernel (`shaders/rope.wgsl`).
pub static FAMILY: Family = Family {
    name: "rope",
    source: include_str!("../../shaders/rope.wgsl"),
    includes: &[Include::Seq],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT, crate::graph::SeqParams::LAYOUT],
};

fn kernel() -> Kernel {
    Kernel::new(&FAMILY).constant("WG", WG)
}

/// Every kernel variant of RoPE (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![kernel()]
}

/// Rotary position embeddings: see [`Graph::rope`].
#[derive(Clone, Debug)]
pub struct Rope {
    /// The queries or keys, (S, T, heads * head_dim).
    pub x: Value,
    /// (positions, head_dim) cos/sin table, see [`rope_table`].
    pub table: Value,
    /// Heads per row.
    pub heads: usize,
    /// Width of one head (even).
    pub head_dim: usize,
}

impl Graph {
    /// Rotate-half RoPE over x (S, T, heads * head_dim), token t of sequence s at position
    /// `pos + t`, with a (positions, head_dim) cos/sin table from [`rope_table`].
    pub fn rope(&self, x: Value, table: Value, heads: usize, head_dim: usize) -> Value {
        self.apply(Rope { x, table, heads, head_dim })
    }
}

impl Op for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.x, self.table]
    }

    /// Heads split across the parts stay split.
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        match (&inputs[0], &inputs[1]) {
            (x, Layout::Whole) if *x == Layout::Whole => Ok(Layout::Whole),
            (x, Layout::Whole) if x.along(2).is_some_and(|(r, _)| r.start % self.head_dim == 0) => {
                Ok(x.clone())
            }
            (x, t) => Err(format!("x {x} is not whole heads, or the table {t} is not whole")),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, c] = g.dims3(self.x)?;
        let (h, dh) = (self.heads, self.head_dim);
        if c != h * dh || dh % 2 != 0 {
            return Err(format!("width {c} is not {h} heads x {dh} (even) dims"));
        }
        let ts = g.shape(self.table);
        if ts.len() != 2 || ts[1] != dh {
            return Err(format!("table has shape {ts:?}, expected (positions, {dh})"));
        }
        Ok(vec![s, t, c])
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let s = e.out_shape().to_vec();
        let capacity = e.shape(self.table)[0];
        e.bound(Bound::Positions { what: "the RoPE table".into(), capacity });
        let params = Params {
            seqs: s[0] as u32,
            tokens: s[1] as u32,
            heads: self.heads as u32,
            head_dim: self.head_dim as u32,
        };
        let bindings = vec![Buf::Params, Buf::Seqs, e.buf(self.table), e.buf(self.x), e.out()];
        let grid = e.linear(self.x, self.heads * self.head_dim / 2, WG);
        e.dispatch(kernel(), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let tokens = e.out_shape()[1];
        let (x, table) = (e.value(self.x), e.value(self.table));
        let width = self.heads * self.head_dim;
        let mut y = x.to_vec();
        for (s, t, r) in token_rows(e.step, tokens) {
            let pos = e.step.seqs[s].pos + t;
            let row = &x[r * width..(r + 1) * width];
            y[r * width..(r + 1) * width].copy_from_slice(&rope(row, table, self.heads, self.head_dim, pos));
        }
        Ok(y)
    }
}

/// RoPE inverse frequencies: theta^(-2i / head_dim) for i < head_dim / 2.
pub fn rope_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64) as f32)
        .collect()
}

/// The RoPE table for positions 0..rows: row p = [cos(p f_i) for i < half, sin(p f_i) ...].
/// The angle is the f32 product `p * f_i`, as HF computes it; sin and cos are taken in f64.
pub fn rope_table(inv_freq: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * inv_freq.len() * 2);
    for p in 0..rows {
        let angles: Vec<f64> = inv_freq.iter().map(|&f| f64::from(p as f32 * f)).collect();
        out.extend(angles.iter().map(|a| a.cos() as f32));
        out.extend(angles.iter().map(|a| a.sin() as f32));
    }
    out
}

/// Rotate-half RoPE on x (t, heads * head_dim) with a [`rope_table`]; row j sits at
/// position pos + j.
pub fn rope(x: &[f32], table: &[f32], heads: usize, head_dim: usize, pos: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut y = x.to_vec();
    for (t, row) in y.chunks_mut(heads * head_dim).enumerate() {
        let angles = &table[(pos + t) * head_dim..];
        for h in 0..heads {
            let base = h * head_dim;
            for i in 0..half {
                let (c, s) = (f64::from(angles[i]), f64::from(angles[half + i]));
                let x1 = f64::from(x[t * heads * head_dim + base + i]);
                let x2 = f64::from(x[t * heads * head_dim + base + i + half]);
                row[base + i] = (x1 * c - x2 * s) as f32;
                row[base + i + half] = (x2 * c + x1 * s) as f32;
            }
        }
    }
    y
}
