//! Text generation: a decoder model and its conversations ([`Session`]), text streamed out
//! token by token.

use crate::{Folder, err};
use js_sys::Reflect;
use kiln::Sampling;
use kiln::generate::{GenerateOptions, Message, TextModel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasm_bindgen::prelude::*;

/// A model on the GPU, with its tokenizer and chat template.
#[wasm_bindgen]
pub struct Model {
    inner: Arc<TextModel>,
    adapter: JsValue,
}

impl Model {
    pub(crate) async fn open(f: Folder) -> Result<Model, JsError> {
        let tokenizer_config = f.source.text("tokenizer_config.json").await?;
        let model = TextModel::from_parts(
            &f.gpu,
            &f.origin,
            &f.config,
            &f.tokenizer,
            tokenizer_config.as_deref(),
            &f.weights,
        )
        .map_err(err)?;
        Ok(Model {
            inner: Arc::new(model),
            adapter: f.adapter,
        })
    }
}

#[wasm_bindgen]
impl Model {
    /// "generate": what this model does (see `loadUrl`).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        "generate".into()
    }

    /// The adapter the model runs on: {name, vendor, architecture, device, description,
    /// deviceType, maxBufferSize, maxStorageBufferBindingSize, shaderF16}. One adapter is
    /// all a page gets from WebGPU, so the model is never split across adapters here.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> JsValue {
        self.adapter.clone()
    }

    #[wasm_bindgen(js_name = hasChatTemplate, getter)]
    pub fn has_chat_template(&self) -> bool {
        self.inner.has_chat_template()
    }

    /// Why the model's GPU device was lost, or null while it works. A lost device stays
    /// lost: load the model again (on a new device) to go on.
    #[wasm_bindgen(getter)]
    pub fn lost(&self) -> Option<String> {
        self.inner.gpu().lost()
    }

    /// For testing how a page copes with a lost GPU: the device is destroyed just before
    /// kiln's `submissions`-th submission from now on (1: the next), as a real loss would.
    #[wasm_bindgen(js_name = injectDeviceLoss)]
    pub fn inject_device_loss(&self, submissions: u32) {
        self.inner.gpu().inject_device_loss(submissions.into());
    }

    /// A conversation with a KV cache of `context` positions (default: the model's, at most 2048).
    pub async fn session(&self, context: Option<usize>) -> Result<Session, JsError> {
        let context = context.unwrap_or_else(|| self.inner.decoder().max_positions().min(2048));
        let inner = self.inner.session(context).await.map_err(err)?;
        Ok(Session {
            inner,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A conversation: start a generation, then pull its text with `next()`.
#[wasm_bindgen]
pub struct Session {
    inner: kiln::Session,
    cancel: Arc<AtomicBool>,
}

/// Stops a session's generation at the next token.
#[wasm_bindgen]
pub struct Canceller(Arc<AtomicBool>);

#[wasm_bindgen]
impl Canceller {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn num(o: &serde_json::Value, k: &str) -> Option<f64> {
    o.get(k).and_then(|v| v.as_f64())
}

#[wasm_bindgen]
impl Session {
    /// Start generating. `options`: {maxTokens, temperature, topK, topP, minP, repeatPenalty,
    /// seed, stop: string[], chat: boolean, system: string, messages: [{role, content}]}.
    /// With `chat` the prompt is the user's turn (after `messages`), rendered with the
    /// model's chat template.
    pub async fn start(&mut self, prompt: String, options: JsValue) -> Result<(), JsError> {
        let o: serde_json::Value = if options.is_undefined() || options.is_null() {
            serde_json::Value::Null
        } else {
            let text = js_sys::JSON::stringify(&options)
                .map_err(|_| JsError::new("options are not JSON"))?;
            serde_json::from_str(&String::from(text)).map_err(err)?
        };
        let d = Sampling::default();
        let sampling = Sampling {
            temperature: num(&o, "temperature").map_or(d.temperature, |v| v as f32),
            top_k: num(&o, "topK").map_or(d.top_k, |v| v as usize),
            top_p: num(&o, "topP").map_or(d.top_p, |v| v as f32),
            min_p: num(&o, "minP").map_or(d.min_p, |v| v as f32),
            repetition_penalty: num(&o, "repeatPenalty").map_or(d.repetition_penalty, |v| v as f32),
            seed: num(&o, "seed").map_or_else(|| js_sys::Date::now() as u64, |v| v as u64),
        };
        let stop = o
            .get("stop")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        self.cancel.store(false, Ordering::Relaxed);
        let opts = GenerateOptions {
            max_tokens: num(&o, "maxTokens").map_or(256, |v| v as usize),
            sampling,
            stop,
            cancel: Some(self.cancel.clone()),
            ..GenerateOptions::default()
        };
        let model = self.inner.model().clone();
        let text = if o.get("chat").and_then(|c| c.as_bool()).unwrap_or(false) {
            let mut messages = Vec::new();
            if let Some(sys) = o.get("system").and_then(|s| s.as_str()) {
                messages.push(Message::new("system", sys));
            }
            for m in o
                .get("messages")
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
            {
                let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("user");
                messages.push(Message::new(
                    role,
                    m.get("content").and_then(|c| c.as_str()).unwrap_or(""),
                ));
            }
            messages.push(Message::new("user", &prompt));
            model.render_chat(&messages).map_err(err)?
        } else {
            prompt
        };
        let ids = model.encode(&text).map_err(err)?;
        self.inner.start(&ids, opts).await.map_err(err)
    }

    /// The next piece of text, or undefined when the generation has ended.
    pub async fn next(&mut self) -> Result<Option<String>, JsError> {
        self.inner.next().await.transpose().map_err(err)
    }

    /// A handle that stops the generation at the next token. It is a separate object so that
    /// it can be used while `next()` is pending.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Forget the conversation.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// {promptTokens, generatedTokens, firstTokenMs, prefillTokensPerSec, decodeTokensPerSec, finish}
    pub fn stats(&self) -> JsValue {
        let s = self.inner.stats();
        let o = js_sys::Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("promptTokens", (s.prompt_tokens as f64).into());
        set("generatedTokens", (s.generated_tokens as f64).into());
        set("firstTokenMs", (s.first_token_secs * 1e3).into());
        set("prefillTokensPerSec", s.prefill_tokens_per_sec().into());
        set("decodeTokensPerSec", s.decode_tokens_per_sec().into());
        set(
            "finish",
            self.inner
                .finish()
                .map_or(JsValue::UNDEFINED, |f| format!("{f:?}").into()),
        );
        o.into()
    }
}
