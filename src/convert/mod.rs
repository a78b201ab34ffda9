//! `kiln convert FILE.gguf OUT_DIR`: a GGUF model becomes an HF-layout folder kiln (and other
//! HF tools) load directly: `model.safetensors` (F32), `config.json`, `tokenizer.json` and
//! `tokenizer_config.json` with the chat template.
//!
//! Weights are written as **F32**: dequantised Q4_1/Q8_0 values are exact in f32 and not in
//! f16, so the converted model computes the same function as the quantised file. llama.cpp
//! stores q and k rows permuted for its RoPE layout; the permutation is undone so the folder
//! uses HF's rotate-half layout and names (`model.layers.0.self_attn.q_proj.weight`).

pub mod tokenizer;

use crate::error::{Error, Result};
use crate::load::gguf::{Gguf, GgufTensor};
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// HF name of a GGUF tensor, for the architectures kiln imports.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, leaf) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = leaf.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Undo llama.cpp's permutation of q/k rows: within each head, GGUF row `2i + j` is HF row
/// `j * head_dim/2 + i`.
fn unpermute(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let cols = values.len() / rows;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * hd + i * 2 + j;
                let dst = h * hd + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The HF config the GGUF describes.
pub fn config(g: &Gguf) -> Result<serde_json::Value> {
    let arch = g.str("general.architecture")?;
    let class = match arch {
        "llama" => "LlamaForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        other => {
            return Err(Error::load(
                g.path(),
                format!("GGUF architecture '{other}' is not supported for import (llama, qwen2)"),
            ));
        }
    };
    let key = |k: &str| format!("{arch}.{k}");
    let heads = g.u64(&key("attention.head_count"))?;
    let dim = g.u64(&key("embedding_length"))?;
    let vocab = match g.meta.get(&key("vocab_size")).and_then(|m| m.as_u64()) {
        Some(v) => v,
        None => g.strings("tokenizer.ggml.tokens")?.len() as u64,
    };
    let head_dim = match g
        .meta
        .get(&key("rope.dimension_count"))
        .and_then(|m| m.as_u64())
    {
        Some(d) => d,
        None => dim / heads,
    };
    let tied = g.tensor("output.weight").is_none();
    let eps = g.f64(&key("attention.layer_norm_rms_epsilon"))? as f32;
    let mut cfg = json!({
        "architectures": [class],
        "model_type": arch,
        "hidden_size": dim,
        "intermediate_size": g.u64(&key("feed_forward_length"))?,
        "num_hidden_layers": g.u64(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": g.meta.get(&key("attention.head_count_kv")).and_then(|m| m.as_u64()).unwrap_or(heads),
        "head_dim": head_dim,
        "rms_norm_eps": eps,
        "rope_theta": g.meta.get(&key("rope.freq_base")).and_then(|m| m.as_f64()).unwrap_or(10_000.0),
        "max_position_embeddings": g.u64(&key("context_length"))?,
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    });
    for (name, field) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
    ] {
        if let Some(v) = g.meta.get(name).and_then(|m| m.as_u64()) {
            cfg[field] = json!(v);
        }
    }
    Ok(cfg)
}

/// `tokenizer_config.json`: special tokens and the chat template.
fn tokenizer_config(g: &Gguf, cfg: &serde_json::Value) -> Result<serde_json::Value> {
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let token = |field: &str| {
        cfg.get(field)
            .and_then(|v| v.as_u64())
            .and_then(|i| tokens.get(i as usize))
            .map(|s| s.to_string())
    };
    let flag = |k: &str| g.meta.get(k).and_then(|m| m.as_bool()).unwrap_or(false);
    let mut tc = json!({
        "add_bos_token": flag("tokenizer.ggml.add_bos_token"),
        "add_eos_token": flag("tokenizer.ggml.add_eos_token"),
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "clean_up_tokenization_spaces": false,
        "model_max_length": cfg["max_position_embeddings"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = g
        .meta
        .get("tokenizer.chat_template")
        .and_then(|m| m.as_str())
    {
        tc["chat_template"] = json!(t);
    }
    Ok(tc)
}

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
    let heads = cfg["num_attention_heads"].as_u64().unwrap_or(1) as usize;
    let kv_heads = cfg["num_key_value_heads"].as_u64().unwrap_or(1) as usize;

    let mut plan: Vec<(String, &GgufTensor)> = Vec::new();
    for t in &g.tensors {
        match hf_name(&t.name) {
            Some(n) => plan.push((n, t)),
            // RoPE frequency tables and the like are recomputed from the config.
            None if t.name.starts_with("rope_") => {}
            None => {
                return Err(Error::tensor(
                    &label,
                    &t.name,
                    "has no HF equivalent kiln knows",
                ));
            }
        }
    }
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
        let mut values = g.dequantize(t);
        let rows = t.shape().first().copied().unwrap_or(1);
        if name.ends_with("q_proj.weight") || name.ends_with("q_proj.bias") {
            values = unpermute(&values, rows, heads);
        } else if name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias") {
            values = unpermute(&values, rows, kv_heads);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (heads, hd, cols) = (3, 8, 2);
        let rows = heads * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let mut gguf = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    let src = h * hd + j * hd / 2 + i; // hf[h, j, i]
                    let dst = h * hd + i * 2 + j; // gguf[h, i, j]
                    gguf[dst * cols..][..cols].copy_from_slice(&hf[src * cols..][..cols]);
                }
            }
        }
        assert_ne!(gguf, hf);
        assert_eq!(unpermute(&gguf, rows, heads), hf);
    }

    #[test]
    fn names_map_to_hf() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.attn_k.bias").as_deref(),
            Some("model.layers.0.self_attn.k_proj.bias")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("blk.0.mystery.weight"), None);
    }
}
