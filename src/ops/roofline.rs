//! The kernels of the benchmarks' rooflines beside the copies (`copy.rs`): a read-only
//! reduction (`shaders/read.wgsl`), whose bytes are reads alone, and peak multiply-add
//! throughput (`shaders/fma.wgsl`, in f32, and in f16 where the adapter has SHADER_F16).
//! Not graph ops: `crate::bench::roofline` launches them directly. Their CPU twins are
//! here, for the kernels' tests.

use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup of both kernels.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The read-only reduction's parameters (`shaders/read.wgsl`).
    pub struct ReadParams("Params") {
        /// vec4s of the source read.
        count: u32,
        /// vec4s between one thread's reads: the threads dispatched.
        stride: u32,
    }
}

crate::kernels::gpu_struct! {
    /// The multiply-add kernel's parameters (`shaders/fma.wgsl`).
    pub struct FmaParams("Params") {
        /// Threads that compute (one result each).
        count: u32,
        /// Iterations per thread, of [`FLOPS_PER_ITERATION`] flops each.
        iterations: u32,
    }
}

/// The read-only reduction (`shaders/read.wgsl`).
pub static READ: Family = Family {
    name: "read",
    source: include_str!("../../shaders/read.wgsl"),
    includes: &[Include::Reduce],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[ReadParams::LAYOUT],
};

/// The multiply-add kernel in f32 (`shaders/fma.wgsl`).
pub static FMA: Family = Family {
    name: "fma",
    source: include_str!("../../shaders/fma.wgsl"),
    includes: &[Include::RealF32],
    bindings: &[Slot::Uniform, Slot::Write],
    structs: &[FmaParams::LAYOUT],
};

/// The multiply-add kernel in f16 (adapters with SHADER_F16).
pub static FMA_F16: Family = FMA.with_includes("fma_f16", &[Include::RealF16]);

/// The read-only reduction.
pub fn read_kernel() -> Kernel {
    Kernel::new(&READ).constant("WG", WG)
}

/// The multiply-add kernel, in f16 or f32.
pub fn fma_kernel(f16: bool) -> Kernel {
    Kernel::new(if f16 { &FMA_F16 } else { &FMA }).constant("WG", WG)
}

/// Every kernel variant of the rooflines (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![read_kernel(), fma_kernel(false), fma_kernel(true)]
}

/// Flops one thread of the multiply-add kernel does per iteration: 4 vec4 FMAs.
pub const FLOPS_PER_ITERATION: u64 = 32;

/// What `read.wgsl` writes for `src` (vec4s as runs of 4 floats) over `groups` workgroups
/// of [`WG`] threads: thread t sums vec4s t, t + stride, ... (stride = every thread), and
/// each workgroup its threads' sums. Accumulated in f64.
pub fn read_reference(src: &[f32], groups: usize) -> Vec<f32> {
    let wg = WG as usize;
    let stride = groups * wg;
    let vec4s = src.len() / 4;
    (0..groups)
        .map(|g| {
            let mut sum = 0.0f64;
            for t in g * wg..(g + 1) * wg {
                for i in (t..vec4s).step_by(stride) {
                    sum += src[4 * i..4 * i + 4].iter().map(|&v| f64::from(v)).sum::<f64>();
                }
            }
            sum as f32
        })
        .collect()
}

/// What `fma.wgsl` writes for thread `i` after `iterations`, computed in f32 (`f16`:
/// rounded to f16 after every operation, as the GPU keeps it).
pub fn fma_reference(i: u32, iterations: u32, f16: bool) -> f32 {
    let round = |x: f32| match f16 {
        true => half::f16::from_f32(x).to_f32(),
        false => x,
    };
    let (m, c) = (round(0.999_023_4), round(0.000_976_562_5));
    let s = round((i % 64) as f32 / 64.0);
    let a: Vec<f32> = [0.0, 0.25, 0.5, 0.75].iter().map(|o| round(s + o)).collect();
    let mut chains: Vec<f32> = [1.0, 0.5, 0.25, 0.125]
        .iter()
        .flat_map(|k| a.iter().map(move |x| round(x * k)))
        .collect();
    for _ in 0..iterations {
        for x in &mut chains {
            *x = round(x.mul_add(m, c));
        }
    }
    // t = a + b + d + e, lane by lane, then the lanes summed in f32.
    let t: Vec<f32> = (0..4)
        .map(|l| round(round(round(chains[l] + chains[4 + l]) + chains[8 + l]) + chains[12 + l]))
        .collect();
    t[0] + t[1] + t[2] + t[3]
}
