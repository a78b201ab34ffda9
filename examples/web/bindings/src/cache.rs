//! Model files kept in the browser's Cache API, so that a model loaded from a URL downloads
//! once: each file is looked up in the named cache first, and a file fetched from the
//! network is written there as it streams onto the GPU (a tee, not a second download).
//! Caching is best effort: without the Cache API (an insecure origin), or when a write fails
//! (quota, a full disk), the load goes on from the network with a console warning; it never
//! fails because of the cache.
//!
//! A file is stored as parts of about [`PART_BYTES`], each put from memory, then an index
//! entry under the file's own URL that says how many parts there are and how long the file
//! is. Not one entry with the whole body streamed in: Chromium spools a streamed body
//! through its blob storage on disk, which refuses to grow once the disk has less than a few
//! GB free (measured: Chromium 156 stores a 538 MB body with 7.9 GB free, fails after 14 MB
//! with 3.9 GB free), while 16 MB parts from memory still store with 0.8 GB free. The index
//! goes in last, so a file whose store broke off has no index and is never read; a file
//! with a part gone (cleared by hand) is fetched and stored again.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::js_text;

/// The header a stored index names its file in the model folder with
/// ("1_Pooling/config.json"), so that kiln.js can tell which model base URL a cached file
/// belongs to.
pub const FILE_HEADER: &str = "x-kiln-file";
/// The index's headers: how many parts the file was stored in, and its length in bytes.
pub const PARTS_HEADER: &str = "x-kiln-parts";
pub const LENGTH_HEADER: &str = "x-kiln-length";

/// Bytes per part (the last is shorter): few enough to hold in memory while the previous
/// part is being stored, many enough that a model is tens of entries, not thousands. Fixed,
/// so that the same file is always stored under the same keys.
const PART_BYTES: u32 = 16 << 20;

fn warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}

/// The key part `i` of the file at `url` is stored under: the URL with a `kiln-part` query
/// parameter (before any fragment, which cache keys drop).
fn part_url(url: &str, i: u32) -> String {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}kiln-part={i}")
}

/// The next chunk `reader` gives (a Uint8Array), or None at the end of its stream.
pub async fn read_chunk(
    reader: &web_sys::ReadableStreamDefaultReader,
) -> Result<Option<Uint8Array>, String> {
    let result = JsFuture::from(reader.read())
        .await
        .map_err(|e| format!("reading failed: {}", js_text(&e)))?;
    let done = Reflect::get(&result, &"done".into())
        .ok()
        .and_then(|d| d.as_bool())
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value = Reflect::get(&result, &"value".into())
        .map_err(|_| "a stream chunk without value".to_string())?;
    value
        .dyn_into::<Uint8Array>()
        .map(Some)
        .map_err(|_| "a stream chunk that is not bytes".to_string())
}

/// The cache one load reads and writes.
pub struct ModelCache {
    cache: web_sys::Cache,
    name: String,
    /// The files this load read from the cache or stored in it (their URL and how many parts
    /// they have there): dropped again if the load fails or a file could not be stored, so
    /// that a bad or half-cached model is fetched afresh next time rather than served stale
    /// from the cache for ever.
    touched: RefCell<Vec<(String, u32)>>,
    /// A file could not be stored (quota, a full disk, or the stream broke).
    incomplete: Cell<bool>,
}

/// A whole file in the cache, as its index describes it.
pub struct Stored {
    pub len: u64,
    parts: u32,
}

/// What the cache has for a file.
pub enum Lookup {
    /// All of it.
    Hit(Stored),
    /// Not all of it (or nothing): fetch it, and store it over `stale_parts` parts of an
    /// unusable copy.
    Miss { stale_parts: u32 },
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

    async fn get(&self, url: &str) -> Result<Option<web_sys::Response>, JsValue> {
        let found = JsFuture::from(self.cache.match_with_str(url)).await?;
        Ok(found.dyn_into::<web_sys::Response>().ok())
    }

    /// The file stored for `url`, if the cache has all of it: its index and every part the
    /// index names.
    pub async fn lookup(&self, url: &str) -> Lookup {
        let miss = |stale_parts, why: String| {
            warn(&format!("kiln: {why}; fetching {url}"));
            Lookup::Miss { stale_parts }
        };
        let index = match self.get(url).await {
            Ok(Some(index)) => index,
            Ok(None) => return Lookup::Miss { stale_parts: 0 },
            Err(e) => {
                return miss(
                    0,
                    format!(
                        "could not look it up in the browser cache ({})",
                        js_text(&e)
                    ),
                );
            }
        };
        let header = |name| index.headers().get(name).ok().flatten();
        let parts = header(PARTS_HEADER).and_then(|p| p.parse::<u32>().ok());
        let len = header(LENGTH_HEADER).and_then(|l| l.parse::<u64>().ok());
        let (Some(parts), Some(len)) = (parts, len) else {
            return miss(
                0,
                format!(
                    "the browser cache's entry has no {PARTS_HEADER} and {LENGTH_HEADER} headers, so kiln did not store it"
                ),
            );
        };
        // Parts are cut at fixed boundaries, so the two headers agree; an index where they do
        // not was not written by kiln, and its part count is not to be trusted (it bounds
        // the deletes of a re-store).
        let should = len.div_ceil(u64::from(PART_BYTES));
        if u64::from(parts) != should {
            return miss(
                0,
                format!(
                    "the browser cache's index names {parts} parts for {len} bytes, not {should}"
                ),
            );
        }
        for i in 0..parts {
            match self.get(&part_url(url, i)).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return miss(
                        parts,
                        format!("part {i} of {parts} is gone from the browser cache"),
                    );
                }
                Err(e) => {
                    return miss(
                        parts,
                        format!(
                            "could not look part {i} up in the browser cache ({})",
                            js_text(&e)
                        ),
                    );
                }
            }
        }
        Lookup::Hit(Stored { len, parts })
    }

    /// Reads the stored file at `url` (which `lookup` found), part after part; notes it as
    /// read by this load (see `touched`).
    pub fn read(self: &Rc<Self>, url: &str, stored: Stored) -> Parts {
        self.touched
            .borrow_mut()
            .push((url.to_string(), stored.parts));
        Parts {
            cache: self.clone(),
            url: url.to_string(),
            stored,
            next: 0,
            read: 0,
            reader: None,
        }
    }

    /// Starts storing `response` (an `ok` one, from the network) under `url`, over the
    /// `stale_parts` of an unusable copy: the returned tee is fed the chunks the load reads.
    /// None once a file of this load could not be stored (the model will not be cached
    /// whole, so its files are dropped anyway).
    pub fn store(
        self: &Rc<Self>,
        url: &str,
        name: &str,
        response: &web_sys::Response,
        stale_parts: u32,
    ) -> Option<Tee> {
        if self.incomplete.get() {
            return None;
        }
        let headers = (|| -> Result<web_sys::Headers, JsValue> {
            let headers = web_sys::Headers::new_with_headers(&response.headers())?;
            // The index's body is empty; the file's length is LENGTH_HEADER.
            headers.delete("content-length")?;
            headers.set(FILE_HEADER, &String::from(js_sys::encode_uri(name)))?;
            Ok(headers)
        })();
        match headers {
            Ok(headers) => Some(Tee {
                cache: self.clone(),
                url: url.to_string(),
                headers,
                status: response.status(),
                gathered: js_sys::Array::new(),
                gathered_bytes: 0,
                len: 0,
                parts: 0,
                stale_parts,
                put: None,
                done: false,
            }),
            Err(e) => {
                self.failed(url, 0, &e);
                None
            }
        }
    }

    fn failed(&self, url: &str, parts: u32, e: &JsValue) {
        warn(&format!(
            "kiln: could not store {url} in the browser cache ({}); it will be downloaded again next time",
            js_text(e)
        ));
        self.touched.borrow_mut().push((url.to_string(), parts));
        self.incomplete.set(true);
    }

    /// After the load: if it failed, or a file could not be stored, drop every file it read
    /// from or wrote to the cache, parts and index (a model is cached whole or not at all).
    pub async fn settle(&self, loaded: bool) {
        if loaded && !self.incomplete.get() {
            return;
        }
        let files = std::mem::take(&mut *self.touched.borrow_mut());
        for (url, parts) in &files {
            let keys = std::iter::once(url.clone()).chain((0..*parts).map(|i| part_url(url, i)));
            for key in keys {
                if let Err(e) = JsFuture::from(self.cache.delete_with_str(&key)).await {
                    warn(&format!(
                        "kiln: could not drop {key} from the browser cache {:?} ({})",
                        self.name,
                        js_text(&e)
                    ));
                }
            }
        }
    }
}

/// A stored file's bytes, read part after part.
pub struct Parts {
    cache: Rc<ModelCache>,
    url: String,
    stored: Stored,
    /// The part to open when the current one ends.
    next: u32,
    read: u64,
    reader: Option<web_sys::ReadableStreamDefaultReader>,
}

impl Parts {
    /// The next chunk, or None at the end of the file. An error if a part is gone (the cache
    /// was cleared meanwhile) or the parts do not add up to the file's length.
    pub async fn next(&mut self) -> Result<Option<Uint8Array>, String> {
        loop {
            if let Some(reader) = &self.reader {
                if let Some(chunk) = read_chunk(reader).await? {
                    self.read += chunk.length() as u64;
                    return Ok(Some(chunk));
                }
                self.reader = None;
            }
            if self.next == self.stored.parts {
                if self.read != self.stored.len {
                    return Err(format!(
                        "the browser cache holds {} bytes of {}, not the {} its index says; load it again to download it afresh",
                        self.read, self.url, self.stored.len
                    ));
                }
                return Ok(None);
            }
            let key = part_url(&self.url, self.next);
            let part = self.cache.get(&key).await.map_err(|e| js_text(&e))?;
            let body = part.and_then(|p| p.body()).ok_or_else(|| {
                format!(
                    "part {} of {} is gone from the browser cache (cleared while loading?); load it again to download it afresh",
                    self.next, self.url
                )
            })?;
            self.reader = Some(body.get_reader().unchecked_into());
            self.next += 1;
        }
    }
}

/// One file on its way into the cache: the chunks the load reads are gathered here and put
/// a part at a time, with one part's put in flight while the next is gathered.
pub struct Tee {
    cache: Rc<ModelCache>,
    url: String,
    /// The network response's headers and FILE_HEADER: the index's.
    headers: web_sys::Headers,
    status: u16,
    gathered: js_sys::Array,
    gathered_bytes: u32,
    len: u64,
    /// Parts put so far (the last may still be in flight).
    parts: u32,
    /// Parts of an older copy, deleted beyond the new copy's once it is stored.
    stale_parts: u32,
    put: Option<js_sys::Promise>,
    /// Stored whole, or given up on.
    done: bool,
}

impl Tee {
    /// Passes a chunk on to the cache. False if the cache write failed (warned of; the tee
    /// is then done with, and the load carries on).
    pub async fn write(&mut self, chunk: &Uint8Array) -> bool {
        self.len += chunk.length() as u64;
        let mut rest = chunk.clone();
        while rest.length() > 0 {
            let take = (PART_BYTES - self.gathered_bytes).min(rest.length());
            self.gathered.push(&rest.subarray(0, take));
            self.gathered_bytes += take;
            rest = rest.subarray(take, rest.length());
            if self.gathered_bytes == PART_BYTES
                && let Err(e) = self.put_part().await
            {
                self.fail(&e);
                return false;
            }
        }
        true
    }

    /// Waits for the put in flight, then puts what is gathered as the next part.
    async fn put_part(&mut self) -> Result<(), JsValue> {
        if let Some(put) = self.put.take() {
            JsFuture::from(put).await?;
        }
        let blob = web_sys::Blob::new_with_u8_array_sequence(&self.gathered)?;
        self.gathered = js_sys::Array::new();
        self.gathered_bytes = 0;
        let response = web_sys::Response::new_with_opt_blob(Some(&blob))?;
        self.put = Some(
            self.cache
                .cache
                .put_with_str(&part_url(&self.url, self.parts), &response),
        );
        self.parts += 1;
        Ok(())
    }

    /// The body is all written: store the last part and, once every part is in, the index.
    pub async fn finish(mut self) {
        let result = async {
            if self.gathered_bytes > 0 {
                self.put_part().await?;
            }
            if let Some(put) = self.put.take() {
                JsFuture::from(put).await?;
            }
            self.headers.set(PARTS_HEADER, &self.parts.to_string())?;
            self.headers.set(LENGTH_HEADER, &self.len.to_string())?;
            let init = web_sys::ResponseInit::new();
            init.set_status(self.status);
            init.set_headers(&self.headers);
            let index = web_sys::Response::new_with_opt_str_and_init(None, &init)?;
            JsFuture::from(self.cache.cache.put_with_str(&self.url, &index)).await?;
            for i in self.parts..self.stale_parts {
                JsFuture::from(self.cache.cache.delete_with_str(&part_url(&self.url, i))).await?;
            }
            Ok::<_, JsValue>(())
        }
        .await;
        self.done = true;
        match result {
            Ok(_) => self
                .cache
                .touched
                .borrow_mut()
                .push((self.url.clone(), self.parts)),
            Err(e) => self.cache.failed(&self.url, self.parts, &e),
        }
    }

    fn fail(&mut self, e: &JsValue) {
        self.done = true;
        self.cache.failed(&self.url, self.parts, e);
    }
}

impl Drop for Tee {
    /// A load that stops reading a file part way (an error) leaves its parts to `settle`,
    /// which drops them with the rest of the load's files; no index was stored, so they are
    /// never read meanwhile. (A put still in flight may land after that: an orphan part,
    /// never read, replaced when the file is next stored, gone with "Clear cached weights".)
    fn drop(&mut self) {
        if let Some(put) = self.put.take() {
            // Wrapped in a future, put's rejection (if it fails) counts as handled rather
            // than as a console error.
            drop(JsFuture::from(put));
        }
        if !self.done {
            self.cache
                .touched
                .borrow_mut()
                .push((self.url.clone(), self.parts));
            self.cache.incomplete.set(true);
        }
    }
}
