//! Numerically stable softmax over the last dimension, one workgroup per row
//! (`shaders/softmax.wgsl`).

use crate::error::Result;
use crate::graph::{Buf, Emit, Eval, Graph, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per row.
pub const WG: u32 = 64;

crate::kernels::gpu_struct! {
    /// The softmax kernel's parameters (`shaders/softmax.wgsl`).
    pub struct Params("Params") {
        /// Rows in the step, one workgroup each.
        rows: u32,
        /// Values per row (the last dimension).
        d: u32,
    }
}

/// The softmax kernel, reducing in workgroup memory (`shaders/softmax.wgsl`).
pub static FAMILY: Family = Family {
    name: "softmax",
    source: include_str!("../../shaders/softmax.wgsl"),
    includes: &[Include::Reduce],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};

/// The same kernel with subgroup reductions.
pub static FAMILY_SG: Family = FAMILY.with_includes("softmax_sg", &[Include::ReduceSubgroup]);

fn kernel(sg: Option<u32>) -> Kernel {
    crate::kernels::reducing(&FAMILY, &FAMILY_SG, WG, sg)
}

/// Every kernel variant of softmax (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![kernel(None), kernel(Some(4)), kernel(Some(32))]
}

/// Softmax over the last dimension: see [`Graph::softmax`].
#[derive(Clone, Debug)]
pub struct Softmax {
    /// The input, (..., D).
    pub x: Value,
}

impl Graph {
    /// Softmax over the last dimension.
    pub fn softmax(&self, x: Value) -> Value {
        self.apply(Softmax { x })
    }
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.x]
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let s = g.shape(self.x);
        if s.last().is_none_or(|&d| d == 0) {
            return Err(format!("nothing to normalise in shape {s:?}"));
        }
        Ok(s)
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let shape = e.out_shape();
        let d = *shape.last().unwrap_or(&1);
        let rows = shape.iter().product::<usize>() / d.max(1);
        let params = Params { rows: rows as u32, d: d as u32 };
        let grid = e.linear(self.x, 1, 1);
        let bindings = vec![Buf::Params, e.buf(self.x), e.out()];
        e.dispatch(kernel(e.target.subgroups), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let d = *e.out_shape().last().unwrap_or(&1);
        Ok(softmax(e.value(self.x), d))
    }
}

/// Softmax over each row of x (rows, d).
pub fn softmax(x: &[f32], d: usize) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| (v / s) as f32)
        })
        .collect()
}
