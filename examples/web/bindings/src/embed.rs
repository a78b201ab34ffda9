//! Sentence embeddings: texts in, one vector per text out, through the same encoder host loop
//! as `kiln embed`.

use crate::{Folder, err};
use js_sys::{Array, Float32Array, Reflect};
use kiln::embed::{EmbeddingModel, Recipe};
use wasm_bindgen::prelude::*;

/// An embedding model (a BERT encoder with mean pooling) on the GPU.
#[wasm_bindgen]
pub struct Embedder {
    inner: EmbeddingModel,
    adapter: JsValue,
}

impl Embedder {
    /// `options.normalize`: force L2 normalisation on or off; unset, the folder's
    /// `modules.json` decides, as natively.
    pub(crate) async fn open(f: Folder, options: &JsValue) -> Result<Embedder, JsError> {
        let pooling = f.source.text("1_Pooling/config.json").await?;
        let modules = f.source.text("modules.json").await?;
        let normalize = Reflect::get(options, &"normalize".into())
            .ok()
            .and_then(|v| v.as_bool());
        let recipe = Recipe {
            config_json: &f.config,
            tokenizer_json: &f.tokenizer,
            pooling_json: pooling.as_deref(),
            modules_json: modules.as_deref(),
            normalize,
        };
        let inner = EmbeddingModel::from_parts(&f.gpu, recipe, &f.weights)
            .await
            .map_err(err)?;
        Ok(Embedder {
            inner,
            adapter: f.adapter,
        })
    }
}

#[wasm_bindgen]
impl Embedder {
    /// "embed": what this model does (see `loadUrl`).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        "embed".into()
    }

    /// The adapter the model runs on, as `Model.adapter`.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> JsValue {
        self.adapter.clone()
    }

    /// Width of each embedding.
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.inner.width()
    }

    /// The most tokens of one input, special tokens included; longer inputs are truncated.
    #[wasm_bindgen(js_name = maxTokens, getter)]
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    /// Whether embeddings come L2-normalised.
    #[wasm_bindgen(getter)]
    pub fn normalizes(&self) -> bool {
        self.inner.normalizes()
    }

    /// Embed `texts`, `batch` at a time (default 32), batched by length with padding masked;
    /// resolves to one Float32Array per text, in order. An input over `maxTokens` is
    /// truncated, with a warning on the console naming it. `onProgress(done, total)` hears
    /// each batch.
    pub async fn embed(
        &mut self,
        texts: Vec<String>,
        batch: Option<usize>,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Array, JsError> {
        let mut inputs = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let t = self.inner.tokenize(text).map_err(err)?;
            if t.truncated {
                web_sys::console::warn_1(
                    &format!(
                        "kiln: input {i} is longer than the model's {} tokens; it was truncated",
                        self.inner.max_tokens()
                    )
                    .into(),
                );
            }
            inputs.push(t);
        }
        let mut progress = |done: usize, total: usize| {
            if let Some(f) = &on_progress {
                let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
            }
        };
        let rows = self
            .inner
            .embed(&inputs, batch.unwrap_or(32), &mut progress)
            .await
            .map_err(err)?;
        Ok(rows.iter().map(|r| Float32Array::from(&r[..])).collect())
    }
}
