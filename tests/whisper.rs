//! Whisper: `kiln convert` imports the CTranslate2 model (faster-whisper's, from PyPI) as an
//! HF folder, checked tensor by tensor against the CTranslate2 file by an independent numpy
//! reader (`scripts/check_whisper_convert.py`); damaged sources are refused by name.
//!
//! Transcription of espeak-ng's sentence (`tests/data/speech`) against the float64 numpy
//! reference (`scripts/reference_whisper.py`, `tests/golden/whisper.json`): the encoder's
//! output and the greedy tokens on every adapter; through the CLI, from a 22050 Hz file,
//! with timestamps, and over two 30-second windows on lavapipe; word error rate 0.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn model() -> Option<PathBuf> {
    fetched(&kiln::fetch::WHISPER_BASE, "Whisper tests")
}

/// The CTranslate2 files the fetch kept beside the converted folder.
fn source(hf: &Path) -> PathBuf {
    hf.with_file_name(format!("{}.source", kiln::fetch::WHISPER_BASE.name))
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-whisper-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn convert_imports_ctranslate2_whisper_tensor_for_tensor() {
    let Some(hf) = model() else { return };
    let src = source(&hf);
    // The CLI, on the fetched source, into a folder of its own.
    let out = temp("cli");
    let (code, _, err) = kiln_cli(&[
        "convert",
        src.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("245/245 tensors"), "{err}");
    for dir in [&hf, &out] {
        for f in [
            "model.safetensors",
            "config.json",
            "generation_config.json",
            "preprocessor_config.json",
            "tokenizer.json",
        ] {
            assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
        }
        let check = std::process::Command::new("python3")
            .arg("scripts/check_whisper_convert.py")
            .arg(&src)
            .arg(dir)
            .output();
        match check {
            Ok(o) if o.status.success() => {}
            Ok(o) if ci() || o.status.code() == Some(1) => panic!(
                "the converted folder differs from the CTranslate2 file: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            other if ci() => panic!("CI=true and the conversion check could not run: {other:?}"),
            other => {
                eprintln!("WARNING: the conversion check did not run: python3 failed: {other:?}");
                return;
            }
        }
    }
    let generation: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hf.join("generation_config.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(generation["no_timestamps_token_id"], 50363);
    assert_eq!(generation["task_to_id"]["transcribe"], 50359);
    assert_eq!(generation["lang_to_id"]["<|en|>"], 50259);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn damaged_ctranslate2_models_are_refused_by_name() {
    let Some(hf) = model() else { return };
    let src = source(&hf);
    let bad = temp("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    for f in ["config.json", "vocabulary.txt", "tokenizer.json"] {
        std::fs::copy(src.join(f), bad.join(f)).expect("copy");
    }
    let bin = std::fs::read(src.join("model.bin")).expect("read");
    let convert = |dir: &Path| {
        let out = dir.join("out");
        kiln::convert::convert(dir, &out, &mut |_, _, _| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    // Cut in the middle of a tensor, in the header, and after the last byte.
    for (len, want) in [
        (1 << 20, "truncated"),
        (30, "truncated"),
        (bin.len() - 1, "truncated"),
    ] {
        std::fs::write(bad.join("model.bin"), &bin[..len]).expect("write");
        let e = convert(&bad);
        assert!(
            e.contains("model.bin") && e.contains(want),
            "{len} bytes: {e}"
        );
    }
    // A GGUF file named model.bin is not CTranslate2.
    std::fs::write(bad.join("model.bin"), b"GGUF\x03\0\0\0\0\0\0\0").expect("write");
    assert!(
        convert(&bad).contains("binary version"),
        "{}",
        convert(&bad)
    );
    // A folder with no model.bin, and one whose vocabulary is missing.
    std::fs::remove_file(bad.join("model.bin")).expect("rm");
    assert!(convert(&bad).contains("model.bin"), "{}", convert(&bad));
    std::fs::write(bad.join("model.bin"), &bin).expect("write");
    std::fs::remove_file(bad.join("vocabulary.txt")).expect("rm");
    assert!(
        convert(&bad).contains("vocabulary.txt"),
        "{}",
        convert(&bad)
    );
    let _ = std::fs::remove_dir_all(&bad);
}

/// The reference's figures for one WAV (`tests/golden/whisper.json`).
fn golden(wav: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/golden/whisper.json").expect("golden"),
    )
    .expect("json");
    all["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|i| i["audio"]["path"] == wav)
        .cloned()
        .expect("a golden entry for the WAV")
}

/// The sentence espeak-ng spoke.
fn spoken() -> String {
    let all: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/golden/whisper.json").expect("golden"),
    )
    .expect("json");
    all["expect"].as_str().expect("expect").to_string()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// One window's mel frames, (3000, 80) frame-major, as `Transcriber::transcribe` makes them.
fn window(samples: &[f32]) -> Vec<f32> {
    let m = kiln::audio::mel::log_mel(samples, 480_000, 80);
    let mut frames = vec![0.0f32; 3000 * 80];
    for b in 0..80 {
        for f in 0..3000 {
            frames[f * 80 + b] = m.data[b * m.frames + f];
        }
    }
    frames
}

#[test]
fn transcribes_speech_like_the_float64_reference() {
    let Some(hf) = model() else { return };
    let wav = "tests/data/speech/train-station-16k.wav";
    let want = golden(wav);
    let audio = kiln::audio::wav::read(wav, &std::fs::read(wav).expect("wav")).expect("read");
    let frames = window(&audio.samples);
    for gpu in gpus() {
        let _turn = turn(gpu);
        let mut t = pollster::block_on(kiln::transcribe::Transcriber::load(
            gpu,
            &hf,
            Default::default(),
        ))
        .expect("load");
        let t0 = std::time::Instant::now();
        let e = pollster::block_on(t.encode(&frames)).expect("encode");
        let encoded = t0.elapsed().as_secs_f64();
        // The encoder's first and last rows (the reference keeps 8 values of each): f16
        // weights in f32 arithmetic against float64 over 6 layers (seen: within 5.0e-6).
        let mut worst = 0.0f64;
        for (row, key) in [(0, "encoder_row0_first8"), (1499, "encoder_row1499_first8")] {
            for (i, r) in want["checks"][key]
                .as_array()
                .expect("row")
                .iter()
                .enumerate()
            {
                let r = r.as_f64().expect("value");
                worst = worst.max((f64::from(e[row * 512 + i]) - r).abs());
            }
        }
        let mut streamed = String::new();
        let options = kiln::transcribe::TranscribeOptions::default();
        let w =
            pollster::block_on(t.decode(&options, &mut |s| streamed.push_str(s))).expect("decode");
        let smallest = w.margins.iter().copied().fold(f32::INFINITY, f32::min);
        eprintln!(
            "{}: encoder rows within {worst:.2e} of the reference; encoded in {encoded:.1} s, \
             decoded {} tokens in {:.1} s (smallest top-2 gap {smallest:.2}): {streamed:?}",
            label(gpu),
            w.tokens.len(),
            t0.elapsed().as_secs_f64() - encoded,
        );
        assert!(worst < 1e-4, "{worst} on {}", label(gpu));
        assert_eq!(
            w.prompt,
            ids(&want["notimestamps"]["prompt"]),
            "{}",
            label(gpu)
        );
        assert_eq!(
            w.tokens,
            ids(&want["notimestamps"]["tokens"]),
            "{}",
            label(gpu)
        );
        assert_eq!(
            streamed.trim(),
            want["notimestamps"]["text"],
            "{}",
            label(gpu)
        );
        assert_eq!(wer(&spoken(), &streamed), 0.0, "{streamed}");
    }
}

/// The words of `s`, lowercased, without punctuation.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate: word-level edit distance over the reference's length.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut prev = row[0];
        row[0] = i;
        for j in 1..=h.len() {
            let cost = usize::from(r[i - 1] != h[j - 1]);
            let next = (row[j] + 1).min(row[j - 1] + 1).min(prev + cost);
            prev = row[j];
            row[j] = next;
        }
    }
    row[h.len()] as f64 / r.len().max(1) as f64
}

#[test]
fn word_error_rate_counts_edits() {
    assert_eq!(wer("the cat sat", "The cat sat."), 0.0);
    assert_eq!(wer("the cat sat", "the cat"), 1.0 / 3.0);
    assert_eq!(wer("the cat sat", "a cat sat down"), 2.0 / 3.0);
}

#[test]
fn the_cli_streams_text_and_timestamps_from_a_22050_hz_wav() {
    let Some(_) = model() else { return };
    // espeak-ng's own file: 22050 Hz, resampled to 16 kHz on the way in.
    let wav = "tests/data/speech/train-station.wav";
    let want = golden(wav);
    let sentence = want["notimestamps"]["text"].as_str().expect("text");
    let (code, out, err) = kiln_cli(&["transcribe", "--adapter", "vulkan", wav]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), sentence, "{err}");
    assert_eq!(wer(sentence, &out), 0.0);
    assert!(
        err.contains("1 window") && err.contains("real time"),
        "{err}"
    );
    let (code, out, err) = kiln_cli(&["transcribe", "--adapter", "vulkan", "--timestamps", wav]);
    assert_eq!(code, 0, "{err}");
    // One segment from 0.00 to the reference's 2.88; its closing timestamp leads the next
    // by only 0.07 in the reference's logits, so a step either way is allowed.
    let line = out.trim();
    let (times, text) = line.split_once("] ").expect("[start -> end] text");
    let (start, end) = times
        .trim_start_matches('[')
        .split_once(" -> ")
        .expect("times");
    assert_eq!(start, "0.00", "{line}");
    let end: f64 = end.parse().expect("end time");
    assert!((end - 2.88).abs() <= 0.021, "{line}");
    assert_eq!(text, sentence, "{line}");
}

#[test]
fn audio_longer_than_30_seconds_is_transcribed_window_by_window() {
    let Some(hf) = model() else { return };
    let wav = "tests/data/speech/train-station-16k.wav";
    let speech = kiln::audio::wav::read(wav, &std::fs::read(wav).expect("wav"))
        .expect("read")
        .samples;
    // The sentence at 0 s and again at 31 s, silence between: 34.4 s, two windows.
    let at = 31 * kiln::audio::SAMPLE_RATE as usize;
    let mut samples = vec![0.0f32; at + speech.len()];
    samples[..speech.len()].copy_from_slice(&speech);
    samples[at..].copy_from_slice(&speech);
    let gpu = common::smollm2::lavapipe().expect("lavapipe");
    let mut t = pollster::block_on(kiln::transcribe::Transcriber::load(
        &gpu,
        &hf,
        Default::default(),
    ))
    .expect("load");
    let options = kiln::transcribe::TranscribeOptions::default();
    let got = pollster::block_on(t.transcribe(&samples, &options, &mut |_| {})).expect("run");
    let sentence = golden(wav)["notimestamps"]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert_eq!(got.windows.len(), 2);
    assert_eq!(got.windows[1].offset, 30.0);
    let twice = format!("{sentence} {sentence}");
    assert_eq!(wer(&twice, &got.text), 0.0, "{:?}", got.text);
}

#[test]
fn models_of_another_kind_are_refused_by_name() {
    let Some(hf) = model() else { return };
    let whisper = hf.to_str().expect("utf-8");
    let wav = "tests/data/speech/train-station-16k.wav";
    let (code, _, err) = kiln_cli(&["generate", "--model", whisper, "--prompt", "hi"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Whisper speech model") && err.contains("kiln transcribe"),
        "{err}"
    );
    let (code, _, err) = kiln_cli(&["embed", "--model", whisper, "hi"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a BERT encoder"), "{err}");
    if let Some(bert) = fetched(&kiln::fetch::ALL_MINILM_L6_V2, "the wrong-model test") {
        let bert = bert.to_str().expect("utf-8");
        let (code, _, err) = kiln_cli(&["transcribe", "--model", bert, wav]);
        assert_eq!(code, 1);
        assert!(err.contains("not a Whisper model"), "{err}");
    }
    let bad = temp("notwav");
    std::fs::create_dir_all(&bad).expect("mkdir");
    let file = bad.join("x.wav");
    std::fs::write(&file, b"RIFF....WAVEfmt ").expect("write");
    let (code, _, err) = kiln_cli(&[
        "transcribe",
        "--model",
        whisper,
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("x.wav") && err.contains("WAV"), "{err}");
    let (code, _, err) = kiln_cli(&["transcribe", "--model", whisper, "--language", "xx", wav]);
    assert_eq!(code, 1);
    assert!(err.contains("no language \"xx\""), "{err}");
    let _ = std::fs::remove_dir_all(&bad);
}
