//! A tiny random-weights Llama (2 layers, grouped-query attention) on every adapter, in
//! prefill and in decode, against the plain-Rust reference forward. Variants cover Qwen2's
//! q/k/v biases, untied embeddings, Llama 3 RoPE scaling and Mistral's sliding window.

mod common;

use common::*;
use kiln::load::Weights;
use kiln::models::{Config, Llama, Logits};
use kiln::reference::llama::Reference;
use kiln::{DType, Feed, Gpu, Graph, Plan, Program, State, Target};
use std::collections::HashMap;

const CAPACITY: usize = 24;

/// The tiny config, with the fields of the JSON object `extra` overriding.
fn config(extra: &str) -> Config {
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
    Config::from_json("test config", &base.to_string()).expect("config")
}

/// Random weights by HF name, on `gpu` and on the host.
fn weights(gpu: &Gpu, c: &Config, dtype: DType) -> (Weights, HashMap<String, Vec<f32>>) {
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
    let mut gpu_weights = Weights::new("random weights");
    let mut host = HashMap::new();
    for (name, shape, scale, offset) in shapes {
        let n = shape.iter().product();
        let values: Vec<f32> = rng.uniform(n, scale).iter().map(|v| v + offset).collect();
        let values = rounded(&values, dtype);
        let t = pollster::block_on(kiln::load::upload_f32(gpu, &name, &shape, dtype, &values))
            .expect("upload");
        gpu_weights.insert(t);
        host.insert(name, values);
    }
    (gpu_weights, host)
}

fn program(
    gpu: &Gpu,
    model: &Llama,
    tokens: usize,
    logits: Logits,
    state: Option<&State>,
) -> (Program, Option<State>) {
    let g = Graph::new();
    let ids = g.ids("ids", tokens);
    g.output("logits", model.forward(&g, ids, CAPACITY, logits));
    let plan = Plan::new(&g, Target::of(gpu)).expect("plan");
    pollster::block_on(async {
        let own = match state {
            Some(_) => None,
            None => Some(State::new(gpu, &[&plan]).await.expect("state")),
        };
        let prog = Program::new(gpu, plan, state.or(own.as_ref()))
            .await
            .expect("program");
        (prog, own)
    })
}

fn check(variant: &str, cfg: Config, dtype: DType) {
    for gpu in gpus() {
        let (w, host) = weights(gpu, &cfg, dtype);
        let model = Llama::new(cfg.clone(), &w).expect("model");
        let mut reference = Reference::new(&cfg, &host, CAPACITY);
        let prompt = [5u32, 96, 13, 0, 42, 42, 7];
        let (prefill, state) = program(gpu, &model, prompt.len(), Logits::All, None);
        let state = state.expect("state");
        let (decode, _) = program(gpu, &model, 1, Logits::Last, Some(&state));
        let what = |step: &str| format!("{variant} {dtype} {step} on {}", label(gpu));

        let got =
            pollster::block_on(prefill.run(0, &[("ids", Feed::Ids(&prompt))])).expect("prefill");
        let want = reference.forward(&prompt);
        assert_close(&got["logits"], &want, 2e-3, 2e-3, &what("prefill"));

        let mut pos = prompt.len();
        for token in [3u32, 64, 90] {
            let got = pollster::block_on(decode.run(pos, &[("ids", Feed::Ids(&[token]))]))
                .expect("decode");
            let want = reference.forward(&[token]);
            assert_close(
                &got["logits"],
                &want,
                2e-3,
                2e-3,
                &what(&format!("decode at {pos}")),
            );
            pos += 1;
        }
    }
}

#[test]
fn tiny_llama_matches_reference_in_prefill_and_decode() {
    check("llama", config(""), DType::F32);
    check("llama", config(""), DType::BF16);
}

#[test]
fn tiny_qwen2_with_biases_and_untied_head() {
    check(
        "qwen2",
        config(r#"{"model_type": "qwen2", "tie_word_embeddings": false}"#),
        DType::F16,
    );
}

#[test]
fn tiny_llama3_rope_scaling_and_mistral_window() {
    let llama3 = r#"{"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}"#;
    let c = config(llama3);
    assert_ne!(
        c.inv_freq,
        config("").inv_freq,
        "llama3 scaling changes the frequencies"
    );
    check("llama3", c, DType::F32);
    let c = config(r#"{"model_type": "mistral", "sliding_window": 4}"#);
    assert_eq!(c.sliding_window, Some(4));
    check("mistral", c, DType::F32);
}

#[test]
fn bad_models_get_clear_errors() {
    let e = Config::from_json(
        "cfg.json",
        r#"{"model_type": "gpt_neox", "hidden_size": 8}"#,
    )
    .err()
    .expect("arch")
    .to_string();
    assert!(e.contains("cfg.json"), "{e}");
    let text = r#"{"model_type": "falcon", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "rms_norm_eps": 1e-5, "max_position_embeddings": 64, "vocab_size": 97}"#;
    let e = Config::from_json("cfg.json", text)
        .err()
        .expect("arch")
        .to_string();
    assert!(
        e.contains("model_type 'falcon'") && e.contains("not supported"),
        "{e}"
    );
    let e = Config::from_json(
        "cfg.json",
        &text
            .replace("falcon", "llama")
            .replace("}", r#", "rope_scaling": {"type": "yarn", "factor": 2.0}}"#),
    )
    .err()
    .expect("yarn")
    .to_string();
    assert!(e.contains("rope_scaling type 'yarn'"), "{e}");

    let Some(gpu) = gpus().first() else { return };
    let cfg = config("");
    let (mut w, _) = weights(gpu, &cfg, DType::F32);
    // A config that disagrees with the weights.
    let mut wide = cfg.clone();
    wide.ffn = 128;
    let e = Llama::new(wide, &w).err().expect("shape").to_string();
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight")
            && e.contains("[96, 64]")
            && e.contains("[128, 64]"),
        "{e}"
    );
    // A missing tensor.
    let mut pruned = Weights::new("pruned weights");
    for name in w.names().map(String::from).collect::<Vec<_>>() {
        if name != "model.layers.1.self_attn.v_proj.weight" {
            pruned.insert(w.get(&name).expect("t").clone());
        }
    }
    let e = Llama::new(cfg.clone(), &pruned)
        .err()
        .expect("missing")
        .to_string();
    assert!(
        e.contains("model.layers.1.self_attn.v_proj.weight") && e.contains("missing"),
        "{e}"
    );
    // A prompt over the context.
    w.insert(w.get("model.norm.weight").expect("norm").clone());
    let model = Llama::new(cfg, &w).expect("model");
    let (prog, _state) = program(gpu, &model, 5, Logits::Last, None);
    let e = pollster::block_on(prog.run(CAPACITY - 3, &[("ids", Feed::Ids(&[1, 2, 3, 4, 5]))]))
        .err()
        .expect("context")
        .to_string();
    assert!(e.contains("context length"), "{e}");
}
