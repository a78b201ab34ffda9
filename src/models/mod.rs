//! Model files: each builds a graph that reads like the model's equations, behind the
//! [`Decoder`] (or [`Encoder`]) trait that the host loop, the CLI and the browser bindings
//! are written against.

pub mod config;
pub mod llama;
pub mod synthetic;

pub use config::Config;
pub use llama::Llama;

use crate::error::Result;
use crate::graph::{Graph, Value};
use crate::load::Weights;

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
    pub slots: usize,
    pub capacity: usize,
}

/// A model's special tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Special {
    pub bos: Option<u32>,
    /// Tokens that end a generation.
    pub eos: Vec<u32>,
}

/// A causal language model: token ids in, logits out, with KV caches as graph states.
pub trait Decoder: wgpu::WasmNotSendSync {
    /// The architecture, as config.json names it ("llama", "qwen2", ...).
    fn architecture(&self) -> &str;
    fn layers(&self) -> usize;
    /// Rows of the logits.
    fn vocab(&self) -> usize;
    /// The longest context the model supports.
    fn max_positions(&self) -> usize;
    fn special(&self) -> Special;
    /// Bytes of weights on the GPU.
    fn weight_bytes(&self) -> u64;
    /// Bytes one sequence's decode step reads at `position`: every weight matrix it
    /// multiplies by, one embedding row, and the KV cache so far. Decode's bandwidth is
    /// this over the step's time.
    fn decode_bytes(&self, position: usize) -> u64;
    /// One step over ids (S, T) from each sequence's position, reading and extending the
    /// KV caches of `cache`; returns logits (S, T or 1, V).
    fn forward(&self, g: &Graph, ids: Value, cache: Cache, logits: Logits) -> Value;
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

/// The decoder that `config.json` describes, its weights taken from `weights`.
pub fn decoder(origin: &str, config_json: &str, weights: &Weights) -> Result<Box<dyn Decoder>> {
    let config = Config::from_json(origin, config_json)?;
    Ok(Box::new(Llama::new(config, weights)?))
}
