//! The host side of the kernel library: which WGSL source each kernel variant is, its
//! override constants, its binding layout, and a cache of compiled pipelines keyed by value.
//!
//! A [`Kernel`] is the typed pipeline key: the kernel family plus everything that changes the
//! compiled code (weight formats, fused epilogue, norm kind). The cache maps it to a compiled
//! pipeline, so each variant is compiled once per device.

mod params;
mod source;

pub use params::*;
pub use source::{compose, family_source};

use crate::dtype::WeightFormat;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Elementwise activations, as fused into epilogues. Codes match `activate` in epilogue.wgsl.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Act {
    #[default]
    Identity,
    Silu,
    GeluTanh,
    GeluErf,
    Relu,
}

impl Act {
    pub const ALL: [Act; 5] = [
        Act::Identity,
        Act::Silu,
        Act::GeluTanh,
        Act::GeluErf,
        Act::Relu,
    ];
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// The fused elementwise tail of a kernel: `y = act(acc + bias) * aux_act(aux) + residual`.
/// `aux: Some(a)` multiplies by `a(aux)`. Stages apply in field order.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Epilogue {
    pub bias: bool,
    pub act: Act,
    pub aux: Option<Act>,
    pub residual: bool,
}

impl Epilogue {
    fn constants(&self, out: &mut Vec<(&'static str, f64)>) {
        out.push(("HAS_BIAS", f64::from(u8::from(self.bias))));
        out.push(("ACT", f64::from(self.act.code())));
        out.push(("AUX_MUL", f64::from(u8::from(self.aux.is_some()))));
        out.push(("AUX_ACT", f64::from(self.aux.unwrap_or_default().code())));
        out.push(("RESIDUAL", f64::from(u8::from(self.residual))));
    }
}

/// One kernel variant: the typed key of the pipeline cache.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Tiled GEMM, x (M, K) times w (N, K)^T.
    Matmul {
        w: WeightFormat,
        bias: WeightFormat,
        epi: Epilogue,
    },
    /// GEMV for a single row of x.
    Gemv {
        w: WeightFormat,
        bias: WeightFormat,
        epi: Epilogue,
    },
    /// An elementwise op the scheduler did not fuse.
    Elementwise {
        bias: WeightFormat,
        epi: Epilogue,
    },
    /// RMSNorm (`layer: false`) or LayerNorm (`layer: true`, optionally with bias).
    Norm {
        w: WeightFormat,
        b: WeightFormat,
        layer: bool,
        bias: bool,
    },
    Softmax,
    Rope,
    Attention,
    KvWrite,
    Copy,
    Embedding {
        table: WeightFormat,
    },
    /// Token sampling from the last row of logits.
    Sample,
}

/// The kinds of binding a kernel declares, in binding order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Uniform,
    Read,
    Write,
}

use Slot::{Read, Uniform, Write};

impl Kernel {
    /// The family's WGSL file, entry point and the weight arrays whose reader it needs.
    pub fn entry(&self) -> &'static str {
        match self {
            Kernel::KvWrite => "kv_write",
            _ => "main",
        }
    }

    /// Weight arrays declared with `array<WORD_name>`, and how each is read.
    pub fn weight_arrays(&self) -> Vec<(&'static str, WeightFormat)> {
        match *self {
            Kernel::Matmul { w, bias, .. } | Kernel::Gemv { w, bias, .. } => {
                vec![("w", w), ("bias", bias)]
            }
            Kernel::Elementwise { bias, .. } => vec![("bias", bias)],
            Kernel::Norm { w, b, .. } => vec![("w", w), ("b", b)],
            Kernel::Embedding { table } => vec![("table", table)],
            _ => vec![],
        }
    }

    pub fn bindings(&self) -> &'static [Slot] {
        match self {
            Kernel::Matmul { .. } | Kernel::Gemv { .. } => {
                &[Uniform, Read, Read, Read, Read, Read, Write]
            }
            Kernel::Elementwise { .. } => &[Uniform, Read, Read, Read, Read, Write],
            Kernel::Norm { .. } => &[Uniform, Read, Read, Read, Write],
            Kernel::Softmax => &[Uniform, Read, Write],
            Kernel::Rope => &[Uniform, Uniform, Read, Read, Write],
            Kernel::Attention => &[Uniform, Uniform, Read, Read, Read, Write],
            Kernel::KvWrite | Kernel::Copy => &[Uniform, Uniform, Read, Write],
            Kernel::Embedding { .. } => &[Uniform, Read, Read, Write],
            Kernel::Sample => &[Uniform, Uniform, Read, Read, Write, Write],
        }
    }

    /// Override constants: tile and workgroup sizes, epilogue switches.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let mut c = Vec::new();
        match self {
            Kernel::Matmul { epi, .. } => {
                c.push(("TX", f64::from(GEMM_TX)));
                c.push(("TY", f64::from(GEMM_TY)));
                c.push(("BK", f64::from(GEMM_BK)));
                epi.constants(&mut c);
            }
            Kernel::Gemv { epi, .. } => {
                c.push(("LANES", f64::from(GEMV_LANES)));
                c.push(("ROWS", f64::from(GEMV_ROWS)));
                epi.constants(&mut c);
            }
            Kernel::Elementwise { epi, .. } => {
                c.push(("WG", f64::from(ELEMENTWISE_WG)));
                epi.constants(&mut c);
            }
            Kernel::Norm { layer, bias, .. } => {
                c.push(("WG", f64::from(ROW_WG)));
                c.push(("LAYER", f64::from(u8::from(*layer))));
                c.push(("HAS_BIAS", f64::from(u8::from(*bias))));
            }
            Kernel::Softmax | Kernel::Attention => c.push(("WG", f64::from(ROW_WG))),
            Kernel::Rope => c.push(("WG", f64::from(ROPE_WG))),
            Kernel::Sample => c.push(("WG", f64::from(SAMPLE_WG))),
            Kernel::KvWrite | Kernel::Copy | Kernel::Embedding { .. } => {
                c.push(("WG", f64::from(ELEMENTWISE_WG)))
            }
        }
        c
    }

    /// Whether the kernel needs SHADER_F16 on the device.
    pub fn needs_f16(&self) -> bool {
        self.weight_arrays().iter().any(|(_, f)| f.needs_f16())
    }

    /// The complete WGSL source of this variant.
    pub fn source(&self) -> String {
        compose(self)
    }

    /// Every variant the scheduler can ask for (tests validate each one with naga).
    pub fn variants() -> Vec<Kernel> {
        let mut epilogues = Vec::new();
        for bias in [false, true] {
            for act in Act::ALL {
                for aux in std::iter::once(None).chain(Act::ALL.map(Some)) {
                    for residual in [false, true] {
                        epilogues.push(Epilogue {
                            bias,
                            act,
                            aux,
                            residual,
                        });
                    }
                }
            }
        }
        let formats = WeightFormat::ALL;
        let mut out = vec![
            Kernel::Softmax,
            Kernel::Rope,
            Kernel::Attention,
            Kernel::KvWrite,
            Kernel::Copy,
            Kernel::Sample,
        ];
        for w in formats {
            out.push(Kernel::Embedding { table: w });
            for b in formats {
                for (layer, bias) in [(false, false), (true, false), (true, true)] {
                    out.push(Kernel::Norm { w, b, layer, bias });
                }
                for &epi in &epilogues {
                    out.push(Kernel::Matmul { w, bias: b, epi });
                    out.push(Kernel::Gemv { w, bias: b, epi });
                }
            }
            for &epi in &epilogues {
                out.push(Kernel::Elementwise { bias: w, epi });
            }
        }
        out
    }
}

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
    pub(crate) async fn compiled(gpu: &crate::Gpu, kernel: Kernel) -> Result<Compiled> {
        gpu.cache::<PipelineCache>().get(gpu, kernel).await
    }

    /// The compiled pipeline for `kernel`, compiling it on first use. Compilation errors
    /// (a bad shader, a feature the device lacks) come back as errors, not panics.
    pub(crate) async fn get(&self, gpu: &crate::Gpu, kernel: Kernel) -> Result<Compiled> {
        if let Some(c) = self.lock().get(&kernel) {
            return Ok(c.clone());
        }
        if kernel.needs_f16() && !gpu.has_f16() {
            return Err(Error::Gpu(format!(
                "{kernel:?} reads native f16 but {} lacks SHADER_F16",
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
        let label = format!("{kernel:?}");
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
            return Err(Error::Gpu(format!(
                "compiling {label} on {} failed: {e}",
                gpu.describe()
            )));
        }
        let compiled = Compiled { pipeline, layout };
        self.lock().insert(kernel, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Kernel, Compiled>> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }
}
