//! Evaluating a [`Graph`] on the CPU with each op's CPU twin, unfused and in build order.
//! The GPU result of the planned (fused, buffer-shared) graph must match this.

use crate::error::{Error, Result};
use crate::graph::{Eval, Graph, Leaf, NodeKind, Step, Value, mask_padding};
use crate::kernels::Target;
use crate::sample::Sampling;
use crate::schedule::Plan;
use std::collections::HashMap;

/// Host values a reference run needs.
#[derive(Clone, Default)]
pub struct Host {
    /// Weight values by tensor name (as the GPU holds them, e.g. already rounded to f16).
    pub weights: HashMap<String, Vec<f32>>,
    /// f32 inputs by name.
    pub inputs: HashMap<String, Vec<f32>>,
    /// Token-id inputs by name.
    pub ids: HashMap<String, Vec<u32>>,
    /// Persistent states (KV caches, sampler flags and tokens) by name, updated in place.
    /// Token states hold ids as f32 values; seen flags are 0 or 1.
    pub states: HashMap<String, Vec<f32>>,
}

/// Run `graph` for one step; returns each output by name. Padding rows of token-row outputs
/// are zeros, as the GPU reads them back.
pub fn evaluate(graph: &Graph, host: &mut Host, step: &Step) -> Result<HashMap<String, Vec<f32>>> {
    // The checks the executor makes before a step, so that the twins may index freely.
    let plan = Plan::new(graph, Target::unlimited())?;
    plan.check_step(step)?;
    for (name, ids) in &host.ids {
        plan.check_ids(name, ids)?;
    }
    let nodes = graph.nodes();
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(nodes.len());
    let mut state_of: HashMap<Value, String> = HashMap::new();
    let missing = |what: &str, name: &str| Error::Invalid(format!("reference: no {what} '{name}'"));
    for (i, node) in nodes.iter().enumerate() {
        let out = match &node.kind {
            NodeKind::Leaf(Leaf::Ids { name }) => {
                let ids = host.ids.get(name).ok_or_else(|| missing("ids", name))?;
                let mut v: Vec<f32> = ids.iter().map(|&t| t as f32).collect();
                v.resize(node.shape.iter().product(), 0.0);
                v
            }
            NodeKind::Leaf(Leaf::Input { name }) => {
                let mut v = host
                    .inputs
                    .get(name)
                    .ok_or_else(|| missing("input", name))?
                    .clone();
                v.resize(node.shape.iter().product(), 0.0);
                v
            }
            NodeKind::Leaf(Leaf::Weight { tensor }) => host
                .weights
                .get(tensor.name())
                .ok_or_else(|| missing("weight", tensor.name()))?
                .clone(),
            NodeKind::Leaf(Leaf::Const { data, .. }) => data.clone(),
            NodeKind::Leaf(Leaf::State { name }) => {
                state_of.insert(Value(i), name.clone());
                host.states
                    .get(name)
                    .ok_or_else(|| missing("state", name))?
                    .clone()
            }
            NodeKind::Op(op) => {
                if let Some(state) = op.updates()
                    && let Some(name) = state_of.get(&state).cloned()
                {
                    state_of.insert(Value(i), name);
                }
                let mut e = Eval {
                    nodes: &nodes,
                    values: &values,
                    this: Value(i),
                    step,
                    states: &mut host.states,
                    state_of: &state_of,
                };
                op.eval(&mut e)?
            }
        };
        values.push(out);
    }
    let mut out = HashMap::new();
    for (name, v) in graph.outputs() {
        let mut value = values[v.0].clone();
        let node = &nodes[v.0];
        let ids = node.op().is_some_and(|o| o.yields_ids());
        if let ([_, tokens, ..], true, false) = (node.shape.as_slice(), node.ragged, ids) {
            let lens: Vec<usize> = step.seqs.iter().map(|q| q.len).collect();
            mask_padding(&mut value, &node.shape, *tokens, &lens);
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// A step of one sequence at `pos` with `len` tokens, sampled with `sampling` and `rand`.
pub fn step(pos: usize, len: usize, sampling: Sampling, rand: u32) -> Step {
    let mut s = Step::single(pos, len);
    s.seqs[0].sampling = sampling;
    s.seqs[0].rand = rand;
    s
}
