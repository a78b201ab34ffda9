//! `kiln convert SRC OUT_DIR`: a model in another format becomes an HF-layout folder kiln (and
//! other HF tools) load directly.
//!
//! - A GGUF file: `model.safetensors` (F32), `config.json`, `tokenizer.json` and
//!   `tokenizer_config.json` with the chat template.
//! - A CTranslate2 Whisper model (faster-whisper's folders): `convert::whisper`.
//!
//! GGUF weights are written as **F32**: dequantised block values are exact in f32 and not in
//! f16, so the converted model computes the same function as the quantised file. Names and
//! row order are HF's ([`hf`]). Loading a `.gguf` directly (`convert::load`) skips the folder and
//! keeps the blocks.

pub mod hf;
mod load;
mod spm;
pub mod tokenizer;
mod whisper;
mod write;

pub use hf::{config, tensors, tokenizer_config};
pub use load::{GgufModel, gguf_block, gguf_config_json, load_gguf};

use crate::dtype::blocks;
use crate::error::{Error, Result};
use crate::load::gguf::Gguf;
use hf::hf_bytes;
use std::path::Path;
use write::{Entry, io};

/// Progress of a conversion: tensors written so far, and the total.
pub type ConvertProgress<'a> = dyn FnMut(usize, usize, &str) + 'a;

/// Convert the model at `src` into an HF folder at `out`: a GGUF file, or a CTranslate2
/// Whisper model (its folder, or the `model.bin` in it).
pub fn convert(src: &Path, out: &Path, progress: &mut ConvertProgress) -> Result<()> {
    let model_bin = match src.is_dir() {
        true => Some(src.join("model.bin")),
        false if src.file_name().is_some_and(|n| n == "model.bin") => Some(src.to_path_buf()),
        false => None,
    };
    match model_bin {
        Some(bin) => whisper::convert(&bin, out, progress),
        None => convert_gguf(src, out, progress),
    }
}

fn map(src: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(src).map_err(|e| io(src, e))?;
    // SAFETY: read-only map of a file we do not modify.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io(src, e))
}

/// Convert the GGUF at `src`: F32 weights (see the module's description).
fn convert_gguf(src: &Path, out: &Path, progress: &mut ConvertProgress) -> Result<()> {
    let map = map(src)?;
    let label = src.display().to_string();
    let g = Gguf::parse(&label, &map)?;
    let cfg = config(&g)?;
    let plan = tensors(&g)?;
    let tok = tokenizer::from_gguf(&g)?;
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let entries: Vec<Entry> = plan
        .iter()
        .map(|(name, t)| Entry {
            name: name.clone(),
            dtype: "F32",
            shape: t.shape(),
            bytes: t.numel() as u64 * 4,
        })
        .collect();
    write::safetensors(out, &label, &entries, progress, &mut |i, w| {
        let (name, t) = &plan[i];
        let values = blocks::dequantize_file(t.kind, &hf_bytes(&g, &cfg, name, t)?);
        let p = out.join("model.safetensors.partial");
        w.write_all(bytemuck::cast_slice(&values))
            .map_err(|e| io(&p, e))
    })?;
    write::json_file(out, "config.json", &cfg)?;
    write::json_file(out, "tokenizer_config.json", &tokenizer_config(&g, &cfg)?)?;
    let tp = out.join("tokenizer.json");
    tok.save(&tp, false)
        .map_err(|e| Error::load(tp.display(), format!("writing the tokenizer: {e}")))?;
    Ok(())
}
