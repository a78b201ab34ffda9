//! `kiln generate`, `kiln chat` and `kiln logits`.

use crate::cli::{self, ModelArgs, SamplingArgs};
use anyhow::{Context, Result, bail};
use kiln::exec::Profile;
use kiln::generate::{Finish, GenerateOptions, Message, Progress, Stats, TextModel};
use kiln::{Sampling, Session};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Chat's input: on a terminal a line editor with history (rustyline: arrows, Ctrl-R,
/// Ctrl-C at the prompt leaves); from a pipe, plain lines with the prompt on stderr, so that
/// stdout holds only replies.
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Lines(std::io::Stdin),
}

impl Input {
    fn new() -> Result<Input> {
        use std::io::IsTerminal;
        let stdin = std::io::stdin();
        if stdin.is_terminal() && std::io::stdout().is_terminal() {
            let editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
            return Ok(Input::Editor(Box::new(editor)));
        }
        Ok(Input::Lines(stdin))
    }

    /// The next line, or None at the end of input (or Ctrl-C / Ctrl-D at the prompt).
    fn next(&mut self) -> Result<Option<String>> {
        match self {
            Input::Editor(e) => match e.readline("> ") {
                Ok(line) => {
                    let _ = e.add_history_entry(line.as_str());
                    Ok(Some(line))
                }
                Err(
                    rustyline::error::ReadlineError::Interrupted
                    | rustyline::error::ReadlineError::Eof,
                ) => Ok(None),
                Err(err) => Err(err).context("reading the prompt"),
            },
            Input::Lines(stdin) => {
                eprint!("> ");
                let mut line = String::new();
                if stdin.lock().read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }
}

/// Ctrl-C: the first stops the generation in flight at its next token (its text so far and
/// its stats still print); with nothing in flight, or pressed again before the generation
/// stops, it exits (status 130). At a chat prompt on a terminal the line editor takes it,
/// and chat ends (status 0).
struct Interrupt {
    cancel: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
}

impl Interrupt {
    fn install() -> Result<Interrupt> {
        let cancel = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let (c, b) = (cancel.clone(), busy.clone());
        ctrlc::set_handler(move || {
            if !b.load(Ordering::SeqCst) || c.swap(true, Ordering::SeqCst) {
                eprintln!();
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C handler")?;
        Ok(Interrupt { cancel, busy })
    }

    /// A generation starts: Ctrl-C now cancels it.
    fn start(&self, opts: &mut GenerateOptions) {
        self.cancel.store(false, Ordering::SeqCst);
        opts.cancel = Some(self.cancel.clone());
        self.busy.store(true, Ordering::SeqCst);
    }

    fn end(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }
}

/// Where a model comes from.
enum Source {
    /// An HF folder or a `.gguf` file.
    Path(PathBuf),
    /// `synthetic:NAME`: a known shape with random weights.
    Synthetic(String),
}

/// The model to load: `--model DIR` (an HF folder), `--model FILE.gguf` (loaded directly,
/// blocks and all), `--model synthetic:NAME`, or the default model's GGUF (fetched once into
/// the cache).
fn resolve_model(args: &ModelArgs) -> Result<Source> {
    if let Some(name) = args
        .model
        .as_deref()
        .and_then(|m| m.strip_prefix("synthetic:"))
    {
        // Checked here, so a bad name fails before the GPU opens.
        kiln::models::synthetic::Preset::find(name)?;
        return Ok(Source::Synthetic(name.to_string()));
    }
    resolve_path(args).map(Source::Path)
}

fn resolve_path(args: &ModelArgs) -> Result<PathBuf> {
    let cache = kiln::fetch::cache_dir();
    let log = &mut |m: &str| eprintln!("{m}");
    match args.model.as_deref() {
        None => Ok(kiln::fetch::ensure(
            &kiln::fetch::SMOLLM2_135M,
            &cache,
            log,
        )?),
        Some(m) if m.ends_with(".gguf") => {
            let src = PathBuf::from(m);
            std::fs::metadata(&src).with_context(|| format!("--model {m}"))?;
            Ok(src)
        }
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.join("config.json").is_file() {
                bail!(
                    "--model {}: no config.json there; pass an HF model folder or a .gguf file",
                    dir.display()
                );
            }
            Ok(dir)
        }
    }
}

pub struct Loaded {
    pub model: std::sync::Arc<TextModel>,
    pub context: usize,
    pub load_secs: f64,
}

/// Resolve, open the GPU, upload with a progress bar, report on stderr.
pub fn load(args: &ModelArgs) -> Result<Loaded> {
    resolve_model(args)?;
    load_on(args, crate::open_gpus(&args.placement)?)
}

/// [`load`] onto `gpus`.
pub fn load_on(args: &ModelArgs, gpus: kiln::split::Gpus) -> Result<Loaded> {
    let source = resolve_model(args)?;
    let t0 = Instant::now();
    let mut options = crate::progress::loading();
    if let Some(d) = args.dtype.as_deref() {
        let dtype = kiln::DType::parse(d).with_context(|| {
            format!("--dtype {d}: not a dtype (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)")
        })?;
        options.dtype = Some(dtype);
    }
    let model = match &source {
        Source::Path(dir) => pollster::block_on(TextModel::load_on(&gpus, dir, options))?,
        Source::Synthetic(name) => {
            pollster::block_on(TextModel::synthetic_on(&gpus, name, options))?
        }
    };
    let load_secs = t0.elapsed().as_secs_f64();
    // GEMV tuned for each adapter and the model's weight dtypes: from the cache, or timed
    // now (once).
    let t1 = Instant::now();
    let mut tuned_now = false;
    for gpu in gpus.gpus() {
        pollster::block_on(kiln::tune::ensure(gpu, model.matrix_dtypes(), &mut |m| {
            tuned_now = true;
            eprintln!("{m}")
        }))?;
    }
    if tuned_now {
        eprintln!("tuned in {:.1} s", t1.elapsed().as_secs_f64());
    }
    let d = model.decoder();
    let context = args.context.unwrap_or(d.max_positions().min(2048));
    eprintln!(
        "model: {} ({}, {} layers, {:.1} MB of weights), loaded in {load_secs:.2} s",
        model.origin(),
        d.architecture(),
        d.layers(),
        model.weight_bytes() as f64 / 1e6
    );
    if let [_, _, ..] = model.stages() {
        for (i, s) in model.stages().iter().enumerate() {
            eprintln!(
                "  stage {i}: {} on {}, {:.1} MB",
                s.decoder.part(),
                s.gpu.describe(),
                s.decoder.weight_bytes() as f64 / 1e6
            );
        }
    }
    Ok(Loaded {
        model: std::sync::Arc::new(model),
        context,
        load_secs,
    })
}

fn sampling(args: &SamplingArgs) -> Result<Sampling> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let s = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repeat_penalty,
        seed,
    };
    s.validate()?;
    Ok(s)
}

/// Prompt tokens per prefill step when a prompt is long: progress shows, and Ctrl-C stops,
/// between steps. CPU adapters prefill about 100 tokens a second; a GPU many thousands, so
/// there only long prompts are cut (each cut costs a little speed).
fn prefill_chunk(model: &TextModel) -> usize {
    let cpu = model
        .stages()
        .first()
        .is_some_and(|s| s.gpu.info().device_type == wgpu::DeviceType::Cpu);
    if cpu { 128 } else { 2048 }
}

/// `opts` with a long prompt's prefill in chunks of `chunk` tokens under a progress bar
/// (shown only when there is more than one chunk).
fn with_prefill_bar(opts: &GenerateOptions, chunk: usize) -> GenerateOptions {
    let bar: Mutex<Option<crate::progress::Bar>> = Mutex::new(None);
    let on_prefill = Progress::new(move |done, total| {
        let Ok(mut bar) = bar.lock() else { return };
        if bar.is_none() && done < total {
            *bar = Some(crate::progress::Bar::counting("prefill", "tokens"));
        }
        if let Some(b) = bar.as_mut() {
            b.update(done as u64, total as u64, "");
        }
    });
    GenerateOptions {
        prefill_chunk: Some(chunk),
        on_prefill: Some(on_prefill),
        ..opts.clone()
    }
}

/// Generation options; `max_tokens` unless --max-tokens says otherwise.
fn options(args: &SamplingArgs, max_tokens: usize) -> Result<GenerateOptions> {
    let max_tokens = args.max_tokens.unwrap_or(max_tokens);
    if max_tokens == 0 {
        bail!("--max-tokens 0: a reply holds at least one token");
    }
    Ok(GenerateOptions {
        max_tokens,
        sampling: sampling(args)?,
        stop: args.stop.clone(),
        ..GenerateOptions::default()
    })
}

fn report(
    stats: &Stats,
    finish: Option<Finish>,
    load_secs: Option<f64>,
    gpu_bytes: u64,
    weight_bytes: u64,
    sampling: &Sampling,
) {
    let mut parts = Vec::new();
    if !sampling.is_greedy() {
        parts.push(format!("seed {}", sampling.seed));
    }
    if let Some(l) = load_secs {
        parts.push(format!("load {l:.2} s"));
    }
    parts.push(format!(
        "first token {:.0} ms",
        stats.first_token_secs * 1e3
    ));
    parts.push(format!(
        "prefill {} tokens at {:.1} tok/s",
        stats.prompt_tokens - stats.reused_tokens,
        stats.prefill_tokens_per_sec()
    ));
    parts.push(format!(
        "decode {} tokens at {:.1} tok/s",
        stats.generated_tokens,
        stats.decode_tokens_per_sec()
    ));
    parts.push(format!(
        "GPU memory {:.1} MB (weights {:.1} MB)",
        (gpu_bytes + weight_bytes) as f64 / 1e6,
        weight_bytes as f64 / 1e6
    ));
    if let Some(f) = finish {
        parts.push(format!("stopped: {f:?}"));
    }
    eprintln!("{}", parts.join(", "));
}

/// Stream a generation's text to stdout as it comes.
fn stream_out(g: &mut kiln::generate::Generation) -> Result<String> {
    let mut all = String::new();
    let mut out = std::io::stdout().lock();
    while let Some(delta) = pollster::block_on(g.next()) {
        let delta = delta?;
        out.write_all(delta.as_bytes())?;
        out.flush()?;
        all.push_str(&delta);
    }
    Ok(all)
}

/// The text to encode for `prompt`: itself, or rendered with the chat template.
fn prompt_text(args: &cli::Generate, model: &TextModel, prompt: &str) -> Result<String> {
    if args.chat {
        let mut messages = Vec::new();
        if let Some(sys) = &args.system {
            messages.push(Message::new("system", sys));
        }
        messages.push(Message::new("user", prompt));
        Ok(model.render_chat(&messages)?)
    } else {
        Ok(prompt.to_string())
    }
}

pub fn generate(args: &cli::Generate) -> Result<()> {
    let prompts = &args.prompt;
    let mut opts = options(&args.sampling, 256)?;
    let loaded = load(&args.model)?;
    let interrupt = Interrupt::install()?;
    interrupt.start(&mut opts);
    if prompts.len() > 1 {
        generate_batch(args, &loaded, prompts, opts)?;
        if interrupt.cancel.load(Ordering::SeqCst) {
            std::process::exit(130);
        }
        return Ok(());
    }
    let model = &loaded.model;
    let ids = model.encode(&prompt_text(args, model, &prompts[0])?)?;
    let mut session = pollster::block_on(model.session(loaded.context))?;
    session.set_pipelined(!args.no_pipeline);
    let profile = profile_into(args.profile, &mut session)?;
    let sampling = opts.sampling;
    let mut g =
        pollster::block_on(session.generate(&ids, with_prefill_bar(&opts, prefill_chunk(model))))?;
    stream_out(&mut g)?;
    eprintln!();
    let (stats, finish) = (g.stats().clone(), g.finish());
    drop(g);
    report(
        &stats,
        finish,
        Some(loaded.load_secs),
        session.gpu_bytes(),
        model.weight_bytes(),
        &sampling,
    );
    print_profile(profile.as_deref());
    if finish == Some(Finish::Cancelled) {
        // Interrupted: the text is partial, as the status says (128 + SIGINT).
        std::process::exit(130);
    }
    Ok(())
}

/// With --profile, time every kernel of the session's steps on the GPU.
fn profile_into(on: bool, session: &mut Session) -> Result<Option<Arc<Profile>>> {
    if !on {
        return Ok(None);
    }
    let profile = Profile::new();
    pollster::block_on(session.set_profile(Some(profile.clone())))?;
    Ok(Some(profile))
}

fn print_profile(profile: Option<&Profile>) {
    if let Some(p) = profile {
        eprint!("GPU time per kernel (each dispatch timed in a pass of its own):\n{p}");
    }
}

/// Several prompts as one batch: one JSON line per prompt on stdout, in order, each as soon
/// as it and those before it are done.
fn generate_batch(
    args: &cli::Generate,
    loaded: &Loaded,
    prompts: &[String],
    opts: GenerateOptions,
) -> Result<()> {
    let model = &loaded.model;
    let mut ids = Vec::new();
    for p in prompts {
        ids.push(model.encode(&prompt_text(args, model, p)?)?);
    }
    let mut session = pollster::block_on(model.batch_session(loaded.context, prompts.len()))?;
    session.set_pipelined(!args.no_pipeline);
    let profile = profile_into(args.profile, &mut session)?;
    let t0 = Instant::now();
    let mut g = pollster::block_on(session.generate_batch(&ids, opts))?;
    let mut texts = vec![String::new(); prompts.len()];
    let mut printed = 0;
    let mut out = std::io::stdout().lock();
    loop {
        let event = pollster::block_on(g.next());
        if let Some(e) = event.as_ref() {
            let (i, text) = e.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
            texts[*i].push_str(text);
        }
        while printed < texts.len() && (event.is_none() || g.done(printed)) {
            let line = serde_json::json!({"index": printed, "text": texts[printed]});
            writeln!(out, "{line}")?;
            out.flush()?;
            printed += 1;
        }
        if event.is_none() {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let generated: usize = (0..texts.len()).map(|i| g.stats(i).generated_tokens).sum();
    let first = (0..texts.len())
        .map(|i| g.stats(i).first_token_secs)
        .fold(0.0, f64::max);
    drop(g);
    eprintln!(
        "{} prompts as one batch: first tokens after {:.0} ms, {generated} tokens in {secs:.2} s \
         ({:.1} tok/s in all), GPU memory {:.1} MB",
        texts.len(),
        first * 1e3,
        generated as f64 / secs,
        (session.gpu_bytes() + model.weight_bytes()) as f64 / 1e6
    );
    print_profile(profile.as_deref());
    Ok(())
}

pub fn chat(args: &cli::Chat) -> Result<()> {
    // A reply runs to the end of the model's turn (or of the context) unless capped.
    let opts = options(&args.sampling, usize::MAX)?;
    let loaded = load(&args.model)?;
    let interrupt = Interrupt::install()?;
    let model = &loaded.model;
    if !model.has_chat_template() {
        bail!("this model has no chat template (tokenizer_config.json); use `kiln generate`");
    }
    let mut session = pollster::block_on(model.session(loaded.context))?;
    let mut messages = Vec::new();
    if let Some(sys) = &args.system {
        messages.push(Message::new("system", sys));
    }
    eprintln!("chat with the model; /help lists commands, /reset starts over, /exit leaves");
    let mut input = Input::new()?;
    while let Some(line) = input.next()? {
        let line = line.as_str();
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages.retain(|m: &Message| m.role == "system");
                session.reset();
                eprintln!("(a new conversation: the history is forgotten)");
                continue;
            }
            "/help" | "/?" => {
                eprintln!("/reset starts a new conversation; /exit (or end of input) leaves");
                continue;
            }
            cmd if cmd.starts_with('/') && !cmd.contains(' ') => {
                eprintln!(
                    "unknown command {cmd}: /help lists them (a message cannot start with /)"
                );
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", line));
        let ids = model.encode(&model.render_chat(&messages)?)?;
        let mut opts = opts.clone();
        interrupt.start(&mut opts);
        let mut g = match pollster::block_on(
            session.generate(&ids, with_prefill_bar(&opts, prefill_chunk(model))),
        ) {
            Ok(g) => g,
            Err(e) => {
                interrupt.end();
                eprintln!("error: {e}");
                messages.pop();
                continue;
            }
        };
        let reply = stream_out(&mut g);
        interrupt.end();
        let reply = reply?;
        println!();
        let (stats, finish) = (g.stats().clone(), g.finish());
        drop(g);
        report(
            &stats,
            finish,
            None,
            session.gpu_bytes(),
            model.weight_bytes(),
            &opts.sampling,
        );
        messages.push(Message::new("assistant", &reply));
    }
    Ok(())
}

pub fn logits(args: &cli::Logits) -> Result<()> {
    let k = args.top_k;
    if k == 0 {
        bail!("--top-k 0: list at least one token");
    }
    let loaded = load(&args.model)?;
    let model = &loaded.model;
    let ids = model.encode(&args.prompt)?;
    let mut session = pollster::block_on(model.session(loaded.context))?;
    let rows = pollster::block_on(session.logits(&ids, args.all_positions))?;
    let positions: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top: Vec<serde_json::Value> = order
                .iter()
                .take(k)
                .map(|&i| {
                    let text = model.decode(&[i as u32]).unwrap_or_default();
                    serde_json::json!({"id": i, "logit": row[i], "text": text})
                })
                .collect();
            serde_json::json!({ "top": top })
        })
        .collect();
    let out = serde_json::json!({ "input_ids": ids, "positions": positions });
    println!("{out}");
    Ok(())
}

/// `kiln perplexity`: llama.cpp's perplexity of the model on a text file.
pub fn perplexity(args: &cli::Perplexity) -> Result<()> {
    let file = &args.file;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("--file {}", file.display()))?;
    let context = args.model.context.unwrap_or(512);
    let loaded = load(&args.model)?;
    let model = &loaded.model;
    let ids = model.encode(&text)?;
    let windows = ids.len() / context.max(1);
    eprintln!(
        "{} tokens: {windows} windows of {context}, the second half of each scored",
        ids.len()
    );
    let mut bar = crate::progress::Bar::counting("perplexity", "windows");
    let t0 = Instant::now();
    let p = pollster::block_on(kiln::generate::perplexity::perplexity(
        model,
        &ids,
        context,
        |done, total| bar.update(done as u64, total as u64, ""),
    ))?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "scored {} tokens in {secs:.1} s ({:.1} tok/s through the model)",
        p.scored,
        (p.windows * context) as f64 / secs
    );
    println!(
        "perplexity {:.4} +/- {:.4} ({} windows of {context})",
        p.value, p.stderr, p.windows
    );
    Ok(())
}
