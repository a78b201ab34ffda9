//! Turning the ordered, fused ops into dispatches over planned buffers.

use super::memory::{self, Interval, MemoryReport};
use super::{InputSpec, OutputSpec, Pass, Plan, Target};
use crate::error::{Error, Result};
use crate::graph::{Emit, Leaf, Node, NodeKind, Value};
use std::collections::HashMap;

/// Bytes of an f32 activation of this shape.
fn f32_bytes(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64 * 4
}

pub(super) fn emit(
    nodes: Vec<Node>,
    order: &[usize],
    outputs: &[(String, Value)],
    target: Target,
    seqs: usize,
    fused_ops: usize,
) -> Result<Plan> {
    // Liveness of computed values over positions in `order`.
    let computed = |i: usize| nodes[i].op().is_some() && nodes[i].updates().is_none();
    let mut first: HashMap<usize, usize> = HashMap::new();
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (pos, &i) in order.iter().enumerate() {
        if computed(i) {
            first.insert(i, pos);
            last.insert(i, pos);
        }
        for v in nodes[i].inputs() {
            if let Some(l) = last.get_mut(&v.0) {
                *l = (*l).max(pos);
            }
        }
    }
    let pinned: Vec<usize> = outputs
        .iter()
        .map(|(_, v)| v.0)
        .filter(|&i| computed(i))
        .collect();
    let values: Vec<usize> = order.iter().copied().filter(|&i| computed(i)).collect();
    // Scratch that ops ask for lives only while they run.
    let no_slots = HashMap::new();
    let probe = |this: Value| Emit {
        nodes: &nodes,
        target,
        slot_of: &no_slots,
        this,
        scratch: None,
        seqs,
        dispatches: Vec::new(),
        bounds: Vec::new(),
        exchange: None,
    };
    let scratch: Vec<(usize, usize, u64)> = order
        .iter()
        .enumerate()
        .filter_map(|(pos, &i)| {
            let bytes = nodes[i].op()?.scratch_bytes(&probe(Value(i)));
            (bytes > 0).then_some((i, pos, bytes))
        })
        .collect();
    let mut intervals: Vec<Interval> = values
        .iter()
        .map(|&i| Interval {
            bytes: f32_bytes(&nodes[i].shape).max(4),
            first: first[&i],
            last: if pinned.contains(&i) {
                order.len()
            } else {
                last[&i]
            },
            pinned: pinned.contains(&i),
        })
        .collect();
    intervals.extend(scratch.iter().map(|&(_, pos, bytes)| Interval {
        bytes,
        first: pos,
        last: pos,
        pinned: false,
    }));
    let (slots_of_interval, slots) = memory::assign(&intervals);
    for &size in &slots {
        if size > target.max_binding {
            return Err(Error::Limit(format!(
                "an activation needs {size} bytes, more than one storage binding holds on this \
                 device ({}); use fewer tokens per step",
                target.max_binding
            )));
        }
    }
    let memory = MemoryReport {
        activation_bytes: slots.iter().sum(),
        unshared_bytes: intervals.iter().map(|iv| iv.bytes).sum(),
        live_peak_bytes: memory::live_peak(&intervals, order.len() + 1),
        buffers: slots.len(),
        values: intervals.len(),
        fused_ops,
    };
    let slot_of: HashMap<Value, usize> = values
        .iter()
        .zip(&slots_of_interval)
        .map(|(&i, &s)| (Value(i), s))
        .collect();
    let scratch_of: HashMap<Value, usize> = scratch
        .iter()
        .zip(&slots_of_interval[values.len()..])
        .map(|(&(i, _, _), &s)| (Value(i), s))
        .collect();

    let context = |this: Value| Emit {
        nodes: &nodes,
        target,
        slot_of: &slot_of,
        this,
        scratch: scratch_of.get(&this).copied(),
        seqs,
        dispatches: Vec::new(),
        bounds: Vec::new(),
        exchange: None,
    };
    let mut dispatches = Vec::new();
    let mut bounds = Vec::new();
    let mut passes: Vec<Pass> = Vec::new();
    let mut inputs = Vec::new();
    let mut consts = Vec::new();
    let mut states = Vec::new();
    let mut exchanges = Vec::new();
    let read: std::collections::HashSet<Value> = order
        .iter()
        .flat_map(|&i| nodes[i].inputs())
        .chain(outputs.iter().map(|(_, v)| *v))
        .collect();
    for &i in order {
        let node = &nodes[i];
        let start = dispatches.len();
        // An exchange starts a pass of its own: the executor stops recording before it.
        let mut exchange = None;
        match &node.kind {
            NodeKind::Leaf(Leaf::Ids { name } | Leaf::Input { name }) => inputs.push(InputSpec {
                name: name.clone(),
                shape: node.shape.clone(),
                ids: matches!(node.kind, NodeKind::Leaf(Leaf::Ids { .. })),
            }),
            NodeKind::Leaf(Leaf::Const { .. }) => consts.push(Value(i)),
            NodeKind::Leaf(Leaf::State { name }) => states.push((name.clone(), node.shape.clone())),
            NodeKind::Leaf(Leaf::Weight { .. }) => {}
            NodeKind::Op(op) => {
                let mut e = context(Value(i));
                op.emit(&mut e)?;
                dispatches.append(&mut e.dispatches);
                exchange = e.exchange;
                for b in e.bounds {
                    if !bounds.contains(&b) {
                        bounds.push(b);
                    }
                }
            }
        }
        let end = dispatches.len();
        if let Some(mut x) = exchange {
            if end == start && x.gather.is_none() {
                return Err(Error::Invalid(format!(
                    "{} exchanges but emits no dispatch to read the sum",
                    node.name()
                )));
            }
            x.pass = passes.len();
            x.read = read.contains(&Value(i));
            exchanges.push(x);
        }
        if end > start {
            // A pass that an exchange starts is new: nothing before may join it.
            let fresh = exchanges.last().is_some_and(|x| x.pass == passes.len());
            match passes.last_mut() {
                Some(p) if p.label == node.scope && p.dispatches.end == start && !fresh => {
                    p.dispatches.end = end
                }
                _ => passes.push(Pass {
                    label: node.scope.clone(),
                    dispatches: start..end,
                }),
            }
        }
    }
    let outputs = outputs
        .iter()
        .map(|(name, v)| {
            let e = context(*v);
            OutputSpec {
                name: name.clone(),
                buf: e.out(),
                shape: nodes[v.0].shape.clone(),
                ids: nodes[v.0].op().is_some_and(|o| o.yields_ids()),
                rows: e.rows(*v),
            }
        })
        .collect();
    let tokens = inputs
        .iter()
        .filter_map(|s: &InputSpec| s.shape.get(1).copied())
        .max()
        .unwrap_or(1);
    Ok(Plan {
        dispatches,
        passes,
        slots,
        inputs,
        consts,
        states,
        outputs,
        bounds,
        exchanges,
        seqs,
        tokens,
        memory,
        nodes,
    })
}
