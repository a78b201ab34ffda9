//! The compute graph that model code builds: op values, no GPU work.
//!
//! Model files call the builder methods (`matmul`, `rms_norm`, `rope`, `attention`, ...) and
//! get back [`Value`] handles; nothing runs until the scheduler plans the graph and the
//! executor records it. Shapes are checked as the graph is built. A mismatch is recorded and
//! reported by [`Graph::check`] (and so by planning), so model code reads like the equations
//! instead of a wall of `?`.
//!
//! Activations are 2-D, (rows, cols): rows are tokens, cols are features (heads are a view of
//! the features). Weights keep their own shapes.

mod op;

pub use op::{Node, Op, Tail, Value};

use crate::error::{Error, Result};
use crate::kernels::Act;
use crate::tensor::Tensor;
use std::cell::RefCell;

/// A graph under construction. Methods take `&self` so calls nest like the maths.
#[derive(Default)]
pub struct Graph {
    pub(crate) nodes: RefCell<Vec<Node>>,
    pub(crate) outputs: RefCell<Vec<(String, Value)>>,
    scope: RefCell<String>,
    error: RefCell<Option<String>>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, op: Op, shape: Vec<usize>) -> Value {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            op,
            shape,
            scope: self.scope.borrow().clone(),
        });
        Value(nodes.len() - 1)
    }

    fn fail(&self, msg: String) {
        let mut e = self.error.borrow_mut();
        if e.is_none() {
            *e = Some(msg);
        }
    }

    pub fn shape(&self, v: Value) -> Vec<usize> {
        self.nodes.borrow()[v.0].shape.clone()
    }

    /// (rows, cols) of an activation; records an error for anything not 2-D.
    fn dims(&self, v: Value, what: &str) -> (usize, usize) {
        match self.shape(v).as_slice() {
            [r, c] => (*r, *c),
            s => {
                self.fail(format!(
                    "{what}: expected a 2-D activation, got shape {s:?}"
                ));
                (0, 0)
            }
        }
    }

    /// Name the scope of the nodes built next ("layer.3"); the plan groups passes by scope.
    pub fn set_scope(&self, scope: impl Into<String>) {
        *self.scope.borrow_mut() = scope.into();
    }

    /// The first shape error recorded while building, if any.
    pub fn check(&self) -> Result<()> {
        match &*self.error.borrow() {
            Some(m) => Err(Error::Shape(m.clone())),
            None => Ok(()),
        }
    }

    pub fn ids(&self, name: &str, tokens: usize) -> Value {
        self.push(Op::Ids { name: name.into() }, vec![tokens])
    }

    pub fn input(&self, name: &str, rows: usize, cols: usize) -> Value {
        self.push(Op::Input { name: name.into() }, vec![rows, cols])
    }

    pub fn weight(&self, tensor: &Tensor) -> Value {
        let op = Op::Weight {
            name: tensor.name().to_string(),
            tensor: tensor.clone(),
        };
        self.push(op, tensor.shape().to_vec())
    }

    pub fn constant(&self, name: &str, shape: &[usize], data: Vec<f32>) -> Value {
        if shape.iter().product::<usize>() != data.len() {
            self.fail(format!(
                "constant '{name}' {shape:?} given {} values",
                data.len()
            ));
        }
        self.push(
            Op::Const {
                name: name.into(),
                data,
            },
            shape.to_vec(),
        )
    }

    pub fn state(&self, name: &str, capacity: usize, width: usize) -> Value {
        self.push(Op::State { name: name.into() }, vec![capacity, width])
    }

    /// Mark `v` as a result of the run, read back under `name`.
    pub fn output(&self, name: &str, v: Value) {
        self.outputs.borrow_mut().push((name.into(), v));
    }

    /// table (vocab, D) gathered at ids (T) -> (T, D)
    pub fn embedding(&self, table: Value, ids: Value) -> Value {
        let t = self.shape(ids).first().copied().unwrap_or(0);
        let d = match self.shape(table).as_slice() {
            [_, d] => *d,
            s => {
                self.fail(format!("embedding table must be 2-D, got {s:?}"));
                0
            }
        };
        self.push(Op::Embedding { table, ids }, vec![t, d])
    }

    /// x (M, K) @ w (N, K)^T -> (M, N)
    pub fn matmul(&self, x: Value, w: Value) -> Value {
        self.linear(x, w, None)
    }

    /// x (M, K) @ w (N, K)^T + bias (N) -> (M, N)
    pub fn linear(&self, x: Value, w: Value, bias: Option<Value>) -> Value {
        let (m, k) = self.dims(x, "matmul input");
        let ws = self.shape(w);
        let n = match ws.as_slice() {
            [n, kw] if *kw == k => *n,
            s => {
                self.fail(format!(
                    "matmul: input is ({m}, {k}) but weight is {s:?}, expected (N, {k})"
                ));
                0
            }
        };
        if let Some(b) = bias {
            if self.shape(b) != [n] {
                self.fail(format!(
                    "matmul bias has shape {:?}, expected [{n}]",
                    self.shape(b)
                ));
            }
        }
        let tail = Tail::default();
        self.push(Op::MatMul { x, w, bias, tail }, vec![m, n])
    }

    fn elementwise(&self, a: Value, tail: Tail, operands: &[Value], what: &str) -> Value {
        let shape = self.shape(a);
        for o in operands {
            if self.shape(*o) != shape {
                self.fail(format!(
                    "{what}: shapes {shape:?} and {:?} differ",
                    self.shape(*o)
                ));
            }
        }
        self.push(Op::Elementwise { a, tail }, shape)
    }

    /// a + b
    pub fn add(&self, a: Value, b: Value) -> Value {
        let tail = Tail {
            residual: Some(b),
            ..Default::default()
        };
        self.elementwise(a, tail, &[b], "add")
    }

    /// a * b, elementwise
    pub fn mul(&self, a: Value, b: Value) -> Value {
        let tail = Tail {
            aux: Some((b, Act::Identity)),
            ..Default::default()
        };
        self.elementwise(a, tail, &[b], "mul")
    }

    /// act(a)
    pub fn act(&self, a: Value, act: Act) -> Value {
        let tail = Tail {
            act,
            ..Default::default()
        };
        self.elementwise(a, tail, &[], "activation")
    }

    /// act(gate) * up: SwiGLU with `Act::Silu`, GeGLU with a GELU.
    pub fn glu(&self, gate: Value, up: Value, act: Act) -> Value {
        let tail = Tail {
            act,
            aux: Some((up, Act::Identity)),
            residual: None,
        };
        self.elementwise(gate, tail, &[up], "glu")
    }

    /// x / rms(x) * w
    pub fn rms_norm(&self, x: Value, w: Value, eps: f32) -> Value {
        self.norm(x, w, None, eps, false)
    }

    /// (x - mean) / std * w + b
    pub fn layer_norm(&self, x: Value, w: Value, b: Option<Value>, eps: f32) -> Value {
        self.norm(x, w, b, eps, true)
    }

    fn norm(&self, x: Value, w: Value, b: Option<Value>, eps: f32, layer: bool) -> Value {
        let (r, d) = self.dims(x, "norm input");
        for p in std::iter::once(w).chain(b) {
            if self.shape(p) != [d] {
                self.fail(format!(
                    "norm parameter has shape {:?}, expected [{d}]",
                    self.shape(p)
                ));
            }
        }
        self.push(
            Op::Norm {
                x,
                w,
                b,
                eps,
                layer,
            },
            vec![r, d],
        )
    }

    /// Softmax over each row.
    pub fn softmax(&self, x: Value) -> Value {
        let s = self.shape(x);
        self.dims(x, "softmax input");
        self.push(Op::Softmax { x }, s)
    }

    /// Sample the next token from `logits` (1, V) into the state `token` (see [`Op::Sample`]).
    /// `ids`, when given, are marked seen first (the prompt, in prefill).
    pub fn sample(&self, logits: Value, ids: Option<Value>, seen: Value, token: Value) -> Value {
        let (r, v) = self.dims(logits, "sample input");
        if r != 1 {
            self.fail(format!("sample: logits must be one row, got {r}"));
        }
        if self.shape(seen).iter().product::<usize>() != v {
            self.fail(format!(
                "sample: the seen state {:?} does not cover {v} tokens",
                self.shape(seen)
            ));
        }
        if self.shape(token).iter().product::<usize>() != 1 {
            self.fail("sample: the token state must hold one id".into());
        }
        let shape = self.shape(token);
        self.push(
            Op::Sample {
                logits,
                ids,
                seen,
                token,
            },
            shape,
        )
    }

    /// Rows [start, start + len) of a 2-D activation, e.g. the last position before the LM head.
    pub fn rows(&self, x: Value, start: usize, len: usize) -> Value {
        let (r, c) = self.dims(x, "rows input");
        if start + len > r || len == 0 {
            self.fail(format!(
                "rows {start}..{} of a ({r}, {c}) activation",
                start + len
            ));
        }
        self.push(Op::Rows { x, start, len }, vec![len, c])
    }

    /// Rotate-half RoPE over (T, heads * head_dim) with a (positions, head_dim) cos/sin table
    /// (see [`crate::reference::rope_table`]).
    pub fn rope(&self, x: Value, table: Value, heads: usize, head_dim: usize) -> Value {
        let (t, c) = self.dims(x, "rope input");
        if c != heads * head_dim || head_dim % 2 != 0 {
            self.fail(format!(
                "rope: width {c} is not {heads} heads x {head_dim} (even) dims"
            ));
        }
        let ts = self.shape(table);
        if ts.len() != 2 || ts[1] != head_dim {
            self.fail(format!(
                "rope: table has shape {ts:?}, expected (positions, {head_dim})"
            ));
        }
        self.push(
            Op::Rope {
                x,
                table,
                heads,
                head_dim,
            },
            vec![t, c],
        )
    }

    /// Append src (T, width) to the cache at the run's position.
    pub fn kv_write(&self, src: Value, cache: Value) -> Value {
        let (_, w) = self.dims(src, "kv_write input");
        let cs = self.shape(cache);
        if cs.len() != 2 || cs[1] != w {
            self.fail(format!(
                "kv_write: rows of width {w} do not fit cache {cs:?}"
            ));
        }
        self.push(Op::KvWrite { src, cache }, cs)
    }

    /// Grouped-query attention of q (T, heads * head_dim) over the caches k, v
    /// (capacity, kv_heads * head_dim), scaled by 1/sqrt(head_dim).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        q: Value,
        k: Value,
        v: Value,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        causal: bool,
    ) -> Value {
        self.attention_op(q, k, v, [heads, kv_heads, head_dim], causal, None)
    }

    /// Causal attention that sees at most the last `window` keys, when given.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_windowed(
        &self,
        q: Value,
        k: Value,
        v: Value,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        window: Option<usize>,
    ) -> Value {
        self.attention_op(q, k, v, [heads, kv_heads, head_dim], true, window)
    }

    fn attention_op(
        &self,
        q: Value,
        k: Value,
        v: Value,
        [heads, kv_heads, head_dim]: [usize; 3],
        causal: bool,
        window: Option<usize>,
    ) -> Value {
        let (t, c) = self.dims(q, "attention query");
        if c != heads * head_dim {
            self.fail(format!(
                "attention: query width {c} is not {heads} x {head_dim}"
            ));
        }
        if kv_heads == 0 || heads % kv_heads != 0 {
            self.fail(format!(
                "attention: {heads} heads do not group over {kv_heads} KV heads"
            ));
        }
        for cache in [k, v] {
            let s = self.shape(cache);
            if s.len() != 2 || s[1] != kv_heads * head_dim {
                self.fail(format!(
                    "attention: cache {s:?} is not (capacity, {kv_heads} x {head_dim})"
                ));
            }
        }
        if head_dim > crate::kernels::ATTENTION_MAX_HEAD_DIM {
            self.fail(format!(
                "attention: head_dim {head_dim} exceeds {}",
                crate::kernels::ATTENTION_MAX_HEAD_DIM
            ));
        }
        let scale = 1.0 / (head_dim as f32).sqrt();
        let op = Op::Attention {
            q,
            k,
            v,
            heads,
            kv_heads,
            head_dim,
            causal,
            scale,
            window,
        };
        self.push(op, vec![t, c])
    }

    /// The nodes built so far (for the scheduler and the CPU reference).
    pub fn nodes(&self) -> std::cell::Ref<'_, Vec<Node>> {
        self.nodes.borrow()
    }

    pub fn outputs(&self) -> Vec<(String, Value)> {
        self.outputs.borrow().clone()
    }
}
