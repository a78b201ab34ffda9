//! Matrix multiplication against an HF-layout weight, with a fused epilogue:
//! `y (S, T, N) = tail(x (S, T, K) · w (N, K)^T + bias)`.
//!
//! Two kinds of kernel compute it: a tiled GEMM for many rows, as the target's [`Gemm`] says
//! (`shaders/matmul.wgsl` for GPUs, `shaders/matmul_columns.wgsl` and its subgroup twin for
//! CPU adapters), and a GEMV that streams each weight once per block of 8 rows, for decode
//! and short prompts. GEMV widens float weights to f32 (`shaders/gemv.wgsl`; F32 weights with
//! rows of a multiple of 4 are read as vectors, `shaders/gemv_f32x4.wgsl`). Block-quantized
//! weights are either widened to f32 a block at a time for every row of x
//! (`shaders/gemv_block.wgsl`, which can read x once per subgroup and broadcast it) or dotted
//! with 8-bit activations (`shaders/gemv_q8.wgsl`, after `shaders/quantize_q8.wgsl` has
//! quantized x once into the op's scratch), as the target's [`Gemv`] says. Its lanes sum
//! in workgroup memory or with subgroup shuffles. When a program's steps may have either,
//! both are emitted and each step runs the one that suits the rows it has. A weight larger
//! than one binding is split by rows into parts, one dispatch each.

use super::elementwise::{apply_tail, epilogue};
use crate::dtype::WeightFormat;
use crate::error::{Error, Result};
use crate::graph::{Buf, Emit, Eval, Graph, GridShape, Layout, Op, Rows, Tail, Value, When};
use crate::kernels::{Epilogue, Family, Gemm, Gemv, GpuStruct, Include, Kernel, Slot, grid};
use std::sync::Arc;

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
    source: include_str!("../../shaders/matmul.wgsl"),
    includes: &[Include::Epilogue],
    bindings: BINDINGS,
    structs: &[Params::LAYOUT],
};

/// The CPU adapters' vec4 GEMM (`shaders/matmul_columns.wgsl`): [`Gemm::Columns`].
pub static GEMM_COLUMNS: Family = Family {
    name: "matmul_columns",
    source: include_str!("../../shaders/matmul_columns.wgsl"),
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
    source: include_str!("../../shaders/matmul_direct.wgsl"),
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
    source: include_str!("../../shaders/quantize_q8.wgsl"),
    includes: &[Include::Q8Block],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};
/// Threads per workgroup of `quantize_q8.wgsl`, one per 32-element block.
const QUANTIZE_WG: u32 = 64;
/// Bytes of one quantized 32-element block (`QX`, `shaders/q8_block.wgsl`).
const QX_BYTES: usize = 64;

const GEMV_SRC: &str = include_str!("../../shaders/gemv.wgsl");
const GEMV_Q8_SRC: &str = include_str!("../../shaders/gemv_q8.wgsl");
const GEMV_BLOCK_SRC: &str = include_str!("../../shaders/gemv_block.wgsl");
const GEMV_F32X4_SRC: &str = include_str!("../../shaders/gemv_f32x4.wgsl");

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
fn gemv_group_rows(w: WeightFormat, cfg: Gemv, most: usize) -> u32 {
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

/// `y = tail(x · w^T + bias)`: see the module docs and [`Graph::linear`].
#[derive(Clone, Debug)]
pub struct MatMul {
    /// The activations, (S, T, K).
    pub x: Value,
    /// The weight, (N, K) as HF stores it.
    pub w: Value,
    /// An optional bias, (N).
    pub bias: Option<Value>,
    /// Elementwise ops fused after it.
    pub tail: Tail,
}

impl Graph {
    /// x (S, T, K) · w (N, K)^T -> (S, T, N)
    pub fn matmul(&self, x: Value, w: Value) -> Value {
        self.linear(x, w, None)
    }

    /// x (S, T, K) · w (N, K)^T + bias (N) -> (S, T, N)
    pub fn linear(&self, x: Value, w: Value, bias: Option<Value>) -> Value {
        self.apply(MatMul { x, w, bias, tail: Tail::default() })
    }
}

impl MatMul {
    /// The GEMV configuration for this matmul on `e`'s target (int8 only where the weight
    /// is in blocks), and the most rows a step may have to run it.
    fn gemv(&self, e: &Emit) -> Result<(Gemv, usize)> {
        let wf = e.weight(self.w, true)?;
        let mut cfg = e.target.gemv.get(wf, e.out_shape()[2]);
        cfg.int8 = cfg.int8 && wf.is_block();
        let cut = e.target.gemv_max_rows.unwrap_or(cfg.max_rows as usize);
        Ok((cfg, cut))
    }

    /// Rows of x the 8-bit GEMV's scratch holds quantized: every row a GEMV step reads,
    /// whole blocks of GEMV_MR up to `cut` (or all of them).
    fn quantized_rows(&self, e: &Emit, cut: usize) -> usize {
        let m = e.out_shape()[..2].iter().product::<usize>();
        if cut >= m {
            m
        } else {
            m.min(cut.next_multiple_of(GEMV_MR as usize))
        }
    }
}

impl Op for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn inputs(&self) -> Vec<Value> {
        let mut v = vec![self.x, self.w];
        v.extend(self.bias);
        v.extend(self.tail.inputs());
        v
    }

    /// Megatron's two cuts: a whole input by a weight split by rows gives the result split
    /// by columns (and its bias split alike); an input split by columns by a weight split
    /// the same way along K gives a partial sum, which takes no bias.
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        let (x, w) = (&inputs[0], &inputs[1]);
        let out = match (x, w.along(0), w.along(1)) {
            (Layout::Whole, None, None) if *w == Layout::Whole => Layout::Whole,
            (Layout::Whole, Some((rows, n)), _) => Layout::Split { axis: 2, range: rows, total: n },
            (x, _, Some(ref cols)) if x.along(2).as_ref() == Some(cols) => Layout::Partial,
            _ => {
                return Err(format!(
                    "an input {x} by a weight {w}: neither a whole input by a weight split by \
                     rows, nor an input split by columns by a weight split the same way"
                ));
            }
        };
        let bias = self.bias.map(|_| &inputs[2]);
        match bias {
            Some(_) if out == Layout::Partial => {
                Err("a bias on a partial sum would be added once per adapter".into())
            }
            Some(b) if b.along(0).map(|(r, n)| Layout::Split { axis: 2, range: r, total: n })
                .unwrap_or_default()
                != out =>
            {
                Err(format!("a bias {b} does not match the product's columns ({out})"))
            }
            _ => Ok(out),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, k] = g.dims3(self.x)?;
        let n = match g.shape(self.w).as_slice() {
            [n, kw] if *kw == k => *n,
            other => {
                return Err(format!(
                    "input is ({s}, {t}, {k}) but weight is {other:?}, expected (N, {k})"
                ));
            }
        };
        if let Some(b) = self.bias
            && g.shape(b) != [n]
        {
            return Err(format!("bias has shape {:?}, expected [{n}]", g.shape(b)));
        }
        Ok(vec![s, t, n])
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let wf = e.weight(self.w, true)?;
        let bf = e.weight_or_f32(self.bias)?;
        let epi = epilogue(self.bias.is_some(), &self.tail);
        let parts = e.tensor(self.w)?.parts().to_vec();
        let shape = e.out_shape();
        let (m, n_total) = (shape[0] * shape[1], shape[2]);
        let k = e.shape(self.x)[2];
        let rows = e.rows(self.x);
        let most = match rows {
            Rows::Fixed(n) => n,
            Rows::Ragged { .. } => m,
        };
        let (cfg, cut) = self.gemv(e)?;
        // The 8-bit GEMV reads x quantized once for every part.
        let quantized = if cut > 0 && cfg.int8 {
            let scratch = e.scratch()?;
            // m bounds the blocks written: the scratch's rows, not the program's.
            let rows = self.quantized_rows(e, cut);
            let params = Params { m: rows as u32, n: 0, k: k as u32, n_off: 0, ldy: 0, w_meta: 0 };
            let mut g = e.linear(self.x, k / 32, QUANTIZE_WG);
            if most > cut {
                g.when = When::RowsAtMost(cut);
            }
            let bindings = vec![Buf::Params, e.buf(self.x), scratch.clone()];
            e.dispatch(Kernel::new(&QUANTIZE_Q8), bindings, &params, g);
            Some(scratch)
        } else {
            None
        };
        for (pi, part) in parts.iter().enumerate() {
            let n = part.rows.len();
            let bindings = vec![
                Buf::Params,
                e.buf(self.x),
                Buf::Weight { value: self.w, part: pi },
                e.buf_or_dummy(self.bias),
                e.buf_or_dummy(self.tail.aux.map(|a| a.0)),
                e.buf_or_dummy(self.tail.residual),
                e.out(),
            ];
            let params = Params {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                n_off: part.rows.start as u32,
                ldy: n_total as u32,
                w_meta: e.tensor(self.w)?.meta_word(part),
            };
            // GEMV while a step has at most `cut` rows, GEMM above.
            if cut > 0 {
                let [x, y, _] = grid(u64::from((n as u32).div_ceil(cfg.rows)), e.target.max_workgroups);
                let group = gemv_group_rows(wf, cfg, most);
                let shape = GridShape::RowsZ { xy: [x, y], per_group: group };
                let mut g = e.grid(rows, shape);
                if most > cut {
                    g.when = When::RowsAtMost(cut);
                }
                let mut b = bindings.clone();
                if let Some(q) = &quantized {
                    b[1] = q.clone();
                }
                e.dispatch(gemv(wf, bf, epi, cfg, k, group), b, &params, g);
            }
            if most > cut {
                let (kernel, x, per_group) = gemm(e.target.gemm, wf, bf, epi, n as u32);
                let shape = GridShape::RowsY { x, per_group };
                let mut g = e.grid(rows, shape);
                g.when = When::RowsAbove(cut);
                let [gx, gy, _] = g.largest(e.seqs());
                if gx > e.target.max_workgroups || gy > e.target.max_workgroups {
                    return Err(Error::Limit(format!(
                        "{}: a matmul grid of {gx} x {gy} workgroups exceeds the device's limit of {}",
                        e.label(),
                        e.target.max_workgroups
                    )));
                }
                e.dispatch(kernel, bindings, &params, g);
            }
        }
        Ok(())
    }

    fn scratch_bytes(&self, e: &Emit) -> u64 {
        // x quantized, for the rows a GEMV step may have (whole blocks of GEMV_MR).
        let Ok((cfg, cut)) = self.gemv(e) else { return 0 };
        if cut == 0 || !cfg.int8 {
            return 0;
        }
        (self.quantized_rows(e, cut) * e.shape(self.x)[2] / 32 * QX_BYTES) as u64
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let shape = e.out_shape().to_vec();
        let (m, n) = (shape[0] * shape[1], shape[2]);
        let k = e.shape(self.x)[2];
        let y = matmul(e.value(self.x), e.value(self.w), m, n, k);
        let bias = self.bias.map(|b| e.value(b));
        Ok(apply_tail(e, &y, n, bias, &self.tail))
    }

    fn tail(&self) -> Option<(bool, &Tail)> {
        Some((self.bias.is_some(), &self.tail))
    }

    fn with_tail(&self, tail: Tail) -> Option<Arc<dyn Op>> {
        Some(Arc::new(MatMul { tail, ..self.clone() }))
    }
}

/// y (m, n) = x (m, k) · w (n, k)^T
pub fn matmul(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for l in 0..k {
                acc += f64::from(x[i * k + l]) * f64::from(w[j * k + l]);
            }
            y[i * n + j] = acc as f32;
        }
    }
    y
}

/// The CPU twin of the 8-bit-activation GEMV (`shaders/gemv_q8.wgsl`): in each 32-element
/// block of x the element of largest magnitude (the first, on ties) is kept in f32 and the
/// others are quantized per 16-element half as the kernel does it (dx = the half's other
/// elements' max|x| / 127, q = x * (1 / dx) rounded half to even); then
/// y (m, n) = x' . w^T with x' the kept element and dx * q for the rest. k is a multiple
/// of 32.
pub fn matmul_q8(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut xq = x.to_vec();
    for block in xq.chunks_mut(32) {
        let mut top = 0;
        for (j, v) in block.iter().enumerate() {
            if v.abs() > block[top].abs() {
                top = j;
            }
        }
        for (h, half) in block.chunks_mut(16).enumerate() {
            let own = |j: usize| h * 16 + j == top;
            let rest = half
                .iter()
                .enumerate()
                .filter(|&(j, _)| !own(j))
                .fold(0.0f32, |a, (_, v)| a.max(v.abs()));
            let dx = rest / 127.0;
            let inv = if dx > 0.0 { 1.0 / dx } else { 0.0 };
            for (j, v) in half.iter_mut().enumerate() {
                if !own(j) {
                    *v = (*v * inv).round_ties_even() * dx;
                }
            }
        }
    }
    matmul(&xq, w, m, n, k)
}
