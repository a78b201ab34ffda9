//! A tiny random-weights Llama for tests: its config, weights on the GPU and on the host,
//! and the reference forward's dimensions.

use super::{Rng, rounded};
use kiln::load::Weights;
use kiln::models::Config;
use kiln::reference::llama::Spec;
use kiln::{DType, Gpu};
use std::collections::HashMap;

pub const CAPACITY: usize = 24;

/// The tiny config.json text, with the fields of the JSON object `extra` overriding.
pub fn config_json(extra: &str) -> String {
    let mut base: serde_json::Value = serde_json::json!({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 64, "vocab_size": 97, "tie_word_embeddings": true
    });
    let extra: serde_json::Value =
        serde_json::from_str(if extra.is_empty() { "{}" } else { extra }).expect("extra");
    for (k, v) in extra.as_object().expect("object") {
        base[k] = v.clone();
    }
    base.to_string()
}

/// The tiny config, with the fields of the JSON object `extra` overriding.
pub fn config(extra: &str) -> Config {
    Config::from_json("test config", &config_json(extra)).expect("config")
}

/// A word-level tokenizer over the tiny vocabulary: token i is the word `w{i}`.
pub fn tokenizer_json(vocab: usize) -> String {
    let words: serde_json::Map<String, serde_json::Value> = (0..vocab)
        .map(|i| (format!("w{i}"), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "w0"}
    })
    .to_string()
}

/// The tiny model with its tokenizer, ready for sessions; `eos` ends generations.
pub fn text_model(gpu: &Gpu, eos: u32) -> std::sync::Arc<kiln::TextModel> {
    let json = config_json(&format!(
        r#"{{"eos_token_id": {eos}, "max_position_embeddings": 256}}"#
    ));
    let cfg = Config::from_json("tiny", &json).expect("config");
    let (w, _) = weights(gpu, &cfg, DType::F32);
    let tok = tokenizer_json(cfg.vocab);
    let m =
        kiln::TextModel::from_parts(gpu, "tiny", &json, tok.as_bytes(), None, &w).expect("model");
    std::sync::Arc::new(m)
}

/// The tiny model's random weights by HF name, with their shapes, rounded to `dtype`.
pub fn host_weights(c: &Config, dtype: DType) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng::new(77);
    let (d, qd, kvd) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
    let mut shapes: Vec<(String, Vec<usize>, f32, f32)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![c.vocab, d],
        1.0,
        0.0,
    )];
    for l in 0..c.layers {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        shapes.push((p("input_layernorm.weight"), vec![d], 0.2, 1.0));
        shapes.push((p("self_attn.q_proj.weight"), vec![qd, d], 0.25, 0.0));
        shapes.push((p("self_attn.k_proj.weight"), vec![kvd, d], 0.25, 0.0));
        shapes.push((p("self_attn.v_proj.weight"), vec![kvd, d], 0.25, 0.0));
        shapes.push((p("self_attn.o_proj.weight"), vec![d, qd], 0.25, 0.0));
        if c.qkv_bias {
            shapes.push((p("self_attn.q_proj.bias"), vec![qd], 0.5, 0.0));
            shapes.push((p("self_attn.k_proj.bias"), vec![kvd], 0.5, 0.0));
            shapes.push((p("self_attn.v_proj.bias"), vec![kvd], 0.5, 0.0));
        }
        shapes.push((p("post_attention_layernorm.weight"), vec![d], 0.2, 1.0));
        shapes.push((p("mlp.gate_proj.weight"), vec![c.ffn, d], 0.25, 0.0));
        shapes.push((p("mlp.up_proj.weight"), vec![c.ffn, d], 0.25, 0.0));
        shapes.push((p("mlp.down_proj.weight"), vec![d, c.ffn], 0.2, 0.0));
    }
    shapes.push(("model.norm.weight".into(), vec![d], 0.2, 1.0));
    if !c.tied_embeddings {
        shapes.push(("lm_head.weight".into(), vec![c.vocab, d], 0.5, 0.0));
    }
    shapes
        .into_iter()
        .map(|(name, shape, scale, offset)| {
            let n = shape.iter().product();
            let values: Vec<f32> = rng.uniform(n, scale).iter().map(|v| v + offset).collect();
            (name, shape, rounded(&values, dtype))
        })
        .collect()
}

/// Random weights by HF name, on `gpu` and on the host.
pub fn weights(gpu: &Gpu, c: &Config, dtype: DType) -> (Weights, HashMap<String, Vec<f32>>) {
    let mut gpu_weights = Weights::new("random weights");
    let mut host = HashMap::new();
    for (name, shape, values) in host_weights(c, dtype) {
        let t = pollster::block_on(kiln::load::upload_f32(gpu, &name, &shape, dtype, &values))
            .expect("upload");
        gpu_weights.insert(t);
        host.insert(name, values);
    }
    (gpu_weights, host)
}

/// The tiny model (config `extra` over the base, as [`config_json`]) written as an HF
/// folder: config.json, tokenizer.json and F32 safetensors, in a fresh temporary folder
/// named after `tag`.
pub fn folder(tag: &str, extra: &str) -> std::path::PathBuf {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = std::env::temp_dir().join(format!("kiln-tiny-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = config_json(extra);
    let c = Config::from_json("tiny", &json).expect("config");
    std::fs::write(dir.join("config.json"), &json).expect("config.json");
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json(c.vocab)).expect("tokenizer");
    let tensors = host_weights(&c, DType::F32);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| bytemuck::cast_slice(v).to_vec())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            let view = TensorView::new(Dtype::F32, s.clone(), b).expect("view");
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    dir
}

/// The reference forward's dimensions, from the config.
pub fn spec(c: &Config) -> Spec {
    Spec {
        hidden: c.hidden,
        ffn: c.ffn,
        layers: c.layers,
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        vocab: c.vocab,
        eps: c.eps,
        inv_freq: c.inv_freq.clone(),
        qkv_bias: c.qkv_bias,
        tied_embeddings: c.tied_embeddings,
        sliding_window: c.sliding_window,
    }
}
