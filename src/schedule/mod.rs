//! The scheduler: turns a [`Graph`] into a [`Plan`] of compute passes.
//!
//! 1. **Order**: a depth-first walk from the outputs and the state updates gives a
//!    topological order and drops anything nothing needs.
//! 2. **Fuse**: elementwise ops fold into the epilogue of their producer (`fuse.rs`).
//! 3. **Plan buffers**: liveness over the order, then greedy-by-size buffer sharing
//!    ([`memory`]); the plan reports the activation memory it needs.
//! 4. **Emit**: each op emits its dispatches through [`Op::emit`](crate::graph::Op::emit),
//!    with grids the executor sizes per step; dispatches are grouped into passes by scope.
//!
//! Nothing here names a particular op: ops are reached through the [`Op`](crate::graph::Op)
//! trait.

mod emit;
mod fuse;
pub mod memory;

pub use crate::kernels::Target;
pub use memory::MemoryReport;

use crate::error::{Error, Result};
use crate::graph::{Bound, Buf, Dispatch, Exchange, Graph, Node, Rows, Step, Value};

/// A run of dispatches recorded into one compute pass.
#[derive(Clone, Debug)]
pub struct Pass {
    /// The scope its nodes were built in ("layer.3"), which labels the compute pass.
    pub label: String,
    /// Its dispatches, as indices into [`Plan::dispatches`].
    pub dispatches: std::ops::Range<usize>,
}

/// A host input of the plan.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// The name it is fed under.
    pub name: String,
    /// (S, T) for ids, (S, T, W) for activations.
    pub shape: Vec<usize>,
    /// Token ids (u32) rather than f32 activations.
    pub ids: bool,
}

impl InputSpec {
    /// Values per row (1 for ids).
    pub fn width(&self) -> usize {
        if self.ids {
            1
        } else {
            *self.shape.last().unwrap_or(&1)
        }
    }
    /// Elements of the input per step (the product of its shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An output read back after each step.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    /// The name it is read back under.
    pub name: String,
    /// Where it lives: an activation slot, or a state (sampled tokens).
    pub buf: Buf,
    /// Its shape, (S, T, ...) for token rows.
    pub shape: Vec<usize>,
    /// Token ids (u32) rather than f32 values.
    pub ids: bool,
    /// Token rows only hold values: padding rows read back as zeros.
    pub rows: Rows,
}

/// Everything the executor needs to record a forward step.
#[derive(Clone, Debug)]
pub struct Plan {
    pub(crate) nodes: Vec<Node>,
    /// Every kernel launch of a step, in order.
    pub dispatches: Vec<Dispatch>,
    /// The dispatches grouped into compute passes, in order.
    pub passes: Vec<Pass>,
    /// Byte size of each planned activation buffer.
    pub slots: Vec<u64>,
    /// The host inputs a step is fed.
    pub inputs: Vec<InputSpec>,
    /// The constant leaves, uploaded once when the program is made.
    pub consts: Vec<Value>,
    /// Persistent states the plan reads or writes, with their shapes.
    pub states: Vec<(String, Vec<usize>)>,
    /// What is read back after each step.
    pub outputs: Vec<OutputSpec>,
    /// What each step is checked against before it is recorded.
    pub bounds: Vec<Bound>,
    /// Where the adapters of a model split tensor-parallel sum partials, in pass order
    /// (none for a whole model).
    pub exchanges: Vec<Exchange>,
    /// Sequences per step (S).
    pub seqs: usize,
    /// Token rows per sequence (T): the most a sequence may bring to one step.
    pub tokens: usize,
    /// How the activation buffers were shared out.
    pub memory: MemoryReport,
}

/// Depth-first post-order from the roots: a topological order of what the roots need.
fn order(nodes: &[Node], roots: &[Value]) -> Vec<usize> {
    let mut seen = vec![false; nodes.len()];
    let mut out = Vec::new();
    for root in roots {
        // Iterative DFS: (node, whether its inputs have been pushed).
        let mut stack = vec![(root.0, false)];
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                out.push(n);
                continue;
            }
            if seen[n] {
                continue;
            }
            seen[n] = true;
            stack.push((n, true));
            for v in nodes[n].inputs().into_iter().rev() {
                if !seen[v.0] {
                    stack.push((v.0, false));
                }
            }
        }
    }
    out
}

impl Plan {
    /// Check a step against what the plan's kernels rely on: one entry per sequence, each
    /// length within T, each live sequence in its own slot within the states (when the plan
    /// has any), `pos + len` within every cache and table, valid sampling parameters.
    pub fn check_step(&self, step: &Step) -> Result<()> {
        // Sequences share nothing unless the plan keeps per-slot states.
        let slotted = self.bounds.iter().any(|b| matches!(b, Bound::Slots { .. }));
        if step.seqs.len() != self.seqs {
            return Err(Error::Invalid(format!(
                "the step has {} sequences but the program runs {} per step",
                step.seqs.len(),
                self.seqs
            )));
        }
        for (s, q) in step.seqs.iter().enumerate() {
            q.sampling.validate()?;
            if q.len > 0
                && slotted
                && let Some(other) = step.seqs[..s]
                    .iter()
                    .position(|o| o.len > 0 && o.slot == q.slot)
            {
                return Err(Error::Invalid(format!(
                    "sequences {other} and {s} both use slot {} in one step",
                    q.slot
                )));
            }
            if q.len > self.tokens {
                return Err(Error::Limit(format!(
                    "sequence {s} brings {} tokens to a step of at most {} per sequence",
                    q.len, self.tokens
                )));
            }
            if q.len == 0 {
                continue;
            }
            for b in &self.bounds {
                match b {
                    Bound::Positions { what, capacity }
                        if q.pos > *capacity || q.len > capacity - q.pos =>
                    {
                        return Err(Error::Limit(format!(
                            "{} tokens at position {} run past {what}, which holds {capacity} \
                             positions (the context length)",
                            q.len, q.pos
                        )));
                    }
                    Bound::Slots { what, slots } if q.slot >= *slots => {
                        return Err(Error::Invalid(format!(
                            "sequence {s} uses slot {} but {what} has {slots} slots",
                            q.slot
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Check token ids fed as `input` against the vocabularies they index.
    pub fn check_ids(&self, input: &str, ids: &[u32]) -> Result<()> {
        for b in &self.bounds {
            let Bound::Ids { input: name, below } = b else {
                continue;
            };
            let bad = ids.iter().find(|&&t| t as usize >= *below);
            if let (true, Some(bad)) = (name == input, bad) {
                return Err(Error::Invalid(format!(
                    "token id {bad} is outside the vocabulary of {below}"
                )));
            }
        }
        Ok(())
    }

    /// The passes to record between exchanges: `exchanges.len() + 1` consecutive runs, the
    /// host summing exchange `k` between run `k` and run `k + 1`.
    pub fn segments(&self) -> Vec<std::ops::Range<usize>> {
        let mut cuts: Vec<usize> = self.exchanges.iter().map(|x| x.pass).collect();
        cuts.push(self.passes.len());
        let mut start = 0;
        cuts.into_iter()
            .map(|end| {
                let r = start..end;
                start = end;
                r
            })
            .collect()
    }

    /// Schedule `graph` for a device described by `target`.
    pub fn new(graph: &Graph, target: Target) -> Result<Plan> {
        graph.check()?;
        let mut nodes = graph.nodes().clone();
        let outputs = graph.outputs();
        // A part of a split model may have no outputs of its own: its exchanges and state
        // updates are its effect.
        let exchanges = |n: &Node| n.op().is_some_and(|o| o.exchanges());
        if outputs.is_empty() && !nodes.iter().any(exchanges) {
            return Err(Error::Invalid("the graph has no outputs".into()));
        }
        for (name, v) in &outputs {
            let op = nodes[v.0].op();
            let sampled = op.is_some_and(|o| o.yields_ids());
            if op.is_none() || (op.is_some_and(|o| o.updates().is_some()) && !sampled) {
                return Err(Error::Invalid(format!(
                    "output '{name}' must be a computed activation or a sampled token, not a \
                     weight, input or cache"
                )));
            }
        }
        // Roots: outputs, then state updates (their effect outlives the step) and exchanges
        // (the other adapters wait for them).
        let mut roots: Vec<Value> = outputs.iter().map(|(_, v)| *v).collect();
        roots.extend(
            (0..nodes.len())
                .filter(|&i| nodes[i].updates().is_some() || exchanges(&nodes[i]))
                .map(Value),
        );
        let mut ord = order(&nodes, &roots);
        let output_values: Vec<Value> = outputs.iter().map(|(_, v)| *v).collect();
        let fused = fuse::fuse(&mut nodes, &mut ord, &output_values);
        emit::emit(nodes, &ord, &outputs, target, graph.seqs(), fused)
    }
}
