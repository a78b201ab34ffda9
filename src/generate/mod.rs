//! Text generation: a loaded decoder with its tokenizer and chat template ([`TextModel`]),
//! the KV caches and programs of one or more conversations ([`Session`]), and the token
//! streams ([`Generation`], [`BatchGeneration`]). Everything here is written against the
//! [`Decoder`] trait; no model family is named.

mod active;
pub(crate) use active::now;
mod batcher;
mod chain;
pub mod chat;
mod generation;
mod load;
pub mod perplexity;
mod run;
mod session;
pub mod stream;

pub use crate::exec::Pacer;
pub use batcher::{Batcher, Request, Sink, StepReport, Update};
pub use chat::{ChatTemplate, Message};
pub use generation::{BatchGeneration, Finish, GenerateOptions, Generation, Progress, Stats};
pub use session::Session;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::Weights;
use crate::models::Decoder;
use crate::split::{Gpus, Split};
use load::{Source, place};
use tokenizers::Tokenizer;

/// One adapter's part of a model: the whole decoder, or its span of layers when the model is
/// split by layers across several adapters.
pub struct Stage {
    /// The adapter this stage runs on.
    pub gpu: Gpu,
    /// The decoder, or the span of its layers, whose weights are on that adapter.
    pub decoder: Box<dyn Decoder>,
}

/// A decoder on one GPU or several, with its tokenizer and chat template.
pub struct TextModel {
    /// One per adapter, in layer order.
    stages: Vec<Stage>,
    /// How the model is divided across them.
    split: Split,
    /// Where it came from (a folder, a file, `synthetic:NAME`).
    origin: String,
    bos: Option<u32>,
    tokenizer: Tokenizer,
    chat: Option<ChatTemplate>,
    add_bos: bool,
    /// Tokens that end generation.
    pub eos: Vec<u32>,
    matrix_dtypes: Vec<crate::DType>,
}

impl TextModel {
    /// Assemble a model from the contents of its files and its uploaded weights.
    pub fn from_parts(
        gpu: &Gpu,
        origin: &str,
        config_json: &str,
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&str>,
        weights: &Weights,
    ) -> Result<TextModel> {
        let decoder = crate::models::decoder(
            &format!("{origin}/config.json"),
            config_json,
            weights,
            crate::models::Part::Whole,
        )?;
        let stage = Stage {
            gpu: gpu.clone(),
            decoder,
        };
        Self::assemble(
            origin,
            tokenizer_json,
            tokenizer_config_json,
            vec![stage],
            Split::Layers,
            weights.matrix_dtypes(),
        )
    }

    /// A model from its stages (one per adapter, in layer order) and its texts.
    fn assemble(
        origin: &str,
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&str>,
        stages: Vec<Stage>,
        split: Split,
        matrix_dtypes: Vec<crate::DType>,
    ) -> Result<TextModel> {
        let model = &stages
            .first()
            .ok_or_else(|| Error::Invalid("a model needs at least one stage".into()))?
            .decoder;
        let tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(|e| {
            Error::load(
                format!("{origin}/tokenizer.json"),
                format!("not a tokenizer: {e}"),
            )
        })?;
        let tc: serde_json::Value = match tokenizer_config_json {
            Some(t) => serde_json::from_str(t).map_err(|e| {
                Error::load(
                    format!("{origin}/tokenizer_config.json"),
                    format!("not JSON: {e}"),
                )
            })?,
            None => serde_json::Value::Null,
        };
        let chat =
            ChatTemplate::from_tokenizer_config(&format!("{origin}/tokenizer_config.json"), &tc)?;
        let special = model.special();
        let mut eos = special.eos;
        if let Some(id) = tc
            .get("eos_token")
            .and_then(|t| t.as_str())
            .and_then(|t| tokenizer.token_to_id(t))
            && !eos.contains(&id)
        {
            eos.push(id);
        }
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > model.vocab() {
            return Err(Error::load(
                origin,
                format!(
                    "the tokenizer has {vocab} tokens but the model's vocabulary is {}",
                    model.vocab()
                ),
            ));
        }
        let add_bos = tc
            .get("add_bos_token")
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
        Ok(TextModel {
            stages,
            split,
            origin: origin.to_string(),
            bos: special.bos,
            tokenizer,
            chat,
            add_bos,
            eos,
            matrix_dtypes,
        })
    }

    /// Load an HF model folder (`config.json`, safetensors, `tokenizer.json`, and
    /// `tokenizer_config.json` where present), or a `.gguf` file, whose weights stay in their
    /// stored format on the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn load(
        gpu: &Gpu,
        path: &std::path::Path,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<TextModel> {
        Self::load_on(&Gpus::one(gpu.clone()), path, options).await
    }

    /// Load a model folder or `.gguf` file (as [`TextModel::load`]) onto a group of adapters,
    /// each holding its share of the layers.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn load_on(
        gpus: &Gpus,
        path: &std::path::Path,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<TextModel> {
        let source = if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            Source::Gguf(path)
        } else {
            Source::Folder(path)
        };
        place(gpus, source, options).await
    }

    /// A model of a known shape with random weights (`NAME` from
    /// [`crate::models::synthetic::PRESETS`]), for benchmarks where no model file is at hand.
    /// Its matrices are stored in `options.dtype` (F16 by default).
    pub async fn synthetic(
        gpu: &Gpu,
        name: &str,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<TextModel> {
        Self::synthetic_on(&Gpus::one(gpu.clone()), name, options).await
    }

    /// A synthetic model (as [`TextModel::synthetic`]) on a group of adapters.
    pub async fn synthetic_on(
        gpus: &Gpus,
        name: &str,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<TextModel> {
        let preset = crate::models::synthetic::Preset::find(name)?;
        place(gpus, Source::Synthetic(preset), options).await
    }

    /// The GPU of the first stage (the only one unless the model is split across adapters).
    pub fn gpu(&self) -> &Gpu {
        &self.stages[0].gpu
    }

    /// Each adapter's part of the model, in layer order (split tensor-parallel: in the
    /// order of their vocabulary shares and the host's sums; the last samples).
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// How the model is divided across its adapters (by layers, on one adapter).
    pub fn split(&self) -> Split {
        self.split
    }

    /// Whether the model can sample with `s`: split tensor-parallel, each adapter proposes
    /// candidates from its share of the vocabulary, which needs greedy decoding or top-k
    /// between 1 and [`crate::ops::candidates::MAX_TOP_K`].
    pub fn check_sampling(&self, s: &crate::sample::Sampling) -> Result<()> {
        let max = crate::ops::candidates::MAX_TOP_K;
        let sharded = self.split == Split::Tensor && self.stages.len() > 1;
        if sharded && !s.is_greedy() && !(1..=max).contains(&s.top_k) {
            return Err(Error::Invalid(format!(
                "top_k {} with a model split tensor-parallel: each adapter proposes at most \
                 {max} candidates from its share of the vocabulary, so set top_k between 1 and \
                 {max} (or split by layers)",
                s.top_k
            )));
        }
        Ok(())
    }

    /// Bytes of weights on all the model's adapters.
    pub fn weight_bytes(&self) -> u64 {
        self.stages.iter().map(|s| s.decoder.weight_bytes()).sum()
    }

    /// Bytes one sequence's decode step reads at `position`, on all adapters (see
    /// [`Decoder::decode_bytes`]).
    pub fn decode_bytes(&self, position: usize) -> u64 {
        self.stages
            .iter()
            .map(|s| s.decoder.decode_bytes(position))
            .sum()
    }

    /// Where the model came from: its folder or file, or `synthetic:NAME`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The dtypes of its weight matrices: pass them to `kiln::tune::ensure` to tune GEMV
    /// for this model before planning sessions.
    pub fn matrix_dtypes(&self) -> &[crate::DType] {
        &self.matrix_dtypes
    }

    /// The model itself: its first stage, which knows the model's shape (vocabulary,
    /// layers, context); a split model's other layers are in [`TextModel::stages`].
    pub fn decoder(&self) -> &dyn Decoder {
        self.stages[0].decoder.as_ref()
    }

    /// The model's tokenizer (from `tokenizer.json`).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Whether the model came with a chat template (`tokenizer_config.json`).
    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// Token ids of `text`; special tokens written in the text (e.g. `<|im_start|>`) become
    /// their ids. A BOS is prepended when the tokenizer config asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("tokenizing failed: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos
            && let Some(b) = self.bos
            && !text.starts_with(self.tokenizer.id_to_token(b).unwrap_or_default().as_str())
        {
            ids.push(b);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of token ids `ids`; an error if the tokenizer cannot decode them.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Invalid(format!("decoding failed: {e}")))
    }

    /// The conversation rendered with the model's chat template, ready for the assistant.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        let chat = self.chat.as_ref().ok_or_else(|| {
            Error::Invalid("this model has no chat template in tokenizer_config.json".into())
        })?;
        chat.render(messages, true)
    }

    /// The token ids of a chat turn: the conversation rendered with the model's chat template
    /// and tokenized, ready for [`Session::generate`] to write the assistant's reply.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode(&self.render_chat(messages)?)
    }

    /// A new conversation with a KV cache of `context` positions.
    pub async fn session(self: &std::sync::Arc<Self>, context: usize) -> Result<Session> {
        Session::new(self.clone(), context, 1).await
    }

    /// KV caches of `context` positions for up to `slots` sequences generated together.
    pub async fn batch_session(
        self: &std::sync::Arc<Self>,
        context: usize,
        slots: usize,
    ) -> Result<Session> {
        Session::new(self.clone(), context, slots).await
    }
}
