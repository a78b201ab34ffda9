//! The kernels a [`MatMul`](super::MatMul) runs, and how a target's [`Gemm`] and [`Gemv`]
//! choose between them: tile constants, the shaders' families and params, and the variants
//! the tests validate.

use crate::dtype::WeightFormat;
use crate::kernels::{Epilogue, Family, Gemm, Gemv, GpuStruct, Include, Kernel, Slot};

/// Tiled GEMM: TX x TY threads, each computing GEMM_R x GEMM_R outputs (the shader's `R`);
/// BK-wide k slices. 8 x 8 per thread with 16 x 8 threads doubled lavapipe's, llvmpipe GL's
/// and SwiftShader's GFLOP/s over 4 x 4 with 16 x 16 (`kiln bench`, 2026-11-29); tile
/// shapes beyond that moved them by a few percent.
pub const GEMM_R: u32 = 8;
/// Tiled GEMM: threads per workgroup along x (columns); the shader's `TX`.
pub const GEMM_TX: u32 = 16;
/// Tiled GEMM: threads per workgroup along y (rows); the shader's `TY`.
pub const GEMM_TY: u32 = 8;
/// Tiled GEMM: the width of each k slice staged in workgroup memory; the shader's `BK`.
pub const GEMM_BK: u32 = 16;
/// Tiled GEMM: output columns per workgroup.
pub const GEMM_TILE_N: u32 = GEMM_TX * GEMM_R;
/// Tiled GEMM: output rows per workgroup.
pub const GEMM_TILE_M: u32 = GEMM_TY * GEMM_R;
/// The CPU adapters' GEMM (`shaders/matmul_columns.wgsl`) on GEMM_TX x GEMM_COLUMNS_TY
/// threads (the shader's const `TY`): each computes 16 rows x 4 columns (the shader's
/// `2 * 8` and `R`). Its tile is as tall as a 128-token prompt; more outputs per thread
/// spill on lavapipe (`kiln bench --shapes`, 2026-12-03: 2 x 8 rows by 8 columns ran at
/// about 0.35x, and one array of 16 rows by 4 columns at 0.25x).
pub const GEMM_COLUMNS_TY: u32 = 8;
/// The CPU adapters' GEMM: output rows per workgroup.
pub const GEMM_COLUMNS_TILE_M: u32 = GEMM_COLUMNS_TY * 16;
/// The CPU adapters' GEMM: output columns per workgroup.
pub const GEMM_COLUMNS_TILE_N: u32 = GEMM_TX * 4;
/// The register GEMM (`shaders/matmul_direct.wgsl`): GEMM_TX x GEMM_DIRECT_TY threads, each
/// 8 rows by 4 columns.
pub const GEMM_DIRECT_TY: u32 = 4;
/// The register GEMM: output rows per workgroup.
pub const GEMM_DIRECT_TILE_M: u32 = GEMM_DIRECT_TY * 8;
/// The register GEMM: output columns per workgroup.
pub const GEMM_DIRECT_TILE_N: u32 = GEMM_TX * 4;
/// GEMV: up to GEMV_MR rows of activations per workgroup (the shaders' `MR`); lanes per
/// column and columns per workgroup come from the target's [`Gemv`].
pub const GEMV_MR: u32 = 8;

crate::kernels::gpu_struct! {
    /// y[m, n_off + n] = epilogue(sum_k x[m, k] * w[n, k]) for this part's n rows of w.
    pub struct Params("Params") {
        /// Rows of x and y computed (the step's rows).
        m: u32,
        /// Rows of w in this part: the output columns it computes.
        n: u32,
        /// The shared dimension: elements per row of x and of w.
        k: u32,
        /// The output column of this part's first row of w.
        n_off: u32,
        /// y's row stride: N, every part's columns together.
        ldy: u32,
        /// Block formats: the word of w's buffer where its scales start.
        w_meta: u32,
    }
}

const BINDINGS: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::Read,
    Slot::Write,
];

/// The tiled GEMM for GPUs (`shaders/matmul.wgsl`): [`Gemm::Tiled`].
pub static GEMM: Family = Family {
    name: "matmul",
    source: include_str!("../../../shaders/matmul.wgsl"),
    includes: &[Include::Epilogue],
    bindings: BINDINGS,
    structs: &[Params::LAYOUT],
};

/// The CPU adapters' vec4 GEMM (`shaders/matmul_columns.wgsl`): [`Gemm::Columns`].
pub static GEMM_COLUMNS: Family = Family {
    name: "matmul_columns",
    source: include_str!("../../../shaders/matmul_columns.wgsl"),
    includes: &[Include::Epilogue, Include::GemmK4, Include::TileRowsShared],
    bindings: BINDINGS,
    structs: &[Params::LAYOUT],
};
/// [`GEMM_COLUMNS`] with subgroup broadcasts of the shared rows: [`Gemm::ColumnsSubgroup`].
pub static GEMM_COLUMNS_SG: Family = GEMM_COLUMNS.with_includes(
    "matmul_columns_sg",
    &[Include::Epilogue, Include::GemmK4, Include::TileRowsSubgroup],
);
/// The register GEMM (`shaders/matmul_direct.wgsl`): [`Gemm::Direct`].
pub static GEMM_DIRECT: Family = Family {
    name: "matmul_direct",
    source: include_str!("../../../shaders/matmul_direct.wgsl"),
    includes: &[Include::Epilogue, Include::GemmK4],
    bindings: BINDINGS,
    structs: &[Params::LAYOUT],
};

/// The GEMV families: f32 or 8-bit activations, lanes summed in workgroup memory or by
/// subgroup shuffles, or one lane per column with nothing to sum. Each trio shares one file.
pub static GEMV: Family = gemv_family("gemv", GEMV_SRC, &[Include::Epilogue, Include::LanesShared]);
/// GEMV with f32 activations, lanes summed by subgroup shuffles.
pub static GEMV_SG: Family =
    gemv_family("gemv_sg", GEMV_SRC, &[Include::Epilogue, Include::LanesSubgroup]);
/// GEMV with f32 activations, one lane per column.
pub static GEMV_1: Family = gemv_family("gemv_1", GEMV_SRC, &[Include::Epilogue, Include::LanesOne]);
/// F32 weights with K a multiple of 4: weight and activations read 16 bytes at a time.
pub static GEMV_F32X4: Family = gemv_family(
    "gemv_f32x4",
    GEMV_F32X4_SRC,
    &[Include::Epilogue, Include::LanesShared],
);
/// [`GEMV_F32X4`] with lanes summed by subgroup shuffles.
pub static GEMV_F32X4_SG: Family = gemv_family(
    "gemv_f32x4_sg",
    GEMV_F32X4_SRC,
    &[Include::Epilogue, Include::LanesSubgroup],
);
/// [`GEMV_F32X4`] with one lane per column.
pub static GEMV_F32X4_1: Family = gemv_family(
    "gemv_f32x4_1",
    GEMV_F32X4_SRC,
    &[Include::Epilogue, Include::LanesOne],
);
/// GEMV of block weights with 8-bit activations, lanes summed in workgroup memory.
pub static GEMV_Q8: Family = gemv_family(
    "gemv_q8",
    GEMV_Q8_SRC,
    &[Include::Epilogue, Include::LanesShared, Include::Q8Block],
);
/// [`GEMV_Q8`] with lanes summed by subgroup shuffles.
pub static GEMV_Q8_SG: Family = gemv_family(
    "gemv_q8_sg",
    GEMV_Q8_SRC,
    &[Include::Epilogue, Include::LanesSubgroup, Include::Q8Block],
);

/// [`GEMV_Q8`] with one lane per column.
pub static GEMV_Q8_1: Family = gemv_family(
    "gemv_q8_1",
    GEMV_Q8_SRC,
    &[Include::Epilogue, Include::LanesOne, Include::Q8Block],
);

/// GEMV of block weights widened to f32 once per block for every row of x, lanes summed in
/// workgroup memory: what block weights run without 8-bit activations.
pub static GEMV_BLOCK: Family = gemv_family(
    "gemv_block",
    GEMV_BLOCK_SRC,
    &[Include::Epilogue, Include::LanesShared, Include::XBlockDirect],
);
/// [`GEMV_BLOCK`] with lanes summed by subgroup shuffles.
pub static GEMV_BLOCK_SG: Family = gemv_family(
    "gemv_block_sg",
    GEMV_BLOCK_SRC,
    &[Include::Epilogue, Include::LanesSubgroup, Include::XBlockDirect],
);
/// [`GEMV_BLOCK`] with one lane per column.
pub static GEMV_BLOCK_1: Family = gemv_family(
    "gemv_block_1",
    GEMV_BLOCK_SRC,
    &[Include::Epilogue, Include::LanesOne, Include::XBlockDirect],
);
/// [`GEMV_BLOCK_1`] reading x once per subgroup and broadcasting it: batched decode on CPU
/// adapters.
pub static GEMV_BLOCK_1_SG: Family = gemv_family(
    "gemv_block_1_sg",
    GEMV_BLOCK_SRC,
    &[Include::Epilogue, Include::LanesOne, Include::XBlockSubgroup],
);

/// Activations to 8-bit blocks for the 8-bit GEMV, once per step.
pub static QUANTIZE_Q8: Family = Family {
    name: "quantize_q8",
    source: include_str!("../../../shaders/quantize_q8.wgsl"),
    includes: &[Include::Q8Block],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};
/// Threads per workgroup of `quantize_q8.wgsl`, one per 32-element block.
pub(super) const QUANTIZE_WG: u32 = 64;
/// Bytes of one quantized 32-element block (`QX`, `shaders/q8_block.wgsl`).
pub(super) const QX_BYTES: usize = 64;

const GEMV_SRC: &str = include_str!("../../../shaders/gemv.wgsl");
const GEMV_Q8_SRC: &str = include_str!("../../../shaders/gemv_q8.wgsl");
const GEMV_BLOCK_SRC: &str = include_str!("../../../shaders/gemv_block.wgsl");
const GEMV_F32X4_SRC: &str = include_str!("../../../shaders/gemv_f32x4.wgsl");

const fn gemv_family(
    name: &'static str,
    source: &'static str,
    includes: &'static [Include],
) -> Family {
    Family {
        name,
        source,
        includes,
        bindings: BINDINGS,
        structs: &[Params::LAYOUT],
    }
}

/// The GEMM kernel `kind` for weights in `w`, and its grid: workgroups along x for `n`
/// columns, and rows per workgroup.
pub fn gemm(
    kind: Gemm,
    w: WeightFormat,
    bias: WeightFormat,
    epi: Epilogue,
    n: u32,
) -> (Kernel, u32, u32) {
    let (k, x, rows) = match kind {
        Gemm::Tiled => (
            Kernel::new(&GEMM)
                .constant("TX", GEMM_TX)
                .constant("TY", GEMM_TY)
                .constant("BK", GEMM_BK),
            n.div_ceil(GEMM_TILE_N),
            GEMM_TILE_M,
        ),
        Gemm::Columns | Gemm::ColumnsSubgroup => (
            Kernel::new(if kind == Gemm::Columns {
                &GEMM_COLUMNS
            } else {
                &GEMM_COLUMNS_SG
            })
            .constant("TX", GEMM_TX),
            n.div_ceil(GEMM_COLUMNS_TILE_N),
            GEMM_COLUMNS_TILE_M,
        ),
        Gemm::Direct => (
            Kernel::new(&GEMM_DIRECT)
                .constant("TX", GEMM_TX)
                .constant("TY", GEMM_DIRECT_TY),
            n.div_ceil(GEMM_DIRECT_TILE_N),
            GEMM_DIRECT_TILE_M,
        ),
    };
    (epi.apply(k.weight("w", w).weight("bias", bias)), x, rows)
}

/// The GEMV kernel for weights in `w` with rows of `k` elements, run as `cfg` says (int8
/// only applies to blocks; one lane per column needs neither workgroup memory nor
/// subgroups). F32 weights with `k` a multiple of 4 are read as vectors.
///
/// `group_rows` (at most [`GEMV_MR`]): rows of x per workgroup, fewer than GEMV_MR where
/// every step has fewer; the one-lane block kernels loop over just those (see `block_rows`).
pub fn gemv(
    w: WeightFormat,
    bias: WeightFormat,
    epi: Epilogue,
    cfg: Gemv,
    k: usize,
    group_rows: u32,
) -> Kernel {
    let int8 = cfg.int8 && w.is_block();
    let vec4 = w == WeightFormat::F32 && k.is_multiple_of(4);
    let lanes = |one, shared, subgroup| match (cfg.lanes == 1, cfg.subgroups) {
        (true, _) => one,
        (false, false) => shared,
        (false, true) => subgroup,
    };
    let family: &Family = if int8 {
        lanes(&GEMV_Q8_1, &GEMV_Q8, &GEMV_Q8_SG)
    } else if w.is_block() && cfg.lanes == 1 && cfg.subgroups {
        &GEMV_BLOCK_1_SG
    } else if w.is_block() {
        lanes(&GEMV_BLOCK_1, &GEMV_BLOCK, &GEMV_BLOCK_SG)
    } else if vec4 {
        lanes(&GEMV_F32X4_1, &GEMV_F32X4, &GEMV_F32X4_SG)
    } else {
        lanes(&GEMV_1, &GEMV, &GEMV_SG)
    };
    let k = Kernel::new(family);
    let k = if vec4 { k } else { k.weight("w", w) };
    let k = k
        .weight("bias", bias)
        .constant("LANES", cfg.lanes)
        .constant("ROWS", cfg.rows);
    let k = if block_rows(w, cfg) { k.constant("RPG", group_rows.min(GEMV_MR)) } else { k };
    epi.apply(k)
}

/// Whether the host sets the rows per workgroup of this GEMV to a step's rows: the block
/// kernel (shaders/gemv_block.wgsl) with one lane a column, as CPU adapters run it, where
/// each unused row costs a test and a branch per block. Other configurations (GPUs') keep
/// GEMV_MR, so that one pipeline serves every step size.
fn block_rows(w: WeightFormat, cfg: Gemv) -> bool {
    w.is_block() && !cfg.int8 && cfg.lanes == 1
}

/// The rows of x each GEMV workgroup takes (`GridShape::RowsZ`'s `per_group`) for steps of
/// at most `most` rows with this configuration.
pub(super) fn gemv_group_rows(w: WeightFormat, cfg: Gemv, most: usize) -> u32 {
    match block_rows(w, cfg) {
        true => most.clamp(1, GEMV_MR as usize) as u32,
        false => GEMV_MR,
    }
}

/// Every kernel variant matmuls can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    let mut out = vec![Kernel::new(&QUANTIZE_Q8)];
    for w in WeightFormat::all() {
        for b in WeightFormat::FLOAT {
            for epi in Epilogue::all() {
                for kind in [Gemm::Tiled, Gemm::Columns, Gemm::ColumnsSubgroup, Gemm::Direct] {
                    out.push(gemm(kind, w, b, epi, 1).0);
                }
                for (lanes, subgroups) in [(4, false), (4, true), (1, false), (1, true)] {
                    for int8 in [false, true] {
                        if int8 && !w.is_block() {
                            continue;
                        }
                        let cfg = Gemv { lanes, subgroups, int8, ..Gemv::DEFAULT };
                        let ks: &[usize] = if w == WeightFormat::F32 { &[4, 5] } else { &[4] };
                        // The block kernels also as a decode step of 3 sequences sets them.
                        let groups: &[u32] = match block_rows(w, cfg) {
                            true => &[GEMV_MR, 3],
                            false => &[GEMV_MR],
                        };
                        for &k in ks {
                            for &group in groups {
                                out.push(gemv(w, b, epi, cfg, k, group));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
