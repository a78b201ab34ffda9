//! Loading a `.gguf` model straight onto the GPU: its blocks are uploaded as they are
//! (repacked to the resident layout part by part), with no F32 copy and no folder. The
//! config, tokenizer and chat template come from the GGUF's metadata.

use super::hf::{config, hf_bytes, tensors, tokenizer_config};
use super::tokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::gguf::Gguf;
use crate::load::{LoadOptions, Loading, Weights};
use std::path::Path;

/// A GGUF model on the GPU, with the HF-format texts the host loop needs.
pub struct GgufModel {
    /// `config.json` as Hugging Face would write it, from the GGUF metadata.
    pub config_json: String,
    /// `tokenizer.json`, rebuilt from the GGUF vocabulary.
    pub tokenizer_json: String,
    /// `tokenizer_config.json` (special tokens, chat template), from the GGUF metadata.
    pub tokenizer_config_json: String,
    /// The tensors, uploaded in their stored formats under Hugging Face names.
    pub weights: Weights,
}

/// Map `path`, read its metadata and upload every tensor in its stored format.
pub async fn load_gguf(gpu: &Gpu, path: &Path, options: LoadOptions<'_>) -> Result<GgufModel> {
    let (label, map) = map(path)?;
    let g = Gguf::parse(&label, &map)?;
    let cfg = config(&g)?;
    let plan = tensors(&g)?;
    let tok = tokenizer::from_gguf(&g)?;
    let tokenizer_json = tok
        .to_string(false)
        .map_err(|e| Error::load(&label, format!("writing the tokenizer: {e}")))?;
    let tokenizer_config_json = tokenizer_config(&g, &cfg)?.to_string();

    let bytes_total: u64 = plan.iter().map(|(_, t)| (t.end - t.start) as u64).sum();
    let mut load = Loading::new(gpu, &label, options, bytes_total, plan.len());
    for (name, t) in &plan {
        if load.skips(name, &t.shape()) {
            load.pass(name, (t.end - t.start) as u64);
            continue;
        }
        let bytes = hf_bytes(&g, &cfg, name, t)?;
        load.add(name, &t.shape(), t.kind, &bytes).await?;
    }
    let weights = load.finish().await;
    Ok(GgufModel {
        config_json: cfg.to_string(),
        tokenizer_json,
        tokenizer_config_json,
        weights,
    })
}

/// The HF `config.json` text of the GGUF at `path`, from its metadata alone (to plan a
/// placement before any weight is read).
pub fn gguf_config_json(path: &Path) -> Result<String> {
    let (label, map) = map(path)?;
    Ok(config(&Gguf::parse(&label, &map)?)?.to_string())
}

/// The widest block, in weights, of the GGUF's tensors whose names end with `suffix` (1 for
/// float formats, 1 when none does): what a cut through their columns must keep whole.
pub fn gguf_block(path: &Path, suffix: &str) -> Result<usize> {
    let (label, map) = map(path)?;
    let g = Gguf::parse(&label, &map)?;
    let widest = g.tensors.iter().filter(|t| t.name.ends_with(suffix));
    Ok(widest.map(|t| t.kind.block_elems()).max().unwrap_or(1))
}

/// The file at `path` mapped read-only, with its name for messages.
fn map(path: &Path) -> Result<(String, memmap2::Mmap)> {
    let label = path.display().to_string();
    let io = |e| Error::Io {
        path: label.clone(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: a read-only map of a file kiln does not modify.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok((label, map))
}
