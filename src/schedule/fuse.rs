//! Fusing elementwise ops into the epilogue of the op that produces their input.
//!
//! An elementwise op `E = tail(a)` folds into the producer `P` of `a` when `E` is `P`'s only
//! consumer, `P` is not a graph output, `P` can take a tail ([`Op::tail`]) and `E`'s stages
//! all come after `P`'s (bias, act, aux, residual, in that order). The fused op takes `E`'s
//! place in the order, so every operand `E` reads is ready by then. Commutative forms are
//! tried too: `act(g) * u` fuses into the producer of `u`, and `a + b` into the producer of
//! `b`.

use crate::graph::{Node, NodeKind, Op, Tail, Value};
use crate::kernels::Act;

fn stages(bias: bool, t: &Tail) -> Option<(u8, u8)> {
    let used = [
        bias,
        t.act != Act::Identity,
        t.aux.is_some(),
        t.residual.is_some(),
    ];
    let first = used.iter().position(|u| *u)?;
    let last = used.iter().rposition(|u| *u)?;
    Some((first as u8, last as u8))
}

/// `outer` applied after `inner`, if the stage order allows it.
fn merge(inner_bias: bool, inner: &Tail, outer: &Tail) -> Option<Tail> {
    let last_inner = stages(inner_bias, inner).map_or(-1, |(_, l)| l as i8);
    let first_outer = stages(false, outer).map_or(i8::MAX, |(f, _)| f as i8);
    if last_inner >= first_outer {
        return None;
    }
    Some(Tail {
        act: if outer.act != Act::Identity {
            outer.act
        } else {
            inner.act
        },
        aux: outer.aux.or(inner.aux),
        residual: outer.residual.or(inner.residual),
    })
}

/// The same elementwise op rewritten with its operands swapped, where that is exact.
fn commuted(a: Value, t: &Tail) -> Option<(Value, Tail)> {
    match t {
        // act(a) * b  ==  b * act(a)
        Tail {
            act,
            aux: Some((b, Act::Identity)),
            residual,
        } => Some((
            *b,
            Tail {
                act: Act::Identity,
                aux: Some((a, *act)),
                residual: *residual,
            },
        )),
        // a + b  ==  b + a
        Tail {
            act: Act::Identity,
            aux: None,
            residual: Some(b),
        } => Some((
            *b,
            Tail {
                act: Act::Identity,
                aux: None,
                residual: Some(a),
            },
        )),
        _ => None,
    }
}

fn op(n: &Node) -> Option<&dyn Op> {
    n.op().map(|o| o.as_ref())
}

/// Fuse in place. `order` lists the node indices to run; fused producers leave it.
/// Returns how many ops were fused away.
pub(crate) fn fuse(nodes: &mut [Node], order: &mut Vec<usize>, outputs: &[Value]) -> usize {
    let mut uses = vec![0usize; nodes.len()];
    for &i in order.iter() {
        for v in nodes[i].inputs() {
            uses[v.0] += 1;
        }
    }
    for v in outputs {
        uses[v.0] += 1;
    }
    let mut fused = 0;
    let mut removed = vec![false; nodes.len()];
    for &e in order.iter() {
        let Some((a, tail)) = op(&nodes[e])
            .and_then(|o| o.as_elementwise())
            .map(|(a, t)| (a, t.clone()))
        else {
            continue;
        };
        let candidates = std::iter::once((a, tail.clone())).chain(commuted(a, &tail));
        for (src, outer) in candidates {
            let p = src.0;
            if uses[p] != 1 || removed[p] {
                continue;
            }
            let Some(producer) = op(&nodes[p]) else {
                continue;
            };
            let Some((bias, inner)) = producer.tail() else {
                continue;
            };
            let Some(merged) = merge(bias, inner, &outer) else {
                continue;
            };
            let Some(fused_op) = producer.with_tail(merged) else {
                continue;
            };
            nodes[e].kind = NodeKind::Op(fused_op);
            removed[p] = true;
            fused += 1;
            break;
        }
    }
    order.retain(|i| !removed[*i]);
    fused
}
