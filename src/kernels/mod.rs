//! The host side of the kernel library, independent of any op: kernel families (one `.wgsl`
//! file each, with its binding layout and typed structs), the typed pipeline key
//! ([`Kernel`]), shader assembly, and a cache of compiled pipelines per device.
//!
//! Op modules (`src/ops/`) declare their families as statics and build [`Kernel`] values;
//! nothing here names a particular op.

mod cache;
mod configs;
mod epilogue;
mod layout;
mod source;
pub mod tuning;

pub(crate) use cache::PipelineCache;
pub use configs::{GEMV_MAX_ROWS, GEMV_MAX_THREADS, Gemm, Gemv, GemvTable, NARROW, Width};
pub use epilogue::{Act, Epilogue};
pub(crate) use layout::gpu_struct;
pub use layout::{Field, GpuStruct, Layout, Scalar};
pub use source::compose;

use crate::dtype::WeightFormat;
use std::fmt;

/// The kinds of binding a kernel declares, in binding order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A uniform buffer (the dispatch's `Params`).
    Uniform,
    /// A read-only storage buffer.
    Read,
    /// A read-write storage buffer.
    Write,
}

/// Shared WGSL pieces a family's file builds on: a closed set, prepended in this order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Include {
    /// `activate(x, kind)`: the activations by [`Act`] code.
    Activate,
    /// `epilogue(acc, col, idx)`: the fused bias/activation/gate/residual tail (with
    /// `activate`).
    Epilogue,
    /// `reduce_sum` / `reduce_max` over a workgroup of `WG` threads, in workgroup memory
    /// (every adapter).
    Reduce,
    /// The same with subgroup shuffles first, over runs of `SG` invocations (adapters with
    /// SUBGROUP; `SG` at most the smallest subgroup).
    ReduceSubgroup,
    /// `struct QX`: a 32-element block of 8-bit activations (the 8-bit GEMV's input).
    Q8Block,
    /// `struct Seq`: one sequence's position, length and slot in the step.
    Seq,
    /// `struct Sampling`, `key`, `penalise` and `best_of`: what the sampler and the vocabulary
    /// shards' candidate proposals share.
    SampleKey,
    /// Attention's `Params` and `keys_of`, the keys a query row sees (after `Seq`).
    AttentionKeys,
    /// `lane_sum(acc, lane, col, rows)`: a GEMV column's partial sums over its LANES lanes,
    /// in workgroup memory (every adapter).
    LanesShared,
    /// The same with subgroup shuffles (adapters with SUBGROUP, LANES at most the subgroup
    /// size).
    LanesSubgroup,
    /// The same for one lane per column: nothing to sum (every adapter, LANES = 1).
    LanesOne,
    /// `tile_rows(q, ty, lane)`: the rows of the CPU GEMM's staged x tile a thread
    /// multiplies, each thread reading its own (every adapter).
    TileRowsShared,
    /// The same, read once per subgroup and broadcast (subgroups of 8 or 16).
    TileRowsSubgroup,
    /// `x_block(at, lane8)`: the 32 elements of a row of x one weight block multiplies (the
    /// block GEMV), each lane reading its own (every adapter).
    XBlockDirect,
    /// The same, read once per subgroup and broadcast (subgroups of at least 8, one lane a
    /// column).
    XBlockSubgroup,
    /// `x4(m, k)` and `w4(n, k)`: 4 consecutive k of an activation row and a weight row,
    /// zero past K (the CPU GEMMs).
    GemmK4,
    /// `alias real = f32;`: the scalar of a kernel written once for f32 and f16.
    RealF32,
    /// `alias real = f16;` (adapters with SHADER_F16).
    RealF16,
}

impl Include {
    /// The piece's WGSL source.
    pub fn source(self) -> &'static str {
        match self {
            Include::Activate => include_str!("../../shaders/activate.wgsl"),
            // The epilogue activates, so it brings the activations with it.
            Include::Epilogue => concat!(
                include_str!("../../shaders/activate.wgsl"),
                include_str!("../../shaders/epilogue.wgsl")
            ),
            Include::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Include::ReduceSubgroup => include_str!("../../shaders/reduce_subgroup.wgsl"),
            Include::Seq => include_str!("../../shaders/seq.wgsl"),
            Include::SampleKey => include_str!("../../shaders/sample_key.wgsl"),
            Include::AttentionKeys => include_str!("../../shaders/attention_keys.wgsl"),
            Include::LanesShared => include_str!("../../shaders/lanes_shared.wgsl"),
            Include::LanesSubgroup => include_str!("../../shaders/lanes_subgroup.wgsl"),
            Include::LanesOne => include_str!("../../shaders/lanes_one.wgsl"),
            Include::Q8Block => include_str!("../../shaders/q8_block.wgsl"),
            Include::TileRowsShared => include_str!("../../shaders/tile_rows_shared.wgsl"),
            Include::TileRowsSubgroup => include_str!("../../shaders/tile_rows_subgroup.wgsl"),
            Include::XBlockDirect => include_str!("../../shaders/x_block_direct.wgsl"),
            Include::XBlockSubgroup => include_str!("../../shaders/x_block_subgroup.wgsl"),
            Include::GemmK4 => include_str!("../../shaders/gemm_k4.wgsl"),
            Include::RealF32 => include_str!("../../shaders/real_f32.wgsl"),
            Include::RealF16 => include_str!("../../shaders/real_f16.wgsl"),
        }
    }

    /// Whether the piece needs the SUBGROUP feature (`enable subgroups;`).
    pub fn needs_subgroups(self) -> bool {
        matches!(
            self,
            Include::LanesSubgroup
                | Include::ReduceSubgroup
                | Include::TileRowsSubgroup
                | Include::XBlockSubgroup
        )
    }
}

/// A kernel family: one `.wgsl` file with entry point `main`, and what the host must know to
/// launch it. Op modules declare one `static` per family.
pub struct Family {
    /// Unique among families; names pipelines, labels and profiles.
    pub name: &'static str,
    /// The family's own file.
    pub source: &'static str,
    /// Shared pieces prepended to `source`, in this order.
    pub includes: &'static [Include],
    /// The kinds of its bindings, in binding order.
    pub bindings: &'static [Slot],
    /// The structs the shader shares with the host (its `Params` first), checked by naga.
    pub structs: &'static [Layout],
}

impl Family {
    /// The same kernel file under another name with other includes: the twin that reduces
    /// with subgroups, say.
    pub const fn with_includes(&self, name: &'static str, includes: &'static [Include]) -> Family {
        Family {
            name,
            includes,
            ..*self
        }
    }
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
    /// The kernel family (its `.wgsl` file).
    pub family: &'static Family,
    /// Weight arrays declared `array<WORD_name>`, with the format each is read in.
    pub weights: Vec<(&'static str, WeightFormat)>,
    /// Override constants, by name (all kiln's are u32 or bool).
    pub constants: Vec<(&'static str, u32)>,
}

impl Kernel {
    /// The family with no weight formats or override constants set.
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

    /// The family's name.
    pub fn name(&self) -> &'static str {
        self.family.name
    }

    /// The entry point: always `main`.
    pub fn entry(&self) -> &'static str {
        "main"
    }

    /// The kinds of the family's bindings, in binding order.
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
            || self.family.includes.contains(&Include::RealF16)
    }

    /// Whether the kernel needs the SUBGROUP feature on the device.
    pub fn needs_subgroups(&self) -> bool {
        self.family.includes.iter().any(|i| i.needs_subgroups())
    }

    /// The complete WGSL source of this variant.
    pub fn source(&self) -> String {
        compose(self)
    }
}

/// A row-reduction kernel of `WG` threads: `shared`, whose reductions run in workgroup
/// memory, or where `subgroups` gives the adapter's smallest subgroup, `subgroup` (the same
/// source with [`Include::ReduceSubgroup`]) with `SG` set to it.
pub fn reducing(
    shared: &'static Family,
    subgroup: &'static Family,
    wg: u32,
    subgroups: Option<u32>,
) -> Kernel {
    match subgroups {
        Some(sg) => Kernel::new(subgroup).constant("SG", sg.clamp(1, wg)),
        None => Kernel::new(shared),
    }
    .constant("WG", wg)
}

/// What the scheduler needs to know about the device to choose kernels.
#[derive(Copy, Clone, Debug)]
pub struct Target {
    /// Native f16 in shaders (SHADER_F16).
    pub has_f16: bool,
    /// `unpack2x16float` in shaders.
    pub has_f16_unpack: bool,
    /// Workgroups a dispatch may have along each dimension.
    pub max_workgroups: u32,
    /// The largest range of one buffer a storage binding may cover, in bytes.
    pub max_binding: u64,
    /// The adapter's smallest subgroup size where it has SUBGROUP: row reductions (norms,
    /// softmax) then sum within subgroups before workgroup memory.
    pub subgroups: Option<u32>,
    /// When set, matmuls over at most this many rows run as GEMV (weights streamed once per 8
    /// rows) and larger ones as tiled GEMM, whatever each format's [`Gemv::max_rows`] says.
    /// Decided per step from the rows the step really has.
    pub gemv_max_rows: Option<usize>,
    /// How GEMV runs, per weight format.
    pub gemv: GemvTable,
    /// When set, attention over more than this many rows of a step runs the row-block
    /// kernel (`shaders/attention_rows.wgsl`) and smaller steps the per-row one. Unset,
    /// programs of one token per sequence (decode) keep the per-row kernel and others switch
    /// above [`ROWS_ABOVE`](crate::ops::attention::ROWS_ABOVE) rows.
    pub attention_rows: Option<usize>,
    /// Key ranges a decode row's attention over a KV cache is split into (a multiple of 16;
    /// 0 never splits): the row-block kernel's split mode, then a merge
    /// (`shaders/attention_merge.wgsl`). Unset, decode programs split by the cache's length
    /// ([`crate::ops::attention::decode_splits`]) wherever the row-block kernel runs;
    /// [`Target::of`] sets [`CPU_ATTENTION_SPLITS`] on CPU adapters and 0 on GL. Fewer ranges
    /// than the kernel's 16 row slots must divide 16: several heads then share a workgroup.
    pub attention_splits: Option<usize>,
    /// The kernel of matmuls over more rows than GEMV takes.
    pub gemm: Gemm,
    /// Threads a row of the normalisations and of sampling gets (one workgroup a row):
    /// [`GPU_ROW_THREADS`] on GPUs, [`CPU_ROW_THREADS`] on CPU adapters.
    pub row_threads: u32,
}

impl Target {
    /// A device without limits, for planning a graph only to check it (the CPU reference).
    pub fn unlimited() -> Target {
        Target {
            has_f16: false,
            has_f16_unpack: true,
            max_workgroups: u32::MAX,
            max_binding: u64::MAX,
            subgroups: None,
            gemv_max_rows: None,
            gemv: GemvTable::DEFAULT,
            attention_rows: None,
            attention_splits: None,
            gemm: Gemm::Tiled,
            row_threads: GPU_ROW_THREADS,
        }
    }
}

/// Key ranges of a decode row's attention on CPU adapters other than GL (see [`Target::of`]).
pub const CPU_ATTENTION_SPLITS: usize = 4;

/// Threads a row of the normalisations and of sampling gets on CPU adapters (see
/// [`Target::of`]).
pub const CPU_ROW_THREADS: u32 = 8;

/// Threads a row of the normalisations and of sampling gets on GPUs.
pub const GPU_ROW_THREADS: u32 = 256;

impl Target {
    /// What kiln plans for on `gpu`: its features and limits, and the GEMV configurations
    /// tuned for it (`kiln::tune`), or the defaults before tuning.
    pub fn of(gpu: &crate::gpu::Gpu) -> Target {
        let tuned = tuning::tuned(gpu);
        let gl = gpu.info().backend == wgpu::Backend::Gl;
        let cpu = gpu.info().device_type == wgpu::DeviceType::Cpu;
        Target {
            has_f16: gpu.has_f16(),
            has_f16_unpack: gpu.has_f16_unpack(),
            max_workgroups: gpu.limits().max_compute_workgroups_per_dimension,
            max_binding: gpu.max_binding(),
            subgroups: gpu.has_subgroups().then(|| gpu.subgroup_min_size()),
            gemv_max_rows: tuned.gemv_max_rows,
            gemv: tuned.gemv,
            // wgpu's GL backend panics when a thread waits over 6 s for its context, and
            // llvmpipe compiles the row-block attention kernel (seconds) at its first
            // dispatch while holding it: GL keeps the per-row kernel, and so does not split
            // decode's keys (split mode is the row-block kernel's).
            attention_rows: gl.then_some(usize::MAX),
            // On other CPU adapters decode splits each row's keys into 4 ranges whatever the
            // cache's length, four heads to a workgroup: there every workgroup's and every
            // thread's fixed work (loading the query, merging) costs lanes, and two cores gain
            // nothing from more. On lavapipe with SmolLM2's 2048-position cache, attention a
            // decode step took 9.6 ms at one stream and 32.7 at four split 64 ways (16 per 512
            // positions), 5.1 and 15.2 split 16 ways, and 3.8 and 6.5 split 4 ways (`kiln
            // generate --profile`, 2026-12-05; 1 and 2 ranges were within 10% of 4, but leave
            // one core idle for a lone sequence).
            attention_splits: if gl {
                Some(0)
            } else if cpu {
                Some(CPU_ATTENTION_SPLITS)
            } else {
                None
            },
            gemm: tuned.gemm.unwrap_or(Gemm::available(gpu)[0]),
            // A GPU wants many loads of a row in flight. llvmpipe runs each subgroup of a
            // workgroup that waits at a barrier as a coroutine of its own, and for a row of
            // SmolLM2 (576 values) switching among 32 of them cost more than the arithmetic:
            // on lavapipe an RMSNorm dispatch of 4 rows took 68 us at 256 threads a row and
            // 42 at 8, 50 and 34 us for one row; sampling two rows at temperature 0.7 and
            // top-p 0.9, 20.7 ms and 15.8 (`kiln generate --profile`, 2026-12-05).
            row_threads: if cpu {
                CPU_ROW_THREADS
            } else {
                GPU_ROW_THREADS
            },
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
