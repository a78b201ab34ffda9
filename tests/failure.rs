//! A GPU that fails, on every adapter: running out of memory while a model loads (under a
//! memory limit small enough for the CPU adapters) is an error, frees what was built, and a
//! smaller model loads and runs afterwards; a device lost mid-generation (injected, or by
//! `Device::destroy`) ends the generation with `Error::DeviceLost`, and a new `Gpu` on the
//! same adapter runs the model again.

mod common;

use common::tiny;
use common::*;
use kiln::generate::{Finish, GenerateOptions};
use kiln::gpu::AdapterChoice;
use kiln::load::LoadOptions;
use kiln::{Error, Gpu, GpuOptions, TextModel};
use std::sync::Arc;

/// Each adapter opened anew (these tests lose or limit their devices), with `limit`.
fn own(index: usize, limit: Option<u64>) -> Gpu {
    pollster::block_on(Gpu::new(&GpuOptions {
        adapter: AdapterChoice::Index(index),
        memory_limit: limit,
        ..Default::default()
    }))
    .expect("the adapter opens again")
}

fn greedy(tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: tokens,
        sampling: kiln::Sampling::greedy(),
        ..Default::default()
    }
}

/// The greedy tokens `model` answers `prompt` with (all of them, or the error).
fn answer(model: &Arc<TextModel>, prompt: &[u32], tokens: usize) -> kiln::Result<Vec<u32>> {
    pollster::block_on(async {
        let mut s = model.session(64).await?;
        let mut g = s.generate(prompt, greedy(tokens)).await?;
        g.text().await?;
        Ok(g.tokens().to_vec())
    })
}

const LIMIT: u64 = 4 << 20;

#[test]
fn out_of_memory_while_loading_frees_everything_and_a_smaller_model_loads() {
    // The small model needs well under 1 MiB; the large one about 9.5 MiB of weights, so it
    // fails partway through its layers.
    let small = tiny::folder("oom-small", "");
    let large = tiny::folder(
        "oom-large",
        r#"{"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 4}"#,
    );
    let n = gpus().len();
    for i in 0..n {
        let gpu = own(i, Some(LIMIT));
        let _turn = turn(&gpu);
        let load = |path: &std::path::Path| {
            pollster::block_on(TextModel::load(&gpu, path, LoadOptions::default())).map(Arc::new)
        };
        let e = load(&large).err().expect("the large model does not fit");
        assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
        let text = e.to_string();
        eprintln!("{}: {text}", label(&gpu));
        for part in ["out of GPU memory", "4.00 MiB", &gpu.info().name] {
            assert!(text.contains(part), "'{part}' not in: {text}");
        }
        assert!(
            gpu.memory_peak() > LIMIT / 2,
            "the load failed after {} bytes, not partway",
            gpu.memory_peak()
        );
        assert_eq!(gpu.memory_in_use(), 0, "{} holds memory after", label(&gpu));
        let model = load(&small).expect("the small model loads after the failure");
        let tokens = answer(&model, &[5, 6, 7], 6).expect("and runs");
        let free = own(i, None);
        let want = answer(
            &Arc::new(
                pollster::block_on(TextModel::load(&free, &small, LoadOptions::default()))
                    .expect("load"),
            ),
            &[5, 6, 7],
            6,
        )
        .expect("run");
        assert_eq!(tokens, want, "{}", label(&gpu));
        drop(model);
        assert_eq!(gpu.memory_in_use(), 0, "{} holds memory after", label(&gpu));
    }
    let _ = std::fs::remove_dir_all(small);
    let _ = std::fs::remove_dir_all(large);
}

/// Generate until the device is lost: the error, and the generation's state after it.
fn lose_mid_generation(gpu: &Gpu, lose: impl FnOnce()) -> Error {
    let model = text_model_on(gpu);
    let mut s = pollster::block_on(model.session(64)).expect("session");
    let mut g = pollster::block_on(s.generate(&[1, 2, 3], greedy(30))).expect("generate");
    assert!(
        pollster::block_on(g.next()).is_some_and(|r| r.is_ok()),
        "a first token"
    );
    lose();
    let mut error = None;
    while let Some(r) = pollster::block_on(g.next()) {
        if let Err(e) = r {
            error = Some(e);
            break;
        }
    }
    let e = error.unwrap_or_else(|| panic!("no error after the loss on {}", label(gpu)));
    assert_eq!(g.finish(), Some(Finish::Error), "{e}");
    assert!(pollster::block_on(g.next()).is_none(), "it has ended");
    // The model's device stays lost: what would use it is refused, not half-built.
    let again = pollster::block_on(model.session(64)).err().expect("lost");
    assert!(matches!(again, Error::DeviceLost(_)), "{again}");
    e
}

fn text_model_on(gpu: &Gpu) -> Arc<TextModel> {
    tiny::text_model(gpu, 96)
}

#[test]
fn a_device_lost_mid_generation_is_reported_and_a_new_gpu_resumes() {
    let n = gpus().len();
    for i in 0..n {
        // The answer to go back to, on a device that stays well.
        let reference = {
            let gpu = own(i, None);
            answer(&text_model_on(&gpu), &[1, 2, 3], 8).expect("reference")
        };
        // Injected: the device is destroyed just before the next submission.
        let gpu = own(i, None);
        let e = lose_mid_generation(&gpu, || gpu.inject_device_loss(1));
        let text = e.to_string();
        eprintln!("{}: {text}", label(&gpu));
        assert!(matches!(e, Error::DeviceLost(_)), "{text}");
        for part in ["GPU device lost", &gpu.info().name, "open a new Gpu"] {
            assert!(text.contains(part), "'{part}' not in: {text}");
        }
        assert!(gpu.lost().is_some());
        // By the app, through wgpu: kiln learns of it from the device-lost callback.
        let gpu = own(i, None);
        let e = lose_mid_generation(&gpu, || gpu.device().destroy());
        eprintln!("{}: {e}", label(&gpu));
        assert!(matches!(e, Error::DeviceLost(_)), "{e}");
        // wgpu says "destroyed" once the queue drains; a readback that failed first says so.
        assert!(
            gpu.lost()
                .is_some_and(|why| why.contains("destroyed") || why.contains("readback")),
            "{:?}",
            gpu.lost()
        );
        // A new device on the same adapter: work resumes, with the same answer.
        let gpu = own(i, None);
        assert!(gpu.lost().is_none());
        let tokens = answer(&text_model_on(&gpu), &[1, 2, 3], 8).expect("resumed");
        assert_eq!(tokens, reference, "{}", label(&gpu));
    }
}

/// The CLI: a device lost mid-generation (`KILN_INJECT_DEVICE_LOSS`) ends `kiln generate`
/// with an error that says so, after the text generated before it, and no panic; a memory
/// limit too small for the model (`--memory-limit`) is an out-of-memory error naming it.
#[test]
fn the_cli_reports_a_lost_device_and_running_out_of_memory() {
    if gpus().is_empty() {
        return; // common::gpus fails under CI=true when there is no adapter
    }
    let dir = tiny::folder("cli-lost", "");
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["generate", "--model"])
            .arg(&dir)
            .args([
                "--prompt",
                "w1 w2 w3",
                "--temperature",
                "0",
                "--max-tokens",
                "40",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .output()
            .expect("run kiln");
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (out.status.code(), text(out.stdout), text(out.stderr))
    };
    let (code, whole, err) = run(&[], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&[], &[("KILN_INJECT_DEVICE_LOSS", "20")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("GPU device lost") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        !out.trim().is_empty() && whole.starts_with(out.trim_end()),
        "the text before the loss ({out:?}) is the start of the whole answer ({whole:?})"
    );
    let (code, _, err) = run(&["--memory-limit", "0"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--memory-limit 0"), "{err}");
    let dir_large = tiny::folder(
        "cli-oom",
        r#"{"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": 4}"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "generate",
            "--memory-limit",
            "1",
            "--prompt",
            "w1",
            "--model",
        ])
        .arg(&dir_large)
        .output()
        .expect("run kiln");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("out of GPU memory") && err.contains("1.00 MiB"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir_large);
}
