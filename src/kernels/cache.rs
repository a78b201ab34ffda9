//! Compiled pipelines, one cache per device, keyed by the typed [`Kernel`].

use super::{Kernel, Slot};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Compiled pipelines and their layouts, one cache per device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<Kernel, Compiled>>,
}

#[derive(Clone)]
pub(crate) struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl PipelineCache {
    /// The pipeline for `kernel` on `gpu`, from the device's cache.
    pub(crate) async fn compiled(gpu: &crate::gpu::Gpu, kernel: &Kernel) -> Result<Compiled> {
        gpu.cache::<PipelineCache>().get(gpu, kernel).await
    }

    /// The compiled pipeline for `kernel`, compiling it on first use. Compilation errors
    /// (a bad shader, a feature the device lacks) come back as errors, not panics.
    pub(crate) async fn get(&self, gpu: &crate::gpu::Gpu, kernel: &Kernel) -> Result<Compiled> {
        if let Some(c) = self.lock().get(kernel) {
            return Ok(c.clone());
        }
        if kernel.needs_f16() && !gpu.has_f16() {
            return Err(Error::Gpu(format!(
                "kernel {} reads native f16 but {} lacks SHADER_F16",
                kernel.name(),
                gpu.describe()
            )));
        }
        if kernel.needs_subgroups() && !gpu.has_subgroups() {
            return Err(Error::Gpu(format!(
                "kernel {} uses subgroup operations but {} lacks SUBGROUP",
                kernel.name(),
                gpu.describe()
            )));
        }
        let device = gpu.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match slot {
                        Slot::Uniform => wgpu::BufferBindingType::Uniform,
                        Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Slot::Write => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let label = format!(
            "{} {:?} {:?}",
            kernel.name(),
            kernel.weights,
            kernel.constants
        );
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let source = kernel.source();
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if gpu.bounds_checks() {
            device.create_shader_module(desc)
        } else {
            // SAFETY: every kiln kernel guards its own indices, and the host checks what the
            // kernels cannot (token ids below the vocabulary, positions within the RoPE table
            // and KV cache, shapes of every operand) before a dispatch is recorded; see
            // "Bounds" in the README. Without wgpu's per-access checks the kernels run up to
            // 1.7x faster on CPU adapters. `GpuOptions::bounds_checks` turns them back on.
            let checks = wgpu::ShaderRuntimeChecks {
                bounds_checks: false,
                force_loop_bounding: false,
                ..Default::default()
            };
            unsafe { device.create_shader_module_trusted(desc, checks) }
        };
        let constants = kernel.constants();
        #[cfg(not(target_arch = "wasm32"))]
        let started = std::time::Instant::now();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(gpu.failure(format!(
                "compiling kernel {} (variant: weights {:?}, constants {:?}) on {} failed: {e}",
                kernel.name(),
                kernel.weights,
                kernel.constants,
                gpu.describe()
            )));
        }
        #[cfg(not(target_arch = "wasm32"))]
        log::debug!(
            "compiled {label} in {:.3} s",
            started.elapsed().as_secs_f64()
        );
        let compiled = Compiled { pipeline, layout };
        self.lock().insert(kernel.clone(), compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Kernel, Compiled>> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Family;

    /// A kernel family whose WGSL does not type-check (a float where a u32 is declared).
    static BROKEN: Family = Family {
        name: "broken_on_purpose",
        source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
        includes: &[],
        bindings: &[],
        structs: &[],
    };

    /// A shader that fails to compile comes back as an error that names the kernel, its
    /// variant and the adapter, on every adapter: one that is not valid WGSL, and a valid
    /// one whose variant sets a workgroup of no threads.
    #[test]
    fn a_shader_that_fails_to_compile_names_kernel_variant_and_adapter() {
        let gpus: Vec<crate::Gpu> = pollster::block_on(crate::Gpu::all())
            .into_iter()
            .flatten()
            .collect();
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci || !gpus.is_empty(), "CI=true but no adapter opened");
        for gpu in &gpus {
            let broken = Kernel::new(&BROKEN).constant("WG", 7u32);
            let e = pollster::block_on(PipelineCache::compiled(gpu, &broken))
                .err()
                .unwrap_or_else(|| panic!("broken WGSL compiled on {}", gpu.describe()))
                .to_string();
            for part in ["broken_on_purpose", "(\"WG\", 7)", &gpu.info().name] {
                assert!(e.contains(part), "'{part}' not in: {e}");
            }
            let empty = Kernel::new(&crate::ops::softmax::FAMILY).constant("WG", 0u32);
            let e = pollster::block_on(PipelineCache::compiled(gpu, &empty))
                .err()
                .unwrap_or_else(|| panic!("softmax with no threads compiled on {}", gpu.describe()))
                .to_string();
            for part in ["kernel softmax", "(\"WG\", 0)", &gpu.info().name] {
                assert!(e.contains(part), "'{part}' not in: {e}");
            }
        }
    }
}
