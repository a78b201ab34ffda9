//! Writing a step's keys or values into a KV cache (`shaders/kv_write.wgsl`). The cache is a
//! state of (slots, capacity, width); each sequence writes its tokens at its own slot and
//! position, and the result is the cache after the write.

use super::token_rows;
use crate::error::{Error, Result};
use crate::graph::{Bound, Buf, Emit, Eval, Graph, Layout, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup, one value each.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The write kernel's parameters (`shaders/kv_write.wgsl`).
    pub struct Params("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// Token rows per sequence (T).
        tokens: u32,
        /// Values per row of the source and the cache.
        width: u32,
        /// Positions the cache holds per slot.
        capacity: u32,
        /// Slots of the cache.
        slots: u32,
    }
}

/// The write kernel (`shaders/kv_write.wgsl`).
pub static FAMILY: Family = Family {
    name: "kv_write",
    source: include_str!("../../shaders/kv_write.wgsl"),
    includes: &[Include::Seq],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT, crate::graph::SeqParams::LAYOUT],
};

fn kernel() -> Kernel {
    Kernel::new(&FAMILY).constant("WG", WG)
}

/// Every kernel variant of the KV write (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![kernel()]
}

/// A write into a KV cache: see [`Graph::kv_write`].
#[derive(Clone, Debug)]
pub struct KvWrite {
    /// The step's keys or values, (S, T, width).
    pub src: Value,
    /// The cache state, (slots, capacity, width).
    pub cache: Value,
}

impl Graph {
    /// Write src (S, T, width) into the cache (slots, capacity, width) at each sequence's
    /// slot and position; the result is the cache after the write.
    pub fn kv_write(&self, src: Value, cache: Value) -> Value {
        self.apply(KvWrite { src, cache })
    }
}

impl Op for KvWrite {
    fn name(&self) -> &'static str {
        "kv_write"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.src, self.cache]
    }

    /// The cache is each part's own: it holds what the part computes (its heads' keys).
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        match &inputs[1] {
            Layout::Whole => Ok(inputs[0].clone()),
            c => Err(format!("a cache is a part's own state, not {c}")),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [_, _, w] = g.dims3(self.src)?;
        let cs = g.shape(self.cache);
        if !g.is_state(self.cache) || cs.len() != 3 || cs[2] != w {
            return Err(format!(
                "rows of width {w} need a (slots, capacity, {w}) state, got {cs:?}"
            ));
        }
        Ok(cs)
    }

    fn ragged(&self, _: &[bool]) -> bool {
        false
    }

    fn updates(&self) -> Option<Value> {
        Some(self.cache)
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let s = e.shape(self.src).to_vec();
        let c = e.shape(self.cache).to_vec();
        let name = e.state_name(self.cache)?;
        e.bound(Bound::Positions { what: format!("KV cache '{name}'"), capacity: c[1] });
        e.bound(Bound::Slots { what: format!("KV cache '{name}'"), slots: c[0] });
        let params = Params {
            seqs: s[0] as u32,
            tokens: s[1] as u32,
            width: s[2] as u32,
            capacity: c[1] as u32,
            slots: c[0] as u32,
        };
        let bindings = vec![Buf::Params, Buf::Seqs, e.buf(self.src), e.buf(self.cache)];
        let grid = e.linear(self.src, s[2], WG);
        e.dispatch(kernel(), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let s = e.shape(self.src).to_vec();
        let c = e.shape(self.cache).to_vec();
        let (tokens, width, capacity) = (s[1], s[2], c[1]);
        let name = e.state_name(self.cache)?;
        let src = e.value(self.src).to_vec();
        let rows = token_rows(e.step, tokens);
        let seqs = e.step.seqs.clone();
        let cache = e.state_mut(&name)?;
        for (si, t, r) in rows {
            let q = &seqs[si];
            if q.slot >= c[0] || q.pos + t >= capacity {
                return Err(Error::Limit(format!("reference: write past the end of '{name}'")));
            }
            let at = (q.slot * capacity + q.pos + t) * width;
            cache[at..at + width].copy_from_slice(&src[r * width..(r + 1) * width]);
        }
        Ok(cache.clone())
    }
}
