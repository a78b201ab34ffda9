//! kiln in the browser: wasm-bindgen bindings over the same model code, scheduler, kernels
//! and host loop as the native engine. This crate only moves bytes in (fetch or
//! user-picked files, streamed into GPU buffers) and text out.
//!
//! `examples/web/kiln.js` wraps these classes in the documented JavaScript API.
#![cfg(target_arch = "wasm32")]

mod bench;

use js_sys::{Reflect, Uint8Array};
use kiln::generate::{GenerateOptions, Message, TextModel};
use kiln::load::{LoadOptions, StreamLoader, Weights};
use kiln::{Gpu, GpuOptions, Sampling};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn js_text(v: &JsValue) -> String {
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Where the model's files come from: a base URL, or files the user picked.
enum Source {
    Url(String),
    Files(Vec<web_sys::File>),
}

async fn fetch(url: &str) -> Result<web_sys::Response, JsError> {
    let global = js_sys::global();
    let promise = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.fetch_with_str(url)
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.fetch_with_str(url)
    } else {
        return Err(JsError::new("no fetch() in this context"));
    };
    let resp = JsFuture::from(promise)
        .await
        .map_err(|e| err(format!("fetching {url} failed: {}", js_text(&e))))?;
    Ok(resp.unchecked_into())
}

impl Source {
    fn label(&self, name: &str) -> String {
        match self {
            Source::Url(base) => format!("{}/{name}", base.trim_end_matches('/')),
            Source::Files(_) => name.to_string(),
        }
    }

    fn file(&self, name: &str) -> Option<&web_sys::File> {
        match self {
            Source::Files(files) => files.iter().find(|f| f.name() == name),
            Source::Url(_) => None,
        }
    }

    /// A stream of the file's bytes and its length, or None if there is no such file.
    async fn open(&self, name: &str) -> Result<Option<(web_sys::ReadableStream, u64)>, JsError> {
        match self {
            Source::Files(_) => Ok(self.file(name).map(|f| (f.stream(), f.size() as u64))),
            Source::Url(_) => {
                let url = self.label(name);
                let resp = fetch(&url).await?;
                if resp.status() == 404 {
                    return Ok(None);
                }
                if !resp.ok() {
                    return Err(err(format!("{url}: HTTP {}", resp.status())));
                }
                let len = resp
                    .headers()
                    .get("content-length")
                    .ok()
                    .flatten()
                    .and_then(|l| l.parse::<u64>().ok())
                    .ok_or_else(|| err(format!("{url}: the server sent no Content-Length")))?;
                let body = resp
                    .body()
                    .ok_or_else(|| err(format!("{url}: empty response")))?;
                Ok(Some((body, len)))
            }
        }
    }

    /// The whole (small) file, or None if there is no such file.
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, JsError> {
        let Some((stream, len)) = self.open(name).await? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(len as usize);
        let chunks = Chunks::new(&stream);
        while let Some(c) = chunks.next().await? {
            out.extend_from_slice(&c);
        }
        Ok(Some(out))
    }

    async fn text(&self, name: &str) -> Result<Option<String>, JsError> {
        match self.read(name).await? {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| err(format!("{}: not UTF-8", self.label(name)))),
        }
    }
}

/// Reads a stream chunk by chunk.
struct Chunks(web_sys::ReadableStreamDefaultReader);

impl Chunks {
    fn new(stream: &web_sys::ReadableStream) -> Chunks {
        Chunks(stream.get_reader().unchecked_into())
    }

    /// The next chunk, or None at the end.
    async fn next(&self) -> Result<Option<Vec<u8>>, JsError> {
        let result = JsFuture::from(self.0.read())
            .await
            .map_err(|e| err(format!("reading failed: {}", js_text(&e))))?;
        if Reflect::get(&result, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true)
        {
            return Ok(None);
        }
        let value = Reflect::get(&result, &"value".into())
            .map_err(|_| JsError::new("a stream chunk without value"))?;
        Ok(Some(value.unchecked_into::<Uint8Array>().to_vec()))
    }
}

/// Stream one safetensors file into the GPU.
async fn load_stream(
    gpu: &Gpu,
    source: &Source,
    name: &str,
    stream: web_sys::ReadableStream,
    len: u64,
    progress: &Progress,
) -> Result<Weights, JsError> {
    let label = source.label(name);
    let report = |p: &kiln::load::Progress| progress.report(name, p.bytes_done, p.bytes_total);
    let options = LoadOptions {
        progress: Some(Box::new(report)),
        ..Default::default()
    };
    let mut loader = StreamLoader::new(gpu, &label, len, options);
    let chunks = Chunks::new(&stream);
    while let Some(c) = chunks.next().await? {
        loader.push(&c).await.map_err(err)?;
    }
    loader.finish().await.map_err(err)
}

/// Calls the page's progress callback with `{file, loaded, total}`.
struct Progress(Option<js_sys::Function>);

impl Progress {
    fn report(&self, file: &str, loaded: u64, total: u64) {
        if let Some(f) = &self.0 {
            let o = js_sys::Object::new();
            let _ = Reflect::set(&o, &"file".into(), &file.into());
            let _ = Reflect::set(&o, &"loaded".into(), &(loaded as f64).into());
            let _ = Reflect::set(&o, &"total".into(), &(total as f64).into());
            let _ = f.call1(&JsValue::NULL, &o);
        }
    }
}

/// A model on the GPU, with its tokenizer and chat template.
#[wasm_bindgen]
pub struct Model {
    inner: Arc<TextModel>,
    adapter: JsValue,
}

/// What the browser says about its adapter (wgpu passes on only the description, which
/// SwiftShader leaves empty), with the limits and features kiln plans against.
async fn adapter_info(gpu: &Gpu, navigator: &JsValue) -> JsValue {
    let o = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&o, &k.into(), &v);
    };
    let get = |v: &JsValue, k: &str| {
        Reflect::get(v, &k.into())
            .ok()
            .and_then(|x| x.as_string())
            .unwrap_or_default()
    };
    let mut fields = Vec::new();
    if let Ok(gpu_js) = Reflect::get(navigator, &"gpu".into()) {
        let request = Reflect::get(&gpu_js, &"requestAdapter".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(promise) = request.and_then(|f| f.call0(&gpu_js).ok()) {
            if let Ok(adapter) = JsFuture::from(js_sys::Promise::from(promise)).await {
                let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
                for k in ["vendor", "architecture", "device", "description"] {
                    let v = get(&info, k);
                    set(k, v.clone().into());
                    fields.push(v);
                }
            }
        }
    }
    let mut name: Vec<String> = fields.into_iter().filter(|f| !f.is_empty()).collect();
    name.dedup();
    let name = if name.is_empty() {
        gpu.info().name.clone()
    } else {
        name.join(" ")
    };
    set("name", name.into());
    set("deviceType", format!("{:?}", gpu.info().device_type).into());
    set(
        "maxBufferSize",
        (gpu.limits().max_buffer_size as f64).into(),
    );
    set(
        "maxStorageBufferBindingSize",
        (gpu.limits().max_storage_buffer_binding_size as f64).into(),
    );
    set("shaderF16", gpu.has_f16().into());
    o.into()
}

async fn load(source: Source, on_progress: Option<js_sys::Function>) -> Result<Model, JsError> {
    let global = js_sys::global();
    let navigator = Reflect::get(&global, &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    if Reflect::get(&navigator, &"gpu".into()).map_or(true, |g| g.is_undefined()) {
        return Err(JsError::new(
            "this browser has no WebGPU (navigator.gpu is missing); use a recent Chrome or Edge, or enable WebGPU",
        ));
    }
    let gpu = Gpu::new(&GpuOptions::default())
        .await
        .map_err(|e| err(format!("{e} (no WebGPU adapter is available)")))?;
    let progress = Progress(on_progress);
    let config = source
        .text("config.json")
        .await?
        .ok_or_else(|| err(format!("{} is missing", source.label("config.json"))))?;
    let tokenizer = source
        .read("tokenizer.json")
        .await?
        .ok_or_else(|| err(format!("{} is missing", source.label("tokenizer.json"))))?;
    let tokenizer_config = source.text("tokenizer_config.json").await?;
    // A single model.safetensors, else the shards an index lists.
    let weights = match source.open("model.safetensors").await? {
        Some((stream, len)) => {
            load_stream(&gpu, &source, "model.safetensors", stream, len, &progress).await?
        }
        None => {
            let name = "model.safetensors.index.json";
            let index = source.text(name).await?.ok_or_else(|| {
                err(format!(
                    "neither {} nor {} is there",
                    source.label("model.safetensors"),
                    source.label(name)
                ))
            })?;
            let index: serde_json::Value =
                serde_json::from_str(&index).map_err(|e| err(format!("{name}: {e}")))?;
            let mut shards: Vec<String> = index["weight_map"]
                .as_object()
                .ok_or_else(|| err(format!("{name} has no weight_map")))?
                .values()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            shards.sort();
            shards.dedup();
            let mut all = Weights::new(source.label(name));
            for shard in shards {
                let (stream, len) = source
                    .open(&shard)
                    .await?
                    .ok_or_else(|| err(format!("{} is missing", source.label(&shard))))?;
                all.extend(load_stream(&gpu, &source, &shard, stream, len, &progress).await?);
            }
            all
        }
    };
    let origin = match &source {
        Source::Url(u) => u.clone(),
        Source::Files(_) => "picked files".into(),
    };
    let model = TextModel::from_parts(
        &gpu,
        &origin,
        &config,
        &tokenizer,
        tokenizer_config.as_deref(),
        &weights,
    )
    .map_err(err)?;
    let adapter = adapter_info(&gpu, &navigator).await;
    Ok(Model {
        inner: Arc::new(model),
        adapter,
    })
}

#[wasm_bindgen]
impl Model {
    /// Load from a base URL serving config.json, tokenizer.json, tokenizer_config.json and
    /// model.safetensors (or a sharded index). `onProgress({file, loaded, total})`.
    #[wasm_bindgen(js_name = fromUrl)]
    pub async fn from_url(
        base: String,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Model, JsError> {
        load(Source::Url(base), on_progress).await
    }

    /// Load from files the user picked (a folder picker or drag and drop).
    #[wasm_bindgen(js_name = fromFiles)]
    pub async fn from_files(
        files: Vec<web_sys::File>,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Model, JsError> {
        load(Source::Files(files), on_progress).await
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
