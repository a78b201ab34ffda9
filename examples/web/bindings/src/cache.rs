//! Model files kept in the browser's Cache API, so that a model loaded from a URL downloads
//! once: each file is looked up in the named cache first, and a file fetched from the
//! network is written there as it streams onto the GPU (a tee, not a second download, and
//! not a copy held in memory). Caching is best effort: without the Cache API (an insecure
//! origin), or when a write fails (quota), the load goes on from the network with a console
//! warning; it never fails because of the cache.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::js_text;

/// The header a stored response names its file in the model folder with
/// ("1_Pooling/config.json"), so that kiln.js can tell which model base URL a cached file
/// belongs to.
pub const FILE_HEADER: &str = "x-kiln-file";

/// How many chunks (a network read's worth each, tens of kB) may wait on the cache's writes
/// before the load waits for it: enough not to stall on every chunk's round trip to the
/// browser's storage, few enough that a file is never held in memory.
const QUEUED_CHUNKS: f64 = 32.0;

fn warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}

/// The cache one load reads and writes.
pub struct ModelCache {
    cache: web_sys::Cache,
    name: String,
    /// The URLs this load read from the cache or stored in it: dropped again if the load
    /// fails or a file could not be stored, so that a bad or half-cached model is fetched
    /// afresh next time rather than served stale from the cache for ever.
    touched: RefCell<Vec<String>>,
    /// A file could not be stored (quota, or the stream broke).
    incomplete: Cell<bool>,
}

impl ModelCache {
    /// The Cache API cache `name`, or None (with a warning) where this page cannot have one.
    pub async fn open(name: &str) -> Option<Rc<ModelCache>> {
        let storage = Reflect::get(&js_sys::global(), &"caches".into())
            .ok()
            .filter(|c| !c.is_undefined() && !c.is_null());
        let Some(storage) = storage else {
            warn(
                "kiln: this page has no Cache API (it needs a secure origin: https or localhost), \
                 so model files are downloaded on every load",
            );
            return None;
        };
        let storage: web_sys::CacheStorage = storage.unchecked_into();
        match JsFuture::from(storage.open(name)).await {
            Ok(cache) => Some(Rc::new(ModelCache {
                cache: cache.unchecked_into(),
                name: name.to_string(),
                touched: RefCell::new(Vec::new()),
                incomplete: Cell::new(false),
            })),
            Err(e) => {
                warn(&format!(
                    "kiln: could not open the browser cache {name:?} ({}), so model files are downloaded on every load",
                    js_text(&e)
                ));
                None
            }
        }
    }

    /// The stored response for `url`, if there is one.
    pub async fn lookup(&self, url: &str) -> Option<web_sys::Response> {
        match JsFuture::from(self.cache.match_with_str(url)).await {
            Ok(r) if r.is_instance_of::<web_sys::Response>() => Some(r.unchecked_into()),
            Ok(_) => None,
            Err(e) => {
                warn(&format!(
                    "kiln: could not look {url} up in the browser cache ({}); fetching it",
                    js_text(&e)
                ));
                None
            }
        }
    }

    /// Notes that `url` was read from the cache (see `touched`).
    pub fn used(&self, url: &str) {
        self.touched.borrow_mut().push(url.to_string());
    }

    /// Starts storing `response` (an `ok` one, from the network) under `url`: its status
    /// and headers now, its body as the returned tee is fed the chunks the load reads.
    /// None, with a warning, if the browser refuses; None once a file of this load could
    /// not be stored (the model will not be cached whole, so its files are dropped anyway).
    pub fn store(
        self: &Rc<Self>,
        url: &str,
        name: &str,
        response: &web_sys::Response,
    ) -> Option<Tee> {
        if self.incomplete.get() {
            return None;
        }
        let started = (|| -> Result<Tee, JsValue> {
            // An identity transform: what the load writes into one end, cache.put reads
            // from the other.
            let queue = web_sys::QueuingStrategy::new();
            queue.set_high_water_mark(QUEUED_CHUNKS);
            let pipe = web_sys::TransformStream::new_with_transformer_and_writable_strategy(
                &js_sys::Object::new(),
                &queue,
            )?;
            let headers = web_sys::Headers::new_with_headers(&response.headers())?;
            headers.set(FILE_HEADER, &String::from(js_sys::encode_uri(name)))?;
            let init = web_sys::ResponseInit::new();
            init.set_status(response.status());
            init.set_status_text(&response.status_text());
            init.set_headers(&headers);
            let stored = web_sys::Response::new_with_opt_readable_stream_and_init(
                Some(&pipe.readable()),
                &init,
            )?;
            let put = self.cache.put_with_str(url, &stored);
            let writer = web_sys::WritableStreamDefaultWriter::new(&pipe.writable())?;
            Ok(Tee {
                writer,
                put: Some(put),
                url: url.to_string(),
                cache: self.clone(),
            })
        })();
        match started {
            Ok(tee) => Some(tee),
            Err(e) => {
                self.failed(url, &e);
                None
            }
        }
    }

    fn failed(&self, url: &str, e: &JsValue) {
        warn(&format!(
            "kiln: could not store {url} in the browser cache ({}); it will be downloaded again next time",
            js_text(e)
        ));
        self.incomplete.set(true);
    }

    /// After the load: if it failed, or a file could not be stored, drop every file it read
    /// from or wrote to the cache (a model is cached whole or not at all).
    pub async fn settle(&self, loaded: bool) {
        if loaded && !self.incomplete.get() {
            return;
        }
        let urls = std::mem::take(&mut *self.touched.borrow_mut());
        for url in &urls {
            if let Err(e) = JsFuture::from(self.cache.delete_with_str(url)).await {
                warn(&format!(
                    "kiln: could not drop {url} from the browser cache {:?} ({})",
                    self.name,
                    js_text(&e)
                ));
            }
        }
    }
}

/// One file on its way into the cache: the chunks the load reads are written here too.
pub struct Tee {
    writer: web_sys::WritableStreamDefaultWriter,
    /// cache.put's promise: settles once the whole body is stored (or could not be). None
    /// once done with.
    put: Option<js_sys::Promise>,
    url: String,
    cache: Rc<ModelCache>,
}

impl Tee {
    /// `step` (room to write to the body, or closing it), or put's failure, whichever comes
    /// first:
    /// a put that gives up without reading the body to its end would otherwise leave the
    /// write waiting for ever.
    fn or_put(&self, step: js_sys::Promise) -> JsFuture {
        match &self.put {
            Some(put) => JsFuture::from(js_sys::Promise::race(&js_sys::Array::of2(&step, put))),
            None => JsFuture::from(step),
        }
    }

    /// Passes a chunk on to the cache. False if the cache write failed (warned of; the tee
    /// is then done with, and the load carries on).
    pub async fn write(&mut self, chunk: &JsValue) -> bool {
        // Backpressure: wait while QUEUED_CHUNKS are queued. A failed write errors the
        // stream, which the next wait (or closing) reports.
        if let Err(e) = self.or_put(self.writer.ready()).await {
            self.fail(&e);
            return false;
        }
        // Wrapped in a future, a failed write's rejection counts as handled.
        drop(JsFuture::from(self.writer.write_with_chunk(chunk)));
        true
    }

    /// The body is all written: close it and wait until the cache has it.
    pub async fn finish(mut self) {
        let result = async {
            // Closing waits for the queued writes.
            self.or_put(self.writer.close()).await?;
            let put = self.put.take().expect("put is awaited once");
            JsFuture::from(put).await
        }
        .await;
        match result {
            Ok(_) => self.cache.touched.borrow_mut().push(self.url.clone()),
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&mut self, e: &JsValue) {
        self.cache.failed(&self.url, e);
        self.abort();
    }

    /// Errors the body cache.put reads, so that it stores nothing.
    fn abort(&mut self) {
        if let Some(put) = self.put.take() {
            // Wrapped in futures, the promises' rejections (put's, now that its body is
            // errored) count as handled rather than as console errors.
            drop(JsFuture::from(put));
            drop(JsFuture::from(self.writer.abort()));
        }
    }
}

impl Drop for Tee {
    /// A load that stops reading a file part way (an error) leaves no half file cached.
    fn drop(&mut self) {
        self.abort();
    }
}
