//! Evaluating a [`Graph`] on the CPU with the reference ops, unfused and in build order.
//! The GPU result of the planned (fused, buffer-shared) graph must match this.

use super::*;
use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use std::collections::HashMap;

/// Host values a reference run needs.
#[derive(Default)]
pub struct Host {
    /// Weight values by tensor name (as the GPU holds them, e.g. already rounded to f16).
    pub weights: HashMap<String, Vec<f32>>,
    /// f32 inputs by name.
    pub inputs: HashMap<String, Vec<f32>>,
    /// Token-id inputs by name.
    pub ids: HashMap<String, Vec<u32>>,
    /// Persistent states (KV caches) by name, (capacity * width) values each; updated in place.
    /// Token states hold ids as f32 values; seen flags are 0 or 1.
    pub states: HashMap<String, Vec<f32>>,
    /// The sampler's parameters and random bits for the step.
    pub sampling: crate::sample::Sampling,
    pub rand: u32,
}

/// Run `graph` at position `pos`; returns each output by name.
pub fn evaluate(graph: &Graph, host: &mut Host, pos: usize) -> Result<HashMap<String, Vec<f32>>> {
    graph.check()?;
    let nodes = graph.nodes();
    let mut vals: Vec<Vec<f32>> = Vec::with_capacity(nodes.len());
    let missing = |what: &str, name: &str| Error::Invalid(format!("reference: no {what} '{name}'"));
    // The state each KvWrite chain refers to.
    let mut state_of: HashMap<usize, String> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let v = |x: &crate::graph::Value| &vals[x.0];
        let cols = node.shape.last().copied().unwrap_or(1);
        let out = match &node.op {
            Op::Ids { name } => {
                let ids = host.ids.get(name).ok_or_else(|| missing("ids", name))?;
                ids.iter().map(|&t| t as f32).collect()
            }
            Op::Input { name } => host
                .inputs
                .get(name)
                .ok_or_else(|| missing("input", name))?
                .clone(),
            Op::Weight { name, .. } => host
                .weights
                .get(name)
                .ok_or_else(|| missing("weight", name))?
                .clone(),
            Op::Const { data, .. } => data.clone(),
            Op::State { name } => {
                state_of.insert(i, name.clone());
                host.states
                    .get(name)
                    .ok_or_else(|| missing("state", name))?
                    .clone()
            }
            Op::Embedding { table, ids } => {
                let ids: Vec<u32> = v(ids).iter().map(|&t| t as u32).collect();
                embedding(v(table), &ids, cols)
            }
            Op::MatMul {
                x,
                w,
                bias,
                tail: t,
            } => {
                let (m, k) = (nodes[x.0].shape[0], nodes[x.0].shape[1]);
                let y = matmul(v(x), v(w), m, cols, k);
                let aux = t.aux.map(|(a, act)| (v(&a).as_slice(), act));
                tail(
                    &y,
                    cols,
                    bias.map(|b| v(&b).as_slice()),
                    t.act,
                    aux,
                    t.residual.map(|r| v(&r).as_slice()),
                )
            }
            Op::Elementwise { a, tail: t } => {
                let aux = t.aux.map(|(a, act)| (v(&a).as_slice(), act));
                tail(
                    v(a),
                    cols,
                    None,
                    t.act,
                    aux,
                    t.residual.map(|r| v(&r).as_slice()),
                )
            }
            Op::Norm {
                x,
                w,
                b,
                eps,
                layer,
            } => {
                if *layer {
                    layer_norm(v(x), v(w), b.map(|b| v(&b).as_slice()), cols, *eps)
                } else {
                    rms_norm(v(x), v(w), cols, *eps)
                }
            }
            Op::Softmax { x } => softmax(v(x), cols),
            Op::Rows { x, start, len } => v(x)[start * cols..(start + len) * cols].to_vec(),
            Op::Rope {
                x,
                table,
                heads,
                head_dim,
            } => rope(v(x), v(table), *heads, *head_dim, pos),
            Op::KvWrite { src, cache } => {
                let name = state_of
                    .get(&cache.0)
                    .cloned()
                    .ok_or_else(|| missing("state for", "kv_write"))?;
                state_of.insert(i, name.clone());
                let mut c = v(cache).clone();
                let src = v(src);
                let end = pos * cols + src.len();
                if end > c.len() {
                    return Err(Error::Limit(format!(
                        "reference: write past the end of state '{name}'"
                    )));
                }
                c[pos * cols..end].copy_from_slice(src);
                host.states.insert(name, c.clone());
                c
            }
            Op::Sample {
                logits,
                ids,
                seen,
                token,
            } => {
                let seen_name = state_of
                    .get(&seen.0)
                    .cloned()
                    .ok_or_else(|| missing("state for", "seen"))?;
                let token_name = state_of
                    .get(&token.0)
                    .cloned()
                    .ok_or_else(|| missing("state for", "token"))?;
                let mut flags: Vec<bool> = v(seen).iter().map(|&f| f != 0.0).collect();
                for &id in ids.map(|i| v(&i).as_slice()).unwrap_or(&[]) {
                    flags[id as usize] = true;
                }
                let t =
                    crate::sample::sample_reference(v(logits), &flags, &host.sampling, host.rand);
                flags[t as usize] = true;
                host.states.insert(
                    seen_name,
                    flags.iter().map(|&f| f32::from(u8::from(f))).collect(),
                );
                host.states.insert(token_name.clone(), vec![t as f32]);
                state_of.insert(i, token_name);
                vec![t as f32]
            }
            Op::Attention {
                q,
                k,
                v: vv,
                heads,
                kv_heads,
                head_dim,
                causal,
                window,
                ..
            } => attention(
                v(q),
                v(k),
                v(vv),
                [*heads, *kv_heads, *head_dim],
                pos,
                *causal,
                *window,
            ),
        };
        vals.push(out);
    }
    Ok(graph
        .outputs()
        .into_iter()
        .map(|(name, v)| (name, vals[v.0].clone()))
        .collect())
}
