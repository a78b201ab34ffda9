//! Elementwise ops: `add`, `mul`, activations (SiLU, GELU in its erf and tanh forms, ReLU)
//! and gated units. One op value, `tail(a)`; the scheduler folds it into the epilogue of the
//! op that produces `a` when it can (`schedule/fuse.rs`), and runs it as its own kernel
//! (`shaders/elementwise.wgsl`) otherwise.

use crate::dtype::WeightFormat;
use crate::error::Result;
use crate::graph::{Buf, Emit, Eval, Graph, Layout, Op, Tail, Value};
use crate::kernels::{Act, Epilogue, Family, Include, Kernel, Slot};
use std::sync::Arc;

/// Workgroup size of the standalone elementwise kernel.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The standalone kernel's parameters: `y[i] = epilogue(a[i])` over (rows, `cols`).
    pub struct Params("Params") {
        /// Elements of the output.
        count: u32,
        /// Elements per row: the bias is indexed by column.
        cols: u32,
    }
}

/// The standalone elementwise kernel (`shaders/elementwise.wgsl`).
pub static FAMILY: Family = Family {
    name: "elementwise",
    source: include_str!("../../shaders/elementwise.wgsl"),
    includes: &[Include::Epilogue],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::Read, Slot::Write],
    structs: &[<Params as crate::kernels::GpuStruct>::LAYOUT],
};

fn kernel(epi: Epilogue) -> Kernel {
    epi.apply(Kernel::new(&FAMILY).weight("bias", WeightFormat::F32).constant("WG", WG))
}

/// Every kernel variant elementwise ops can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    Epilogue::all().into_iter().map(kernel).collect()
}

/// `tail(a)`: `act(a) * aux_act(aux) + residual`.
#[derive(Clone, Debug)]
pub struct Elementwise {
    /// The input.
    pub a: Value,
    /// What is applied to it.
    pub tail: Tail,
}

impl Graph {
    fn elementwise(&self, a: Value, tail: Tail) -> Value {
        self.apply(Elementwise { a, tail })
    }

    /// a + b
    pub fn add(&self, a: Value, b: Value) -> Value {
        self.elementwise(a, Tail { residual: Some(b), ..Default::default() })
    }

    /// a * b, elementwise
    pub fn mul(&self, a: Value, b: Value) -> Value {
        self.elementwise(a, Tail { aux: Some((b, Act::Identity)), ..Default::default() })
    }

    /// act(a)
    pub fn act(&self, a: Value, act: Act) -> Value {
        self.elementwise(a, Tail { act, ..Default::default() })
    }

    /// GELU, erf form (BERT, Whisper).
    pub fn gelu(&self, a: Value) -> Value {
        self.act(a, Act::GeluErf)
    }

    /// GELU, tanh approximation (GPT-2, Gemma).
    pub fn gelu_tanh(&self, a: Value) -> Value {
        self.act(a, Act::GeluTanh)
    }

    /// act(gate) * up: SwiGLU with `Act::Silu`, GeGLU with a GELU.
    pub fn glu(&self, gate: Value, up: Value, act: Act) -> Value {
        self.elementwise(gate, Tail { act, aux: Some((up, Act::Identity)), residual: None })
    }
}

impl Op for Elementwise {
    fn name(&self) -> &'static str {
        "elementwise"
    }

    fn inputs(&self) -> Vec<Value> {
        std::iter::once(self.a).chain(self.tail.inputs()).collect()
    }

    /// Inputs laid out alike (whole, or split the same way) give a result laid out so.
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        Layout::common(inputs)
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let shape = g.shape(self.a);
        for o in self.tail.inputs() {
            if g.shape(o) != shape {
                return Err(format!("shapes {shape:?} and {:?} differ", g.shape(o)));
            }
        }
        Ok(shape)
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let shape = e.out_shape();
        let count = shape.iter().product::<usize>();
        let cols = shape.last().copied().unwrap_or(1).max(1);
        let epi = epilogue(false, &self.tail);
        let bindings = vec![
            Buf::Params,
            e.buf(self.a),
            Buf::Dummy,
            e.buf_or_dummy(self.tail.aux.map(|a| a.0)),
            e.buf_or_dummy(self.tail.residual),
            e.out(),
        ];
        let params = Params { count: count as u32, cols: cols as u32 };
        let grid = e.linear(e.this(), cols, WG);
        e.dispatch(kernel(epi), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let cols = e.out_shape().last().copied().unwrap_or(1);
        Ok(apply_tail(e, e.value(self.a), cols, None, &self.tail))
    }

    fn as_elementwise(&self) -> Option<(Value, &Tail)> {
        Some((self.a, &self.tail))
    }

    fn tail(&self) -> Option<(bool, &Tail)> {
        Some((false, &self.tail))
    }

    fn with_tail(&self, tail: Tail) -> Option<Arc<dyn Op>> {
        Some(Arc::new(Elementwise { a: self.a, tail }))
    }
}

/// The kernel switches for a tail after an optional bias.
pub fn epilogue(bias: bool, tail: &Tail) -> Epilogue {
    Epilogue {
        bias,
        act: tail.act,
        aux: tail.aux.map(|(_, a)| a),
        residual: tail.residual.is_some(),
    }
}

/// The CPU twin of a fused tail over `x` (rows, cols), reading its operands from `e`.
pub fn apply_tail(e: &Eval, x: &[f32], cols: usize, bias: Option<&[f32]>, t: &Tail) -> Vec<f32> {
    let aux = t.aux.map(|(a, act)| (e.value(a), act));
    tail(x, cols, bias, t.act, aux, t.residual.map(|r| e.value(r)))
}

/// erf to about 1e-12: Maclaurin series near zero, asymptotic series in the tails.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = 1.0 / (2.0 * a * a);
        let series = 1.0 - z + 3.0 * z * z - 15.0 * z.powi(3) + 105.0 * z.powi(4);
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    r.copysign(x)
}

/// An activation, exactly.
pub fn act(x: f32, a: Act) -> f32 {
    let v = f64::from(x);
    let y = match a {
        Act::Identity => v,
        Act::Silu => v / (1.0 + (-v).exp()),
        Act::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())
        }
        Act::GeluErf => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
        Act::Relu => v.max(0.0),
    };
    y as f32
}

/// The epilogue: `act(x + bias[col]) * aux_act(aux) + residual`, elementwise over (rows, cols).
pub fn tail(
    x: &[f32],
    cols: usize,
    bias: Option<&[f32]>,
    a: Act,
    aux: Option<(&[f32], Act)>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let mut y = x[i] + bias.map_or(0.0, |b| b[i % cols]);
            y = act(y, a);
            if let Some((aux, aa)) = aux {
                y *= act(aux[i], aa);
            }
            if let Some(r) = residual {
                y += r[i];
            }
            y
        })
        .collect()
}
