//! Benchmark results as data: what `kiln bench --json` writes and `--compare` reads, and
//! what the tables, CSV and plots are drawn from. The layout is documented in
//! `docs/bench-json.md`; [`SCHEMA`] names its version, and any change that breaks a reader
//! bumps it.

use super::{Clock, Figure, Group, Report, peak_flops, roofline};
use crate::gpu::Gpu;
use serde::{Deserialize, Serialize};

/// The version of the JSON layout.
pub const SCHEMA: &str = "kiln-bench/1";

/// One benchmark run: every adapter's figures, and where and when they were measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: String,
    /// The kiln that measured.
    pub kiln: Build,
    /// When the run began: RFC 3339, UTC.
    pub date: String,
    /// Where it ran.
    pub host: Host,
    /// Each adapter's figures, in the order measured.
    pub adapters: Vec<AdapterResults>,
}

/// The kiln that measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Build {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The commit it was built from (`-dirty` with uncommitted changes), or "unknown".
    pub commit: String,
}

/// Where it ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Host {
    /// "native", or "browser".
    pub runtime: String,
    /// The operating system and CPU architecture of a native build ("linux", "x86_64"); in
    /// the browser, its user agent string.
    pub os: String,
    /// The CPU architecture of the build ("x86_64"; "wasm32" in the browser).
    pub arch: String,
}

/// One adapter's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdapterResults {
    /// The adapter measured.
    pub adapter: Adapter,
    /// Its rooflines, which the kernel figures are set against.
    pub roofline: Roofline,
    /// Kernel figures, rooflines first.
    pub kernels: Vec<Kernel>,
    /// Model figures, llama-bench style.
    pub models: Vec<Model>,
}

/// An adapter, as wgpu describes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adapter {
    /// The adapter's name, as the driver reports it.
    pub name: String,
    /// PCI vendor and device ids (0 where the backend gives none).
    pub vendor: u32,
    /// The PCI device id (0 where the backend gives none).
    pub device: u32,
    /// The driver's name, where the backend gives one.
    pub driver: String,
    /// The driver's version or other details, where the backend gives them.
    pub driver_info: String,
    /// "Vulkan", "Metal", "Dx12", "Gl", "BrowserWebGpu".
    pub backend: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu", "Other".
    pub device_type: String,
    /// The features kiln's device was opened with, by wgpu's names ("SHADER_F16").
    pub features: Vec<String>,
    /// The device's limits, by WebGPU's names ("maxStorageBufferBindingSize").
    pub limits: serde_json::Value,
}

impl Adapter {
    /// Describe `gpu`'s adapter, features and limits.
    pub fn of(gpu: &Gpu) -> Adapter {
        let i = gpu.info();
        Adapter {
            name: i.name.clone(),
            vendor: i.vendor,
            device: i.device,
            driver: i.driver.clone(),
            driver_info: i.driver_info.clone(),
            backend: format!("{:?}", i.backend),
            device_type: format!("{:?}", i.device_type),
            features: gpu
                .features()
                .iter_names()
                .map(|(name, _)| name.to_string())
                .collect(),
            limits: serde_json::to_value(gpu.limits()).unwrap_or_default(),
        }
    }

    /// "name (backend, type)", as [`Gpu::describe`] says it.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// The rooflines measured on the adapter in the same run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Roofline {
    /// The best of the copies and the read-only pass, GB/s.
    pub bandwidth_gbps: Option<f64>,
    /// Peak multiply-adds, GFLOP/s (2 per FMA).
    pub f32_gflops: Option<f64>,
    /// Peak multiply-adds in f16, GFLOP/s (2 per FMA); `None` without SHADER_F16.
    pub f16_gflops: Option<f64>,
}

/// The roofline a figure is set against.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Memory bandwidth: for what moves bytes.
    Bandwidth,
    /// Peak f32 multiply-adds: for what only computes.
    F32Fma,
}

/// One kernel figure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kernel {
    /// Unique within the adapter: what `--compare` matches on.
    pub name: String,
    /// What it measures, and so which roofline bounds it.
    pub group: Group,
    /// Weight format (GEMV, GEMM), where there is one.
    pub dtype: Option<String>,
    /// The model whose shape it has, and which of its matrices, where it has one.
    pub model: Option<String>,
    /// Median seconds per run, on `clock`.
    pub seconds: f64,
    /// The clock `seconds` was taken on.
    pub clock: Clock,
    /// Median wall-clock seconds per run, submission included (the same as `seconds` when
    /// `clock` is "wall").
    pub wall_seconds: f64,
    /// Bytes moved per run (copy: read + write; GEMV: the weights read).
    pub bytes: f64,
    /// Floating-point operations per run (a multiply-add is 2).
    pub flops: f64,
    /// `bytes / seconds`, in GB/s; `None` where nothing is moved or the time is too short to
    /// give a rate.
    pub gbps: Option<f64>,
    /// `flops / seconds`, in GFLOP/s; `None` where nothing is computed or the time is too short
    /// to give a rate.
    pub gflops: Option<f64>,
    /// The roofline it is set against; `None` for the peaks and fixed costs themselves.
    pub bound: Option<Bound>,
    /// Percent of `bound`'s roofline.
    pub percent_of_roofline: Option<f64>,
}

/// Median, mean, sample standard deviation and the samples themselves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// The middle sample (the upper one of an even count); 0 with none.
    pub median: f64,
    /// The arithmetic mean.
    pub mean: f64,
    /// The sample standard deviation (n - 1).
    pub sd: f64,
    /// The samples, in the order taken.
    pub samples: Vec<f64>,
}

impl Stats {
    /// Summarize the samples `x`.
    pub fn of(x: &[f64]) -> Stats {
        let mut s = x.to_vec();
        s.sort_by(f64::total_cmp);
        let median = s.get(s.len() / 2).copied().unwrap_or(0.0);
        let mean = x.iter().sum::<f64>() / x.len().max(1) as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (x.len().max(2) - 1) as f64;
        Stats {
            median,
            mean,
            sd: var.sqrt(),
            samples: x.to_vec(),
        }
    }
}

/// One model, measured as llama-bench measures: `prompt` tokens prefilled, `generate`
/// decoded, `runs` times after a warm-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Model {
    /// Its folder or file, or `synthetic:NAME`.
    pub model: String,
    /// The dtype its matrices were stored in, when one was asked for.
    pub dtype: Option<String>,
    /// Each adapter it ran on (more than one when split).
    pub adapters: Vec<String>,
    /// "layers" or "tensor" when split; "none" on one adapter.
    pub split: String,
    /// Prompt tokens prefilled per run.
    pub prompt: usize,
    /// Tokens decoded per run.
    pub generate: usize,
    /// Measured runs, after one warm-up.
    pub runs: usize,
    /// Bytes of weights on the GPU(s).
    pub weight_bytes: u64,
    /// Bytes one decode step reads at the runs' mean position: weights and KV cache.
    pub decode_bytes: u64,
    /// Tokens per second.
    pub prefill: Stats,
    /// Tokens per second.
    pub decode: Stats,
    /// Median decode tokens/s times `decode_bytes`.
    pub decode_gbps: f64,
    /// Of the adapter's bandwidth roofline (one adapter only).
    pub decode_percent_of_bandwidth: Option<f64>,
    /// Split: seconds each decode step spent exchanging between adapters.
    pub exchange: Option<Stats>,
    /// GPU time by kernel family, one decode and one prefill step (`--profile`).
    pub profile: Option<Vec<ProfileRow>>,
}

/// One kernel family's share of a step, from timestamp queries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileRow {
    /// "prefill" or "decode".
    pub phase: String,
    /// The kernel family.
    pub kernel: String,
    /// Dispatches of the family per step.
    pub calls_per_step: f64,
    /// GPU seconds the family took per step.
    pub seconds_per_step: f64,
    /// Its share of the step's GPU time, in percent.
    pub percent_of_step: f64,
}

impl Kernel {
    fn of(x: &Figure, roof: &Roofline) -> Kernel {
        let seconds = x.median.as_secs_f64();
        let bound = x.bound();
        // A time below the clock's resolution gives no rate (JSON has no infinity).
        let finite = |v: f64| Some(v).filter(|v| v.is_finite());
        let of = |v: f64, r: Option<f64>| r.and_then(|r| finite(100.0 * v / r));
        Kernel {
            name: x.name.clone(),
            group: x.group,
            dtype: x.dtype.map(|d| d.name().to_string()),
            model: x.model.clone(),
            seconds,
            clock: x.clock,
            wall_seconds: x.wall.unwrap_or(x.median).as_secs_f64(),
            bytes: x.bytes,
            flops: x.flops,
            gbps: (x.bytes > 0.0).then(|| x.gbps()).and_then(finite),
            gflops: (x.flops > 0.0).then(|| x.gflops()).and_then(finite),
            bound,
            percent_of_roofline: match bound {
                Some(Bound::Bandwidth) => of(x.gbps(), roof.bandwidth_gbps),
                Some(Bound::F32Fma) => of(x.gflops(), roof.f32_gflops),
                None => None,
            },
        }
    }
}

impl AdapterResults {
    /// An adapter's kernel report as data.
    pub fn new(gpu: &Gpu, report: &Report) -> AdapterResults {
        let roof = Roofline {
            bandwidth_gbps: roofline(&report.figures),
            f32_gflops: peak_flops(&report.figures),
            f16_gflops: report
                .figures
                .iter()
                .find(|x| x.name == "fma f16")
                .map(Figure::gflops),
        };
        AdapterResults {
            adapter: Adapter::of(gpu),
            kernels: report
                .figures
                .iter()
                .map(|x| Kernel::of(x, &roof))
                .collect(),
            roofline: roof,
            models: Vec::new(),
        }
    }
}

impl AdapterResults {
    /// Add a model's figures (as `dtype` asked for, if one was), and on one adapter the
    /// bandwidth candidates measured with it, which give its bandwidth roofline.
    pub fn add_model(&mut self, gpu: &Gpu, report: &super::ModelReport, dtype: Option<&str>) {
        if let [_] = &report.adapters[..] {
            let copy = Report {
                adapter: gpu.describe(),
                figures: report.copy.clone(),
            };
            let measured = AdapterResults::new(gpu, &copy);
            self.roofline.bandwidth_gbps = measured.roofline.bandwidth_gbps;
            self.kernels.extend(measured.kernels);
        }
        self.models.push(report.record(dtype));
    }
}

impl Results {
    /// Empty results, dated now, for this build on this host.
    pub fn new() -> Results {
        Results {
            schema: SCHEMA.to_string(),
            kiln: Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: env!("KILN_COMMIT").to_string(),
            },
            date: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            host: Host {
                runtime: if cfg!(target_arch = "wasm32") {
                    "browser"
                } else {
                    "native"
                }
                .to_string(),
                os: std::env::consts::OS.to_string(),
                arch: std::env::consts::ARCH.to_string(),
            },
            adapters: Vec::new(),
        }
    }

    /// A new entry for `gpu`, even if one of the same description exists (two identical
    /// GPUs, or one adapter measured in turn by several placements).
    pub fn add_adapter(&mut self, gpu: &Gpu) -> &mut AdapterResults {
        self.adapters.push(AdapterResults {
            adapter: Adapter::of(gpu),
            roofline: Roofline::default(),
            kernels: Vec::new(),
            models: Vec::new(),
        });
        let last = self.adapters.len() - 1;
        &mut self.adapters[last]
    }

    /// Read results written by `--json`, refusing another schema by name.
    pub fn parse(text: &str) -> crate::error::Result<Results> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| crate::error::Error::Invalid(format!("not JSON: {e}")))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(crate::error::Error::Invalid(format!(
                    "benchmark results of schema '{other}'; this kiln reads '{SCHEMA}'"
                )));
            }
            None => {
                return Err(crate::error::Error::Invalid(
                    "not kiln benchmark results: no \"schema\" field".into(),
                ));
            }
        }
        serde_json::from_value(v).map_err(|e| {
            crate::error::Error::Invalid(format!("benchmark results of {SCHEMA}: {e}"))
        })
    }

    /// The results as pretty-printed JSON (what `kiln bench --json` writes).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Default for Results {
    fn default() -> Self {
        Results::new()
    }
}
