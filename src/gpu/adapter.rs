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
    /// The best-ranked adapter ([`adapter_rank`]): real GPUs first, then the faster software ones.
    #[default]
    Auto,
    /// The adapter at this position in kiln's enumeration order (`kiln adapters`).
    Index(usize),
    /// The best-ranked adapter of this backend.
    Backend(wgpu::Backend),
    /// The first adapter whose name contains this text, case-insensitively.
    Name(String),
}

impl std::fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdapterChoice::Auto => f.write_str("auto"),
            AdapterChoice::Index(i) => write!(f, "index {i}"),
            AdapterChoice::Backend(b) => write!(f, "the {b:?} backend"),
            AdapterChoice::Name(n) => write!(f, "'{n}'"),
        }
    }
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

/// Which of `infos` (every adapter, in enumeration order) a model placed on "all" adapters
/// goes on: each device once, on its preferred backend (an adapter is left out where one
/// on a backend ranked before it, or listed before it on the same, names the same device:
/// a GPU that Vulkan and GL both list), and the CPU's software adapters only where there
/// is no GPU (a share for a CPU adapter would hold every step of a GPU back). For each
/// adapter, `None` where it is kept, else why it is left out.
pub fn group_all(infos: &[wgpu::AdapterInfo]) -> Vec<Option<String>> {
    let backend = |i: &wgpu::AdapterInfo| adapter_rank(i).1;
    // The device a name stands for: GL's renderer strings add "/PCIe/SSE2" or a driver
    // in parentheses, and Mesa's a "Mesa " in front.
    let key = |i: &wgpu::AdapterInfo| {
        let name = i.name.to_lowercase();
        let name = name.strip_prefix("mesa ").unwrap_or(&name);
        let cuts = [name.find('/'), name.find(" (")];
        let end = cuts.into_iter().flatten().min().unwrap_or(name.len());
        name[..end].trim().to_string()
    };
    let same = |a: &wgpu::AdapterInfo, b: &wgpu::AdapterInfo| {
        a.backend != b.backend
            && key(a) == key(b)
            && (a.vendor == b.vendor || a.vendor == 0 || b.vendor == 0)
    };
    let mut why: Vec<Option<String>> = infos
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let before = |(j, b): &(usize, &wgpu::AdapterInfo)| {
                same(a, b) && (backend(b), *j) < (backend(a), i)
            };
            infos.iter().enumerate().find(before).map(|(j, b)| {
                format!(
                    "the same device as adapter {j} ({:?}), which is kept",
                    b.backend
                )
            })
        })
        .collect();
    let gpu = |i: &wgpu::AdapterInfo| i.device_type != wgpu::DeviceType::Cpu;
    let has_gpu = infos.iter().zip(&why).any(|(i, w)| w.is_none() && gpu(i));
    for (info, w) in infos.iter().zip(&mut why) {
        if has_gpu && w.is_none() && !gpu(info) {
            *w = Some("a CPU adapter beside a GPU: its share would hold every step back".into());
        }
    }
    why
}

impl AdapterChoice {
    /// The adapter of `adapters` this choice names; an error listing them all when none
    /// matches.
    pub fn pick(&self, adapters: Vec<wgpu::Adapter>) -> Result<wgpu::Adapter> {
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
                "no adapter matches {self}; the adapters on this machine are:\n{}",
                names()
            ))),
        }
    }
}

/// What `kiln adapters` prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Its position in kiln's enumeration order.
    pub index: usize,
    /// Name, vendor, backend and device type, as wgpu reports them.
    pub info: wgpu::AdapterInfo,
    /// The adapter's own limits (kiln opens devices with these).
    pub limits: wgpu::Limits,
    /// Every feature the adapter offers.
    pub features: wgpu::Features,
    /// Whether the adapter runs `unpack2x16float` (wgpu's SHADER_F16_IN_F32 downlevel flag).
    pub f16_in_f32: bool,
}

/// Describe adapter `a`, found at `index` in the enumeration order.
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
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
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

#[cfg(test)]
mod tests {
    use super::group_all;
    use wgpu::{AdapterInfo, Backend, DeviceType};

    fn info(name: &str, vendor: u32, kind: DeviceType, backend: Backend) -> AdapterInfo {
        let mut i = AdapterInfo::new(kind, backend);
        i.name = name.into();
        i.vendor = vendor;
        i
    }

    /// Each device once, on its preferred backend; CPU adapters only without a GPU.
    #[test]
    fn all_adapters_means_each_device_once_and_gpus_before_the_cpu() {
        use Backend::{Gl, Vulkan};
        use DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
        let kept = |infos: &[AdapterInfo]| -> Vec<usize> {
            let why = group_all(infos);
            (0..infos.len()).filter(|&i| why[i].is_none()).collect()
        };
        // This machine: lavapipe, SwiftShader, and llvmpipe again through GL.
        let cpu = [
            info("llvmpipe (LLVM 15.0.6, 256 bits)", 0x10005, Cpu, Gl),
            info("llvmpipe (LLVM 15.0.6, 256 bits)", 0x10005, Cpu, Vulkan),
            info("SwiftShader Device (Subzero)", 0x1AE0, Cpu, Vulkan),
        ];
        assert_eq!(kept(&cpu), [1, 2]);
        assert!(
            group_all(&cpu)[0]
                .as_deref()
                .is_some_and(|w| w.contains("adapter 1"))
        );
        // Two of one GPU model on Vulkan (both kept), the same through GL, an iGPU, and
        // the CPU adapters.
        let mut gpus = vec![
            info("NVIDIA GeForce RTX 3090", 0x10de, DiscreteGpu, Vulkan),
            info("NVIDIA GeForce RTX 3090", 0x10de, DiscreteGpu, Vulkan),
            info("NVIDIA GeForce RTX 3090/PCIe/SSE2", 0x10de, DiscreteGpu, Gl),
            info(
                "Mesa Intel(R) UHD Graphics 770 (ADL-S GT1)",
                0x8086,
                IntegratedGpu,
                Gl,
            ),
            info(
                "Intel(R) UHD Graphics 770 (ADL-S GT1)",
                0x8086,
                IntegratedGpu,
                Vulkan,
            ),
        ];
        gpus.extend(cpu);
        assert_eq!(kept(&gpus), [0, 1, 4]);
        assert!(
            group_all(&gpus)[7]
                .as_deref()
                .is_some_and(|w| w.contains("CPU adapter"))
        );
    }
}
