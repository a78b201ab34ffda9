//! One row per sequence from its token rows, padding masked out by its length
//! (`shaders/pool.wgsl`): the last token (the one position whose logits a generation step
//! needs), or the mean (sentence-transformers' pooling for embedding models).

use crate::error::Result;
use crate::graph::{Buf, Emit, Eval, Graph, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup, one output value each.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The pooling kernel's parameters (`shaders/pool.wgsl`).
    pub struct Params("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// Token rows per sequence (T).
        tokens: u32,
        /// Values per row (W).
        width: u32,
    }
}

/// The pooling kernel (`shaders/pool.wgsl`).
pub static FAMILY: Family = Family {
    name: "pool",
    source: include_str!("../../shaders/pool.wgsl"),
    includes: &[Include::Seq],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT, crate::graph::SeqParams::LAYOUT],
};

/// Which row a sequence's tokens become.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The sequence's last token row in the step.
    Last,
    /// The mean of the sequence's token rows, padding excluded.
    Mean,
}

fn kernel(kind: Kind) -> Kernel {
    let mode = match kind {
        Kind::Last => 0u32,
        Kind::Mean => 1,
    };
    Kernel::new(&FAMILY).constant("WG", WG).constant("MODE", mode)
}

/// Every kernel variant pooling can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![kernel(Kind::Last), kernel(Kind::Mean)]
}

/// One row per sequence from its token rows: see [`Graph::last_token`] and [`Graph::mean_pool`].
#[derive(Clone, Debug)]
pub struct Pool {
    /// The input, (S, T, W).
    pub x: Value,
    /// Which row a sequence's tokens become.
    pub kind: Kind,
}

impl Graph {
    /// x (S, T, W) -> (S, 1, W): each sequence's last token row in the step.
    pub fn last_token(&self, x: Value) -> Value {
        self.apply(Pool { x, kind: Kind::Last })
    }

    /// x (S, T, W) -> (S, 1, W): the mean of each sequence's token rows (padding excluded).
    pub fn mean_pool(&self, x: Value) -> Value {
        self.apply(Pool { x, kind: Kind::Mean })
    }
}

impl Op for Pool {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Last => "last_token",
            Kind::Mean => "mean_pool",
        }
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.x]
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, _, w] = g.dims3(self.x)?;
        Ok(vec![s, 1, w])
    }

    fn ragged(&self, _: &[bool]) -> bool {
        true
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let s = e.shape(self.x).to_vec();
        let params = Params {
            seqs: s[0] as u32,
            tokens: s[1] as u32,
            width: s[2] as u32,
        };
        let bindings = vec![Buf::Params, Buf::Seqs, e.buf(self.x), e.out()];
        let grid = e.linear(e.this(), s[2], WG);
        e.dispatch(kernel(self.kind), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let s = e.shape(self.x).to_vec();
        let lens: Vec<usize> = e.step.seqs.iter().map(|q| q.len).collect();
        let x = e.value(self.x);
        Ok(match self.kind {
            Kind::Last => last_token(x, &lens, s[1], s[2]),
            Kind::Mean => mean_pool(x, &lens, s[1], s[2]),
        })
    }
}

/// The CPU twin: x (S, T, W), the row `lens[s] - 1` of sequence s -> (S, W); zeros for a
/// sequence of no tokens.
pub fn last_token(x: &[f32], lens: &[usize], tokens: usize, width: usize) -> Vec<f32> {
    let mut y = vec![0.0; lens.len() * width];
    for (s, &len) in lens.iter().enumerate() {
        let len = len.min(tokens);
        if len > 0 {
            let r = s * tokens + len - 1;
            y[s * width..(s + 1) * width].copy_from_slice(&x[r * width..(r + 1) * width]);
        }
    }
    y
}

/// The CPU twin: x (S, T, W), the first `lens[s]` rows of sequence s averaged -> (S, W).
pub fn mean_pool(x: &[f32], lens: &[usize], tokens: usize, width: usize) -> Vec<f32> {
    let mut y = vec![0.0; lens.len() * width];
    for (s, &len) in lens.iter().enumerate() {
        let len = len.min(tokens);
        for c in 0..width {
            let sum: f64 = (0..len).map(|t| f64::from(x[(s * tokens + t) * width + c])).sum();
            y[s * width + c] = if len > 0 { (sum / len as f64) as f32 } else { 0.0 };
        }
    }
    y
}
