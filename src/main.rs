//! The `kiln` command line. stdout carries what was asked for; progress and stats go to stderr.

use anyhow::{Context, Result, bail};
use kiln::load::{Checkpoint, LoadOptions, Progress};
use kiln::{AdapterChoice, Gpu, GpuOptions};
use std::io::Write;
use std::time::Instant;

const USAGE: &str = "\
kiln: run neural networks on any GPU through WebGPU

USAGE:
    kiln adapters                      list every adapter on every backend
    kiln inspect FILE                  validate a safetensors checkpoint and list its tensors
    kiln load FILE [--adapter A]       upload a checkpoint to a GPU, with progress
    kiln convert FILE.gguf OUT_DIR     import a GGUF model as an HF folder (F32 safetensors,
                                       config.json, tokenizer.json, tokenizer_config.json)
    kiln bench [--adapter A | --all] [--size small|large]
                                       kernel microbenchmarks and each adapter's roofline

FILE is a .safetensors file, a model.safetensors.index.json, or a folder holding either.
A (adapter) is `auto` (default), an index from `kiln adapters`, a backend
(vulkan, gl, metal, dx12) or part of an adapter's name.";

/// `--name value` options after the subcommand's positional arguments.
struct Args {
    positional: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>, flags: &[&str]) -> Result<Args> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut it = args.peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if flags.contains(&name) {
                    options.push((name.to_string(), None));
                } else {
                    let v = it
                        .next()
                        .with_context(|| format!("--{name} needs a value"))?;
                    options.push((name.to_string(), Some(v)));
                }
            } else {
                positional.push(a);
            }
        }
        Ok(Args {
            positional,
            options,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    fn check_known(&self, known: &[&str]) -> Result<()> {
        for (n, _) in &self.options {
            if !known.contains(&n.as_str()) {
                bail!("unknown option --{n}\n\n{USAGE}");
            }
        }
        Ok(())
    }

    fn adapter(&self) -> Result<AdapterChoice> {
        Ok(self.get("adapter").unwrap_or("auto").parse()?)
    }
}

fn open_gpu(choice: AdapterChoice) -> Result<Gpu> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions { adapter: choice }))?;
    eprintln!("adapter: {}", gpu.describe());
    Ok(gpu)
}

/// A one-line progress bar on stderr.
fn progress_bar(p: &Progress) {
    let frac = if p.bytes_total == 0 {
        1.0
    } else {
        p.bytes_done as f64 / p.bytes_total as f64
    };
    let width = 30;
    let filled = (frac * width as f64).round() as usize;
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {:>5.1}% {:>7.1}/{:.1} MB  {}/{} {:<40.40}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        frac * 100.0,
        p.bytes_done as f64 / 1e6,
        p.bytes_total as f64 / 1e6,
        p.tensors_done + 1,
        p.tensors_total,
        p.tensor
    );
    let _ = err.flush();
}

fn cmd_adapters() -> Result<()> {
    let list = pollster::block_on(kiln::gpu::enumerate());
    if list.is_empty() {
        bail!("no GPU adapter found; {}", kiln::gpu::INSTALL_HINT);
    }
    for a in list {
        println!("{a}");
    }
    Ok(())
}

fn cmd_inspect(args: &Args) -> Result<()> {
    let path = args.positional.first().context("inspect needs a FILE")?;
    let ckpt = Checkpoint::open(path)?;
    let mut total = 0;
    for t in ckpt.tensors() {
        println!("{:<60} {:<5?} {:?}", t.name, t.dtype, t.shape);
        total += t.bytes();
    }
    eprintln!(
        "{} tensors, {:.1} MB of data, header checked",
        ckpt.tensors().count(),
        total as f64 / 1e6
    );
    Ok(())
}

fn cmd_load(args: &Args) -> Result<()> {
    let path = args.positional.first().context("load needs a FILE")?;
    let ckpt = Checkpoint::open(path)?;
    let gpu = open_gpu(args.adapter()?)?;
    let t0 = Instant::now();
    let options = LoadOptions {
        progress: Some(Box::new(progress_bar)),
        ..Default::default()
    };
    let weights = pollster::block_on(ckpt.upload(&gpu, options))?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!();
    let mb = weights.bytes() as f64 / 1e6;
    eprintln!(
        "loaded {} tensors, {mb:.1} MB in {secs:.2} s ({:.0} MB/s)",
        weights.len(),
        mb / secs
    );
    let binding = gpu.max_binding();
    for name in weights.names() {
        let t = weights.get(name)?;
        if t.parts().len() > 1 {
            eprintln!(
                "{name}: {:.1} MB, split into {} parts (one binding holds {:.1} MB here)",
                t.bytes() as f64 / 1e6,
                t.parts().len(),
                binding as f64 / 1e6
            );
        }
    }
    for (name, why) in weights.skipped() {
        eprintln!("skipped {name}: {why}");
    }
    Ok(())
}

fn cmd_convert(args: &Args) -> Result<()> {
    let [src, out] = args.positional.as_slice() else {
        bail!("convert needs FILE.gguf and OUT_DIR");
    };
    let t0 = Instant::now();
    let mut report = |done: usize, total: usize, name: &str| {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\rconverting {done}/{total} {name:<50.50}");
        let _ = err.flush();
    };
    kiln::convert::convert(src.as_ref(), out.as_ref(), &mut report)?;
    eprintln!(
        "\rconverted {src} into {out} in {:.1} s{:40}",
        t0.elapsed().as_secs_f64(),
        ""
    );
    Ok(())
}

fn cmd_bench(args: &Args) -> Result<()> {
    let gpus: Vec<Gpu> = if args.flag("all") {
        pollster::block_on(Gpu::all())
            .into_iter()
            .collect::<Result<_, _>>()?
    } else {
        vec![open_gpu(args.adapter()?)?]
    };
    for gpu in &gpus {
        let size = match args.get("size") {
            None => kiln::bench::Size::for_gpu(gpu),
            Some("small") => kiln::bench::Size::Small,
            Some("large") => kiln::bench::Size::Large,
            Some(s) => bail!("--size must be small or large, not {s}"),
        };
        let report = pollster::block_on(kiln::bench::run(gpu, size))?;
        print!("{report}");
    }
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let result = (|| -> Result<()> {
        let args = Args::parse(argv, &["all"])?;
        match cmd.as_str() {
            "adapters" => cmd_adapters(),
            "inspect" => cmd_inspect(&args),
            "load" => {
                args.check_known(&["adapter"])?;
                cmd_load(&args)
            }
            "convert" => cmd_convert(&args),
            "bench" => {
                args.check_known(&["adapter", "all", "size"])?;
                cmd_bench(&args)
            }
            "" | "help" | "--help" | "-h" => {
                println!("{USAGE}");
                Ok(())
            }
            other => bail!("unknown command '{other}'\n\n{USAGE}"),
        }
    })();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
