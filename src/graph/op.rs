//! The op trait: what every op family implements, so that the graph, the scheduler, the
//! reference evaluator and the executor reach ops through one interface and never match on
//! a particular one.

use super::{Emit, Eval, Graph, Layout, Value};
use crate::error::Result;
use crate::kernels::Act;
use std::fmt;
use std::sync::Arc;

/// An op: its inputs, its shape rule, its GPU emission and its CPU twin. Each op family
/// implements this in its module under `src/ops/`, next to its `.wgsl` file.
pub trait Op: fmt::Debug + Send + Sync + 'static {
    /// A short name for labels and errors ("matmul").
    fn name(&self) -> &'static str;

    /// The values this op reads, in a fixed order.
    fn inputs(&self) -> Vec<Value>;

    /// The shape of the result, or why the inputs do not fit.
    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String>;

    /// Whether the result's rows follow the step's per-sequence lengths (see
    /// [`Rows`](super::Rows)), given whether each input's do. By default, as the first input.
    fn ragged(&self, inputs: &[bool]) -> bool {
        inputs.first().copied().unwrap_or(false)
    }

    /// How the result is spread over the parts of a model split tensor-parallel, given each
    /// input's layout (in [`Op::inputs`] order), or why they do not fit. By default the
    /// inputs must all be whole, and so is the result. A rule that gives
    /// [`Layout::Partial`] makes the graph reduce the result across the parts.
    fn layout(&self, g: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        let _ = g;
        Layout::all_whole(inputs)
    }

    /// The dispatches that compute the result (and the per-step checks they need).
    fn emit(&self, e: &mut Emit) -> Result<()>;

    /// The CPU twin: the same result in plain Rust, accumulated in f64.
    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>>;

    /// Bytes of scratch the op's dispatches pass between themselves (partial results), as
    /// [`Emit::scratch`] gives it: a planned buffer, live only while the op runs. `e` is the
    /// context `emit` will get, but without buffers.
    fn scratch_bytes(&self, e: &Emit) -> u64 {
        let _ = e;
        0
    }

    /// The state this op updates in place; its result is that state after the update.
    fn updates(&self) -> Option<Value> {
        None
    }

    /// Whether the op is a point where the adapters of a model split tensor-parallel
    /// exchange partial sums: it runs on every adapter even where nothing there reads its
    /// result, since the others wait for it.
    fn exchanges(&self) -> bool {
        false
    }

    /// Whether the result holds token ids rather than f32 values.
    fn yields_ids(&self) -> bool {
        false
    }

    /// For producers that can take a fused elementwise tail: whether a bias is applied
    /// first, and the tail so far.
    fn tail(&self) -> Option<(bool, &Tail)> {
        None
    }

    /// This op with `tail` as its fused tail (for producers, see [`Op::tail`]).
    fn with_tail(&self, _tail: Tail) -> Option<Arc<dyn Op>> {
        None
    }

    /// For elementwise ops: `tail(a)`, as `(a, tail)`.
    fn as_elementwise(&self) -> Option<(Value, &Tail)> {
        None
    }
}

/// A fused elementwise tail: `act(y) * aux_act(aux) + residual`, stages in that order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tail {
    /// Applied to the producer's output `y` first.
    pub act: Act,
    /// An optional multiplier `aux_act(aux)`, with `aux` of the output's shape.
    pub aux: Option<(Value, Act)>,
    /// An optional value of the output's shape, added last.
    pub residual: Option<Value>,
}

impl Tail {
    /// The values the tail reads.
    pub fn inputs(&self) -> impl Iterator<Item = Value> + '_ {
        self.aux.map(|a| a.0).into_iter().chain(self.residual)
    }
}
