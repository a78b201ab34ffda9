//! Matrix multiplication against an HF-layout weight, with a fused epilogue:
//! `y (S, T, N) = tail(x (S, T, K) · w (N, K)^T + bias)`.
//!
//! Two kinds of kernel compute it (their families and choice: `kernels.rs`): a tiled GEMM for many
//! rows, as the target's [`Gemm`](crate::kernels::Gemm) says (`shaders/matmul.wgsl` for GPUs,
//! `shaders/matmul_columns.wgsl` and its subgroup twin for CPU adapters), and a GEMV that streams
//! each weight once per block of 8 rows, for decode and short prompts. GEMV widens float weights to
//! f32 (`shaders/gemv.wgsl`; F32 weights with rows of a multiple of 4 are read as vectors,
//! `shaders/gemv_f32x4.wgsl`). Block-quantized weights are either widened to f32 a block at a time
//! for every row of x (`shaders/gemv_block.wgsl`, which can read x once per subgroup and broadcast
//! it) or dotted with 8-bit activations (`shaders/gemv_q8.wgsl`, after `shaders/quantize_q8.wgsl`
//! has quantized x once into the op's scratch), as the target's [`Gemv`] says. Its lanes sum in
//! workgroup memory or with subgroup shuffles. When a program's steps may have either, both are
//! emitted and each step runs the one that suits the rows it has. A weight larger than one binding
//! is split by rows into parts, one dispatch each.

use super::elementwise::{apply_tail, epilogue};
use crate::error::{Error, Result};
use crate::graph::{Buf, Emit, Eval, Graph, GridShape, Layout, Op, Rows, Tail, Value, When};
use crate::kernels::{Gemv, Kernel, grid};
use std::sync::Arc;

mod kernels;
pub use kernels::*;

/// `y = tail(x · w^T + bias)`: see the module docs and [`Graph::linear`].
#[derive(Clone, Debug)]
pub struct MatMul {
    /// The activations, (S, T, K).
    pub x: Value,
    /// The weight, (N, K) as HF stores it.
    pub w: Value,
    /// An optional bias, (N).
    pub bias: Option<Value>,
    /// Elementwise ops fused after it.
    pub tail: Tail,
}

impl Graph {
    /// x (S, T, K) · w (N, K)^T -> (S, T, N)
    pub fn matmul(&self, x: Value, w: Value) -> Value {
        self.linear(x, w, None)
    }

    /// x (S, T, K) · w (N, K)^T + bias (N) -> (S, T, N)
    pub fn linear(&self, x: Value, w: Value, bias: Option<Value>) -> Value {
        self.apply(MatMul { x, w, bias, tail: Tail::default() })
    }
}

impl MatMul {
    /// The GEMV configuration for this matmul on `e`'s target (int8 only where the weight
    /// is in blocks), and the most rows a step may have to run it.
    fn gemv(&self, e: &Emit) -> Result<(Gemv, usize)> {
        let wf = e.weight(self.w, true)?;
        let mut cfg = e.target.gemv.get(wf, e.out_shape()[2]);
        cfg.int8 = cfg.int8 && wf.is_block();
        let cut = e.target.gemv_max_rows.unwrap_or(cfg.max_rows as usize);
        Ok((cfg, cut))
    }

    /// Rows of x the 8-bit GEMV's scratch holds quantized: every row a GEMV step reads,
    /// whole blocks of GEMV_MR up to `cut` (or all of them).
    fn quantized_rows(&self, e: &Emit, cut: usize) -> usize {
        let m = e.out_shape()[..2].iter().product::<usize>();
        if cut >= m {
            m
        } else {
            m.min(cut.next_multiple_of(GEMV_MR as usize))
        }
    }
}

impl Op for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn inputs(&self) -> Vec<Value> {
        let mut v = vec![self.x, self.w];
        v.extend(self.bias);
        v.extend(self.tail.inputs());
        v
    }

    /// Megatron's two cuts: a whole input by a weight split by rows gives the result split
    /// by columns (and its bias split alike); an input split by columns by a weight split
    /// the same way along K gives a partial sum, which takes no bias.
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        let (x, w) = (&inputs[0], &inputs[1]);
        let out = match (x, w.along(0), w.along(1)) {
            (Layout::Whole, None, None) if *w == Layout::Whole => Layout::Whole,
            (Layout::Whole, Some((rows, n)), _) => Layout::Split { axis: 2, range: rows, total: n },
            (x, _, Some(ref cols)) if x.along(2).as_ref() == Some(cols) => Layout::Partial,
            _ => {
                return Err(format!(
                    "an input {x} by a weight {w}: neither a whole input by a weight split by \
                     rows, nor an input split by columns by a weight split the same way"
                ));
            }
        };
        let bias = self.bias.map(|_| &inputs[2]);
        match bias {
            Some(_) if out == Layout::Partial => {
                Err("a bias on a partial sum would be added once per adapter".into())
            }
            Some(b) if b.along(0).map(|(r, n)| Layout::Split { axis: 2, range: r, total: n })
                .unwrap_or_default()
                != out =>
            {
                Err(format!("a bias {b} does not match the product's columns ({out})"))
            }
            _ => Ok(out),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, k] = g.dims3(self.x)?;
        let n = match g.shape(self.w).as_slice() {
            [n, kw] if *kw == k => *n,
            other => {
                return Err(format!(
                    "input is ({s}, {t}, {k}) but weight is {other:?}, expected (N, {k})"
                ));
            }
        };
        if let Some(b) = self.bias
            && g.shape(b) != [n]
        {
            return Err(format!("bias has shape {:?}, expected [{n}]", g.shape(b)));
        }
        Ok(vec![s, t, n])
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let wf = e.weight(self.w, true)?;
        let bf = e.weight_or_f32(self.bias)?;
        let epi = epilogue(self.bias.is_some(), &self.tail);
        let parts = e.tensor(self.w)?.parts().to_vec();
        let shape = e.out_shape();
        let (m, n_total) = (shape[0] * shape[1], shape[2]);
        let k = e.shape(self.x)[2];
        let rows = e.rows(self.x);
        let most = match rows {
            Rows::Fixed(n) => n,
            Rows::Ragged { .. } => m,
        };
        let (cfg, cut) = self.gemv(e)?;
        // The 8-bit GEMV reads x quantized once for every part.
        let quantized = if cut > 0 && cfg.int8 {
            let scratch = e.scratch()?;
            // m bounds the blocks written: the scratch's rows, not the program's.
            let rows = self.quantized_rows(e, cut);
            let params = Params { m: rows as u32, n: 0, k: k as u32, n_off: 0, ldy: 0, w_meta: 0 };
            let mut g = e.linear(self.x, k / 32, QUANTIZE_WG);
            if most > cut {
                g.when = When::RowsAtMost(cut);
            }
            let bindings = vec![Buf::Params, e.buf(self.x), scratch.clone()];
            e.dispatch(Kernel::new(&QUANTIZE_Q8), bindings, &params, g);
            Some(scratch)
        } else {
            None
        };
        for (pi, part) in parts.iter().enumerate() {
            let n = part.rows.len();
            let bindings = vec![
                Buf::Params,
                e.buf(self.x),
                Buf::Weight { value: self.w, part: pi },
                e.buf_or_dummy(self.bias),
                e.buf_or_dummy(self.tail.aux.map(|a| a.0)),
                e.buf_or_dummy(self.tail.residual),
                e.out(),
            ];
            let params = Params {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                n_off: part.rows.start as u32,
                ldy: n_total as u32,
                w_meta: e.tensor(self.w)?.meta_word(part),
            };
            // GEMV while a step has at most `cut` rows, GEMM above.
            if cut > 0 {
                let [x, y, _] = grid(u64::from((n as u32).div_ceil(cfg.rows)), e.target.max_workgroups);
                let group = gemv_group_rows(wf, cfg, most);
                let shape = GridShape::RowsZ { xy: [x, y], per_group: group };
                let mut g = e.grid(rows, shape);
                if most > cut {
                    g.when = When::RowsAtMost(cut);
                }
                let mut b = bindings.clone();
                if let Some(q) = &quantized {
                    b[1] = q.clone();
                }
                e.dispatch(gemv(wf, bf, epi, cfg, k, group), b, &params, g);
            }
            if most > cut {
                let (kernel, x, per_group) = gemm(e.target.gemm, wf, bf, epi, n as u32);
                let shape = GridShape::RowsY { x, per_group };
                let mut g = e.grid(rows, shape);
                g.when = When::RowsAbove(cut);
                let [gx, gy, _] = g.largest(e.seqs());
                if gx > e.target.max_workgroups || gy > e.target.max_workgroups {
                    return Err(Error::Limit(format!(
                        "{}: a matmul grid of {gx} x {gy} workgroups exceeds the device's limit of {}",
                        e.label(),
                        e.target.max_workgroups
                    )));
                }
                e.dispatch(kernel, bindings, &params, g);
            }
        }
        Ok(())
    }

    fn scratch_bytes(&self, e: &Emit) -> u64 {
        // x quantized, for the rows a GEMV step may have (whole blocks of GEMV_MR).
        let Ok((cfg, cut)) = self.gemv(e) else { return 0 };
        if cut == 0 || !cfg.int8 {
            return 0;
        }
        (self.quantized_rows(e, cut) * e.shape(self.x)[2] / 32 * QX_BYTES) as u64
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let shape = e.out_shape().to_vec();
        let (m, n) = (shape[0] * shape[1], shape[2]);
        let k = e.shape(self.x)[2];
        let y = matmul(e.value(self.x), e.value(self.w), m, n, k);
        let bias = self.bias.map(|b| e.value(b));
        Ok(apply_tail(e, &y, n, bias, &self.tail))
    }

    fn tail(&self) -> Option<(bool, &Tail)> {
        Some((self.bias.is_some(), &self.tail))
    }

    fn with_tail(&self, tail: Tail) -> Option<Arc<dyn Op>> {
        Some(Arc::new(MatMul { tail, ..self.clone() }))
    }
}

/// y (m, n) = x (m, k) · w (n, k)^T
pub fn matmul(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for l in 0..k {
                acc += f64::from(x[i * k + l]) * f64::from(w[j * k + l]);
            }
            y[i * n + j] = acc as f32;
        }
    }
    y
}

/// The CPU twin of the 8-bit-activation GEMV (`shaders/gemv_q8.wgsl`): in each 32-element
/// block of x the element of largest magnitude (the first, on ties) is kept in f32 and the
/// others are quantized per 16-element half as the kernel does it (dx = the half's other
/// elements' max|x| / 127, q = x * (1 / dx) rounded half to even); then
/// y (m, n) = x' . w^T with x' the kept element and dx * q for the rest. k is a multiple
/// of 32.
pub fn matmul_q8(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut xq = x.to_vec();
    for block in xq.chunks_mut(32) {
        let mut top = 0;
        for (j, v) in block.iter().enumerate() {
            if v.abs() > block[top].abs() {
                top = j;
            }
        }
        for (h, half) in block.chunks_mut(16).enumerate() {
            let own = |j: usize| h * 16 + j == top;
            let rest = half
                .iter()
                .enumerate()
                .filter(|&(j, _)| !own(j))
                .fold(0.0f32, |a, (_, v)| a.max(v.abs()));
            let dx = rest / 127.0;
            let inv = if dx > 0.0 { 1.0 / dx } else { 0.0 };
            for (j, v) in half.iter_mut().enumerate() {
                if !own(j) {
                    *v = (*v * inv).round_ties_even() * dx;
                }
            }
        }
    }
    matmul(&xq, w, m, n, k)
}
