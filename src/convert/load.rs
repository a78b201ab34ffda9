//! Loading a `.gguf` model straight onto the GPU: its blocks are uploaded as they are
//! (repacked to the resident layout part by part), with no F32 copy and no folder. The
//! config, tokenizer and chat template come from the GGUF's metadata.

use super::hf::{config, hf_bytes, tensors, tokenizer_config};
use super::tokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::gguf::Gguf;
use crate::load::{LoadOptions, Progress, Uploader, Weights, recode};
use std::path::Path;

/// A GGUF model on the GPU, with the HF-format texts the host loop needs.
pub struct GgufModel {
    pub config_json: String,
    pub tokenizer_json: String,
    pub tokenizer_config_json: String,
    pub weights: Weights,
}

/// Map `path`, read its metadata and upload every tensor in its stored format.
pub async fn load_gguf(gpu: &Gpu, path: &Path, options: LoadOptions<'_>) -> Result<GgufModel> {
    let label = path.display().to_string();
    let io = |e| Error::Io {
        path: label.clone(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: a read-only map of a file kiln does not modify.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let g = Gguf::parse(&label, &map)?;
    let cfg = config(&g)?;
    let plan = tensors(&g)?;
    let tok = tokenizer::from_gguf(&g)?;
    let tokenizer_json = tok
        .to_string(false)
        .map_err(|e| Error::load(&label, format!("writing the tokenizer: {e}")))?;
    let tokenizer_config_json = tokenizer_config(&g, &cfg)?.to_string();

    let LoadOptions {
        max_part_bytes,
        mut progress,
        dtype: recode_to,
    } = options;
    let bytes_total: u64 = plan.iter().map(|(_, t)| (t.end - t.start) as u64).sum();
    let mut weights = Weights::new(&label);
    let mut up = Uploader::new(gpu, max_part_bytes);
    let mut base = 0u64;
    for (i, (name, t)) in plan.iter().enumerate() {
        let bytes = hf_bytes(&g, &cfg, name, t)?;
        let shape = t.shape();
        let recoded = recode(recode_to, t.kind, &shape, &bytes)?;
        let (kind, data) = match &recoded {
            Some((d, b)) => (*d, &b[..]),
            None => (t.kind, &bytes[..]),
        };
        let scale = bytes.len() as f64 / data.len().max(1) as f64;
        let report = |done: u64| {
            if let Some(cb) = progress.as_mut() {
                cb(&Progress {
                    tensor: name,
                    bytes_done: base + (done as f64 * scale) as u64,
                    bytes_total,
                    tensors_done: i,
                    tensors_total: plan.len(),
                });
            }
        };
        let tensor = up
            .tensor_with(name, &shape, kind, data, report)
            .await
            .map_err(|e| match e {
                Error::Limit(m) | Error::Gpu(m) | Error::Shape(m) => {
                    Error::tensor(&label, &t.name, m)
                }
                other => other,
            })?;
        weights.insert(tensor);
        base += bytes.len() as u64;
    }
    up.finish().await;
    Ok(GgufModel {
        config_json: cfg.to_string(),
        tokenizer_json,
        tokenizer_config_json,
        weights,
    })
}
