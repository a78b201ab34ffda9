//! `config.json` of a Llama-family model (Llama 2/3, SmolLM, Qwen2, Mistral, TinyLlama),
//! checked for what kiln supports, with the derived quantities the model needs.

use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
struct Raw {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    rope_scaling: Option<serde_json::Value>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    sliding_window: Option<usize>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

/// A validated Llama-family configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// "llama", "mistral" or "qwen2" (from `model_type`, else `architectures`).
    pub model_type: String,
    /// Width of the hidden state (`hidden_size`).
    pub hidden: usize,
    /// Width of the MLP's inner layer (`intermediate_size`).
    pub ffn: usize,
    /// Decoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// Query heads per layer (`num_attention_heads`).
    pub heads: usize,
    /// KV heads per layer (`num_key_value_heads`, else `heads`); divides `heads`.
    pub kv_heads: usize,
    /// Width of one head (`head_dim`, else `hidden / heads`): even, at most
    /// [`MAX_HEAD_DIM`](crate::ops::attention::MAX_HEAD_DIM).
    pub head_dim: usize,
    /// RMSNorm epsilon (`rms_norm_eps`).
    pub eps: f32,
    /// Token vocabulary size (`vocab_size`): rows of the embedding and of the logits.
    pub vocab: usize,
    /// The longest context the model supports (`max_position_embeddings`).
    pub max_positions: usize,
    /// The head reuses the embedding matrix (`tie_word_embeddings`).
    pub tied_embeddings: bool,
    /// q, k and v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Keys further back than this are not attended to (Mistral).
    pub sliding_window: Option<usize>,
    /// RoPE inverse frequencies, scaling applied.
    pub inv_freq: Vec<f32>,
    /// The beginning-of-sequence token (`bos_token_id`), if any.
    pub bos: Option<u32>,
    /// Tokens that end a generation (`eos_token_id`, one or several).
    pub eos: Vec<u32>,
}

const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2"];

fn token_ids(v: &Option<serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|n| vec![n as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|n| n.as_u64())
            .map(|n| n as u32)
            .collect(),
        _ => vec![],
    }
}

impl Config {
    /// Parse `config.json` text; `origin` names the file in errors.
    pub fn from_json(origin: &str, text: &str) -> Result<Config> {
        let bad = |m: String| Error::load(origin, m);
        // Models of kiln's other commands, named before their missing keys would be.
        match super::Task::of(text) {
            super::Task::Transcribe => {
                return Err(bad(
                    "a Whisper speech model, not a text generator: run it with `kiln transcribe`"
                        .into(),
                ));
            }
            super::Task::Embed => {
                return Err(bad(
                    "a BERT encoder, not a text generator: run it with `kiln embed`".into(),
                ));
            }
            super::Task::Generate => {}
        }
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| bad(format!("not a Llama-family config: {e}")))?;
        let model_type = raw
            .model_type
            .clone()
            .or_else(|| {
                raw.architectures
                    .first()
                    .map(|a| a.to_lowercase().replace("forcausallm", ""))
            })
            .unwrap_or_default();
        if !SUPPORTED.contains(&model_type.as_str()) {
            return Err(bad(format!(
                "model_type '{model_type}' ({:?}) is not supported; kiln runs {}",
                raw.architectures,
                SUPPORTED.join(", ")
            )));
        }
        let act = raw.hidden_act.as_deref().unwrap_or("silu");
        if act != "silu" {
            return Err(bad(format!("hidden_act '{act}' is not supported (silu)")));
        }
        check_sizes(&raw).map_err(bad)?;
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(bad(format!(
                "{heads} attention heads do not group over {kv_heads} KV heads"
            )));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / heads);
        if !head_dim.is_multiple_of(2) || head_dim > crate::ops::attention::MAX_HEAD_DIM {
            return Err(bad(format!(
                "head_dim {head_dim} is not supported (even, at most {})",
                crate::ops::attention::MAX_HEAD_DIM
            )));
        }
        let theta = raw.rope_theta.unwrap_or(10_000.0);
        let mut inv_freq: Vec<f64> = (0..head_dim / 2)
            .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64))
            .collect();
        if let Some(scaling) = &raw.rope_scaling {
            scale_rope(&mut inv_freq, scaling).map_err(bad)?;
        }
        let sliding_window = raw
            .sliding_window
            .filter(|&w| w < raw.max_position_embeddings);
        Ok(Config {
            qkv_bias: raw.attention_bias.unwrap_or(model_type == "qwen2"),
            model_type,
            hidden: raw.hidden_size,
            ffn: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads,
            kv_heads,
            head_dim,
            eps: raw.rms_norm_eps as f32,
            vocab: raw.vocab_size,
            max_positions: raw.max_position_embeddings,
            tied_embeddings: raw.tie_word_embeddings,
            sliding_window,
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
            bos: token_ids(&raw.bos_token_id).first().copied(),
            eos: token_ids(&raw.eos_token_id),
        })
    }
}

/// Refuse sizes a model cannot have, before anything is allocated by them: each count at
/// least 1 and at most far beyond any released model, the width divisible by the heads
/// where `head_dim` is not given, and norm epsilon and RoPE base positive.
fn check_sizes(raw: &Raw) -> Result<(), String> {
    let counts = [
        ("num_hidden_layers", raw.num_hidden_layers, 1 << 10),
        ("hidden_size", raw.hidden_size, 1 << 16),
        ("intermediate_size", raw.intermediate_size, 1 << 18),
        ("num_attention_heads", raw.num_attention_heads, 1 << 10),
        ("vocab_size", raw.vocab_size, 1 << 22),
        (
            "max_position_embeddings",
            raw.max_position_embeddings,
            1 << 24,
        ),
    ];
    for (name, value, most) in counts {
        if !(1..=most).contains(&value) {
            return Err(format!("{name} {value} is out of range (1 to {most})"));
        }
    }
    if let Some(kv) = raw.num_key_value_heads
        && !(1..=raw.num_attention_heads).contains(&kv)
    {
        return Err(format!(
            "num_key_value_heads {kv} is out of range (1 to num_attention_heads, {})",
            raw.num_attention_heads
        ));
    }
    match raw.head_dim {
        Some(0) => return Err("head_dim 0 is out of range".into()),
        None if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) => {
            return Err(format!(
                "hidden_size {} does not divide into num_attention_heads {} (and no head_dim \
                 is given)",
                raw.hidden_size, raw.num_attention_heads
            ));
        }
        _ => {}
    }
    if !(raw.rms_norm_eps > 0.0 && raw.rms_norm_eps < 1.0) {
        return Err(format!(
            "rms_norm_eps {} is out of range (above 0, below 1)",
            raw.rms_norm_eps
        ));
    }
    if let Some(t) = raw.rope_theta
        && !(t.is_finite() && t > 0.0)
    {
        return Err(format!("rope_theta {t} must be a positive number"));
    }
    Ok(())
}

/// Apply `rope_scaling` to the inverse frequencies (linear and Llama 3 schemes).
fn scale_rope(inv_freq: &mut [f64], s: &serde_json::Value) -> Result<(), String> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |k: &str| {
        s.get(k)
            .and_then(|v| v.as_f64())
            .ok_or(format!("rope_scaling '{kind}' lacks '{k}'"))
    };
    match kind {
        "default" => {}
        "linear" => {
            let factor = num("factor")?;
            inv_freq.iter_mut().for_each(|f| *f /= factor);
        }
        "llama3" => {
            let factor = num("factor")?;
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            let old = num("original_max_position_embeddings")?;
            let (low_wavelen, high_wavelen) = (old / low, old / high);
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - low) / (high - low);
                    *f = (1.0 - smooth) * *f / factor + smooth * *f;
                }
            }
        }
        other => {
            return Err(format!(
                "rope_scaling type '{other}' is not supported (linear, llama3)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 256, "vocab_size": 100}"#;

    fn with(key: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).expect("json");
        v[key] = serde_json::from_str(value).expect("value");
        v.to_string()
    }

    #[test]
    fn sizes_a_model_cannot_have_are_refused_by_name() {
        assert!(Config::from_json("c", GOOD).is_ok());
        let cases = [
            (
                "num_hidden_layers",
                "0",
                "num_hidden_layers 0 is out of range (1 to 1024)",
            ),
            (
                "num_attention_heads",
                "0",
                "num_attention_heads 0 is out of range",
            ),
            (
                "num_attention_heads",
                "3",
                "hidden_size 64 does not divide into num_attention_heads 3",
            ),
            (
                "num_key_value_heads",
                "0",
                "num_key_value_heads 0 is out of range",
            ),
            (
                "num_key_value_heads",
                "8",
                "num_key_value_heads 8 is out of range",
            ),
            ("hidden_size", "0", "hidden_size 0 is out of range"),
            (
                "vocab_size",
                "100000000",
                "vocab_size 100000000 is out of range (1 to 4194304)",
            ),
            (
                "max_position_embeddings",
                "0",
                "max_position_embeddings 0 is out of range",
            ),
            ("head_dim", "0", "head_dim 0 is out of range"),
            ("rms_norm_eps", "0", "rms_norm_eps 0 is out of range"),
            ("rms_norm_eps", "-1", "rms_norm_eps -1 is out of range"),
            (
                "rope_theta",
                "-5",
                "rope_theta -5 must be a positive number",
            ),
        ];
        for (key, value, want) in cases {
            let e = Config::from_json("c", &with(key, value))
                .expect_err(key)
                .to_string();
            assert!(e.contains(want), "{key} {value}: {e}");
        }
    }
}
