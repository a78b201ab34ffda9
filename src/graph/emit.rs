//! What an op emits: dispatches over named buffers, each with a grid that the executor sizes
//! per step, and the per-step checks the op relies on.

use super::{Leaf, Node, NodeKind, Value};
use crate::dtype::WeightFormat;
use crate::error::{Error, Result};
use crate::kernels::{GpuStruct, Kernel, Target, grid};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Where a binding comes from when the executor builds bind groups.
#[derive(Clone, Debug, PartialEq)]
pub enum Buf {
    /// This dispatch's own uniform parameter block.
    Params,
    /// The step's sequences (`array<Seq>`, one per sequence).
    Seqs,
    /// The step's sampling parameters (one per sequence).
    Sampling,
    /// A planned activation buffer.
    Slot(usize),
    /// Part `part` of a weight.
    Weight {
        /// The weight's leaf.
        value: Value,
        /// Which of its parts (a weight over the binding limit is stored in several).
        part: usize,
    },
    /// A host constant uploaded with the program.
    Const(Value),
    /// A host input (token ids or activations).
    Input(String),
    /// A persistent state buffer.
    State(String),
    /// A stand-in for a binding the variant does not read.
    Dummy,
}

/// How many rows a dispatch covers in a step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Always this many.
    Fixed(usize),
    /// The token rows of an (S, T, ...) activation: every row up to the last one that holds
    /// a token ([`Step::rows`](super::Step::rows)). A step shorter than T computes only that.
    Ragged {
        /// T: the activation's token rows per sequence.
        tokens: usize,
    },
}

impl Rows {
    /// The rows in a step.
    pub fn resolve(self, step: &super::Step) -> usize {
        match self {
            Rows::Fixed(n) => n,
            Rows::Ragged { tokens } => step.rows(tokens),
        }
    }
}

/// How the workgroups of a dispatch follow from its rows `n`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GridShape {
    /// `ceil(n * per_row / per_group)` workgroups, spread over x and y.
    Linear {
        /// Work items per row.
        per_row: u64,
        /// Work items per workgroup.
        per_group: u64,
    },
    /// `[x, ceil(n / per_group), 1]`: tiles of rows along y (GEMM).
    RowsY {
        /// Workgroups along x (tiles of columns).
        x: u32,
        /// Rows per workgroup along y.
        per_group: u32,
    },
    /// `[xy, ceil(n / per_group)]`: blocks of rows along z (GEMV).
    RowsZ {
        /// Workgroups along x and y (blocks of columns).
        xy: [u32; 2],
        /// Rows per workgroup along z.
        per_group: u32,
    },
    /// Always this grid (while n > 0).
    Fixed([u32; 3]),
}

/// Whether a dispatch runs in a step, by its rows: lets an op emit alternatives (GEMV for
/// few rows, GEMM for many) and the step pick one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Run in every step that has rows.
    Always,
    /// Run only when the step has at most this many rows.
    RowsAtMost(usize),
    /// Run only when the step has more than this many rows.
    RowsAbove(usize),
}

/// A dispatch's grid as a function of the step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    /// The rows the dispatch covers in a step.
    pub rows: Rows,
    /// How its workgroups follow from those rows.
    pub shape: GridShape,
    /// Whether it runs at all, by those rows.
    pub when: When,
    /// The device's limit per grid dimension.
    pub max: u32,
}

impl Grid {
    /// The workgroups to dispatch in `step`, or `None` to skip the dispatch.
    pub fn resolve(&self, step: &super::Step) -> Option<[u32; 3]> {
        let n = self.rows.resolve(step);
        let run = match self.when {
            When::Always => true,
            When::RowsAtMost(m) => n <= m,
            When::RowsAbove(m) => n > m,
        };
        if n == 0 || !run {
            return None;
        }
        Some(match self.shape {
            GridShape::Linear { per_row, per_group } => {
                grid((n as u64 * per_row).div_ceil(per_group.max(1)), self.max)
            }
            GridShape::RowsY { x, per_group } => [x, (n as u32).div_ceil(per_group), 1],
            GridShape::RowsZ { xy, per_group } => [xy[0], xy[1], (n as u32).div_ceil(per_group)],
            GridShape::Fixed(g) => g,
        })
    }

    /// The largest grid any step can ask for (with every row a token).
    pub fn largest(&self, seqs: usize) -> [u32; 3] {
        let rows = match self.rows {
            Rows::Fixed(n) => n,
            Rows::Ragged { tokens } => seqs * tokens,
        };
        let full = Grid {
            rows: Rows::Fixed(rows),
            when: When::Always,
            ..*self
        };
        full.resolve(&super::Step { seqs: vec![] })
            .unwrap_or([0; 3])
    }
}

/// One kernel launch.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// The kernel variant (family, weight formats, override constants) to launch.
    pub kernel: Kernel,
    /// What each of the kernel's bindings is bound to, in binding order.
    pub bindings: Vec<Buf>,
    /// The bytes of the kernel's typed `Params`.
    pub params: Vec<u8>,
    /// The workgroups to launch, as a function of the step.
    pub grid: Grid,
    /// What emitted it, as [`Emit::label`] says it ("layer.3 matmul #42"), for profiles and errors.
    pub label: String,
}

/// What the executor checks before each step, so that kernels never index out of bounds.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    /// Token ids fed as input `input` must be below `below` (a vocabulary).
    Ids {
        /// The input's name.
        input: String,
        /// The exclusive upper bound on each id.
        below: usize,
    },
    /// Each sequence's `pos + len` must stay within `capacity` positions of `what`.
    Positions {
        /// What holds the positions, for the error message ("KV cache 'k0'").
        what: String,
        /// Positions it holds per sequence.
        capacity: usize,
    },
    /// Each sequence's slot must be below `slots` for `what`.
    Slots {
        /// What holds the slots, for the error message ("KV cache 'k0'").
        what: String,
        /// Slots it holds.
        slots: usize,
    },
}

/// A point where the adapters of a model split tensor-parallel exchange a value through the
/// host before going on: the executor stops recording before pass `pass`, and replaces the
/// first `rows` rows of `width` f32 of `buf` on every adapter by their sum; or, for a
/// gather, writes every adapter's rows side by side (in adapter order) into `gather`'s
/// buffer of its width, on the adapters that read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    /// The buffer exchanged.
    pub buf: Buf,
    /// f32 values per row (this adapter's share, for a gather).
    pub width: usize,
    /// The rows exchanged in a step.
    pub rows: Rows,
    /// The first pass that reads the result (set by the scheduler).
    pub pass: usize,
    /// A gather's destination and its width (the adapters' widths add up to it).
    pub gather: Option<(Buf, usize)>,
    /// Whether this part reads the result (set by the scheduler): a gather is written only
    /// where it is read, say the logits on the part that returns them.
    pub read: bool,
}

/// The context an op emits its dispatches into.
pub struct Emit<'a> {
    pub(crate) nodes: &'a [Node],
    /// The device's limits and features the dispatches are planned for.
    pub target: Target,
    pub(crate) slot_of: &'a HashMap<Value, usize>,
    pub(crate) this: Value,
    /// The slot of this op's scratch, when it asked for one.
    pub(crate) scratch: Option<usize>,
    pub(crate) seqs: usize,
    pub(crate) dispatches: Vec<Dispatch>,
    pub(crate) bounds: Vec<Bound>,
    /// The exchange this op's dispatches wait for, if any ([`Emit::exchange`]).
    pub(crate) exchange: Option<Exchange>,
}

impl Emit<'_> {
    /// The value being emitted.
    pub fn this(&self) -> Value {
        self.this
    }

    /// Sequences per step (S).
    pub fn seqs(&self) -> usize {
        self.seqs
    }

    /// The shape of value `v`.
    pub fn shape(&self, v: Value) -> &[usize] {
        &self.nodes[v.0].shape
    }

    /// The result's shape.
    pub fn out_shape(&self) -> &[usize] {
        self.shape(self.this)
    }

    /// The rows of `v` a step computes: token rows for ragged (S, T, ...) values, all rows
    /// (every dimension but the last) otherwise.
    pub fn rows(&self, v: Value) -> Rows {
        let n = &self.nodes[v.0];
        match n.shape.as_slice() {
            [_, t, ..] if n.ragged => Rows::Ragged { tokens: *t },
            s => Rows::Fixed(
                s[..s.len().saturating_sub(1)]
                    .iter()
                    .product::<usize>()
                    .max(1),
            ),
        }
    }

    /// A grid for `rows`.
    pub fn grid(&self, rows: Rows, shape: GridShape) -> Grid {
        Grid {
            rows,
            shape,
            when: When::Always,
            max: self.target.max_workgroups,
        }
    }

    /// `per_row` work items per row of `v`, `per_group` to a workgroup, spread over x and y.
    pub fn linear(&self, v: Value, per_row: usize, per_group: u32) -> Grid {
        let shape = GridShape::Linear {
            per_row: per_row as u64,
            per_group: u64::from(per_group),
        };
        self.grid(self.rows(v), shape)
    }

    /// Where `v` lives (part 0 for weights).
    pub fn buf(&self, v: Value) -> Buf {
        let n = &self.nodes[v.0];
        match &n.kind {
            NodeKind::Leaf(Leaf::Ids { name } | Leaf::Input { name }) => Buf::Input(name.clone()),
            NodeKind::Leaf(Leaf::Weight { .. }) => Buf::Weight { value: v, part: 0 },
            NodeKind::Leaf(Leaf::Const { .. }) => Buf::Const(v),
            NodeKind::Leaf(Leaf::State { name }) => Buf::State(name.clone()),
            NodeKind::Op(op) => match op.updates() {
                Some(state) => self.buf(state),
                None => Buf::Slot(self.slot_of.get(&v).copied().unwrap_or(usize::MAX)),
            },
        }
    }

    /// Where the result goes.
    pub fn out(&self) -> Buf {
        self.buf(self.this)
    }

    /// The op's scratch buffer (of [`Op::scratch_bytes`](super::Op::scratch_bytes)).
    pub fn scratch(&self) -> Result<Buf> {
        self.scratch.map(Buf::Slot).ok_or_else(|| {
            Error::Invalid(format!("{}: no scratch buffer was planned", self.label()))
        })
    }

    /// The name of the state behind `v` (a state, or an op's update of one).
    pub fn state_name(&self, v: Value) -> Result<String> {
        match self.buf(v) {
            Buf::State(name) => Ok(name),
            _ => Err(Error::Invalid(format!(
                "{}: expected a state, got a {}",
                self.label(),
                self.nodes[v.0].name()
            ))),
        }
    }

    /// The tensor behind a weight operand.
    pub fn tensor(&self, v: Value) -> Result<&Tensor> {
        match &self.nodes[v.0].kind {
            NodeKind::Leaf(Leaf::Weight { tensor }) => Ok(tensor),
            _ => Err(Error::Invalid(format!(
                "{}: expected a weight, got a {}",
                self.label(),
                self.nodes[v.0].name()
            ))),
        }
    }

    /// The format a weight (or constant) operand is read in, checking that the adapter can
    /// read it and, when the kernel cannot run per part, that it is one part and not
    /// block-quantized (the kernels that run per part, matmul and embedding, are the ones
    /// that read blocks).
    pub fn weight(&self, v: Value, splittable: bool) -> Result<WeightFormat> {
        let tensor = match &self.nodes[v.0].kind {
            NodeKind::Leaf(Leaf::Const { .. }) => return Ok(WeightFormat::F32),
            _ => self.tensor(v)?,
        };
        let name = tensor.name();
        let parts = tensor.parts().len();
        if parts > 1 && !splittable {
            return Err(Error::Limit(format!(
                "tensor '{name}' is split into {parts} parts but {} reads it whole",
                self.label()
            )));
        }
        let format = tensor.dtype().weight_format(self.target.has_f16);
        if format.is_block() && !splittable {
            return Err(Error::Invalid(format!(
                "tensor '{name}' is {}, but {} reads float weights only (F32, F16, BF16)",
                tensor.dtype(),
                self.label()
            )));
        }
        if format.needs_f16_unpack() && !self.target.has_f16_unpack {
            return Err(Error::Gpu(format!(
                "tensor '{name}' is {}, but this adapter can neither read f16 natively \
                 (SHADER_F16) nor unpack it (unpack2x16float); store it as F32 or BF16",
                tensor.dtype()
            )));
        }
        Ok(format)
    }

    /// The format of an optional weight, F32 (a dummy binding) when absent.
    pub fn weight_or_f32(&self, v: Option<Value>) -> Result<WeightFormat> {
        v.map_or(Ok(WeightFormat::F32), |v| self.weight(v, false))
    }

    /// The binding of an optional operand.
    pub fn buf_or_dummy(&self, v: Option<Value>) -> Buf {
        v.map_or(Buf::Dummy, |v| self.buf(v))
    }

    /// "layer.3 matmul #42", for labels and errors.
    pub fn label(&self) -> String {
        let n = &self.nodes[self.this.0];
        format!("{} {} #{}", n.scope, n.name(), self.this.0)
    }

    /// Add a dispatch of `kernel` with typed `params`.
    pub fn dispatch<P: GpuStruct>(
        &mut self,
        kernel: Kernel,
        bindings: Vec<Buf>,
        params: &P,
        grid: Grid,
    ) {
        let label = self.label();
        self.dispatches.push(Dispatch {
            kernel,
            bindings,
            params: bytemuck::bytes_of(params).to_vec(),
            grid,
            label,
        });
    }

    /// Sum `v`'s partials across the adapters before this op's dispatches run (see
    /// [`Exchange`]). `v` must be an (S, T, W) activation.
    pub fn exchange(&mut self, v: Value) -> Result<()> {
        self.exchange_into(v, None)
    }

    /// Gather every adapter's `v` (S, T, W_i), side by side, into this op's result (S, T,
    /// `width`), which the host writes: the op emits no dispatch of its own.
    pub fn gather(&mut self, v: Value, width: usize) -> Result<()> {
        let into = self.out();
        self.exchange_into(v, Some((into, width)))
    }

    fn exchange_into(&mut self, v: Value, gather: Option<(Buf, usize)>) -> Result<()> {
        let width = match self.shape(v) {
            [_, _, w] => *w,
            other => {
                return Err(Error::Shape(format!(
                    "{}: only (S, T, W) activations are exchanged, not shape {other:?}",
                    self.label()
                )));
            }
        };
        self.exchange = Some(Exchange {
            buf: self.buf(v),
            width,
            rows: self.rows(v),
            pass: 0,
            gather,
            read: true,
        });
        Ok(())
    }

    /// Ask the executor to check a bound before each step (the scheduler drops repeats).
    pub fn bound(&mut self, b: Bound) {
        self.bounds.push(b);
    }

    /// Token ids read from `ids` index something with `below` entries: when they come from
    /// the host, check them before each step.
    pub fn bound_ids(&mut self, ids: Value, below: usize) {
        if let NodeKind::Leaf(Leaf::Ids { name }) = &self.nodes[ids.0].kind {
            let input = name.clone();
            self.bound(Bound::Ids { input, below });
        }
    }
}
