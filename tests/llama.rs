//! A tiny random-weights Llama (2 layers, grouped-query attention) on every adapter, in
//! prefill and in decode, against the plain-Rust reference forward. Variants cover Qwen2's
//! q/k/v biases, untied embeddings, Llama 3 RoPE scaling and Mistral's sliding window.

mod common;

use common::tiny::{CAPACITY, config, spec, weights};
use common::*;
use kiln::load::Weights;
use kiln::models::{Cache, Config, Llama, Logits};
use kiln::reference::llama::Reference;
use kiln::{DType, Feed, Gpu, Graph, Plan, Program, State, Target};

fn program(
    gpu: &Gpu,
    model: &Llama,
    tokens: usize,
    logits: Logits,
    state: Option<&State>,
) -> (Program, Option<State>) {
    let g = Graph::new();
    let ids = g.ids("ids", tokens);
    let cache = Cache {
        slots: 1,
        capacity: CAPACITY,
    };
    g.output("logits", model.forward(&g, ids, cache, logits));
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
        let mut reference = Reference::new(spec(&cfg), &host, CAPACITY);
        let prompt = [5u32, 96, 13, 0, 42, 42, 7];
        let (prefill, state) = program(gpu, &model, prompt.len(), Logits::All, None);
        let state = state.expect("state");
        let (decode, _) = program(gpu, &model, 1, Logits::Last, Some(&state));
        let what = |step: &str| format!("{variant} {dtype} {step} on {}", label(gpu));

        let got =
            pollster::block_on(prefill.run_at(0, &[("ids", Feed::Ids(&prompt))])).expect("prefill");
        let want = reference.forward(&prompt);
        assert_close(&got["logits"], &want, 2e-3, 2e-3, &what("prefill"));

        let mut pos = prompt.len();
        for token in [3u32, 64, 90] {
            let got = pollster::block_on(decode.run_at(pos, &[("ids", Feed::Ids(&[token]))]))
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
    let e = pollster::block_on(prog.run_at(CAPACITY - 3, &[("ids", Feed::Ids(&[1, 2, 3, 4, 5]))]))
        .err()
        .expect("context")
        .to_string();
    assert!(e.contains("context length"), "{e}");
}
