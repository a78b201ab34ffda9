//! `all_reduce`: the sum of one value's partials across the adapters a tensor-parallel model
//! is split over (`o_proj` and `down_proj` give partial sums of the residual update).
//!
//! On the GPU the op is a copy of its input (the elementwise kernel, so the residual add
//! after it fuses into it as a tail); the scheduler marks the point before it as an
//! exchange ([`Emit::exchange`]), where the executor stops recording, sums the input's
//! buffer across the adapters through the host ([`crate::exec::AllReduce`]) and goes on.
//! Its CPU twin is the identity: the reference evaluates a whole model, whose values are
//! already the sums. The graph applies it wherever an op's layout rule gives a partial sum
//! ([`crate::graph::Layout`]).

use super::elementwise::Elementwise;
use crate::error::Result;
use crate::graph::{Emit, Eval, Graph, Layout, Op, Tail, Value};
use crate::kernels::Kernel;
use std::sync::Arc;

/// No kernels of its own: it runs the elementwise family's.
pub fn variants() -> Vec<Kernel> {
    Vec::new()
}

/// `tail(sum over adapters of a)`: the elementwise op `tail(a)` run after the exchange.
#[derive(Clone, Debug)]
pub struct AllReduce(pub Elementwise);

impl Graph {
    /// The sum over every part of a model split tensor-parallel of `a`, a partial sum.
    /// [`Graph::apply`] calls it where an op's layout rule gives one; model code never
    /// needs to.
    pub(crate) fn all_reduce(&self, a: Value) -> Value {
        self.apply(AllReduce(Elementwise {
            a,
            tail: Tail::default(),
        }))
    }
}

impl Op for AllReduce {
    fn name(&self) -> &'static str {
        "all_reduce"
    }

    fn inputs(&self) -> Vec<Value> {
        self.0.inputs()
    }

    /// A partial sum in, the whole sum out (a fused residual is whole).
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        match inputs.split_first() {
            Some((Layout::Partial, rest)) => Layout::all_whole(rest),
            other => Err(format!("sums partial sums, not {:?}", other.map(|o| o.0))),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        match g.shape(self.0.a).len() {
            3 => self.0.shape(g),
            _ => Err(format!(
                "an all-reduce sums (S, T, W) activations, not shape {:?}",
                g.shape(self.0.a)
            )),
        }
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        e.exchange(self.0.a)?;
        self.0.emit(e)
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        self.0.eval(e)
    }

    fn exchanges(&self) -> bool {
        true
    }

    fn tail(&self) -> Option<(bool, &Tail)> {
        self.0.tail()
    }

    fn with_tail(&self, tail: Tail) -> Option<Arc<dyn Op>> {
        Some(Arc::new(AllReduce(Elementwise { a: self.0.a, tail })))
    }
}

/// Every part's `a` (S, T, W_i) side by side, in part order, as (S, T, `width`): the
/// vocabulary shards' logits, or their sampling candidates. The host writes the result
/// ([`Emit::gather`]); the op has no kernel. Its CPU twin is the identity (on a whole
/// model, `a` is already everything).
#[derive(Clone, Debug)]
pub struct AllGather {
    /// This part's slice, (S, T, W_i).
    pub a: Value,
    /// W: every part's width together.
    pub width: usize,
}

impl Graph {
    /// `a` whole: every part's slice of it (S, T, W_i), split by columns, side by side in
    /// part order as (S, T, W); `a` itself when it is whole already.
    pub fn all_gather(&self, a: Value) -> Value {
        match self.layout(a).along(2) {
            Some((_, width)) => self.apply(AllGather { a, width }),
            None => a,
        }
    }
}

impl Op for AllGather {
    fn name(&self) -> &'static str {
        "all_gather"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.a]
    }

    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        match inputs[0].along(2) {
            Some((_, total)) if total == self.width => Ok(Layout::Whole),
            _ => Err(format!("gathers values split by columns, not {}", inputs[0])),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        match g.shape(self.a).as_slice() {
            [s, t, w] if *w <= self.width => Ok(vec![*s, *t, self.width]),
            other => Err(format!(
                "an all-gather takes (S, T, W) values of at most {} columns, not shape {other:?}",
                self.width
            )),
        }
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        e.gather(self.a, self.width)
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        match e.shape(self.a).last() == Some(&self.width) {
            true => Ok(e.value(self.a).to_vec()),
            false => Err(crate::error::Error::Invalid(
                "the reference evaluates whole models, which gather nothing".into(),
            )),
        }
    }

    fn exchanges(&self) -> bool {
        true
    }
}
