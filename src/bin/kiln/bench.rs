//! `kiln bench`: rooflines and kernels per adapter, matmul shapes, or a model as
//! llama-bench runs one; a markdown table on stdout, and `--json`, `--csv`, `--compare`.

use crate::cli::{self, Bench};
use crate::text;
use anyhow::{Context, Result, bail};
use kiln::bench::record::Results;
use kiln::split::Gpus;
use kiln::{DType, Gpu};

pub fn cmd_bench(args: &Bench) -> Result<()> {
    // Read before anything runs, so a bad file fails at once.
    let old = match args.compare.as_deref() {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("--compare {path}"))?;
            Some(Results::parse(&text).with_context(|| format!("--compare {path}"))?)
        }
        None => None,
    };
    if let Some(path) = args.plot.as_deref() {
        let ext = std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str());
        if !matches!(ext, Some("svg" | "png")) {
            bail!("--plot {path}: the file must end in .svg or .png");
        }
    }
    if args.serve {
        return serve_bench(args);
    }
    let mut results = Results::new();
    if let Some(list) = args.from.as_deref() {
        // Earlier runs instead of a new one: their adapters side by side.
        for (i, path) in list.split(',').enumerate() {
            let text = std::fs::read_to_string(path).with_context(|| format!("--from {path}"))?;
            let r = Results::parse(&text).with_context(|| format!("--from {path}"))?;
            if i == 0 {
                results = r;
            } else {
                results.adapters.extend(r.adapters);
            }
        }
    } else if args.model.model.is_some() {
        model(args, &mut results)?;
    } else if let Some(shapes) = args.shapes.as_deref() {
        shapes_bench(args, shapes, &mut results)?;
    } else {
        kernels(args, &mut results)?;
    }
    print!("{}", kiln::bench::to_markdown(&results));
    if let Some(path) = args.json.as_deref() {
        std::fs::write(path, results.to_json()).with_context(|| format!("--json {path}"))?;
        eprintln!("wrote {path} ({})", kiln::bench::record::SCHEMA);
    }
    if let Some(path) = args.csv.as_deref() {
        std::fs::write(path, kiln::bench::to_csv(&results)?)
            .with_context(|| format!("--csv {path}"))?;
        eprintln!("wrote {path}");
    }
    if let Some(path) = args.plot.as_deref() {
        kiln::bench::plot(&results, std::path::Path::new(path))
            .with_context(|| format!("--plot {path}"))?;
        eprintln!("wrote {path}");
    }
    if let Some(old) = old {
        print!("{}", kiln::bench::compare(&old, &results));
    }
    Ok(())
}

/// The adapters a kernel benchmark runs on, each alone: `--all`, `--adapters A,B,...`, or
/// the one `--adapter` names.
fn adapters(args: &Bench) -> Result<Vec<Gpu>> {
    let p = &args.model.placement;
    if p.split.is_some() {
        bail!("--split places a model: give --model too");
    }
    if p.split_weights.is_some() {
        bail!("--split-weights places a model: give --model too");
    }
    if args.all || p.adapters.as_deref() == Some("all") {
        if p.memory_limit.is_some() {
            bail!("--memory-limit applies to adapters opened by name: use --adapter or --adapters");
        }
        return Ok(pollster::block_on(Gpu::all())
            .into_iter()
            .collect::<Result<_, _>>()?);
    }
    let Some(list) = p.adapters.as_deref() else {
        return Ok(vec![crate::open_gpu_limited(
            p.adapter.as_deref(),
            p.memory_limit,
        )?]);
    };
    let mut gpus = Vec::new();
    for choice in list.split(',') {
        let adapter = choice
            .parse()
            .with_context(|| format!("--adapters {list}"))?;
        let gpu = crate::open(adapter, p.memory_limit)
            .with_context(|| format!("--adapters {list}: adapter '{choice}'"))?;
        gpus.push(gpu);
    }
    Ok(gpus)
}

/// `--dtype D,...`: weight formats, or `default` when absent.
fn dtypes(args: &Bench, default: &[DType]) -> Result<Vec<DType>> {
    match args.model.dtype.as_deref() {
        None => Ok(default.to_vec()),
        Some(list) => list
            .split(',')
            .map(|d| DType::parse(d).with_context(|| format!("--dtype {d}: not a dtype")))
            .collect(),
    }
}

/// Rooflines, then kernels at the sweep's model shapes, on each adapter.
fn kernels(args: &Bench, results: &mut Results) -> Result<()> {
    for gpu in adapters(args)? {
        let size = match args.size {
            None => kiln::bench::Size::for_gpu(&gpu),
            Some(cli::Size::Small) => kiln::bench::Size::Small,
            Some(cli::Size::Large) => kiln::bench::Size::Large,
        };
        let mut sweep = kiln::bench::Sweep::default_for(size);
        sweep.dtypes = dtypes(args, &sweep.dtypes)?;
        if let Some(list) = args.sweep.as_deref() {
            sweep
                .set_models(list)
                .with_context(|| format!("--sweep {list}"))?;
        }
        let report = pollster::block_on(kiln::bench::run(&gpu, size, &sweep, &mut |m| {
            eprintln!("{m}")
        }))?;
        // What a split across adapters weighs this one by.
        if let Some(gbps) = kiln::bench::roofline(&report.figures) {
            kiln::tune::remember_bandwidth(&gpu, gbps)?;
        }
        results
            .adapters
            .push(kiln::bench::record::AdapterResults::new(&gpu, &report));
    }
    Ok(())
}

/// `--shapes MxKxN,...`: matmuls each submitted and waited for alone, every GEMM kernel.
fn shapes_bench(args: &Bench, shapes: &str, results: &mut Results) -> Result<()> {
    let shapes = kiln::bench::parse_shapes(shapes)?;
    let dtype = match dtypes(args, &[DType::F32])?[..] {
        [d] => d,
        _ => bail!("--shapes takes one --dtype"),
    };
    let runs = args.runs.unwrap_or(10);
    for gpu in adapters(args)? {
        pollster::block_on(kiln::tune::ensure(&gpu, &[dtype], &mut |m| {
            eprintln!("{m}")
        }))?;
        let report = pollster::block_on(kiln::bench::matmul_shapes(&gpu, &shapes, dtype, runs))?;
        results
            .adapters
            .push(kiln::bench::record::AdapterResults::new(&gpu, &report));
    }
    Ok(())
}

/// `kiln bench --model M`: prefill and decode tokens/s, as llama-bench measures them, with
/// decode's bandwidth against the adapter's roofline; with `--all`, on each adapter in turn.
fn model(args: &Bench, results: &mut Results) -> Result<()> {
    let bench = kiln::bench::ModelBench {
        prompt: args.prompt_tokens.unwrap_or(512),
        generate: args.tokens.unwrap_or(128),
        runs: args.runs.unwrap_or(5),
        profile: args.profile,
    };
    let p = &args.model.placement;
    let placements: Vec<Gpus> = if args.all {
        if p.adapters.is_some() || p.adapter.is_some() {
            bail!("--all runs the model on each adapter in turn: drop --adapter(s)");
        }
        pollster::block_on(Gpu::all())
            .into_iter()
            .map(|g| g.map(Gpus::one))
            .collect::<Result<_, _>>()?
    } else {
        vec![crate::open_gpus(p)?]
    };
    for gpus in placements {
        let loaded = text::load_on(&args.model, gpus)?;
        let context = match args.model.context {
            Some(_) => loaded.context,
            None => bench.prompt + bench.generate + 1,
        };
        let mut session = pollster::block_on(loaded.model.session(context))?;
        let report = pollster::block_on(kiln::bench::model(&mut session, &bench, &mut |m| {
            eprintln!("{m}")
        }))?;
        // Split-model details the table leaves out.
        eprint!("{report}");
        let dtype = args
            .model
            .dtype
            .as_deref()
            .and_then(DType::parse)
            .map(DType::name);
        results
            .add_adapter(loaded.model.gpu())
            .add_model(loaded.model.gpu(), &report, dtype);
    }
    Ok(())
}

/// `kiln bench --serve`: aggregate decode tokens/s and time to first token at 1, 2, 4 and 8
/// concurrent streams (`--streams`), through the continuous batcher `kiln serve` runs.
fn serve_bench(args: &Bench) -> Result<()> {
    let given = [
        ("json", args.json.is_some()),
        ("csv", args.csv.is_some()),
        ("plot", args.plot.is_some()),
        ("compare", args.compare.is_some()),
        ("from", args.from.is_some()),
        ("all", args.all),
        ("adapters", args.model.placement.adapters.is_some()),
        ("profile", args.profile),
    ];
    if let Some((o, _)) = given.iter().find(|(_, on)| *on) {
        bail!("--serve prints a table; --{o} is not supported with it yet");
    }
    let streams = args
        .streams
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .with_context(|| format!("--streams: '{s}'"))
        })
        .collect::<Result<Vec<_>>>()?;
    let bench = kiln::bench::ServeBench {
        prompt: args.prompt_tokens.unwrap_or(64),
        generate: args.tokens.unwrap_or(32),
        streams,
        runs: args.runs.unwrap_or(3),
        chunk: args.chunk,
    };
    let loaded = text::load(&args.model)?;
    let rows = pollster::block_on(kiln::bench::serve(&loaded.model, &bench, &mut |m| {
        eprintln!("{m}")
    }))?;
    let adapter = loaded.model.gpu().describe();
    print!(
        "{}",
        kiln::bench::serve_markdown(loaded.model.origin(), &adapter, &bench, &rows)
    );
    Ok(())
}
