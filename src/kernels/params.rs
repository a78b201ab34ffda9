//! Workgroup and tile sizes, uniform parameter blocks, and dispatch grids.

/// Tiled GEMM: TX x TY threads, each computing 4x4 outputs; BK-wide k slices.
pub const GEMM_TX: u32 = 16;
pub const GEMM_TY: u32 = 16;
pub const GEMM_BK: u32 = 16;
pub const GEMM_TILE_N: u32 = GEMM_TX * 4;
pub const GEMM_TILE_M: u32 = GEMM_TY * 4;
/// GEMV: LANES threads per output column, ROWS columns per workgroup, up to GEMV_MR rows of
/// activations per workgroup (the shader's `MR`).
pub const GEMV_LANES: u32 = 4;
pub const GEMV_ROWS: u32 = 64;
pub const GEMV_MR: u32 = 8;
/// Up to this many rows of activations, matmuls run as GEMV (weights read once per 8 rows)
/// rather than as tiled GEMM (whose 64-row tiles would be mostly empty).
pub const GEMV_MAX_M: usize = 16;
/// Row kernels (norms, softmax, attention): threads per workgroup, one workgroup per row.
pub const ROW_WG: u32 = 64;
pub const ELEMENTWISE_WG: u32 = 256;
pub const ROPE_WG: u32 = 64;
/// The sampler runs as one workgroup of this many threads.
pub const SAMPLE_WG: u32 = 256;
/// Attention keeps head_dim / ROW_WG accumulators per thread, at most this many.
pub const ATTENTION_MAX_HEAD_DIM: usize = 4 * ROW_WG as usize;

/// Bytes of one uniform parameter block: eight 32-bit words, whatever the kernel reads.
pub const PARAMS_BYTES: u64 = 32;

/// A kernel's uniform parameters: up to eight u32/f32 words, in the order its `Params`
/// struct declares them.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Params([u32; 8]);

impl Params {
    pub fn new(words: &[u32]) -> Params {
        let mut p = [0u32; 8];
        p[..words.len()].copy_from_slice(words);
        Params(p)
    }
    pub fn with_f32(mut self, index: usize, value: f32) -> Params {
        self.0[index] = value.to_bits();
        self
    }
    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Spread `groups` workgroups over x and y so no dimension exceeds `max_per_dim`; kernels
/// linearise the id as `x + y * num_workgroups.x` and ignore the overshoot.
pub fn grid(groups: u32, max_per_dim: u32) -> [u32; 3] {
    let groups = groups.max(1);
    if groups <= max_per_dim {
        [groups, 1, 1]
    } else {
        [max_per_dim, groups.div_ceil(max_per_dim), 1]
    }
}
