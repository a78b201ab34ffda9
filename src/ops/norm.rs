//! Row normalisations over the last dimension, one workgroup per row (`shaders/norm.wgsl`):
//!
//! - RMSNorm: `y = x / sqrt(mean(x^2) + eps) * w`
//! - LayerNorm: `y = (x - mean(x)) / sqrt(var(x) + eps) * w + b`, bias optional
//! - L2 normalisation: `y = x / max(||x||, eps)` (sentence embeddings)

use crate::dtype::WeightFormat;
use crate::error::Result;
use crate::graph::{Buf, Emit, Eval, Graph, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per row on GPUs ([`crate::Target::row_threads`] says how many a device gets).
pub const WG: u32 = crate::kernels::GPU_ROW_THREADS;

crate::kernels::gpu_struct! {
    /// The normalisation kernel's parameters (`shaders/norm.wgsl`).
    pub struct Params("Params") {
        /// Rows normalised in the step.
        rows: u32,
        /// Values per row (the last dimension).
        d: u32,
        /// Added to the variance (RMS, Layer), or the smallest norm divided by (L2).
        eps: f32,
    }
}

/// The normalisation kernel, reducing in workgroup memory (`shaders/norm.wgsl`).
pub static FAMILY: Family = Family {
    name: "norm",
    source: include_str!("../../shaders/norm.wgsl"),
    includes: &[Include::Reduce],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};

/// The same kernel with subgroup reductions.
pub static FAMILY_SG: Family = FAMILY.with_includes("norm_sg", &[Include::ReduceSubgroup]);

/// Which normalisation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RMSNorm: `x / sqrt(mean(x^2) + eps) * w`.
    Rms,
    /// LayerNorm: `(x - mean(x)) / sqrt(var(x) + eps) * w + b`.
    Layer,
    /// L2 normalisation: `x / max(||x||, eps)`, no weight.
    L2,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Rms => 0,
            Kind::Layer => 1,
            Kind::L2 => 2,
        }
    }
}

fn kernel(
    kind: Kind,
    w: WeightFormat,
    b: WeightFormat,
    bias: bool,
    sg: Option<u32>,
    wg: u32,
) -> Kernel {
    crate::kernels::reducing(&FAMILY, &FAMILY_SG, wg, sg)
        .weight("w", w)
        .weight("b", b)
        .constant("MODE", kind.code())
        .constant("HAS_BIAS", bias)
}

/// Every kernel variant normalisations can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    let f32 = WeightFormat::F32;
    let mut out = vec![
        kernel(Kind::L2, f32, f32, false, None, WG),
        kernel(Kind::L2, f32, f32, false, Some(8), WG),
    ];
    for w in WeightFormat::FLOAT {
        for b in WeightFormat::FLOAT {
            out.push(kernel(Kind::Rms, w, b, false, None, WG));
            out.push(kernel(Kind::Layer, w, b, false, None, WG));
            out.push(kernel(Kind::Layer, w, b, true, None, WG));
        }
    }
    out.push(kernel(Kind::Rms, f32, f32, false, Some(32), WG));
    out.push(kernel(Kind::Layer, f32, f32, true, Some(4), WG));
    // CPU adapters' row of threads (Target::row_threads), with and without subgroups.
    let cpu = crate::kernels::CPU_ROW_THREADS;
    out.push(kernel(Kind::Rms, f32, f32, false, Some(8), cpu));
    out.push(kernel(Kind::Rms, f32, f32, false, Some(4), cpu));
    out.push(kernel(Kind::Rms, f32, f32, false, None, cpu));
    out
}

/// A row normalisation over the last dimension: see the module docs.
#[derive(Clone, Debug)]
pub struct Norm {
    /// The input, (..., D).
    pub x: Value,
    /// The scale, (D); `None` for L2.
    pub w: Option<Value>,
    /// LayerNorm's optional bias, (D).
    pub b: Option<Value>,
    /// Added to the variance (RMS, Layer), or the smallest norm divided by (L2).
    pub eps: f32,
    /// Which normalisation.
    pub kind: Kind,
}

impl Graph {
    /// x / rms(x) * w
    pub fn rms_norm(&self, x: Value, w: Value, eps: f32) -> Value {
        self.apply(Norm { x, w: Some(w), b: None, eps, kind: Kind::Rms })
    }

    /// (x - mean) / std * w + b
    pub fn layer_norm(&self, x: Value, w: Value, b: Option<Value>, eps: f32) -> Value {
        self.apply(Norm { x, w: Some(w), b, eps, kind: Kind::Layer })
    }

    /// x / max(||x||, eps), over the last dimension.
    pub fn l2_normalize(&self, x: Value, eps: f32) -> Value {
        self.apply(Norm { x, w: None, b: None, eps, kind: Kind::L2 })
    }
}

impl Op for Norm {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Rms => "rms_norm",
            Kind::Layer => "layer_norm",
            Kind::L2 => "l2_normalize",
        }
    }

    fn inputs(&self) -> Vec<Value> {
        [Some(self.x), self.w, self.b].into_iter().flatten().collect()
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let shape = g.shape(self.x);
        let d = *shape.last().ok_or("a scalar input")?;
        for p in [self.w, self.b].into_iter().flatten() {
            if g.shape(p) != [d] {
                return Err(format!("parameter has shape {:?}, expected [{d}]", g.shape(p)));
            }
        }
        Ok(shape)
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let shape = e.out_shape();
        let d = *shape.last().unwrap_or(&1);
        let rows = shape.iter().product::<usize>() / d.max(1);
        let (w, b) = (e.weight_or_f32(self.w)?, e.weight_or_f32(self.b)?);
        let k = kernel(self.kind, w, b, self.b.is_some(), e.target.subgroups, e.target.row_threads);
        let bindings = vec![
            Buf::Params,
            e.buf(self.x),
            e.buf_or_dummy(self.w),
            e.buf_or_dummy(self.b),
            e.out(),
        ];
        let params = Params { rows: rows as u32, d: d as u32, eps: self.eps };
        let grid = e.linear(self.x, 1, 1);
        e.dispatch(k, bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let d = *e.out_shape().last().unwrap_or(&1);
        let x = e.value(self.x);
        let w = self.w.map(|w| e.value(w));
        Ok(match self.kind {
            Kind::Rms => rms_norm(x, w.unwrap_or(&[]), d, self.eps),
            Kind::Layer => layer_norm(x, w.unwrap_or(&[]), self.b.map(|b| e.value(b)), d, self.eps),
            Kind::L2 => l2_normalize(x, d, self.eps),
        })
    }
}

/// RMSNorm over each row of x (rows, d).
pub fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &g)| (f64::from(v) * inv * f64::from(g)) as f32)
        })
        .collect()
}

/// LayerNorm over each row of x (rows, d).
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, d: usize, eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            (0..d).map(move |i| {
                let bias = b.map_or(0.0, |b| f64::from(b[i]));
                ((f64::from(row[i]) - mean) * inv * f64::from(w[i]) + bias) as f32
            })
        })
        .collect()
}

/// Each row of x (rows, d) divided by its Euclidean norm, or by `eps` if that is larger.
pub fn l2_normalize(x: &[f32], d: usize, eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let norm = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            let inv = 1.0 / norm.max(f64::from(eps));
            row.iter().map(move |&v| (f64::from(v) * inv) as f32)
        })
        .collect()
}
