//! The host side of the kernel library, independent of any op: kernel families (one `.wgsl`
//! file each, with its binding layout and typed structs), the typed pipeline key
//! ([`Kernel`]), shader assembly, and a cache of compiled pipelines per device.
//!
//! Op modules (`src/ops/`) declare their families as statics and build [`Kernel`] values;
//! nothing here names a particular op.

mod cache;
mod epilogue;
mod layout;
mod source;

pub(crate) use cache::PipelineCache;
pub use epilogue::{Act, Epilogue};
pub(crate) use layout::gpu_struct;
pub use layout::{Field, GpuStruct, Layout, Scalar};
pub use source::compose;

use crate::dtype::WeightFormat;
use std::fmt;

/// The kinds of binding a kernel declares, in binding order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Uniform,
    Read,
    Write,
}

/// Shared WGSL pieces a family's file builds on: a closed set, prepended in this order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Include {
    /// `epilogue(acc, col, idx)`: the fused bias/activation/gate/residual tail.
    Epilogue,
    /// `reduce_sum` / `reduce_max` over a workgroup of `WG` threads.
    Reduce,
    /// `struct Seq`: one sequence's position, length and slot in the step.
    Seq,
}

impl Include {
    pub fn source(self) -> &'static str {
        match self {
            Include::Epilogue => include_str!("../../shaders/epilogue.wgsl"),
            Include::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Include::Seq => include_str!("../../shaders/seq.wgsl"),
        }
    }
}

/// A kernel family: one `.wgsl` file with entry point `main`, and what the host must know to
/// launch it. Op modules declare one `static` per family.
pub struct Family {
    pub name: &'static str,
    /// The family's own file.
    pub source: &'static str,
    pub includes: &'static [Include],
    pub bindings: &'static [Slot],
    /// The structs the shader shares with the host (its `Params` first), checked by naga.
    pub structs: &'static [Layout],
}

impl fmt::Debug for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

// Family names are unique (tests/shaders.rs checks it), so a family is known by its name.
impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Family {}
impl std::hash::Hash for Family {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

/// One kernel variant: the typed key of the pipeline cache. Everything that changes the
/// compiled code is here: the family, each weight array's storage format (the only text
/// substitution, from a closed enum) and the override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub family: &'static Family,
    /// Weight arrays declared `array<WORD_name>`, with the format each is read in.
    pub weights: Vec<(&'static str, WeightFormat)>,
    /// Override constants, by name (all kiln's are u32 or bool).
    pub constants: Vec<(&'static str, u32)>,
}

impl Kernel {
    pub fn new(family: &'static Family) -> Kernel {
        Kernel {
            family,
            weights: Vec::new(),
            constants: Vec::new(),
        }
    }

    /// Read the weight array `name` in `format`.
    pub fn weight(mut self, name: &'static str, format: WeightFormat) -> Kernel {
        self.weights.push((name, format));
        self
    }

    /// Set the override constant `name`.
    pub fn constant(mut self, name: &'static str, value: impl Into<u32>) -> Kernel {
        self.constants.push((name, value.into()));
        self
    }

    pub fn name(&self) -> &'static str {
        self.family.name
    }

    pub fn entry(&self) -> &'static str {
        "main"
    }

    pub fn bindings(&self) -> &'static [Slot] {
        self.family.bindings
    }

    /// Override constants as wgpu takes them.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        self.constants
            .iter()
            .map(|&(n, v)| (n, f64::from(v)))
            .collect()
    }

    /// Whether the kernel needs SHADER_F16 on the device.
    pub fn needs_f16(&self) -> bool {
        self.weights.iter().any(|(_, f)| f.needs_f16())
    }

    /// The complete WGSL source of this variant.
    pub fn source(&self) -> String {
        compose(self)
    }
}

/// What the scheduler needs to know about the device to choose kernels.
#[derive(Copy, Clone, Debug)]
pub struct Target {
    /// Native f16 in shaders (SHADER_F16).
    pub has_f16: bool,
    /// `unpack2x16float` in shaders.
    pub has_f16_unpack: bool,
    pub max_workgroups: u32,
    pub max_binding: u64,
    /// Matmuls over at most this many rows run as GEMV (weights streamed once per 8 rows),
    /// larger ones as tiled GEMM. Decided per step from the rows the step really has.
    pub gemv_max_rows: usize,
}

impl Target {
    /// A device without limits, for planning a graph only to check it (the CPU reference).
    pub fn unlimited() -> Target {
        Target {
            has_f16: false,
            has_f16_unpack: true,
            max_workgroups: u32::MAX,
            max_binding: u64::MAX,
            gemv_max_rows: GEMV_MAX_ROWS,
        }
    }
}

/// By default, up to this many rows run as GEMV.
pub const GEMV_MAX_ROWS: usize = 16;

impl Target {
    pub fn of(gpu: &crate::gpu::Gpu) -> Target {
        Target {
            has_f16: gpu.has_f16(),
            has_f16_unpack: gpu.has_f16_unpack(),
            max_workgroups: gpu.limits().max_compute_workgroups_per_dimension,
            max_binding: gpu.max_binding(),
            gemv_max_rows: GEMV_MAX_ROWS,
        }
    }
}

/// Spread `groups` workgroups over x and y so no dimension exceeds `max_per_dim`; kernels
/// linearise the id as `x + y * num_workgroups.x` and ignore the overshoot.
pub fn grid(groups: u64, max_per_dim: u32) -> [u32; 3] {
    let groups = groups.max(1);
    let max = u64::from(max_per_dim.max(1));
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        [max as u32, groups.div_ceil(max) as u32, 1]
    }
}
