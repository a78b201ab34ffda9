//! Synthetic models (`--model synthetic:NAME`) and the model benchmark: the tensors made,
//! their formats, the bytes a decode step reads, and `kiln bench --model` end to end.

mod common;

use common::*;
use kiln::DType;
use kiln::generate::TextModel;
use kiln::load::LoadOptions;
use kiln::models::synthetic::{PRESETS, Preset};

/// One adapter is enough here: these check bookkeeping, not kernels.
fn first_gpu() -> Option<&'static kiln::Gpu> {
    let gpu = gpus().first();
    assert!(gpu.is_some() || !ci(), "CI=true but no adapter");
    gpu
}

fn options(dtype: DType) -> LoadOptions<'static> {
    LoadOptions {
        dtype: Some(dtype),
        ..Default::default()
    }
}

/// Every tensor of the preset is made in the asked-for format, or the fallback llama.cpp's
/// quantizer takes where 256-weight blocks do not divide a row (SmolLM2's 576-wide rows
/// under Q4_K); a decode step reads each matrix once, one embedding row, and the KV cache.
#[test]
fn synthetic_models_hold_what_decode_reads() {
    let Some(gpu) = first_gpu() else { return };
    let p = Preset::find("SmolLM2-135M").expect("preset");
    for dtype in [DType::Q8_0, DType::Q4K, DType::F16] {
        let model = pollster::block_on(TextModel::synthetic(gpu, p.name, options(dtype)))
            .expect("synthetic model");
        assert_eq!(model.origin(), "synthetic:smollm2-135m");
        let mut want = model.matrix_dtypes().to_vec();
        want.sort_by_key(|d| d.name());
        let expect: Vec<DType> = match dtype {
            DType::Q4K => vec![DType::Q4K, DType::Q5_0],
            d => vec![d],
        };
        assert_eq!(want, expect, "{dtype}");
        // Resident bytes of each tensor, from the preset's shapes alone.
        let stored = |shape: &[usize]| match shape {
            [_, k] if dtype == DType::Q4K && k % 256 != 0 => DType::Q5_0,
            [_, _] => dtype,
            _ => DType::F32,
        };
        let bytes = |shape: &[usize]| stored(shape).bytes(shape.iter().product()) as u64;
        let tensors = p.tensors();
        let all: u64 = tensors.iter().map(|(_, s)| bytes(s)).sum();
        let d = model.decoder();
        assert_eq!(d.weight_bytes(), all, "{dtype}");
        // Tied: the embedding is read whole as the head, plus one row to embed the token.
        let embed = bytes(&tensors[0].1);
        let kv_per_position = (2 * p.layers * p.kv_heads * p.head_dim * 4) as u64;
        assert_eq!(d.decode_bytes(0), all + embed / p.vocab as u64, "{dtype}");
        assert_eq!(
            d.decode_bytes(100) - d.decode_bytes(0),
            100 * kv_per_position
        );
    }
    // A shape that cannot fit is refused before any weight is made, with the numbers, where
    // the adapter's memory is known (a CPU adapter on Linux; elsewhere running out shows as
    // an allocation error).
    let need = 1u64 << 50;
    let fits = p.check_fits(gpu, DType::F32, need);
    if gpu.memory_available().is_some() {
        let e = fits.err().expect("a petabyte does not fit").to_string();
        assert!(e.contains("1125899.91 GB of weights"), "{e}");
        assert!(e.contains("GB of memory available"), "{e}");
    } else {
        assert!(fits.is_ok());
    }
    let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
    let e = Preset::find("gpt-5")
        .err()
        .expect("unknown preset")
        .to_string();
    assert!(names.iter().all(|n| e.contains(n)), "{e}");
}

/// Greedy generation from a synthetic model runs to the token budget (no special tokens end
/// it) and its tokens are inside the vocabulary.
#[test]
fn synthetic_models_generate() {
    let Some(gpu) = first_gpu() else { return };
    let model = pollster::block_on(TextModel::synthetic(
        gpu,
        "qwen2.5-0.5b",
        options(DType::Q4_0),
    ))
    .expect("synthetic model");
    let model = std::sync::Arc::new(model);
    assert_eq!(model.decoder().architecture(), "qwen2");
    let vocab = model.decoder().vocab() as u32;
    let mut session = pollster::block_on(model.session(64)).expect("session");
    let options = kiln::GenerateOptions {
        max_tokens: 12,
        sampling: kiln::Sampling {
            temperature: 0.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut g = pollster::block_on(session.generate(&[1, 2, 3, 4, 5], options)).expect("start");
    let text = pollster::block_on(g.text()).expect("generate");
    assert_eq!(g.tokens().len(), 12, "{text}");
    assert!(g.tokens().iter().all(|&t| t < vocab));
    assert!(
        text.split_whitespace().all(|w| w.starts_with('t')),
        "{text}"
    );
}

/// `kiln bench --model synthetic:...` prints both copy kernels, prefill and decode with
/// their spread, and decode's bytes against the roofline; bad requests fail with reasons.
#[test]
fn bench_model_reports_prefill_decode_and_the_roofline() {
    if first_gpu().is_none() {
        return;
    }
    let json = std::env::temp_dir().join(format!("kiln-bench-model-{}.json", std::process::id()));
    let json_s = json.to_str().expect("utf-8");
    // llama-bench's one-letter options.
    let (code, out, err) = kiln_cli(&[
        "bench",
        "--model",
        "synthetic:smollm2-135m",
        "--dtype",
        "q4_0",
        "-p",
        "20",
        "-n",
        "16",
        "-r",
        "2",
        "--json",
        json_s,
        "--profile",
    ]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "copy wg256 32 MiB",
        "copy vec4 wg64",
        "read vec4 32 MiB",
        "| pp20 |",
        "| tg16 |",
        "MB/token",
        "% of bandwidth",
    ] {
        assert!(out.contains(want), "{want} missing from\n{out}");
    }
    // The JSON holds the runs, and its derived figures follow from them.
    let text = std::fs::read_to_string(&json).expect("json written");
    let _ = std::fs::remove_file(&json);
    check_bench_schema(&text);
    let r = kiln::bench::record::Results::parse(&text).expect("results");
    let m = &r.adapters[0].models[0];
    assert_eq!((m.prompt, m.generate, m.runs), (20, 16, 2));
    assert_eq!(m.model, "synthetic:smollm2-135m");
    assert_eq!(m.dtype.as_deref(), Some("Q4_0"));
    assert_eq!((m.prefill.samples.len(), m.decode.samples.len()), (2, 2));
    let gbps = m.decode.median * m.decode_bytes as f64 / 1e9;
    assert!((m.decode_gbps - gbps).abs() <= 1e-9 * gbps, "{m:?}");
    let bw = r.adapters[0].roofline.bandwidth_gbps.expect("roofline");
    let pct = m.decode_percent_of_bandwidth.expect("share");
    assert!((pct - 100.0 * gbps / bw).abs() < 1e-6, "{pct}");
    // --profile: GPU time by kernel for one prefill and one decode step, in the table and
    // the JSON.
    let rows = m.profile.as_ref().expect("profiled");
    for phase in ["prefill", "decode"] {
        assert!(
            rows.iter()
                .any(|r| r.phase == phase && r.kernel.starts_with("gemv")),
            "no gemv in {phase}: {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| r.percent_of_step >= 0.0 && r.seconds_per_step >= 0.0)
    );
    assert!(out.contains("GPU time by kernel"), "{out}");
    assert!(err.contains("run 2: pp20"), "{err}");
    let (code, _, err) = kiln_cli(&["bench", "--model", "synthetic:nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("llama-1b"), "{err}");
    let (code, _, err) = kiln_cli(&[
        "bench",
        "--model",
        "synthetic:smollm2-135m",
        "--tokens",
        "3",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("16 generated tokens"), "{err}");
}
