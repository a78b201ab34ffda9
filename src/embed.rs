//! Sentence embeddings: texts in, one vector per text out, through the encoder host loop
//! ([`EncoderSession`]) and a BERT model ([`Bert`]).
//!
//! The recipe is sentence-transformers': the model folder's `tokenizer.json` (its truncation
//! kept, its padding dropped), the encoder, the mean of each input's token states, then L2
//! normalisation where the folder's `modules.json` lists it (or the caller asks). Inputs are
//! batched by length: sorted, cut into batches, each batch padded only to its longest
//! input, and padding masked by each input's length; results come back in input order.

use crate::encode::EncoderSession;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::bert::{Bert, BertConfig};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// One text tokenized for the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Whether the text was cut at the model's limit.
    pub truncated: bool,
}

/// An embedding model on one adapter.
pub struct EmbeddingModel {
    session: EncoderSession,
    tokenizer: Tokenizer,
    width: usize,
    max_tokens: usize,
    normalize: bool,
}

/// What [`EmbeddingModel::load`] reads besides the weights: the folder's texts.
pub struct Recipe<'a> {
    /// The folder's `config.json` (a BERT model's).
    pub config_json: &'a str,
    /// `tokenizer.json`, as bytes.
    pub tokenizer_json: &'a [u8],
    /// `1_Pooling/config.json`, where the folder has one.
    pub pooling_json: Option<&'a str>,
    /// `modules.json`, where the folder has one.
    pub modules_json: Option<&'a str>,
    /// Force L2 normalisation on (`Some(true)`) or off; `None` follows `modules.json`.
    pub normalize: Option<bool>,
}

impl EmbeddingModel {
    /// Load the HF folder `dir` (`config.json`, safetensors, `tokenizer.json`, and
    /// sentence-transformers' `modules.json` and `1_Pooling/config.json` where present)
    /// onto `gpu`. `normalize` as in [`Recipe`].
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn load(
        gpu: &Gpu,
        dir: &std::path::Path,
        normalize: Option<bool>,
        options: crate::load::LoadOptions<'_>,
    ) -> Result<EmbeddingModel> {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Io {
                    path: p.display().to_string(),
                    source: e,
                }),
            }
        };
        let text = |name: &str| -> Result<Option<String>> {
            read(name)?
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|_| Error::load(dir.join(name).display(), "not UTF-8"))
                })
                .transpose()
        };
        let need = |name: &str, b: Option<Vec<u8>>| {
            b.ok_or_else(|| Error::load(dir.display(), format!("no {name} in the model folder")))
        };
        let config_json = String::from_utf8(need("config.json", read("config.json")?)?)
            .map_err(|_| Error::load(dir.join("config.json").display(), "not UTF-8"))?;
        // Before any weight moves: a folder of another architecture fails here.
        BertConfig::from_json(&dir.join("config.json").display().to_string(), &config_json)?;
        let tokenizer_json = need("tokenizer.json", read("tokenizer.json")?)?;
        let weights = crate::load::Checkpoint::open(dir)?
            .upload(gpu, options)
            .await?;
        let (pooling, modules) = (text("1_Pooling/config.json")?, text("modules.json")?);
        let recipe = Recipe {
            config_json: &config_json,
            tokenizer_json: &tokenizer_json,
            pooling_json: pooling.as_deref(),
            modules_json: modules.as_deref(),
            normalize,
        };
        Self::from_parts(gpu, recipe, &weights).await
    }

    /// The model from its texts and its uploaded weights (a folder on disk, or files a page
    /// streamed to the GPU).
    pub async fn from_parts(
        gpu: &Gpu,
        recipe: Recipe<'_>,
        weights: &crate::load::Weights,
    ) -> Result<EmbeddingModel> {
        let config = BertConfig::from_json(weights.origin(), recipe.config_json)?;
        if let Some(p) = recipe.pooling_json {
            check_pooling(p)?;
        }
        let listed = recipe
            .modules_json
            .is_some_and(|m| m.contains("sentence_transformers.models.Normalize"));
        let normalize = recipe.normalize.unwrap_or(listed);
        let mut tokenizer = Tokenizer::from_bytes(recipe.tokenizer_json)
            .map_err(|e| Error::load(weights.origin(), format!("tokenizer.json: {e}")))?;
        // Batches pad to their own longest input, and the encoder masks the rest.
        tokenizer.with_padding(None);
        // The tokenizer's own limit where it has one (all-MiniLM-L6-v2's: 128), never past
        // the position table.
        let limit = tokenizer
            .get_truncation()
            .map_or(config.max_positions, |t| t.max_length);
        let max_tokens = limit.clamp(1, config.max_positions);
        let truncation = tokenizers::TruncationParams {
            max_length: max_tokens,
            ..tokenizer.get_truncation().cloned().unwrap_or_default()
        };
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| Error::load(weights.origin(), format!("tokenizer.json: {e}")))?;
        let positions = positions(gpu, weights, &config).await?;
        let table = crate::load::upload_f32(
            gpu,
            "embeddings.position_embeddings + token_type_embeddings[0]",
            &[config.max_positions, config.hidden],
            crate::DType::F32,
            &positions,
        )
        .await?;
        let width = config.hidden;
        let bert = Bert::new(config, weights, table, max_tokens, normalize)?;
        Ok(EmbeddingModel {
            session: EncoderSession::new(gpu, Arc::new(bert)),
            tokenizer,
            width,
            max_tokens,
            normalize,
        })
    }

    /// Width of each embedding.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The most tokens of one input (special tokens included); longer ones are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether embeddings come L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// `text` as the model reads it: the tokenizer's ids with its special tokens, cut at the
    /// model's limit.
    pub fn tokenize(&self, text: &str) -> Result<Tokens> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Invalid(format!("could not tokenize {text:?}: {e}")))?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }

    /// Embed `inputs` (tokenized), `batch` at a time, longest first; `progress` hears
    /// (inputs done, inputs in all) after each batch. Returns the embeddings in input order.
    pub async fn embed(
        &mut self,
        inputs: &[Tokens],
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        if batch == 0 {
            return Err(Error::Invalid("a batch of 0 inputs".into()));
        }
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].ids.len()));
        let mut out = vec![Vec::new(); inputs.len()];
        let mut done = 0;
        for chunk in order.chunks(batch) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|&i| inputs[i].ids.clone()).collect();
            let rows = self.session.encode(&ids).await?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i] = row;
            }
            done += chunk.len();
            progress(done, inputs.len());
        }
        Ok(out)
    }
}

/// sentence-transformers' pooling config: kiln pools by the mean of each input's tokens.
fn check_pooling(json: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::load("1_Pooling/config.json", format!("not JSON: {e}")))?;
    let on = |k: &str| v[k].as_bool().unwrap_or(false);
    let others = [
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ];
    if let Some(other) = others.iter().find(|k| on(k)) {
        return Err(Error::load(
            "1_Pooling/config.json",
            format!("{other} is set; kiln pools embeddings by the mean of the tokens only"),
        ));
    }
    if !on("pooling_mode_mean_tokens") {
        return Err(Error::load(
            "1_Pooling/config.json",
            "pooling_mode_mean_tokens is not set; kiln pools embeddings by the mean of the tokens only",
        ));
    }
    Ok(())
}

/// The position table plus the first token type's row, (P, D) row-major, read back from the
/// uploaded weights once: every input is one segment, so each position's sum is fixed.
async fn positions(gpu: &Gpu, w: &crate::load::Weights, c: &BertConfig) -> Result<Vec<f32>> {
    let prefix = if w.names().any(|n| n.starts_with("bert.")) {
        "bert."
    } else {
        ""
    };
    let name = |t: &str| format!("{prefix}embeddings.{t}.weight");
    let table = w.get_shaped(&name("position_embeddings"), &[c.max_positions, c.hidden])?;
    let types = w.get_shaped(&name("token_type_embeddings"), &[c.type_vocab, c.hidden])?;
    let mut pos = table.to_f32(gpu).await?;
    let types = types.to_f32(gpu).await?;
    for row in pos.chunks_mut(c.hidden) {
        for (p, t) in row.iter_mut().zip(&types[..c.hidden]) {
            *p += t;
        }
    }
    Ok(pos)
}
