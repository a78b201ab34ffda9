//! The compute graph that model code builds: op values, no GPU work.
//!
//! Model files call builder methods (`g.matmul`, `g.rms_norm`, `g.attention`, ...) and get
//! back [`Value`] handles; nothing runs until the scheduler plans the graph and the executor
//! records it. Each builder lives with its op in `src/ops/` and adds an [`Op`] value here;
//! the op's shape rule runs as it is added. A mismatch is recorded and reported by
//! [`Graph::check`] (and so by planning), so model code reads like the equations instead of
//! a wall of `?`.
//!
//! **Batches are a dimension.** Activations are (S, T, W): S sequences of up to T tokens of
//! width W, row `s * T + t`. Each step says, per sequence, where it starts, how many of its T
//! rows hold tokens (the rest is padding, masked out), and which KV-cache slot it uses
//! ([`Step`]). Token ids are (S, T). Weights keep their own shapes; states (KV caches,
//! sampler flags) are (slots, ...). Padding rows hold unspecified values on the GPU (the CPU
//! twins may put zeros or copies there); nothing reads them, and outputs read them back as
//! zeros. Values whose every row holds data whatever the lengths (an encoder's output fed to
//! a decoder, a convolution's) are dense, not ragged.

mod emit;
mod eval;
mod layout;
mod op;
mod step;

pub use emit::{Bound, Buf, Dispatch, Emit, Exchange, Grid, GridShape, Rows, When};
pub use eval::Eval;
pub use layout::Layout;
pub use op::{Op, Tail};
pub use step::{Seq, SeqParams, Step, mask_padding};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::sync::Arc;

/// A handle to a value in a [`Graph`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) usize);

/// Values that live outside a step's computation: written by the host, uploaded once, or
/// kept across steps.
#[derive(Clone, Debug)]
pub enum Leaf {
    /// Token ids (u32), (S, T), written by the host before each step.
    Ids {
        /// The input's name, as fed to the program.
        name: String,
    },
    /// f32 activations, (S, T, W), written by the host before each step.
    Input {
        /// The input's name, as fed to the program.
        name: String,
    },
    /// A weight already on the GPU. The CPU reference finds its values by the same name.
    Weight {
        /// The tensor on the GPU; the CPU reference finds its values by its name.
        tensor: Tensor,
    },
    /// A small f32 constant computed on the host (e.g. RoPE cos/sin), uploaded once.
    Const {
        /// Its name, which labels its GPU buffer.
        name: String,
        /// The values, row-major.
        data: Vec<f32>,
    },
    /// A persistent f32 buffer that outlives a step: a KV cache, the sampler's flags.
    State {
        /// The state's name, shared by the programs that use it (see `exec::State`).
        name: String,
    },
}

/// What a node is: a leaf, or an op computed from other values.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// Host-written, uploaded or persistent data.
    Leaf(Leaf),
    /// An op computed from other values.
    Op(Arc<dyn Op>),
}

/// One value of a [`Graph`]: what computes it, its shape, and how the scheduler treats it.
#[derive(Clone, Debug)]
pub struct Node {
    /// A leaf, or the op that computes it.
    pub kind: NodeKind,
    /// Its shape, outermost dimension first; activations are (S, T, ...).
    pub shape: Vec<usize>,
    /// Whether only the rows the step's lengths mark as tokens hold values (see [`Rows`]).
    pub ragged: bool,
    /// How the value is spread over the parts of a model split tensor-parallel.
    pub layout: Layout,
    /// The scope (e.g. "layer.3") the node was built in; passes are grouped by it.
    pub scope: String,
}

impl Node {
    /// The op, if the node is one.
    pub fn op(&self) -> Option<&Arc<dyn Op>> {
        match &self.kind {
            NodeKind::Op(op) => Some(op),
            NodeKind::Leaf(_) => None,
        }
    }
    /// The leaf, if the node is one.
    pub fn leaf(&self) -> Option<&Leaf> {
        match &self.kind {
            NodeKind::Leaf(l) => Some(l),
            NodeKind::Op(_) => None,
        }
    }
    /// The values this node reads.
    pub fn inputs(&self) -> Vec<Value> {
        self.op().map(|o| o.inputs()).unwrap_or_default()
    }
    /// The state this node updates in place, if any.
    pub fn updates(&self) -> Option<Value> {
        self.op().and_then(|o| o.updates())
    }
    /// A short name for labels: the op's, or the leaf's kind.
    pub fn name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Op(o) => o.name(),
            NodeKind::Leaf(Leaf::Ids { .. }) => "ids",
            NodeKind::Leaf(Leaf::Input { .. }) => "input",
            NodeKind::Leaf(Leaf::Weight { .. }) => "weight",
            NodeKind::Leaf(Leaf::Const { .. }) => "const",
            NodeKind::Leaf(Leaf::State { .. }) => "state",
        }
    }
}

/// A graph under construction. Methods take `&self` so calls nest like the maths.
pub struct Graph {
    pub(crate) nodes: RefCell<Vec<Node>>,
    pub(crate) outputs: RefCell<Vec<(String, Value)>>,
    seqs: usize,
    /// Which part of a tensor-parallel model this graph is, and of how many (0 of 1: the
    /// whole).
    part: usize,
    parts: usize,
    scope: RefCell<String>,
    error: RefCell<Option<String>>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph::batch(1)
    }
}

impl Graph {
    /// A graph over one sequence per step.
    pub fn new() -> Self {
        Self::default()
    }

    /// A graph over `seqs` sequences per step (S).
    pub fn batch(seqs: usize) -> Self {
        Graph {
            nodes: RefCell::default(),
            outputs: RefCell::default(),
            seqs,
            part: 0,
            parts: 1,
            scope: RefCell::default(),
            error: RefCell::default(),
        }
    }

    /// Sequences per step (S).
    pub fn seqs(&self) -> usize {
        self.seqs
    }

    /// This graph as part `index` (in adapter order) of `parts` of a model split
    /// tensor-parallel: the partial sums its weights' cuts make become exchanges with the
    /// other parts ([`Layout`]).
    pub fn part(mut self, index: usize, parts: usize) -> Self {
        self.parts = parts.max(1);
        self.part = index.min(self.parts - 1);
        self
    }

    /// Which part of a tensor-parallel model this graph is (0 for the whole model).
    pub fn index(&self) -> usize {
        self.part
    }

    /// How many parts of a tensor-parallel model this graph is one of (1: the whole model).
    pub fn parts(&self) -> usize {
        self.parts
    }

    fn push(&self, kind: NodeKind, shape: Vec<usize>, ragged: bool, layout: Layout) -> Value {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            kind,
            shape,
            ragged,
            layout,
            scope: self.scope.borrow().clone(),
        });
        Value(nodes.len() - 1)
    }

    /// Add an op: its shape and layout rules run now; a mismatch is recorded for
    /// [`Graph::check`]. A partial sum is reduced across the parts at once: the value
    /// returned is the sum. (Op modules call this from their builder methods.)
    pub fn apply(&self, op: impl Op) -> Value {
        let (shape, ragged) = match op.shape(self) {
            Ok(s) => {
                let inputs: Vec<bool> = op.inputs().iter().map(|v| self.ragged(*v)).collect();
                (s, op.ragged(&inputs))
            }
            Err(e) => {
                self.fail(format!("{}: {e}", op.name()));
                (vec![0], false)
            }
        };
        let inputs: Vec<Layout> = op.inputs().iter().map(|v| self.layout(*v)).collect();
        let layout = op.layout(self, &inputs).unwrap_or_else(|e| {
            self.fail(format!("{}: {e}", op.name()));
            Layout::Whole
        });
        let partial = layout == Layout::Partial;
        let name = op.name();
        let v = self.push(NodeKind::Op(Arc::new(op)), shape, ragged, layout);
        match (partial, self.parts > 1) {
            (false, _) => v,
            (true, true) => self.all_reduce(v),
            (true, false) => {
                self.fail(format!(
                    "{name}: gives a partial sum (its weights are cut for one adapter) in a \
                     graph of the whole model; a part of a split model is `Graph::part`"
                ));
                v
            }
        }
    }

    /// How `v` is spread over the parts of a model split tensor-parallel.
    pub fn layout(&self, v: Value) -> Layout {
        self.nodes.borrow()[v.0].layout.clone()
    }

    /// Record a shape error (the first one is reported).
    pub fn fail(&self, msg: String) {
        let mut e = self.error.borrow_mut();
        if e.is_none() {
            *e = Some(msg);
        }
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Value) -> Vec<usize> {
        self.nodes.borrow()[v.0].shape.clone()
    }

    /// Whether only the rows the step's lengths mark as tokens of `v` hold values.
    pub fn ragged(&self, v: Value) -> bool {
        self.nodes.borrow()[v.0].ragged
    }

    /// The leaf behind `v`, if it is one.
    pub fn leaf(&self, v: Value) -> Option<Leaf> {
        self.nodes.borrow()[v.0].leaf().cloned()
    }

    /// Whether `v` is a persistent state, or an op's update of one.
    pub fn is_state(&self, v: Value) -> bool {
        let nodes = self.nodes.borrow();
        match &nodes[v.0].kind {
            NodeKind::Leaf(Leaf::State { .. }) => true,
            NodeKind::Leaf(_) => false,
            NodeKind::Op(o) => o.updates().is_some(),
        }
    }

    /// (S, T, W) of an activation, or why it is not one.
    pub fn dims3(&self, v: Value) -> std::result::Result<[usize; 3], String> {
        match self.shape(v).as_slice() {
            [s, t, w] if *s == self.seqs => Ok([*s, *t, *w]),
            [s, _, _] => Err(format!(
                "an activation of {s} sequences in a graph of {} sequences per step",
                self.seqs
            )),
            other => Err(format!(
                "expected an (S, T, W) activation, got shape {other:?}"
            )),
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

    /// Token ids for `tokens` positions of each of the S sequences: (S, T).
    pub fn ids(&self, name: &str, tokens: usize) -> Value {
        let kind = NodeKind::Leaf(Leaf::Ids { name: name.into() });
        self.push(kind, vec![self.seqs, tokens], true, Layout::Whole)
    }

    /// f32 activations written by the host: (S, T, W), whose token rows the step's lengths
    /// give (the rest is padding).
    pub fn input(&self, name: &str, tokens: usize, width: usize) -> Value {
        let kind = NodeKind::Leaf(Leaf::Input { name: name.into() });
        self.push(kind, vec![self.seqs, tokens, width], true, Layout::Whole)
    }

    /// f32 activations written by the host, (S, rows, W), every row of which holds data
    /// whatever the step's lengths: another sequence's states (an encoder's output read by a
    /// decoder), audio frames.
    pub fn input_dense(&self, name: &str, rows: usize, width: usize) -> Value {
        let kind = NodeKind::Leaf(Leaf::Input { name: name.into() });
        self.push(kind, vec![self.seqs, rows, width], false, Layout::Whole)
    }

    /// A weight: whole, or split along the axis it was cut on for this adapter.
    pub fn weight(&self, tensor: &Tensor) -> Value {
        let shape = tensor.shape().to_vec();
        let layout = tensor.slice().map_or(Layout::Whole, |s| {
            Layout::split(s.axis, s.range.clone(), s.whole[s.axis])
        });
        let kind = NodeKind::Leaf(Leaf::Weight {
            tensor: tensor.clone(),
        });
        self.push(kind, shape, false, layout)
    }

    /// A small f32 constant `name` of `shape` (`data` row-major), uploaded once with the
    /// program; a length that does not match the shape is recorded as the graph's error.
    pub fn constant(&self, name: &str, shape: &[usize], data: Vec<f32>) -> Value {
        if shape.iter().product::<usize>() != data.len() {
            self.fail(format!(
                "constant '{name}' {shape:?} given {} values",
                data.len()
            ));
        }
        let kind = NodeKind::Leaf(Leaf::Const {
            name: name.into(),
            data,
        });
        self.push(kind, shape.to_vec(), false, Layout::Whole)
    }

    /// A persistent state: (slots, ...), e.g. a KV cache (slots, capacity, width).
    pub fn state(&self, name: &str, shape: &[usize]) -> Value {
        if shape.is_empty() || shape.contains(&0) {
            self.fail(format!("state '{name}' has an empty shape {shape:?}"));
        }
        let kind = NodeKind::Leaf(Leaf::State { name: name.into() });
        self.push(kind, shape.to_vec(), false, Layout::Whole)
    }

    /// Mark `v` as a result of the step, read back under `name`.
    pub fn output(&self, name: &str, v: Value) {
        self.outputs.borrow_mut().push((name.into(), v));
    }

    /// The nodes built so far (for the scheduler and the CPU reference).
    pub fn nodes(&self) -> std::cell::Ref<'_, Vec<Node>> {
        self.nodes.borrow()
    }

    /// The values marked with [`Graph::output`], with their names, in the order marked.
    pub fn outputs(&self) -> Vec<(String, Value)> {
        self.outputs.borrow().clone()
    }
}
