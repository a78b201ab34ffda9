//! Kernel microbenchmark: per adapter, its rooflines and the kernels at real models' shapes
//! against them. `cargo bench --bench kernels [-- --size small|large]`. The same figures
//! come from `kiln bench --all`, which also writes JSON, CSV and comparisons.

fn main() {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    let size = args
        .iter()
        .position(|a| a == "--size")
        .and_then(|i| args.get(i + 1))
        .map(|s| match s.as_str() {
            "large" => kiln::bench::Size::Large,
            _ => kiln::bench::Size::Small,
        });
    let gpus = pollster::block_on(kiln::Gpu::all());
    if gpus.is_empty() {
        eprintln!("no GPU adapter found; {}", kiln::gpu::INSTALL_HINT);
        std::process::exit(1);
    }
    for gpu in gpus {
        match gpu {
            Ok(gpu) => {
                let size = size.unwrap_or_else(|| kiln::bench::Size::for_gpu(&gpu));
                let sweep = kiln::bench::Sweep::default_for(size);
                let log = &mut |m: &str| eprintln!("{m}");
                match pollster::block_on(kiln::bench::run(&gpu, size, &sweep, log)) {
                    Ok(report) => {
                        let mut results = kiln::bench::record::Results::new();
                        let entry = kiln::bench::record::AdapterResults::new(&gpu, &report);
                        results.adapters.push(entry);
                        print!("{}", kiln::bench::to_markdown(&results));
                    }
                    Err(e) => eprintln!("{}: {e}", gpu.describe()),
                }
            }
            Err(e) => eprintln!("skipping an adapter that failed to open: {e}"),
        }
    }
}
