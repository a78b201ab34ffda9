//! `kiln convert FILE.gguf OUT_DIR`: a GGUF model becomes an HF-layout folder kiln (and other
//! HF tools) load directly: `model.safetensors` (F32), `config.json`, `tokenizer.json` and
//! `tokenizer_config.json` with the chat template.
//!
//! Weights are written as **F32**: dequantised block values are exact in f32 and not in
//! f16, so the converted model computes the same function as the quantised file. Names and
//! row order are HF's ([`hf`]). Loading a `.gguf` directly ([`load`]) skips the folder and
//! keeps the blocks.

pub mod hf;
mod load;
mod spm;
pub mod tokenizer;

pub use hf::{config, tensors, tokenizer_config};
pub use load::{GgufModel, gguf_block, gguf_config_json, load_gguf};

use crate::dtype::blocks;
use crate::error::{Error, Result};
use crate::load::gguf::Gguf;
use hf::hf_bytes;
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Progress of a conversion: tensors written so far, and the total.
pub type ConvertProgress<'a> = dyn FnMut(usize, usize, &str) + 'a;

/// Convert the GGUF at `src` into an HF folder at `out`.
pub fn convert(src: &Path, out: &Path, progress: &mut ConvertProgress) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::Io {
        path: p.display().to_string(),
        source: e,
    };
    let file = std::fs::File::open(src).map_err(|e| io(src, e))?;
    // SAFETY: read-only map of a file we do not modify.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io(src, e))?;
    let label = src.display().to_string();
    let g = Gguf::parse(&label, &map)?;
    let cfg = config(&g)?;
    let plan = tensors(&g)?;
    let tok = tokenizer::from_gguf(&g)?;
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;

    // Header first (every size is known), then the data tensor by tensor.
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, t) in &plan {
        let bytes = t.numel() as u64 * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": t.shape(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    header.insert(
        "__metadata__".into(),
        json!({"format": "pt", "converted_by": "kiln", "source": label}),
    );
    let mut text = serde_json::to_string(&header).map_err(|e| Error::Invalid(e.to_string()))?;
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let st_path = out.join("model.safetensors");
    let tmp = out.join("model.safetensors.partial");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(|e| io(&tmp, e))?;
    w.write_all(text.as_bytes()).map_err(|e| io(&tmp, e))?;
    for (i, (name, t)) in plan.iter().enumerate() {
        progress(i, plan.len(), name);
        let values = blocks::dequantize_file(t.kind, &hf_bytes(&g, &cfg, name, t)?);
        w.write_all(bytemuck::cast_slice(&values))
            .map_err(|e| io(&tmp, e))?;
    }
    progress(plan.len(), plan.len(), "");
    w.flush().map_err(|e| io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, &st_path).map_err(|e| io(&st_path, e))?;

    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = out.join(name);
        let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&p, text + "\n").map_err(|e| io(&p, e))
    };
    write_json("config.json", &cfg)?;
    write_json("tokenizer_config.json", &tokenizer_config(&g, &cfg)?)?;
    let tp = out.join("tokenizer.json");
    tok.save(&tp, false)
        .map_err(|e| Error::load(tp.display(), format!("writing the tokenizer: {e}")))?;
    Ok(())
}
