//! Model files: each builds a graph that reads like the model's equations, behind the
//! [`Decoder`] (or [`Encoder`]) trait that the host loop, the CLI and the browser bindings
//! are written against.

pub mod bert;
pub mod config;
pub mod llama;
pub mod synthetic;
pub mod whisper;

pub use config::Config;
pub use llama::Llama;

use crate::error::{Error, Result};
use crate::graph::{Graph, Value};
use crate::load::Weights;
use std::ops::Range;

/// Which positions get logits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only each sequence's last token (generation).
    Last,
    /// Every position of the step.
    All,
}

/// The KV caches a decoder step reads and writes: `slots` sequences of `capacity`
/// positions each.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    /// Sequences cached at once, one KV-cache slot each.
    pub slots: usize,
    /// Positions cached per sequence.
    pub capacity: usize,
}

/// The layers of a decoder that one adapter holds, when a model is split by layers: the
/// embedding comes with layer 0, the final norm and the head with the last layer. (Split
/// tensor-parallel, every part holds every layer, and the head only the last part.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The layers held here, within `0..total`.
    pub layers: Range<usize>,
    /// Layers in the whole model.
    pub total: usize,
    /// Whether the final norm and the head are here.
    head: bool,
}

impl Span {
    /// Every layer: the model on one adapter.
    pub fn whole(total: usize) -> Span {
        Span {
            layers: 0..total,
            total,
            head: true,
        }
    }

    /// `layers` of a model of `total`; errors unless it is a non-empty range within it.
    pub fn new(layers: Range<usize>, total: usize) -> Result<Span> {
        if layers.is_empty() || layers.end > total {
            return Err(Error::Invalid(format!(
                "layers {layers:?} are not a non-empty range of the model's {total}"
            )));
        }
        let head = layers.end == total;
        Ok(Span {
            layers,
            total,
            head,
        })
    }

    /// Whether the span starts with the embedding (takes token ids).
    pub fn embeds(&self) -> bool {
        self.layers.start == 0
    }

    /// Whether the span ends with the head (gives logits).
    pub fn heads(&self) -> bool {
        self.head
    }
}

/// What one adapter owns in tensor-parallel mode (see [`crate::split`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// KV heads, and with them their KV cache and rows of k and v.
    pub kv_heads: Range<usize>,
    /// Query heads (the KV heads' groups): rows of q, columns of `o_proj`.
    pub heads: Range<usize>,
    /// MLP hidden units: rows of `gate` and `up`, columns of `down`.
    pub ffn: Range<usize>,
    /// Vocabulary: rows of the embedding and of `lm_head` (the adapter's logits, from
    /// which it proposes sampling candidates).
    pub vocab: Range<usize>,
}

/// A model's special tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Special {
    /// The beginning-of-sequence token, if the model has one.
    pub bos: Option<u32>,
    /// Tokens that end a generation.
    pub eos: Vec<u32>,
}

/// A causal language model: token ids in, logits out, with KV caches as graph states.
pub trait Decoder: wgpu::WasmNotSendSync {
    /// The architecture, as config.json names it ("llama", "qwen2", ...).
    fn architecture(&self) -> &str;
    /// Decoder layers in the whole model.
    fn layers(&self) -> usize;
    /// Rows of the logits.
    fn vocab(&self) -> usize;
    /// The longest context the model supports.
    fn max_positions(&self) -> usize;
    /// Its beginning- and end-of-sequence tokens.
    fn special(&self) -> Special;
    /// Bytes of weights on the GPU.
    fn weight_bytes(&self) -> u64;
    /// Bytes one sequence's decode step reads at `position`: every weight matrix it
    /// multiplies by, one embedding row, and the KV cache so far. Decode's bandwidth is
    /// this over the step's time.
    fn decode_bytes(&self, position: usize) -> u64;
    /// The layers this instance holds (all of them unless the model is split by layers).
    fn span(&self) -> Span;
    /// What of the model this instance holds: all of it, a span of layers, or a
    /// tensor-parallel shard.
    fn part(&self) -> Part;
    /// Width of the hidden state, what crosses from one span to the next.
    fn hidden(&self) -> usize;
    /// One step from each sequence's position, reading and extending the KV caches of
    /// `cache`. `input` is the token ids (S, T) where the span embeds, else the hidden state
    /// (S, T, hidden) of the span before; returns the logits (S, T or 1, V) where the span
    /// heads (a tensor-parallel shard's: split by columns, [`crate::graph::Layout`]), else
    /// its hidden state (S, T, hidden).
    fn forward(&self, g: &Graph, input: Value, cache: Cache, logits: Logits) -> Value;
}

/// A non-causal model without a KV cache: embedding models, speech encoders.
pub trait Encoder: wgpu::WasmNotSendSync {
    /// The longest input the model supports.
    fn max_positions(&self) -> usize;
    /// Width of each output row.
    fn width(&self) -> usize;
    /// One pass over ids (S, T), padding masked by each sequence's length; returns
    /// (S, T, width) hidden states or (S, 1, width) pooled embeddings.
    fn forward(&self, g: &Graph, ids: Value) -> Value;
}

/// Which part of a model one adapter holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// All of it.
    Whole,
    /// Split by layers: these.
    Layers(Range<usize>),
    /// Split tensor-parallel: this share of the heads, hidden units and vocabulary.
    Shard(Shard),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Part::Whole => write!(f, "every layer"),
            Part::Layers(r) => write!(f, "layers {r:?}"),
            Part::Shard(shard) => write!(
                f,
                "KV heads {:?}, hidden units {:?}, vocabulary {:?}",
                shard.kv_heads, shard.ffn, shard.vocab
            ),
        }
    }
}

/// What a model folder's model does, by its `config.json`: which of kiln's front doors
/// (`kiln generate`, `kiln embed`, `kiln transcribe`; the page's `load()`) runs it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// A decoder that generates text (the Llama family).
    Generate,
    /// A BERT encoder that embeds sentences.
    Embed,
    /// Whisper: speech to text.
    Transcribe,
}

impl Task {
    /// The task of the model `config_json` describes; any model type kiln does not name
    /// otherwise is taken for a text generator, whose own config parsing then says what
    /// it lacks.
    pub fn of(config_json: &str) -> Task {
        let model_type = serde_json::from_str::<serde_json::Value>(config_json)
            .ok()
            .and_then(|v| v["model_type"].as_str().map(str::to_string));
        match model_type.as_deref() {
            Some("bert") => Task::Embed,
            Some("whisper") => Task::Transcribe,
            _ => Task::Generate,
        }
    }

    /// The task's name, as the CLI's subcommand says it ("generate", "embed", "transcribe").
    pub fn name(self) -> &'static str {
        match self {
            Task::Generate => "generate",
            Task::Embed => "embed",
            Task::Transcribe => "transcribe",
        }
    }
}

/// The decoder that `config.json` describes, or the `part` of it one adapter holds, its
/// weights taken from `weights`.
pub fn decoder(
    origin: &str,
    config_json: &str,
    weights: &Weights,
    part: Part,
) -> Result<Box<dyn Decoder>> {
    if Task::of(config_json) == Task::Transcribe {
        let config = whisper::WhisperConfig::from_json(origin, config_json)?;
        return match part {
            Part::Whole => Ok(Box::new(whisper::WhisperDecoder::new(config, weights)?)),
            other => Err(Error::Invalid(format!(
                "Whisper runs on one adapter; it cannot be split ({other})"
            ))),
        };
    }
    let config = Config::from_json(origin, config_json)?;
    let whole = Span::whole(config.layers);
    Ok(Box::new(match part {
        Part::Whole => Llama::span(config, weights, whole)?,
        Part::Layers(r) => {
            let span = Span::new(r, config.layers)?;
            Llama::span(config, weights, span)?
        }
        Part::Shard(shard) => Llama::shard(config, weights, shard)?,
    }))
}
