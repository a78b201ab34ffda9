//! GGUF files as llama.cpp's converter writes them, built by the `gguf` Python package
//! (scripts/tiny_gguf.py): for every architecture kiln imports and every format it reads,
//! the direct load (blocks resident on the GPU) and `kiln convert`'s folder give the logits
//! of an HF folder holding the same weights. A SentencePiece vocabulary trained by the
//! `sentencepiece` package tokenizes as that package does.

mod common;

use common::*;
use kiln::{Gpu, TextModel};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every format kiln reads, and llama.cpp's Q4_K_M mix (Q4_K with Q6_K for some tensors).
const FORMATS: [&str; 11] = [
    "F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M",
];

/// Build the tiny model of `arch` in `format`; `None` (with a warning) where Python or its
/// packages are missing outside CI.
/// Each build has a folder of its own: tests run in parallel, and the SentencePiece test
/// builds the same architecture and format as the loading test.
fn build(arch: &str, format: &str, extra: &[&str]) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "kiln-gguf-{}-{arch}-{format}{}",
        std::process::id(),
        extra.iter().map(|e| format!("-{e}")).collect::<String>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tiny_gguf.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&dir)
        .arg(arch)
        .arg(format)
        .args(extra)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(dir),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(!ci(), "CI=true and scripts/tiny_gguf.py failed: {why}");
            eprintln!(
                "WARNING: GGUF tests skipped (pip install numpy gguf safetensors sentencepiece): {why}"
            );
            None
        }
    }
}

fn logits(gpu: &Gpu, path: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    pollster::block_on(async {
        let m = TextModel::load(gpu, path, Default::default())
            .await
            .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
        let mut s = std::sync::Arc::new(m).session(32).await.expect("session");
        s.logits(ids, true).await.expect("logits")
    })
}

#[test]
fn every_architecture_and_format_loads_like_its_hf_folder() {
    let ids = [5u32, 17, 3, 42, 96, 0, 11, 64];
    // The blocks hold the folder's values exactly: compare with f32 activations throughout.
    for gpu in gpus() {
        float_gemv(gpu);
    }
    for arch in ["llama", "qwen2"] {
        for format in FORMATS {
            let Some(dir) = build(arch, format, &[]) else {
                return;
            };
            let gguf = dir.join("model.gguf");
            let converted = dir.join("converted");
            kiln::convert::convert(&gguf, &converted, &mut |_, _, _| {}).expect("convert");
            for gpu in gpus() {
                let want = logits(gpu, &dir.join("hf"), &ids);
                for (how, path) in [("direct", &gguf), ("converted", &converted)] {
                    let got = logits(gpu, path, &ids);
                    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                        let what =
                            format!("{arch} {format} {how}, position {p}, on {}", label(gpu));
                        // The same values, read from blocks or from F32: f32 rounding only.
                        assert_close(g, w, 1e-4, 1e-4, &what);
                        assert_eq!(top(g, 5), top(w, 5), "{what}: top 5");
                    }
                }
            }
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

#[test]
fn a_format_kiln_does_not_read_is_refused_by_name() {
    let Some(dir) = build("llama", "Q2_K", &[]) else {
        return;
    };
    let Some(gpu) = gpus().first() else { return };
    let gguf = dir.join("model.gguf");
    let err = pollster::block_on(TextModel::load(gpu, &gguf, Default::default()))
        .err()
        .expect("Q2_K is refused")
        .to_string();
    assert!(
        err.contains("Q2_K") && err.contains("model.gguf") && err.contains("token_embd"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_sentencepiece_gguf_tokenizes_like_sentencepiece_and_generates() {
    let Some(dir) = build("llama", "Q4_K", &["spm"]) else {
        return;
    };
    let Some(gpu) = gpus().first() else { return };
    let gguf = dir.join("model.gguf");
    let model = pollster::block_on(TextModel::load(gpu, &gguf, Default::default())).expect("load");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("spm_cases.json")).unwrap())
            .unwrap();
    let bos = cases["bos"].as_u64().unwrap() as u32;
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = model.encode(text).expect("encode");
        // llama.cpp adds a BOS for SentencePiece vocabularies.
        assert_eq!(got[0], bos, "{text:?}: BOS first");
        assert_eq!(&got[1..], &want[..], "{text:?}");
        assert_eq!(
            model.decode(&want).expect("decode"),
            case["decoded"].as_str().unwrap(),
            "{text:?}"
        );
    }
    // The CLI runs it end to end.
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["generate", "--model"])
        .arg(&gguf)
        .args([
            "--prompt",
            "This program is",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "--adapter",
            "0",
        ])
        .output()
        .expect("run kiln");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kiln generate failed: {err}");
    assert!(
        err.contains("decode") && err.contains("GPU memory"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
