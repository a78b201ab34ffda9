//! 1-D convolution over time with stride and zero padding (`shaders/conv1d.wgsl`), as in
//! Whisper's audio encoder: x (S, T, C_in) with a PyTorch-layout weight (C_out, C_in, K), then
//! an activation and a table (T_out, C_out) added to every sequence (Whisper's positions).

use crate::dtype::WeightFormat;
use crate::error::Result;
use crate::graph::{Buf, Emit, Eval, Graph, Op, Value};
use crate::kernels::{Act, Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup, one output value each.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The convolution kernel's parameters (`shaders/conv1d.wgsl`).
    pub struct Params("Params") {
        /// Sequences (S).
        seqs: u32,
        /// Input time steps per sequence (T).
        t_in: u32,
        /// Output time steps per sequence: (T + 2 padding - K) / stride + 1.
        t_out: u32,
        /// Input channels.
        c_in: u32,
        /// Output channels.
        c_out: u32,
        /// The kernel's width in time steps (K).
        kernel: u32,
        /// Input time steps between successive outputs.
        stride: u32,
        /// Zeros assumed before and after the input.
        padding: u32,
    }
}

/// The convolution kernel (`shaders/conv1d.wgsl`).
pub static FAMILY: Family = Family {
    name: "conv1d",
    source: include_str!("../../shaders/conv1d.wgsl"),
    includes: &[Include::Activate],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};

fn kernel(w: WeightFormat, bias: Option<WeightFormat>, act: Act, add: Option<WeightFormat>) -> Kernel {
    Kernel::new(&FAMILY)
        .weight("w", w)
        .weight("bias", bias.unwrap_or(WeightFormat::F32))
        .weight("add", add.unwrap_or(WeightFormat::F32))
        .constant("WG", WG)
        .constant("HAS_BIAS", bias.is_some())
        .constant("ACT", act.code())
        .constant("HAS_ADD", add.is_some())
}

/// Every kernel variant convolutions can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    let mut out = Vec::new();
    for w in WeightFormat::FLOAT {
        out.push(kernel(w, None, Act::Identity, None));
        for b in WeightFormat::FLOAT {
            for act in Act::ALL {
                out.push(kernel(w, Some(b), act, None));
                out.push(kernel(w, Some(b), act, Some(b)));
            }
        }
    }
    out
}

/// A 1-D convolution with a fused activation and addend: see [`Graph::conv1d_act`].
#[derive(Clone, Debug)]
pub struct Conv1d {
    /// The input, (S, T, C_in).
    pub x: Value,
    /// The weight, (C_out, C_in, K) as PyTorch stores it.
    pub w: Value,
    /// An optional bias, (C_out).
    pub bias: Option<Value>,
    /// Input time steps between successive outputs.
    pub stride: usize,
    /// Zeros assumed before and after the input.
    pub padding: usize,
    /// The activation applied after the bias.
    pub act: Act,
    /// (T_out, C_out), added after the activation to every sequence.
    pub add: Option<Value>,
}

impl Graph {
    /// x (S, T, C_in) convolved with w (C_out, C_in, K) over time, `stride` apart, with
    /// `padding` zeros on each side, plus bias (C_out) -> (S, (T + 2 padding - K) / stride + 1,
    /// C_out).
    pub fn conv1d(&self, x: Value, w: Value, bias: Option<Value>, stride: usize, padding: usize) -> Value {
        self.apply(Conv1d { x, w, bias, stride, padding, act: Act::Identity, add: None })
    }

    /// [`Graph::conv1d`], then `act`, then `add` (T_out, C_out) added to every sequence: one
    /// kernel for Whisper's `gelu(conv(x)) + positions`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv1d_act(
        &self,
        x: Value,
        w: Value,
        bias: Option<Value>,
        stride: usize,
        padding: usize,
        act: Act,
        add: Option<Value>,
    ) -> Value {
        self.apply(Conv1d { x, w, bias, stride, padding, act, add })
    }
}

impl Conv1d {
    fn out_len(&self, t: usize, k: usize) -> Option<usize> {
        let padded = t + 2 * self.padding;
        (self.stride > 0 && padded >= k).then(|| (padded - k) / self.stride + 1)
    }
}

impl Op for Conv1d {
    fn name(&self) -> &'static str {
        "conv1d"
    }

    fn inputs(&self) -> Vec<Value> {
        let mut v = vec![self.x, self.w];
        v.extend(self.bias);
        v.extend(self.add);
        v
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, c_in] = g.dims3(self.x)?;
        if g.ragged(self.x) {
            return Err("a convolution mixes rows along time, so its input must be dense (from \
                 `input_dense` or another dense op), not padded token rows"
                .into());
        }
        let [c_out, k] = match g.shape(self.w).as_slice() {
            [co, ci, k] if *ci == c_in => [*co, *k],
            other => return Err(format!("input has {c_in} channels but weight is {other:?}, expected (C_out, {c_in}, K)")),
        };
        if let Some(b) = self.bias
            && g.shape(b) != [c_out]
        {
            return Err(format!("bias has shape {:?}, expected [{c_out}]", g.shape(b)));
        }
        let t_out = self
            .out_len(t, k)
            .ok_or_else(|| format!("{t} steps padded by {} are fewer than the kernel's {k}, or stride is 0", self.padding))?;
        if let Some(a) = self.add
            && g.shape(a) != [t_out, c_out]
        {
            return Err(format!("the added table has shape {:?}, expected [{t_out}, {c_out}]", g.shape(a)));
        }
        Ok(vec![s, t_out, c_out])
    }

    fn ragged(&self, _: &[bool]) -> bool {
        false
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let k = kernel(
            e.weight(self.w, false)?,
            self.bias.map(|b| e.weight(b, false)).transpose()?,
            self.act,
            self.add.map(|a| e.weight(a, false)).transpose()?,
        );
        let (xs, ws, ys) = (e.shape(self.x).to_vec(), e.shape(self.w).to_vec(), e.out_shape().to_vec());
        let params = Params {
            seqs: xs[0] as u32,
            t_in: xs[1] as u32,
            t_out: ys[1] as u32,
            c_in: xs[2] as u32,
            c_out: ys[2] as u32,
            kernel: ws[2] as u32,
            stride: self.stride as u32,
            padding: self.padding as u32,
        };
        let bindings = vec![
            Buf::Params,
            e.buf(self.x),
            e.buf(self.w),
            e.buf_or_dummy(self.bias),
            e.buf_or_dummy(self.add),
            e.out(),
        ];
        let grid = e.linear(e.this(), ys[2], WG);
        e.dispatch(k, bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let (xs, ws) = (e.shape(self.x).to_vec(), e.shape(self.w).to_vec());
        let bias = self.bias.map(|b| e.value(b));
        let mut y = conv1d(e.value(self.x), e.value(self.w), bias, xs, ws[0], ws[2], self.stride, self.padding);
        let add = self.add.map(|a| e.value(a));
        let period = add.map_or(1, <[f32]>::len).max(1);
        for (i, v) in y.iter_mut().enumerate() {
            *v = crate::ops::elementwise::act(*v, self.act) + add.map_or(0.0, |a| a[i % period]);
        }
        Ok(y)
    }
}

/// The CPU twin: x (S, T, C_in), w (C_out, C_in, K) -> (S, T_out, C_out), f64 accumulation.
#[allow(clippy::too_many_arguments)]
pub fn conv1d(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    x_shape: Vec<usize>,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Vec<f32> {
    let (s, t, c_in) = (x_shape[0], x_shape[1], x_shape[2]);
    let t_out = (t + 2 * padding - k) / stride + 1;
    let mut y = vec![0.0; s * t_out * c_out];
    for si in 0..s {
        for to in 0..t_out {
            for co in 0..c_out {
                let mut acc = bias.map_or(0.0, |b| f64::from(b[co]));
                for j in 0..k {
                    let Some(ti) = (to * stride + j).checked_sub(padding).filter(|&ti| ti < t) else {
                        continue;
                    };
                    for ci in 0..c_in {
                        acc += f64::from(w[(co * c_in + ci) * k + j]) * f64::from(x[(si * t + ti) * c_in + ci]);
                    }
                }
                y[(si * t_out + to) * c_out + co] = acc as f32;
            }
        }
    }
    y
}
