//! Op values: what a graph node computes, and which values it reads.

use crate::kernels::Act;
use crate::tensor::Tensor;

/// A handle to a value in a [`Graph`](super::Graph).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) usize);

/// The fused elementwise tail of a producer: `act(y) * aux_act(aux) + residual`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tail {
    pub act: Act,
    pub aux: Option<(Value, Act)>,
    pub residual: Option<Value>,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// Token ids (u32) written by the host before each run.
    Ids {
        name: String,
    },
    /// f32 activations written by the host before each run.
    Input {
        name: String,
    },
    /// A weight already on the GPU. The CPU reference finds its values by the same name.
    Weight {
        name: String,
        tensor: Tensor,
    },
    /// A small f32 constant computed on the host (e.g. RoPE frequencies).
    Const {
        name: String,
        data: Vec<f32>,
    },
    /// A persistent (capacity, width) f32 buffer that outlives a run: a KV cache.
    State {
        name: String,
    },
    Embedding {
        table: Value,
        ids: Value,
    },
    /// x (M, K) times w (N, K)^T, plus bias (N), then the tail.
    MatMul {
        x: Value,
        w: Value,
        bias: Option<Value>,
        tail: Tail,
    },
    /// The tail applied to `a`.
    Elementwise {
        a: Value,
        tail: Tail,
    },
    Norm {
        x: Value,
        w: Value,
        b: Option<Value>,
        eps: f32,
        layer: bool,
    },
    Softmax {
        x: Value,
    },
    /// Rows [start, start + len) of x.
    Rows {
        x: Value,
        start: usize,
        len: usize,
    },
    Rope {
        x: Value,
        /// (positions, head_dim) cos/sin table, see [`crate::reference::rope_table`].
        table: Value,
        heads: usize,
        head_dim: usize,
    },
    /// Sample a token from the last row of `logits` (1, V) with the run's sampling
    /// parameters, after marking `ids` seen (for the repetition penalty). Updates the states
    /// `seen` (V flags) and `token` (1 id); the result is `token` after the write.
    Sample {
        logits: Value,
        ids: Option<Value>,
        seen: Value,
        token: Value,
    },
    /// Write `src` (tokens, width) into `cache` at the run's position; the result is the
    /// cache after the write.
    KvWrite {
        src: Value,
        cache: Value,
    },
    Attention {
        q: Value,
        k: Value,
        v: Value,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        causal: bool,
        scale: f32,
        /// Attend only to the last `window` keys (sliding-window attention).
        window: Option<usize>,
    },
}

impl Op {
    /// The values this op reads, in a fixed order.
    pub fn inputs(&self) -> Vec<Value> {
        let tail = |t: &Tail, v: &mut Vec<Value>| {
            v.extend(t.aux.map(|a| a.0));
            v.extend(t.residual);
        };
        let mut v = Vec::new();
        match self {
            Op::Ids { .. }
            | Op::Input { .. }
            | Op::Weight { .. }
            | Op::Const { .. }
            | Op::State { .. } => {}
            Op::Embedding { table, ids } => v.extend([*table, *ids]),
            Op::MatMul {
                x,
                w,
                bias,
                tail: t,
            } => {
                v.extend([*x, *w]);
                v.extend(*bias);
                tail(t, &mut v);
            }
            Op::Elementwise { a, tail: t } => {
                v.push(*a);
                tail(t, &mut v);
            }
            Op::Norm { x, w, b, .. } => {
                v.extend([*x, *w]);
                v.extend(*b);
            }
            Op::Softmax { x } | Op::Rows { x, .. } => v.push(*x),
            Op::Rope { x, table, .. } => v.extend([*x, *table]),
            Op::KvWrite { src, cache } => v.extend([*src, *cache]),
            Op::Sample {
                logits,
                ids,
                seen,
                token,
            } => {
                v.push(*logits);
                v.extend(*ids);
                v.extend([*seen, *token]);
            }
            Op::Attention { q, k, v: vv, .. } => v.extend([*q, *k, *vv]),
        }
        v
    }

    /// The state this op updates in place, if any; its result aliases that state.
    pub fn updates(&self) -> Option<Value> {
        match self {
            Op::KvWrite { cache, .. } => Some(*cache),
            Op::Sample { token, .. } => Some(*token),
            _ => None,
        }
    }

    /// Values that live outside any single run: weights, constants, states and inputs.
    pub fn is_leaf(&self) -> bool {
        matches!(
            self,
            Op::Ids { .. }
                | Op::Input { .. }
                | Op::Weight { .. }
                | Op::Const { .. }
                | Op::State { .. }
        )
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub shape: Vec<usize>,
    /// The scope (e.g. "layer.3") the node was built in; passes are grouped by it.
    pub scope: String,
}
