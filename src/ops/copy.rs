//! The copy kernels (`shaders/copy.wgsl`, and `shaders/copy_vec4.wgsl` with 16-byte
//! accesses): not graph ops, but the benchmarks' bandwidth roofline, launched directly by
//! `crate::bench`.

use crate::kernels::{Family, GpuStruct, Kernel, Slot};

/// Threads per workgroup, one element each.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The copy kernels' parameters: `dst[i] = src[offset + i]` for `i < count`.
    pub struct Params("Params") {
        /// Elements copied (f32, or `vec4<f32>` in `copy_vec4`).
        count: u32,
        /// The first source element read.
        offset: u32,
    }
}

/// The copy kernel of 4-byte accesses (`shaders/copy.wgsl`).
pub static FAMILY: Family = Family {
    name: "copy",
    source: include_str!("../../shaders/copy.wgsl"),
    includes: &[],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};

/// The copy kernel of 16-byte accesses (`shaders/copy_vec4.wgsl`).
pub static FAMILY_VEC4: Family = Family {
    name: "copy_vec4",
    source: include_str!("../../shaders/copy_vec4.wgsl"),
    includes: &[],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};

/// The copy kernel, moving 4 bytes per thread, or 16 with `vec4`.
pub fn kernel(vec4: bool) -> Kernel {
    Kernel::new(if vec4 { &FAMILY_VEC4 } else { &FAMILY }).constant("WG", WG)
}

/// Every kernel variant of the copy (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![kernel(false), kernel(true)]
}
