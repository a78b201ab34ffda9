//! The scheduler: turns a [`Graph`] into a [`Plan`] of compute passes.
//!
//! 1. **Order**: a depth-first walk from the outputs and the KV-cache writes gives a
//!    topological order and drops anything nothing needs.
//! 2. **Fuse**: elementwise ops fold into their X.
//! 3. **Plan buffers**: liveness over the order, then greedy-by-size buffer sharing
//!    ([`memory`]); the plan reports the activation memory it needs.
//! 4. **Emit**: each op becomes one dispatch per weight part, with its kernel key, bindings,
//!    uniform parameters and grid (`emit.rs`); dispatches are grouped into passes by scope.

mod emit;
mod fuse;
pub mod memory;

pub use memory::MemoryReport;

use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Op, Value};
use crate::kernels::{Kernel, Params};

/// Where a binding comes from when the executor builds bind groups.
#[derive(Clone, Debug, PartialEq)]
pub enum Buf {
    /// This dispatch's own uniform parameter block.
    Params,
    /// The per-run uniform (the position of the first token).
    Step,
    /// A planned activation buffer.
    Slot(usize),
    /// Part `part` of a weight.
    Weight { value: Value, part: usize },
    /// A host constant uploaded with the program.
    Const(Value),
    /// A host input (token ids or activations).
    Input(String),
    /// A persistent state buffer (KV cache).
    State(String),
    /// A stand-in for a binding the variant does not read.
    Dummy,
}

/// One kernel launch.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub bindings: Vec<Buf>,
    pub params: Params,
    pub grid: [u32; 3],
    pub label: String,
}

/// A run of dispatches recorded into one compute pass.
#[derive(Clone, Debug)]
pub struct Pass {
    pub label: String,
    pub dispatches: std::ops::Range<usize>,
}

/// A host input of the plan.
#[derive(Clone, Debug)]
pub struct InputSpec {
    pub name: String,
    /// Element count.
    pub len: usize,
    /// Token ids (u32) rather than f32 activations.
    pub ids: bool,
    /// For ids that index an embedding table: the table's row count.
    pub vocab: Option<usize>,
}

/// A bound on positions: each run covers `rows` positions from its start, which must stay
/// within `capacity` (a KV cache's rows, a RoPE table's positions).
#[derive(Clone, Debug)]
pub struct PositionLimit {
    pub what: String,
    pub rows: usize,
    pub capacity: usize,
}

/// An output read back after each run.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub name: String,
    /// Where it lives: an activation slot, or a state (a sampled token).
    pub buf: Buf,
    pub shape: Vec<usize>,
    /// Token ids (u32) rather than f32 values.
    pub ids: bool,
}

/// Everything the executor needs to record a forward step.
#[derive(Clone, Debug)]
pub struct Plan {
    pub(crate) nodes: Vec<Node>,
    pub dispatches: Vec<Dispatch>,
    pub passes: Vec<Pass>,
    /// Byte size of each planned activation buffer.
    pub slots: Vec<u64>,
    pub inputs: Vec<InputSpec>,
    pub consts: Vec<Value>,
    /// Persistent states the plan reads or writes: name and (capacity, width).
    pub states: Vec<(String, [usize; 2])>,
    pub outputs: Vec<OutputSpec>,
    pub limits: Vec<PositionLimit>,
    pub memory: MemoryReport,
}

/// What the plan needs to know about the device.
#[derive(Copy, Clone, Debug)]
pub struct Target {
    /// Native f16 in shaders (SHADER_F16).
    pub has_f16: bool,
    /// `unpack2x16float` in shaders.
    pub has_f16_unpack: bool,
    pub max_workgroups: u32,
    pub max_binding: u64,
    /// Matmuls over at most this many rows run as GEMV (weights streamed once per 8 rows),
    /// larger ones as tiled GEMM.
    pub gemv_max_rows: usize,
}

impl Target {
    pub fn of(gpu: &crate::Gpu) -> Target {
        Target {
            has_f16: gpu.has_f16(),
            has_f16_unpack: gpu.has_f16_unpack(),
            max_workgroups: gpu.limits().max_compute_workgroups_per_dimension,
            max_binding: gpu.max_binding(),
            gemv_max_rows: crate::kernels::GEMV_MAX_M,
        }
    }
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
            for v in nodes[n].op.inputs().into_iter().rev() {
                if !seen[v.0] {
                    stack.push((v.0, false));
                }
            }
        }
    }
    out
}

impl Plan {
    /// Schedule `graph` for a device described by `target`.
    pub fn new(graph: &Graph, target: Target) -> Result<Plan> {
        graph.check()?;
        let mut nodes = graph.nodes().clone();
        let outputs = graph.outputs();
        if outputs.is_empty() {
            return Err(Error::Invalid("the graph has no outputs".into()));
        }
        for (name, v) in &outputs {
            let op = &nodes[v.0].op;
            if op.is_leaf() || matches!(op, Op::KvWrite { .. }) {
                return Err(Error::Invalid(format!(
                    "output '{name}' must be a computed activation or a sampled token, not a \
                     weight, input or cache"
                )));
            }
        }
        // Roots: outputs, then state updates (their effect outlives the run).
        let mut roots: Vec<Value> = outputs.iter().map(|(_, v)| *v).collect();
        roots.extend(
            (0..nodes.len())
                .filter(|&i| nodes[i].op.updates().is_some())
                .map(Value),
        );
        let mut ord = order(&nodes, &roots);
        let output_values: Vec<Value> = outputs.iter().map(|(_, v)| *v).collect();
        let fused = fuse::fuse(&mut nodes, &mut ord, &output_values);
        emit::emit(nodes, &ord, &outputs, target, fused)
    }
}
