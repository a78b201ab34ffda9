//! kiln in the browser: wasm-bindgen bindings over the same model code, scheduler, kernels
//! and host loop as the native engine. This crate only moves bytes in (fetch or
//! user-picked files, streamed into GPU buffers) and text out.
//!
//! One loader takes every kind of model kiln runs: `loadUrl` and `loadFiles` read the
//! folder's `config.json` and give a text generator ([`text::Model`]), an embedding model
//! ([`embed::Embedder`]) or a speech model ([`speech::Speech`]), each with a `kind`.
//! `examples/web/kiln.js` wraps these classes in the documented JavaScript API.
#![cfg(target_arch = "wasm32")]

mod bench;
mod cache;
mod embed;
mod speech;
mod text;

use std::rc::Rc;

use cache::{Lookup, ModelCache, Parts, Tee};
use js_sys::Reflect;
use kiln::load::{LoadOptions, StreamLoader, Weights};
use kiln::models::Task;
use kiln::{Gpu, GpuOptions};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A JS value in plain words: a string as it is, an Error by its message (not
/// `JsValue(TypeError: ...)` with a backtrace).
fn js_text(v: &JsValue) -> String {
    if let Some(s) = v.as_string() {
        return s;
    }
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    format!("{v:?}")
}

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Where the model's files come from: a base URL (with the browser cache its files are kept
/// in, if any), or files the user picked.
enum Source {
    Url(String, Option<Rc<ModelCache>>),
    Files(Vec<web_sys::File>),
}

/// A file's bytes on their way in: from a stream (the network's, or a picked file's) or
/// the browser cache's parts, its length, and where the network's stream is copied to on its
/// way into the cache.
struct Body {
    from: Origin,
    len: u64,
    tee: Option<Tee>,
}

enum Origin {
    Stream(web_sys::ReadableStreamDefaultReader),
    Cache(Parts),
}

impl Body {
    fn stream(stream: web_sys::ReadableStream, len: u64, tee: Option<Tee>) -> Body {
        Body {
            from: Origin::Stream(stream.get_reader().unchecked_into()),
            len,
            tee,
        }
    }

    fn cached(&self) -> bool {
        matches!(self.from, Origin::Cache(_))
    }

    /// The next chunk, or None at the end (copying each into the cache, where the body has a
    /// tee).
    async fn next(&mut self) -> Result<Option<Vec<u8>>, JsError> {
        let chunk = match &mut self.from {
            Origin::Stream(reader) => cache::read_chunk(reader).await,
            Origin::Cache(parts) => parts.next().await,
        }
        .map_err(err)?;
        let Some(chunk) = chunk else {
            // The whole file went by: the cache's copy is complete.
            if let Some(tee) = self.tee.take() {
                tee.finish().await;
            }
            return Ok(None);
        };
        // A failed cache write (warned of) ends the copying, not the load.
        if let Some(tee) = &mut self.tee
            && !tee.write(&chunk).await
        {
            self.tee = None;
        }
        Ok(Some(chunk.to_vec()))
    }
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
    let resp = JsFuture::from(promise).await.map_err(|e| {
        err(format!(
            "could not fetch {url}: {} (is the server running, and the address right?)",
            js_text(&e)
        ))
    })?;
    Ok(resp.unchecked_into())
}

impl Source {
    fn label(&self, name: &str) -> String {
        match self {
            Source::Url(base, _) => format!("{}/{name}", base.trim_end_matches('/')),
            Source::Files(_) => name.to_string(),
        }
    }

    /// The picked file at `name` (a path in the model folder, "1_Pooling/config.json"). A
    /// folder's files carry their path under the folder picked ("all-MiniLM-L6-v2/
    /// 1_Pooling/config.json"; the page gives dropped files the same, loose ones under a
    /// made-up folder); files picked loose carry only their name.
    fn file(&self, name: &str) -> Option<&web_sys::File> {
        let Source::Files(files) = self else {
            return None;
        };
        files.iter().find(|f| {
            let rel = Reflect::get(f, &"webkitRelativePath".into())
                .ok()
                .and_then(|p| p.as_string())
                .unwrap_or_default();
            match rel.split_once('/') {
                Some((_, inner)) => inner == name,
                None => f.name() == name,
            }
        })
    }

    /// The cache a URL's files are kept in, if any.
    fn cache(&self) -> Option<Rc<ModelCache>> {
        match self {
            Source::Url(_, cache) => cache.clone(),
            Source::Files(_) => None,
        }
    }

    /// A stream of the file's bytes and its length, or None if there is no such file. From a
    /// URL: the browser cache's copy if it has one, else the network's, which the stream
    /// then also writes into the cache (only `ok` responses are stored).
    async fn open(&self, name: &str) -> Result<Option<Body>, JsError> {
        let Source::Url(_, cache) = self else {
            return Ok(self
                .file(name)
                .map(|f| Body::stream(f.stream(), f.size() as u64, None)));
        };
        let url = self.label(name);
        let mut stale_parts = 0;
        if let Some(cache) = cache {
            match cache.lookup(&url).await {
                Lookup::Hit(stored) => {
                    return Ok(Some(Body {
                        len: stored.len,
                        from: Origin::Cache(cache.read(&url, stored)),
                        tee: None,
                    }));
                }
                Lookup::Miss { stale_parts: n } => stale_parts = n,
            }
        }
        let resp = fetch(&url).await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        if !resp.ok() {
            return Err(err(format!("{url}: HTTP {}", resp.status())));
        }
        let (stream, len) = body_of(&url, &resp)?;
        let tee = cache
            .as_ref()
            .and_then(|c| c.store(&url, name, &resp, stale_parts));
        Ok(Some(Body::stream(stream, len, tee)))
    }

    /// The whole (small) file, or None if there is no such file.
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, JsError> {
        let Some(mut body) = self.open(name).await? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(body.len as usize);
        while let Some(c) = body.next().await? {
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

/// The file's length and body stream as `response` gives them.
fn body_of(
    url: &str,
    response: &web_sys::Response,
) -> Result<(web_sys::ReadableStream, u64), JsError> {
    let len = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| err(format!("{url}: the server sent no Content-Length")))?;
    let stream = response
        .body()
        .ok_or_else(|| err(format!("{url}: empty response")))?;
    Ok((stream, len))
}

/// Stream one safetensors file into the GPU.
async fn load_stream(
    gpu: &Gpu,
    source: &Source,
    name: &str,
    mut body: Body,
    progress: &Progress,
) -> Result<Weights, JsError> {
    let label = source.label(name);
    let cached = body.cached();
    let report =
        |p: &kiln::load::Progress| progress.report(name, p.bytes_done, p.bytes_total, cached);
    let options = LoadOptions {
        progress: Some(Box::new(report)),
        ..Default::default()
    };
    let mut loader = StreamLoader::new(gpu, &label, body.len, options);
    while let Some(c) = body.next().await? {
        loader.push(&c).await.map_err(err)?;
    }
    loader.finish().await.map_err(err)
}

/// Calls the page's progress callback with `{file, loaded, total, cached}`.
struct Progress(Option<js_sys::Function>);

impl Progress {
    fn report(&self, file: &str, loaded: u64, total: u64, cached: bool) {
        if let Some(f) = &self.0 {
            let o = js_sys::Object::new();
            let _ = Reflect::set(&o, &"file".into(), &file.into());
            let _ = Reflect::set(&o, &"loaded".into(), &(loaded as f64).into());
            let _ = Reflect::set(&o, &"total".into(), &(total as f64).into());
            let _ = Reflect::set(&o, &"cached".into(), &cached.into());
            let _ = f.call1(&JsValue::NULL, &o);
        }
    }
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

/// A model folder's common parts, read and uploaded.
struct Folder {
    gpu: Gpu,
    source: Source,
    /// How errors name the folder.
    origin: String,
    config: String,
    tokenizer: Vec<u8>,
    weights: Weights,
    adapter: JsValue,
}

/// With the folder's `config`: read `tokenizer.json`, then stream the weights
/// (`model.safetensors`, else the shards its index lists) onto this page's adapter.
async fn open_folder(
    source: Source,
    config: String,
    progress: &Progress,
) -> Result<Folder, JsError> {
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
    let tokenizer = source
        .read("tokenizer.json")
        .await?
        .ok_or_else(|| err(format!("{} is missing", source.label("tokenizer.json"))))?;
    let weights = match source.open("model.safetensors").await? {
        Some(body) => load_stream(&gpu, &source, "model.safetensors", body, progress).await?,
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
                let body = source
                    .open(&shard)
                    .await?
                    .ok_or_else(|| err(format!("{} is missing", source.label(&shard))))?;
                all.extend(load_stream(&gpu, &source, &shard, body, progress).await?);
            }
            all
        }
    };
    let origin = match &source {
        Source::Url(u, _) => u.clone(),
        Source::Files(_) => "picked files".into(),
    };
    let adapter = adapter_info(&gpu, &navigator).await;
    Ok(Folder {
        gpu,
        source,
        origin,
        config,
        tokenizer,
        weights,
        adapter,
    })
}

/// The model in `source`, as its `config.json` says: a `text.Model`, an `embed.Embedder` or
/// a `speech.Speech`, each with its `kind`.
async fn load(
    source: Source,
    on_progress: Option<js_sys::Function>,
    options: JsValue,
) -> Result<JsValue, JsError> {
    let cache = source.cache();
    let loaded = load_source(source, on_progress, options).await;
    if let Some(cache) = cache {
        cache.settle(loaded.is_ok()).await;
    }
    loaded
}

async fn load_source(
    source: Source,
    on_progress: Option<js_sys::Function>,
    options: JsValue,
) -> Result<JsValue, JsError> {
    let progress = Progress(on_progress);
    // The kind first, from config.json alone: a folder the page cannot run fails before
    // its weights move.
    let config = source
        .text("config.json")
        .await?
        .ok_or_else(|| err(format!("{} is missing", source.label("config.json"))))?;
    let task = Task::of(&config);
    let folder = open_folder(source, config, &progress).await?;
    Ok(match task {
        Task::Generate => text::Model::open(folder).await?.into(),
        Task::Embed => embed::Embedder::open(folder, &options).await?.into(),
        Task::Transcribe => speech::Speech::open(folder).await?.into(),
    })
}

/// Load the model a base URL serves (`config.json`, `tokenizer.json`, weights; for a text
/// model `tokenizer_config.json`, for a sentence-transformers model `modules.json` and
/// `1_Pooling/config.json`). `onProgress({file, loaded, total, cached})`; `options`:
/// `{normalize}` for an embedding model, `{cache}`: the name of the browser cache (Cache
/// API) to keep the files in and read them from (unset: no caching).
#[wasm_bindgen(js_name = loadUrl)]
pub async fn load_url(
    base: String,
    on_progress: Option<js_sys::Function>,
    options: JsValue,
) -> Result<JsValue, JsError> {
    let name = Reflect::get(&options, &"cache".into())
        .ok()
        .and_then(|c| c.as_string());
    let cache = match name {
        Some(name) => ModelCache::open(&name).await,
        None => None,
    };
    load(Source::Url(base, cache), on_progress, options).await
}

/// Load from files the user picked (a folder picker or drag and drop); as `loadUrl`.
#[wasm_bindgen(js_name = loadFiles)]
pub async fn load_files(
    files: Vec<web_sys::File>,
    on_progress: Option<js_sys::Function>,
    options: JsValue,
) -> Result<JsValue, JsError> {
    load(Source::Files(files), on_progress, options).await
}
