//! The matmul configurations a [`Target`](super::Target) chooses between: the GEMM kernel of
//! steps with many rows, and per weight format the GEMV configuration of steps with few.
//! `kiln::tune` measures them per adapter ([`super::tuning`]); these are the types and their
//! defaults.

use crate::dtype::WeightFormat;

/// The GEMM kernel a target runs: `kiln::tune` times those the adapter can run
/// ([`Gemm::available`]) and keeps the fastest.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Gemm {
    /// Output tiles shared by a 2-D workgroup, both operands staged in workgroup memory and
    /// read as scalars (`shaders/matmul.wgsl`): for GPUs.
    Tiled,
    /// The same staged with k contiguous and read as vec4s (`shaders/matmul_columns.wgsl`):
    /// for CPU adapters, where a read at a lane-dependent address costs a load per lane
    /// whatever its width. 1.5x the tiled kernel's GFLOP/s on lavapipe.
    Columns,
    /// [`Gemm::Columns`] with the rows a subgroup shares read once and broadcast
    /// (`shaders/tile_rows_subgroup.wgsl`): CPU adapters whose subgroups are always 8 or 16
    /// lanes. 2.5x the tiled kernel's GFLOP/s on lavapipe.
    ColumnsSubgroup,
    /// An 8 x 4 block of outputs a thread in vec4 registers, operands read straight from
    /// storage: no workgroup memory, no barriers, no arrays (`shaders/matmul_direct.wgsl`).
    /// For JITs that keep arrays and staged tiles in memory: SwiftShader, the browser's
    /// WebGPU on CPUs.
    Direct,
}

impl Gemm {
    /// The GEMM kernels `gpu` can run, the default (before tuning) first: on CPU adapters
    /// the vec4 kernel with broadcasts where subgroups allow, else the register kernel.
    pub fn available(gpu: &crate::gpu::Gpu) -> Vec<Gemm> {
        let fixed = gpu.subgroup_min_size() == gpu.subgroup_max_size();
        let broadcast = fixed && matches!(gpu.subgroup_min_size(), 8 | 16);
        let mut out = Vec::new();
        if gpu.info().device_type == wgpu::DeviceType::Cpu {
            if broadcast {
                out.push(Gemm::ColumnsSubgroup);
            }
            // Before tuning, and always in browsers (which do not tune): the register
            // kernel, which runs 2.8x the vec4 kernel's GFLOP/s on SwiftShader and 0.88x
            // on llvmpipe GL (`kiln bench --shapes 256x512x512`, 2026-12-04).
            out.push(Gemm::Direct);
            out.push(Gemm::Columns);
            out.push(Gemm::Tiled);
        } else {
            out.push(Gemm::Tiled);
            out.push(Gemm::Columns);
            out.push(Gemm::Direct);
            if broadcast {
                out.push(Gemm::ColumnsSubgroup);
            }
        }
        out
    }
}

/// Matmuls of at most this many output columns are narrow: GEMV is tuned for them apart,
/// since a tile that fills a big GPU at 32768 columns leaves most of it idle at 2048.
pub const NARROW: usize = 4096;

/// Which of a format's two GEMV configurations a matmul takes, by its output columns.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// At most [`NARROW`] output columns.
    Narrow,
    /// More than [`NARROW`] output columns.
    Wide,
}

impl Width {
    /// The width of a matmul of `columns` output columns.
    pub fn of(columns: usize) -> Width {
        if columns <= NARROW {
            Width::Narrow
        } else {
            Width::Wide
        }
    }
}

/// The GEMV configuration for each weight format, for wide and for narrow matmuls.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GemvTable {
    /// Wide matmuls, indexed like [`WeightFormat::FLOAT`].
    pub floats: [Gemv; 4],
    /// Wide matmuls, indexed like [`DType::QUANTIZED`](crate::DType::QUANTIZED).
    pub blocks: [Gemv; 8],
    /// Narrow matmuls ([`NARROW`]), indexed the same way.
    pub narrow_floats: [Gemv; 4],
    /// Narrow matmuls, indexed like `blocks`.
    pub narrow_blocks: [Gemv; 8],
}

impl GemvTable {
    /// Before tuning: [`Gemv::DEFAULT`], with 8-bit activations for block formats (1.2-1.7x
    /// the f32 path's speed on lavapipe at this tile, `kiln tune`, 2026-11-29).
    pub const DEFAULT: GemvTable = GemvTable::uniform(Gemv::DEFAULT).with_int8();

    /// Before tuning, on an adapter of kind `device` whose smallest subgroup is `subgroup`
    /// (`None` without SUBGROUP): [`GemvTable::DEFAULT`], except on CPU adapters, where one
    /// lane per column ([`Gemv::ONE_LANE`]) runs without workgroup memory. In the browser,
    /// where kiln does not tune, that is 7x the default's speed for a Q4_0 head on Chromium's
    /// SwiftShader (Dawn zeroes workgroup memory and bounds-checks every access). On lavapipe
    /// natively it was 1.3-1.5x for SmolLM2's head and ffn_up, 1.0-1.3x for ffn_down, and
    /// 0.6-0.85x for its small Q4_0/Q8_0 attention matrices (`kiln bench`, 2026-12-04);
    /// native runs tune anyway. Where subgroups hold 8 lanes or more (lavapipe), block
    /// weights take [`Gemv::BLOCK_BROADCAST`]: 1.3-1.4x the 8-bit GEMV's speed at one row of
    /// x and 2.7-3.0x at four on lavapipe (2048 x 2048 Q4_1, two runs, 2026-12-05).
    pub fn untuned(device: wgpu::DeviceType, subgroup: Option<u32>) -> GemvTable {
        match device {
            wgpu::DeviceType::Cpu if subgroup.is_some_and(|s| s >= 8) => {
                GemvTable::uniform(Gemv::ONE_LANE).with_blocks(Gemv::BLOCK_BROADCAST)
            }
            wgpu::DeviceType::Cpu => GemvTable::uniform(Gemv::ONE_LANE).with_int8(),
            _ => GemvTable::DEFAULT,
        }
    }

    /// `cfg` for every block format.
    const fn with_blocks(mut self, cfg: Gemv) -> GemvTable {
        self.blocks = [cfg; 8];
        self.narrow_blocks = [cfg; 8];
        self
    }

    /// 8-bit activations for every block format.
    const fn with_int8(mut self) -> GemvTable {
        let mut i = 0;
        while i < self.blocks.len() {
            self.blocks[i].int8 = true;
            self.narrow_blocks[i].int8 = true;
            i += 1;
        }
        self
    }

    /// `cfg` for every format and width (int8 applies to block formats only).
    pub const fn uniform(cfg: Gemv) -> GemvTable {
        GemvTable {
            floats: [cfg; 4],
            blocks: [cfg; 8],
            narrow_floats: [cfg; 4],
            narrow_blocks: [cfg; 8],
        }
    }

    fn slot(&mut self, format: WeightFormat, width: Width) -> &mut Gemv {
        let (floats, blocks) = match width {
            Width::Wide => (&mut self.floats, &mut self.blocks),
            Width::Narrow => (&mut self.narrow_floats, &mut self.narrow_blocks),
        };
        match format {
            WeightFormat::Blocks(d) => {
                let i = crate::DType::QUANTIZED.iter().position(|q| *q == d);
                &mut blocks[i.unwrap_or(0)]
            }
            f => {
                let i = WeightFormat::FLOAT.iter().position(|q| *q == f);
                &mut floats[i.unwrap_or(0)]
            }
        }
    }

    /// The configuration for weights read in `format`, `columns` of them.
    pub fn get(&self, format: WeightFormat, columns: usize) -> Gemv {
        let mut table = *self;
        let cfg = *table.slot(format, Width::of(columns));
        Gemv {
            int8: cfg.int8 && format.is_block(),
            ..cfg
        }
    }

    /// Run `width` matmuls on weights read in `format` with `cfg`.
    pub fn set(&mut self, format: WeightFormat, width: Width, cfg: Gemv) {
        *self.slot(format, width) = cfg;
    }
}

/// How a GEMV kernel runs: its tile, its reduction and, for block-quantized weights, whether
/// it dots 8-bit activations with integer dot products. `kiln::tune` measures the best one
/// per adapter; these are the defaults.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Gemv {
    /// Threads per output column (a power of two).
    pub lanes: u32,
    /// Output columns per workgroup; lanes x rows is at most [`GEMV_MAX_THREADS`].
    pub rows: u32,
    /// Sum lanes with subgroup shuffles (needs SUBGROUP and lanes within the smallest
    /// subgroup) rather than in workgroup memory.
    pub subgroups: bool,
    /// Block weights only: quantize activations to 8 bits and use `dot4I8Packed`
    /// (`shaders/gemv_q8.wgsl`) rather than widening weights to f32.
    pub int8: bool,
    /// Steps of at most this many rows run this GEMV, larger ones the tiled GEMM.
    pub max_rows: u32,
}

impl Gemv {
    /// 4 lanes x 64 columns with workgroup-memory sums, GEMV up to 16 rows: tuned on CPU
    /// adapters (2026-11).
    pub const DEFAULT: Gemv = Gemv {
        lanes: 4,
        rows: 64,
        subgroups: false,
        int8: false,
        max_rows: GEMV_MAX_ROWS as u32,
    };

    /// One lane per column, 128 columns a workgroup: nothing to sum across lanes, so no
    /// workgroup memory (`shaders/lanes_one.wgsl`). Before tuning on CPU adapters.
    pub const ONE_LANE: Gemv = Gemv {
        lanes: 1,
        rows: 128,
        ..Gemv::DEFAULT
    };

    /// One lane per column with subgroups: block weights widened to f32 against x read once
    /// per subgroup and broadcast (`shaders/x_block_subgroup.wgsl`), so that each extra row
    /// of x costs only its multiply-adds. Needs subgroups of at least 8.
    pub const BLOCK_BROADCAST: Gemv = Gemv {
        subgroups: true,
        ..Gemv::ONE_LANE
    };

    /// Whether `gpu` can run this configuration.
    pub fn fits(&self, gpu: &crate::gpu::Gpu) -> bool {
        let threads = self.lanes * self.rows;
        self.lanes.is_power_of_two()
            && threads <= gpu.limits().max_compute_invocations_per_workgroup
            && threads <= GEMV_MAX_THREADS
            && (!self.subgroups || (gpu.has_subgroups() && self.lanes <= gpu.subgroup_min_size()))
            // One lane a column with subgroups: the block GEMV broadcasts x in eights.
            && (!self.subgroups || self.lanes > 1 || gpu.subgroup_min_size() >= 8)
    }
}

/// The most threads (lanes x rows) a GEMV workgroup has: `shaders/lanes_shared.wgsl` sizes
/// its workgroup array for this many (its `LANE_SLOTS`, which tests/shaders.rs checks).
pub const GEMV_MAX_THREADS: u32 = 256;

/// By default, up to this many rows run as GEMV.
pub const GEMV_MAX_ROWS: usize = 16;
