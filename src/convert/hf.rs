//! A GGUF model seen as an HF model: HF tensor names, the HF config, the tokenizer config,
//! and each tensor's bytes in HF row order. Both `kiln convert` (which writes a folder) and
//! the direct load (which uploads the blocks as they are) read a GGUF through this.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` for the **llama**
//! architecture only (its RoPE pairs adjacent elements); they are permuted back so that
//! kiln's rotate-half RoPE applies. Other architectures (qwen2) are stored in HF order.

use crate::error::{Error, Result};
use crate::load::gguf::{Gguf, GgufTensor};
use serde_json::json;
use std::borrow::Cow;

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
/// `j * head_dim/2 + i`. Rows are whole byte runs (`bytes.len() / rows` each), so this works
/// on any dtype whose rows are whole blocks.
fn unpermute<T: Copy + Default>(values: &[T], rows: usize, heads: usize) -> Vec<T> {
    let cols = values.len() / rows;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![T::default(); values.len()];
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
        None => dim.checked_div(heads).ok_or_else(|| {
            Error::load(
                g.path(),
                format!("metadata '{}' is 0", key("attention.head_count")),
            )
        })?,
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
pub fn tokenizer_config(g: &Gguf, cfg: &serde_json::Value) -> Result<serde_json::Value> {
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let token = |field: &str| {
        cfg.get(field)
            .and_then(|v| v.as_u64())
            .and_then(|i| tokens.get(i as usize))
            .map(|s| s.to_string())
    };
    let flag = |k: &str, default| g.meta.get(k).and_then(|m| m.as_bool()).unwrap_or(default);
    // llama.cpp adds a BOS by default for SentencePiece vocabularies, not for BPE ones.
    let spm = g.meta.get("tokenizer.ggml.model").and_then(|m| m.as_str()) == Some("llama");
    let mut tc = json!({
        "add_bos_token": flag("tokenizer.ggml.add_bos_token", spm),
        "add_eos_token": flag("tokenizer.ggml.add_eos_token", false),
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

/// The GGUF's tensors under their HF names, in file order. RoPE tables and the like are
/// left out (kiln recomputes them from the config); any other unknown tensor is an error.
pub fn tensors<'g>(g: &'g Gguf) -> Result<Vec<(String, &'g GgufTensor)>> {
    let mut plan = Vec::new();
    for t in &g.tensors {
        match hf_name(&t.name) {
            Some(n) => plan.push((n, t)),
            None if t.name.starts_with("rope_") => {}
            None => {
                return Err(Error::tensor(
                    g.path(),
                    &t.name,
                    "has no HF equivalent kiln knows",
                ));
            }
        }
    }
    Ok(plan)
}

/// The bytes of tensor `t` (HF name `name`) in HF row order, as the file stores them
/// otherwise (ggml blocks for block formats): llama's q and k rows are un-permuted.
pub fn hf_bytes<'g>(
    g: &Gguf<'g>,
    cfg: &serde_json::Value,
    name: &str,
    t: &GgufTensor,
) -> Result<Cow<'g, [u8]>> {
    let data = g.data(t);
    let heads = if name.contains("q_proj.") {
        "num_attention_heads"
    } else if name.contains("k_proj.") {
        "num_key_value_heads"
    } else {
        return Ok(Cow::Borrowed(data));
    };
    if cfg["model_type"] != "llama" {
        return Ok(Cow::Borrowed(data));
    }
    let heads = cfg[heads].as_u64().unwrap_or(1) as usize;
    let rows = t.shape().first().copied().unwrap_or(1);
    let head_dim = rows / heads.max(1);
    if data.is_empty() {
        // No rows to reorder (a zero-width tensor): its row count may be anything, and
        // walking it would take as long as the count (a fuzzer's finding).
        return Ok(Cow::Borrowed(data));
    }
    if heads == 0
        || rows % heads != 0
        || !head_dim.is_multiple_of(2)
        || !data.len().is_multiple_of(rows)
    {
        return Err(Error::tensor(
            g.path(),
            &t.name,
            format!(
                "{rows} rows of {} cannot be un-permuted over {heads} heads",
                t.kind
            ),
        ));
    }
    Ok(Cow::Owned(unpermute(data, rows, heads)))
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
