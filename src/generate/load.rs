//! Placing a [`TextModel`] on one adapter or a group of them ([`Gpus`]): where its files are,
//! and what part of the weights each adapter uploads. Split by layers, each adapter holds
//! its span of layers only, so a model too large for any one of them fits on several; split
//! tensor-parallel, each holds its shard of every layer ([`llama_cut`]).

use super::{Stage, TextModel};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::{LoadOptions, Progress, Weights};
use crate::models::Part;
use crate::models::config::Config;
use crate::models::synthetic::Preset;
use crate::split::{Blocks, Gpus, Split, layers_cut, llama_cut};

/// Where a model's files are.
pub(super) enum Source<'a> {
    /// An HF folder: `config.json`, safetensors, `tokenizer.json`, `tokenizer_config.json`.
    #[cfg(not(target_arch = "wasm32"))]
    Folder(&'a std::path::Path),
    /// A `.gguf` file, whose weights stay in their stored format.
    #[cfg(not(target_arch = "wasm32"))]
    Gguf(&'a std::path::Path),
    /// A known shape with random weights.
    Synthetic(&'a Preset),
}

/// What one adapter's upload gives: the model's texts and its part of the weights.
struct Upload {
    config_json: String,
    tokenizer_json: Vec<u8>,
    tokenizer_config_json: Option<String>,
    weights: Weights,
}

impl Source<'_> {
    /// The block sizes of the weights cut by columns (`o_proj` and `down`) must keep: the
    /// recoding's, or the widest stored format's (GGUF's names, `attn_output`, `ffn_down`).
    fn blocks(&self, dtype: Option<crate::DType>) -> Result<Blocks> {
        let want = dtype.map_or(1, |d| d.block_elems());
        let (o_proj, down) = match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Gguf(p) => (
                crate::convert::gguf_block(p, "attn_output.weight")?,
                crate::convert::gguf_block(p, "ffn_down.weight")?,
            ),
            _ => (1, 1),
        };
        Ok(Blocks {
            o_proj: o_proj.max(want),
            down: down.max(want),
        })
    }

    fn origin(&self) -> String {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Folder(p) | Source::Gguf(p) => p.display().to_string(),
            Source::Synthetic(p) => format!("synthetic:{}", p.name),
        }
    }

    /// The config, read before any weight to plan the placement.
    fn config(&self) -> Result<Config> {
        let origin = self.origin();
        let json = match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Folder(dir) => text(&dir.join("config.json"))?,
            #[cfg(not(target_arch = "wasm32"))]
            Source::Gguf(path) => crate::convert::gguf_config_json(path)?,
            Source::Synthetic(p) => p.config_json(),
        };
        Config::from_json(&format!("{origin}/config.json"), &json)
    }

    async fn upload(&self, gpu: &Gpu, options: LoadOptions<'_>) -> Result<Upload> {
        Ok(match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Folder(dir) => {
                let tokenizer_config = dir.join("tokenizer_config.json");
                Upload {
                    config_json: text(&dir.join("config.json"))?,
                    tokenizer_json: read(&dir.join("tokenizer.json"))?,
                    tokenizer_config_json: match tokenizer_config.exists() {
                        true => Some(text(&tokenizer_config)?),
                        false => None,
                    },
                    weights: crate::load::Checkpoint::open(dir)?
                        .upload(gpu, options)
                        .await?,
                }
            }
            #[cfg(not(target_arch = "wasm32"))]
            Source::Gguf(path) => {
                let m = crate::convert::load_gguf(gpu, path, options).await?;
                Upload {
                    config_json: m.config_json,
                    tokenizer_json: m.tokenizer_json.into_bytes(),
                    tokenizer_config_json: Some(m.tokenizer_config_json),
                    weights: m.weights,
                }
            }
            Source::Synthetic(p) => Upload {
                config_json: p.config_json(),
                tokenizer_json: p.tokenizer_json().into_bytes(),
                tokenizer_config_json: None,
                weights: crate::models::synthetic::upload(gpu, p, options).await?,
            },
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn read(p: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::Io {
        path: p.display().to_string(),
        source: e,
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn text(p: &std::path::Path) -> Result<String> {
    String::from_utf8(read(p)?).map_err(|_| Error::load(p.display(), "not UTF-8"))
}

/// Upload `source` onto `gpus`: whole on one adapter; split by layers across several, each
/// adapter uploading its span (the progress callback sees one pass over the source per
/// adapter, in turn, as one count).
pub(super) async fn place(
    gpus: &Gpus,
    source: Source<'_>,
    mut options: LoadOptions<'_>,
) -> Result<TextModel> {
    let origin = source.origin();
    // Before any weight moves: a folder of a model that does not generate text fails here.
    let config = source.config()?;
    if let [gpu] = gpus.gpus() {
        let p = source.upload(gpu, options).await?;
        return TextModel::from_parts(
            gpu,
            &origin,
            &p.config_json,
            &p.tokenizer_json,
            p.tokenizer_config_json.as_deref(),
            &p.weights,
        );
    }
    if options.cut.is_some() {
        return Err(Error::Invalid(
            "a model placed on several adapters is cut by its placement; LoadOptions::cut \
             applies to one adapter"
                .into(),
        ));
    }
    let blocks = source.blocks(options.dtype)?;
    // Tensor-parallel, the last adapter holds the largest share and samples: make it the
    // fastest.
    let tensor = gpus.fastest_last().with_split(Split::Tensor);
    let gpus = &match gpus.split() {
        Split::Tensor => tensor,
        Split::Layers => gpus.clone(),
        Split::Auto => match tensor.shards(&config, blocks) {
            Ok(_) => tensor,
            Err(e) => {
                log::warn!("splitting by layers: tensor-parallel cannot place this model: {e}");
                gpus.clone().with_split(Split::Layers)
            }
        },
    };
    let n = gpus.gpus().len();
    // Each adapter's part, how it names it, and its cut rule.
    type Rule<'r> = Box<dyn Fn(&str, &[usize]) -> Option<crate::load::Cut> + 'r>;
    let mut parts: Vec<(Part, String, Rule)> = Vec::with_capacity(n);
    match gpus.split() {
        Split::Layers => {
            for span in gpus.spans(config.layers)? {
                let what = format!("layers {:?}", span.layers);
                let part = Part::Layers(span.layers.clone());
                let config = &config;
                let rule: Rule =
                    Box::new(move |name: &str, _: &[usize]| layers_cut(config, &span, name));
                parts.push((part, what, rule));
            }
        }
        Split::Tensor | Split::Auto => {
            for shard in gpus.shards(&config, blocks)? {
                let what = Part::Shard(shard.clone()).to_string();
                let cut = shard.clone();
                let config = &config;
                let rule: Rule =
                    Box::new(move |name: &str, _: &[usize]| llama_cut(config, &cut, name));
                parts.push((Part::Shard(shard), what, rule));
            }
        }
    }
    let mut stages = Vec::with_capacity(n);
    let mut dtypes = Vec::new();
    let mut texts = None;
    for (i, (gpu, (part, what, rule))) in gpus.gpus().iter().zip(parts).enumerate() {
        // Each adapter reads the whole source for its tensors: progress counts every pass.
        let progress = options.progress.as_mut().map(|p| {
            Box::new(move |x: &Progress| {
                p(&Progress {
                    tensor: x.tensor,
                    bytes_done: i as u64 * x.bytes_total + x.bytes_done,
                    bytes_total: n as u64 * x.bytes_total,
                    tensors_done: i * x.tensors_total + x.tensors_done,
                    tensors_total: n * x.tensors_total,
                })
            }) as Box<dyn FnMut(&Progress) + '_>
        });
        let part_options = LoadOptions {
            max_part_bytes: options.max_part_bytes,
            dtype: options.dtype,
            budget: options.budget,
            progress,
            cut: Some(rule),
        };
        let placing = |e: Error| e.context(format!("placing {what} on {}", gpu.describe()));
        let loaded = source.upload(gpu, part_options).await.map_err(placing)?;
        let decoder = crate::models::decoder(
            &format!("{origin}/config.json"),
            &loaded.config_json,
            &loaded.weights,
            part,
        )
        .map_err(placing)?;
        for d in loaded.weights.matrix_dtypes() {
            if !dtypes.contains(&d) {
                dtypes.push(d);
            }
        }
        stages.push(Stage {
            gpu: gpu.clone(),
            decoder,
        });
        texts.get_or_insert((loaded.tokenizer_json, loaded.tokenizer_config_json));
    }
    let (tokenizer_json, tokenizer_config_json) =
        texts.ok_or_else(|| Error::Invalid("a placement needs at least one adapter".into()))?;
    TextModel::assemble(
        &origin,
        &tokenizer_json,
        tokenizer_config_json.as_deref(),
        stages,
        gpus.split(),
        dtypes,
    )
}
