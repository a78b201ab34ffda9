//! The copy kernel (`shaders/copy.wgsl`): not a graph op, but the benchmarks' bandwidth
//! roofline, launched directly by `crate::bench`.

use crate::kernels::{Family, GpuStruct, Kernel, Slot};

pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    pub struct Params("Params") {
        count: u32,
        offset: u32,
    }
}

pub static FAMILY: Family = Family {
    name: "copy",
    source: include_str!("../../shaders/copy.wgsl"),
    includes: &[],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT],
};

pub fn kernel() -> Kernel {
    Kernel::new(&FAMILY).constant("WG", WG)
}

pub fn variants() -> Vec<Kernel> {
    vec![kernel()]
}
