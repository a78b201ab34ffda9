//! Picking rows: the last token of each sequence (`shaders/gather.wgsl`), e.g. the one
//! position whose logits a generation step needs.

use crate::error::Result;
use crate::graph::{Buf, Emit, Eval, Graph, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    pub struct Params("Params") {
        seqs: u32,
        tokens: u32,
        width: u32,
    }
}

pub static FAMILY: Family = Family {
    name: "gather",
    source: include_str!("../../shaders/gather.wgsl"),
    includes: &[Include::Seq],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT, crate::graph::SeqParams::LAYOUT],
};

fn kernel() -> Kernel {
    Kernel::new(&FAMILY).constant("WG", WG)
}

pub fn variants() -> Vec<Kernel> {
    vec![kernel()]
}

#[derive(Clone, Debug)]
pub struct LastToken {
    pub x: Value,
}

impl Graph {
    /// x (S, T, W) -> (S, 1, W): each sequence's last token row in the step.
    pub fn last_token(&self, x: Value) -> Value {
        self.apply(LastToken { x })
    }
}

impl Op for LastToken {
    fn name(&self) -> &'static str {
        "last_token"
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
        let params = Params { seqs: s[0] as u32, tokens: s[1] as u32, width: s[2] as u32 };
        let bindings = vec![Buf::Params, Buf::Seqs, e.buf(self.x), e.out()];
        let grid = e.linear(e.this(), s[2], WG);
        e.dispatch(kernel(), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let s = e.shape(self.x).to_vec();
        let (tokens, w) = (s[1], s[2]);
        let x = e.value(self.x);
        let mut y = vec![0.0; s[0] * w];
        for (si, q) in e.step.seqs.iter().enumerate() {
            let len = q.len.min(tokens);
            if len > 0 {
                let r = si * tokens + len - 1;
                y[si * w..(si + 1) * w].copy_from_slice(&x[r * w..(r + 1) * w]);
            }
        }
        Ok(y)
    }
}
