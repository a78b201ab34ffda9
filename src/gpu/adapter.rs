//! Finding adapters on every backend, describing them, and choosing one.

use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::str::FromStr;

/// What to do when no adapter exists: the message names the software adapters that work.
pub const INSTALL_HINT: &str = "install a software Vulkan driver and retry: on Debian/Ubuntu \
     `apt-get install mesa-vulkan-drivers` (lavapipe; Debian 12 users get a 4-6x faster one from \
     bookworm-backports), or run with a GPU driver installed";

pub(crate) fn instance() -> wgpu::Instance {
    #[cfg(target_arch = "wasm32")]
    let desc = {
        let mut d = wgpu::InstanceDescriptor::new_without_display_handle();
        d.backends = wgpu::Backends::BROWSER_WEBGPU;
        d
    };
    // Honours WGPU_BACKEND / WGPU_ADAPTER_NAME like other wgpu programs.
    #[cfg(not(target_arch = "wasm32"))]
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    wgpu::Instance::new(desc)
}

pub(crate) async fn enumerate_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    if adapters.is_empty() {
        // The browser exposes one adapter through requestAdapter() rather than a list.
        let opts = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        if let Ok(a) = instance.request_adapter(&opts).await {
            adapters.push(a);
        }
    }
    adapters
}

/// Every adapter on every backend, in kiln's enumeration order (the order `--adapter N` uses).
pub async fn enumerate() -> Vec<AdapterSummary> {
    let instance = instance();
    enumerate_adapters(&instance)
        .await
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect()
}

/// How the caller picks an adapter: `auto`, an index from `kiln adapters`, a backend name
/// (`vulkan`, `gl`, `metal`, `dx12`, `webgpu`), or part of the adapter's name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    #[default]
    Auto,
    Index(usize),
    Backend(wgpu::Backend),
    Name(String),
}

impl FromStr for AdapterChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.is_empty() {
            return Err(Error::Invalid("empty adapter choice".into()));
        }
        if t.eq_ignore_ascii_case("auto") {
            return Ok(AdapterChoice::Auto);
        }
        if let Ok(i) = t.parse::<usize>() {
            return Ok(AdapterChoice::Index(i));
        }
        let backend = match t.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Some(wgpu::Backend::Vulkan),
            "gl" | "gles" | "opengl" => Some(wgpu::Backend::Gl),
            "metal" => Some(wgpu::Backend::Metal),
            "dx12" | "d3d12" => Some(wgpu::Backend::Dx12),
            "webgpu" | "browser" => Some(wgpu::Backend::BrowserWebGpu),
            _ => None,
        };
        Ok(backend.map_or_else(
            || AdapterChoice::Name(t.to_string()),
            AdapterChoice::Backend,
        ))
    }
}

/// Order of preference among adapters: real GPUs first, then the faster software ones.
/// Lower is better.
pub fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8, u8) {
    use wgpu::{Backend, DeviceType};
    let kind = match info.device_type {
        DeviceType::DiscreteGpu => 0,
        DeviceType::IntegratedGpu => 1,
        DeviceType::VirtualGpu => 2,
        DeviceType::Other => 3,
        DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        Backend::Vulkan | Backend::Metal | Backend::Dx12 | Backend::BrowserWebGpu => 0,
        Backend::Gl => 1,
        Backend::Noop => 2,
    };
    // Measured on CPU adapters: lavapipe runs kiln's kernels several times faster than
    // SwiftShader (see ENVIRONMENT.md), so prefer it when both are present.
    let slow_software = u8::from(info.name.contains("SwiftShader"));
    (kind, backend, slow_software)
}

impl AdapterChoice {
    pub(crate) fn pick(&self, adapters: Vec<wgpu::Adapter>) -> Result<wgpu::Adapter> {
        if adapters.is_empty() {
            return Err(Error::NoAdapter(format!(
                "wgpu found no adapter on any backend; {INSTALL_HINT}"
            )));
        }
        let names = || {
            adapters
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let info = a.get_info();
                    format!("  {i}: {} ({:?})", info.name, info.backend)
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let found = match self {
            AdapterChoice::Auto => adapters
                .iter()
                .enumerate()
                .min_by_key(|(i, a)| (adapter_rank(&a.get_info()), *i))
                .map(|(i, _)| i),
            AdapterChoice::Index(i) => (*i < adapters.len()).then_some(*i),
            AdapterChoice::Backend(b) => adapters
                .iter()
                .enumerate()
                .filter(|(_, a)| a.get_info().backend == *b)
                .min_by_key(|(i, a)| (adapter_rank(&a.get_info()), *i))
                .map(|(i, _)| i),
            AdapterChoice::Name(n) => {
                let n = n.to_lowercase();
                adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&n))
            }
        };
        match found {
            Some(i) => Ok(adapters.into_iter().nth(i).expect("index checked above")),
            None => Err(Error::NoAdapter(format!(
                "no adapter matches {self:?}; the adapters on this machine are:\n{}",
                names()
            ))),
        }
    }
}

/// What `kiln adapters` prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Whether the adapter runs `unpack2x16float` (wgpu's SHADER_F16_IN_F32 downlevel flag).
    pub f16_in_f32: bool,
}

pub fn summarize(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let flags = a.get_downlevel_capabilities().flags;
    AdapterSummary {
        index,
        info: a.get_info(),
        limits: a.limits(),
        features: a.features(),
        f16_in_f32: flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32),
    }
}

fn mib(b: u64) -> String {
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{} GiB", b >> 30)
    } else if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{b} B")
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.info;
        let l = &self.limits;
        writeln!(f, "[{}] {}", self.index, i.name)?;
        writeln!(
            f,
            "    backend {:?}, type {:?}, driver {} {}",
            i.backend, i.device_type, i.driver, i.driver_info
        )?;
        writeln!(
            f,
            "    max buffer {}, max storage binding {}, storage buffers/stage {}, workgroup \
             storage {} B, invocations/workgroup {}",
            mib(l.max_buffer_size),
            mib(l.max_storage_buffer_binding_size),
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup
        )?;
        let mut feats = String::new();
        for (flag, name) in [
            (wgpu::Features::SHADER_F16, "SHADER_F16"),
            (wgpu::Features::SUBGROUP, "SUBGROUP"),
            (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        ] {
            let mark = if self.features.contains(flag) {
                "yes"
            } else {
                "no"
            };
            let _ = write!(feats, "{name} {mark}, ");
        }
        if self.features.contains(wgpu::Features::SUBGROUP) {
            let _ = write!(
                feats,
                "subgroup size {}-{}, ",
                i.subgroup_min_size, i.subgroup_max_size
            );
        }
        let _ = write!(
            feats,
            "unpack2x16float {}",
            if self.f16_in_f32 { "yes" } else { "no" }
        );
        write!(f, "    features: {feats}")
    }
}
