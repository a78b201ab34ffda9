//! Text generation: a loaded decoder with its tokenizer and chat template ([`TextModel`]),
//! the KV caches and programs of one or more conversations ([`Session`]), and the token
//! streams ([`Generation`], [`BatchGeneration`]). Everything here is written against the
//! [`Decoder`] trait; no model family is named.

mod active;
pub mod chat;
mod generation;
pub mod perplexity;
mod run;
mod session;
pub mod stream;

pub use chat::{ChatTemplate, Message};
pub use generation::{BatchGeneration, Finish, GenerateOptions, Generation, Stats};
pub use session::Session;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::Weights;
use crate::models::Decoder;
use tokenizers::Tokenizer;

/// A decoder on the GPU, with its tokenizer and chat template.
pub struct TextModel {
    gpu: Gpu,
    /// Where it came from (a folder, a file, `synthetic:NAME`).
    origin: String,
    model: Box<dyn Decoder>,
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
        let model = crate::models::decoder(&format!("{origin}/config.json"), config_json, weights)?;
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
        {
            if !eos.contains(&id) {
                eos.push(id);
            }
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
            gpu: gpu.clone(),
            origin: origin.to_string(),
            model,
            bos: special.bos,
            tokenizer,
            chat,
            add_bos,
            eos,
            matrix_dtypes: weights.matrix_dtypes(),
        })
    }

    /// Load an HF model folder (`config.json`, safetensors, `tokenizer.json`, and
    /// `tokenizer_config.json` where present), or a `.gguf` file, whose weights stay in their
    /// stored format on the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn load(
        gpu: &Gpu,
        dir: &std::path::Path,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<TextModel> {
        if dir.is_file() && dir.extension().is_some_and(|e| e == "gguf") {
            let m = crate::convert::load_gguf(gpu, dir, options).await?;
            return Self::from_parts(
                gpu,
                &dir.display().to_string(),
                &m.config_json,
                m.tokenizer_json.as_bytes(),
                Some(&m.tokenizer_config_json),
                &m.weights,
            );
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| Error::Io {
                path: p.display().to_string(),
                source: e,
            })
        };
        let text = |name: &str| -> Result<String> {
            String::from_utf8(read(name)?)
                .map_err(|_| Error::load(dir.join(name).display(), "not UTF-8"))
        };
        let config = text("config.json")?;
        let tokenizer = read("tokenizer.json")?;
        let tokenizer_config = if dir.join("tokenizer_config.json").exists() {
            Some(text("tokenizer_config.json")?)
        } else {
            None
        };
        let weights = crate::load::Checkpoint::open(dir)?
            .upload(gpu, options)
            .await?;
        Self::from_parts(
            gpu,
            &dir.display().to_string(),
            &config,
            &tokenizer,
            tokenizer_config.as_deref(),
            &weights,
        )
    }

    /// A model of a known shape with random weights (`NAME` from
    /// [`crate::models::synthetic::PRESETS`]), for benchmarks where no model file is at hand.
    /// Its matrices are stored in `options.dtype` (F16 by default).
    pub async fn synthetic(
        gpu: &Gpu,
        name: &str,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<TextModel> {
        let preset = crate::models::synthetic::Preset::find(name)?;
        let weights = crate::models::synthetic::upload(gpu, preset, options).await?;
        Self::from_parts(
            gpu,
            &format!("synthetic:{}", preset.name),
            &preset.config_json(),
            preset.tokenizer_json().as_bytes(),
            None,
            &weights,
        )
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
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

    /// The model itself.
    pub fn decoder(&self) -> &dyn Decoder {
        self.model.as_ref()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

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
        if self.add_bos {
            if let Some(b) = self.bos {
                if !text.starts_with(self.tokenizer.id_to_token(b).unwrap_or_default().as_str()) {
                    ids.push(b);
                }
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

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
