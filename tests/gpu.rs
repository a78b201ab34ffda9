//! The GPU runtime: adapter enumeration and choice, limits and features requested, a device
//! handed in by the caller (even one opened with WebGPU's default limits and no optional
//! features).

mod common;

use common::*;
use kiln::gpu::{AdapterChoice, enumerate};
use kiln::{Gpu, GpuOptions};

#[test]
fn adapter_choices_parse() {
    let p = |s: &str| s.parse::<AdapterChoice>().expect("parse");
    assert_eq!(p("auto"), AdapterChoice::Auto);
    assert_eq!(p("2"), AdapterChoice::Index(2));
    assert_eq!(p("Vulkan"), AdapterChoice::Backend(wgpu::Backend::Vulkan));
    assert_eq!(p("gl"), AdapterChoice::Backend(wgpu::Backend::Gl));
    assert_eq!(p("swiftshader"), AdapterChoice::Name("swiftshader".into()));
    assert!("  ".parse::<AdapterChoice>().is_err());
}

/// CI installs lavapipe (Vulkan), SwiftShader (Vulkan) and has llvmpipe (GL): all three must
/// be there, or the kernel tests would silently cover less.
#[test]
fn the_three_cpu_adapters_are_present_under_ci() {
    let list = pollster::block_on(enumerate());
    for a in &list {
        eprintln!("{a}");
    }
    let has = |name: &str, backend: wgpu::Backend| {
        list.iter()
            .any(|a| a.info.name.contains(name) && a.info.backend == backend)
    };
    let expected = [
        (
            "llvmpipe",
            wgpu::Backend::Vulkan,
            "lavapipe: apt-get install -t bookworm-backports mesa-vulkan-drivers",
        ),
        (
            "SwiftShader",
            wgpu::Backend::Vulkan,
            "SwiftShader: apt-get install chromium",
        ),
        (
            "llvmpipe",
            wgpu::Backend::Gl,
            "llvmpipe GL: Mesa's libegl1 / libgl1-mesa-dri",
        ),
    ];
    for (name, backend, how) in expected {
        if !has(name, backend) {
            if ci() {
                panic!("CI=true but the {name} {backend:?} adapter is missing; install {how}");
            }
            eprintln!("WARNING: {name} ({backend:?}) is missing here; install {how}");
        }
    }
}

#[test]
fn devices_get_the_adapters_own_limits_and_optional_features() {
    let list = pollster::block_on(enumerate());
    for (gpu, summary) in gpus().iter().zip(&list) {
        assert_eq!(gpu.info().name, summary.info.name);
        assert_eq!(
            gpu.limits().max_storage_buffer_binding_size,
            summary.limits.max_storage_buffer_binding_size
        );
        assert_eq!(gpu.limits().max_buffer_size, summary.limits.max_buffer_size);
        let wanted = summary.features & kiln::gpu::OPTIONAL_FEATURES;
        assert_eq!(
            gpu.features() & kiln::gpu::OPTIONAL_FEATURES,
            wanted,
            "{}",
            gpu.describe()
        );
    }
}

#[test]
fn adapters_are_chosen_by_index_name_and_backend() {
    let list = pollster::block_on(enumerate());
    if list.is_empty() {
        assert!(!ci(), "CI=true but no adapter");
        return;
    }
    let open = |c: AdapterChoice| {
        pollster::block_on(Gpu::new(&GpuOptions {
            adapter: c,
            ..Default::default()
        }))
    };
    let last = list.len() - 1;
    assert_eq!(
        open(AdapterChoice::Index(last)).expect("index").info().name,
        list[last].info.name
    );
    let name = list[last].info.name.clone();
    assert_eq!(
        open(AdapterChoice::Name(name[..4].to_lowercase()))
            .expect("name")
            .info()
            .name[..4],
        name[..4]
    );
    let backend = list[0].info.backend;
    assert_eq!(
        open(AdapterChoice::Backend(backend))
            .expect("backend")
            .info()
            .backend,
        backend
    );
    // No match: the error lists what there is.
    let e = open(AdapterChoice::Name("no such adapter".into()))
        .err()
        .expect("no match")
        .to_string();
    assert!(
        e.contains("no adapter matches") && e.contains(&list[0].info.name),
        "{e}"
    );
    let e = open(AdapterChoice::Index(99))
        .err()
        .expect("bad index")
        .to_string();
    assert!(e.contains("index 99"), "{e}");
}

#[test]
fn a_caller_owned_device_runs_kernels() {
    // A desktop app opens its own device and hands it to kiln.
    let Some(adapter) = pollster::block_on(async {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        instance
            .enumerate_adapters(wgpu::Backends::all())
            .await
            .into_iter()
            .next()
    }) else {
        assert!(!ci(), "CI=true but no adapter");
        return;
    };
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
            .expect("device");
    let gpu = Gpu::from_device(device, queue);
    let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let got = pollster::block_on(kiln::bench::copy_once(&gpu, &data, false)).expect("copy");
    assert_eq!(got, data);
}

#[test]
fn a_device_with_webgpu_default_limits_and_no_features_runs_a_model() {
    // An app that opens its device with WebGPU's default limits and none of kiln's optional
    // features (say, its UI's device, opened before it knew of kiln) still runs models:
    // kiln plans within those limits and takes the paths without f16 or subgroups.
    use kiln::generate::GenerateOptions;
    let adapters = pollster::block_on(async {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        instance.enumerate_adapters(wgpu::Backends::all()).await
    });
    assert!(!ci() || !adapters.is_empty(), "CI=true but no adapter");
    let options = GenerateOptions {
        max_tokens: 10,
        sampling: kiln::Sampling::greedy(),
        ..Default::default()
    };
    let tokens = |gpu: &Gpu| {
        let model = common::tiny::text_model(gpu, 96);
        let mut s = pollster::block_on(model.session(64)).expect("session");
        let mut g =
            pollster::block_on(s.generate(&[5, 17, 60, 2], options.clone())).expect("generate");
        pollster::block_on(g.text()).expect("text");
        g.tokens().to_vec()
    };
    let mut ran = 0;
    for adapter in adapters {
        let info = adapter.get_info();
        // WebGPU's defaults, or the adapter's own where it offers less (GL).
        let limits = wgpu::Limits::default().or_worse_values_from(&adapter.limits());
        let desc = wgpu::DeviceDescriptor {
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).expect("a default device");
        let plain = Gpu::from_device(device, queue);
        assert!(plain.features().is_empty());
        let full = gpus()
            .iter()
            .find(|g| g.info().name == info.name && g.info().backend == info.backend)
            .expect("kiln opened the same adapter");
        assert_eq!(
            tokens(&plain),
            tokens(full),
            "default limits, no features, on {} ({:?})",
            info.name,
            info.backend
        );
        ran += 1;
    }
    assert!(!ci() || ran >= 3, "ran on {ran} adapters");
}
