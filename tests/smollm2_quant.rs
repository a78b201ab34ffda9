//! SmolLM2 with its weights resident in blocks: perplexity against its own F32
//! dequantization (llama.cpp's windows, on the start of /usr/share/common-licenses/GPL-3),
//! and the session's GPU memory against the GGUF's tensor bytes plus the KV cache.

mod common;

use kiln::dtype::DType;
use kiln::generate::GenerateOptions;
use kiln::generate::perplexity::perplexity;
use kiln::load::LoadOptions;
use kiln::{Gpu, Sampling, TextModel};
use std::path::Path;
use std::sync::Arc;

/// Windows of 128 tokens: enough to compare formats, small enough for a CPU adapter.
const CONTEXT: usize = 128;
const WINDOWS: usize = 3;

fn ppl(gpu: &Gpu, path: &Path, dtype: Option<DType>) -> f64 {
    ppl_windows(gpu, path, dtype, WINDOWS)
}

fn ppl_windows(gpu: &Gpu, path: &Path, dtype: Option<DType>, windows: usize) -> f64 {
    let options = LoadOptions {
        dtype,
        ..Default::default()
    };
    let model = Arc::new(pollster::block_on(TextModel::load(gpu, path, options)).expect("load"));
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("GPL-3 (Debian)");
    let ids = model.encode(&text).expect("encode");
    let ids = &ids[..CONTEXT * windows];
    let p = pollster::block_on(perplexity(&model, ids, CONTEXT, |_, _| {})).expect("perplexity");
    eprintln!(
        "{} {dtype:?}: perplexity {:.4} +/- {:.4}",
        path.display(),
        p.value,
        p.stderr
    );
    p.value
}

/// The GGUF's F32 dequantization as an HF folder (`kiln convert`), in a temporary folder
/// named by `tag`; the caller removes it.
fn f32_folder(gguf: &Path, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-smollm2-{tag}-{}", std::process::id()));
    kiln::convert::convert(gguf, &dir, &mut |_, _, _| {}).expect("convert");
    dir
}

#[test]
fn resident_blocks_keep_the_perplexity_of_f32() {
    let (Some(gguf), Some(gpu)) = (common::smollm2::path(), common::smollm2::lavapipe()) else {
        return;
    };
    let f32_dir = f32_folder(&gguf, "f32");
    let f32 = ppl(&gpu, &f32_dir, None);
    let q4_1 = ppl(&gpu, &gguf, None);
    let q8_0 = ppl(&gpu, &f32_dir, Some(DType::Q8_0));
    std::fs::remove_dir_all(&f32_dir).ok();
    // The resident blocks hold exactly the F32 folder's values: the same perplexity.
    assert!(
        (q4_1 / f32 - 1.0).abs() <= 0.005,
        "resident Q4_1 {q4_1} vs its F32 {f32}"
    );
    // Re-quantizing to Q8_0 moves single tokens' log-likelihoods by up to ~0.4 nats on this
    // small model, so 189 scored tokens only bound it loosely (-3.4% seen); the 1% goal is
    // measured on the whole text (docs/bench/2026-11-29-quantized.md). A broken Q8_0 path
    // (wrong scales, rows or layout) would be off by far more.
    assert!(
        (q8_0 / f32 - 1.0).abs() <= 0.05,
        "Q8_0 on load {q8_0} vs F32 {f32}"
    );
}

/// The decode kernels (GEMV, 8-bit activations on the blocks) through whole windows: the
/// resident Q4_1 stays within 1% of its F32 dequantization (whose GEMV is f32) over 8
/// windows of 128 tokens.
///
/// Rounding activations to 8 bits makes this measure chaotic: a change of summation order
/// elsewhere that leaves the F32 perplexity equal to 4 decimals (the attention kernel's
/// workgroup size, or the row-block attention kernel instead of the per-row one) moved the
/// Q4_1 one over 2 windows from +0.13% to +0.74% and +1.5%. Over 8 windows it measured
/// +0.18% (per-row attention) and +0.46% (row blocks). A broken 8-bit path (a wrong
/// scale, row or layout) is off by far more.
#[test]
fn eight_bit_activations_keep_the_perplexity_of_f32() {
    let (Some(gguf), Some(gpu)) = (common::smollm2::path(), common::smollm2::lavapipe()) else {
        return;
    };
    kiln::tune::set_gemv_max_rows(&gpu, CONTEXT);
    let f32_dir = f32_folder(&gguf, "f32i");
    let f32 = ppl_windows(&gpu, &f32_dir, None, 8);
    let q4_1 = ppl_windows(&gpu, &gguf, None, 8);
    std::fs::remove_dir_all(&f32_dir).ok();
    assert!(
        (q4_1 / f32 - 1.0).abs() <= 0.01,
        "resident Q4_1 with 8-bit activations {q4_1} vs its F32 {f32}"
    );
}

#[test]
fn the_session_holds_the_gguf_bytes_and_its_cache() {
    let (Some(gguf), Some(gpu)) = (common::smollm2::path(), common::smollm2::lavapipe()) else {
        return;
    };
    let bytes = std::fs::read(&gguf).expect("read");
    let g = kiln::load::gguf::Gguf::parse("smollm2", &bytes).expect("parse");
    let tensor_bytes: u64 = g.tensors.iter().map(|t| (t.end - t.start) as u64).sum();
    let model = Arc::new(
        pollster::block_on(TextModel::load(&gpu, &gguf, Default::default())).expect("load"),
    );
    let context = 2048;
    let mut session = pollster::block_on(model.session(context)).expect("session");
    // A prompt and a few tokens, so the session's programs exist.
    let ids = model.encode("The capital of France is").expect("encode");
    let options = GenerateOptions {
        max_tokens: 4,
        sampling: Sampling::greedy(),
        ..Default::default()
    };
    pollster::block_on(async { session.generate(&ids, options).await?.text().await })
        .expect("generate");
    // K and V, f32, for 30 layers of 3 KV heads of 64.
    let kv = (2 * 30 * 3 * 64 * context * 4) as u64;
    let used = session.gpu_bytes() + model.weight_bytes();
    eprintln!("session {used} bytes: {tensor_bytes} in the GGUF, {kv} of cache");
    assert!(
        used as f64 <= (tensor_bytes + kv) as f64 * 1.1,
        "session {used} bytes > 110% of {tensor_bytes} tensor bytes + {kv} of cache"
    );
}
