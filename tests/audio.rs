//! Speech input: WAV decoding (formats, channels, rates) and its errors, resampling against
//! the analytic signal, and the log-mel spectrogram against an independent float64 numpy
//! reference (`scripts/reference_mel.py`).

mod common;

use kiln::audio::mel::{HOP, log_mel};
use kiln::audio::wav::{read, resample};
use std::f64::consts::PI;

/// A WAV file in memory: `frames` of `channels` written by `sample`.
fn wav(spec: hound::WavSpec, frames: usize, sample: impl Fn(usize, u16) -> f64) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).expect("writer");
    for i in 0..frames {
        for c in 0..spec.channels {
            let v = sample(i, c);
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(v as f32),
                (_, bits) => w.write_sample((v * ((1i64 << (bits - 1)) - 1) as f64).round() as i32),
            }
            .expect("sample");
        }
    }
    w.finalize().expect("finalize");
    cur.into_inner()
}

fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

fn sine(hz: f64, rate: f64, amp: f64) -> impl Fn(usize) -> f64 {
    move |i| amp * (2.0 * PI * hz * i as f64 / rate).sin()
}

#[test]
fn every_format_decodes_to_the_same_16k_mono_signal() {
    let s = sine(440.0, 16000.0, 0.5);
    let want: Vec<f64> = (0..16000).map(&s).collect();
    for (sp, tol) in [
        (spec(1, 16000, 16, false), 1e-4),
        (spec(1, 16000, 24, false), 1e-6),
        (spec(1, 16000, 32, false), 1e-6),
        (spec(1, 16000, 32, true), 1e-6),
        (spec(2, 16000, 16, false), 1e-4),
    ] {
        // Stereo: the two channels average to the signal.
        let bytes = wav(sp, 16000, |i, c| {
            if sp.channels == 2 {
                s(i) * [0.5, 1.5][c as usize]
            } else {
                s(i)
            }
        });
        let a = read("t.wav", &bytes).expect("decode");
        assert_eq!(a.samples.len(), 16000, "{sp:?}");
        let err = a
            .samples
            .iter()
            .zip(&want)
            .map(|(x, y)| (f64::from(*x) - y).abs())
            .fold(0.0, f64::max);
        assert!(err < tol, "{sp:?}: max error {err}");
    }
}

/// Other rates come back at 16 kHz: a 440 Hz sine sampled at 44.1 kHz (and four other rates)
/// matches the sine sampled at 16 kHz, away from the ends, within 1e-3 (band-limited FFT
/// resampling: 5e-7 to 8e-5 seen; an odd FFT length's half-sample lag gave 1.6e-2).
#[test]
fn other_rates_resample_to_the_analytic_signal() {
    for rate in [48000u32, 8000, 32000, 22050, 44100] {
        let src: Vec<f32> = (0..rate as usize)
            .map(|i| sine(440.0, f64::from(rate), 0.5)(i) as f32)
            .collect();
        let out = resample(&src, rate, 16000).expect("resample");
        assert_eq!(out.len(), 16000, "{rate}");
        let want = sine(440.0, 16000.0, 0.5);
        let err = (200..15800)
            .map(|i| (f64::from(out[i]) - want(i)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-3, "{rate} Hz: max error {err}");
        let bytes = wav(spec(1, rate, 16, false), rate as usize, |i, _| {
            sine(440.0, f64::from(rate), 0.5)(i)
        });
        let a = read("t.wav", &bytes).expect("decode");
        assert_eq!((a.samples.len(), a.source_rate), (16000, rate));
    }
}

#[test]
fn bad_files_are_refused_by_name() {
    let ok = wav(spec(1, 16000, 16, false), 1600, |i, _| {
        sine(300.0, 16000.0, 0.3)(i)
    });
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not a WAV",
            b"RIFX this is not audio at all".to_vec(),
            "not a WAV file",
        ),
        ("truncated", ok[..ok.len() / 2].to_vec(), "cut short"),
        (
            "zero-length",
            wav(spec(1, 16000, 16, false), 0, |_, _| 0.0),
            "zero seconds",
        ),
        (
            "8-bit",
            wav(spec(1, 16000, 8, false), 100, |_, _| 0.1),
            "8-bit integer samples",
        ),
        (
            "6 channels",
            wav(spec(6, 16000, 16, false), 100, |_, _| 0.1),
            "6 channels",
        ),
        ("empty", Vec::new(), "not a WAV file"),
    ];
    for (what, bytes, says) in cases {
        let e = read("in.wav", &bytes).expect_err(what).to_string();
        assert!(e.contains("in.wav") && e.contains(says), "{what}: {e}");
    }
}

/// kiln's spectrogram against the numpy reference, Whisper's way (30 s of zeros padded after
/// the audio) and unpadded, 80 and 128 bins, on speech-like audio (harmonics, a glide and
/// noise) of a length that is no multiple of the hop. atol 1e-5 (both compute in f64; kiln
/// returns f32).
#[test]
fn the_log_mel_spectrogram_matches_numpy() {
    let mut rng = common::Rng::new(7);
    let noise = rng.uniform(12_345, 0.02);
    let x: Vec<f32> = (0..12_345)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let f0 = 120.0 + 80.0 * t;
            let v: f64 = (1..6)
                .map(|h| (2.0 * PI * f0 * h as f64 * t).sin() / h as f64)
                .sum();
            (0.3 * v) as f32 + noise[i]
        })
        .collect();
    let dir = std::env::temp_dir();
    let input = dir.join(format!("kiln-mel-{}.f32", std::process::id()));
    std::fs::write(
        &input,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .expect("write");
    for (padding, mels) in [(480_000usize, 80usize), (0, 80), (0, 128)] {
        let out = dir.join(format!(
            "kiln-mel-{}-{padding}-{mels}.f32",
            std::process::id()
        ));
        let status = std::process::Command::new("python3")
            .arg("scripts/reference_mel.py")
            .arg(&input)
            .arg(padding.to_string())
            .arg(mels.to_string())
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other if common::ci() => panic!("CI=true and the numpy reference failed: {other:?}"),
            other => {
                eprintln!(
                    "WARNING: the mel test did not run: python3 with numpy failed: {other:?}"
                );
                return;
            }
        }
        let want: Vec<f32> = std::fs::read(&out)
            .expect("reference")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mel = log_mel(&x, padding, mels);
        assert_eq!(mel.frames, (x.len() + padding) / HOP);
        assert_eq!(mel.data.len(), want.len(), "padding {padding}, {mels} bins");
        let err = mel
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err < 1e-5,
            "padding {padding}, {mels} bins: max error {err}"
        );
        let spread = want.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v))
            - want.iter().fold(f32::INFINITY, |m, v| m.min(*v));
        assert!(
            spread > 1.0,
            "the test signal spans the spectrogram's range ({spread})"
        );
    }
}
