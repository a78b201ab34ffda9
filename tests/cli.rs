//! The `kiln` binary: what it prints where, and its errors.

mod common;
// Ctrl-C and progress: what a person at the terminal sees.
#[path = "cli/interactive.rs"]
mod interactive;

use std::process::Command;

fn kiln(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kiln");
    let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        s(out.stdout),
        s(out.stderr),
    )
}

fn sample_file(name: &str, truncate: bool) -> std::path::PathBuf {
    let header = r#"{"emb":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..6).flat_map(|i| (i as f32).to_le_bytes()));
    if truncate {
        bytes.truncate(bytes.len() - 10);
    }
    let p = std::env::temp_dir().join(format!("kiln-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn adapters_lists_every_adapter_on_stdout() {
    let (code, out, _) = kiln(&["adapters"], &[]);
    let n = common::gpus().len();
    if n == 0 {
        assert_eq!(code, 1);
        return;
    }
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.starts_with('[')).count(),
        n,
        "{out}"
    );
    assert!(
        out.contains("max storage binding") && out.contains("SHADER_F16"),
        "{out}"
    );
}

#[test]
fn no_adapter_says_how_to_install_one() {
    // On Linux no Metal adapter exists: as if the machine had no GPU driver at all.
    let (code, out, err) = kiln(&["adapters"], &[("WGPU_BACKEND", "metal")]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("mesa-vulkan-drivers") && err.contains("lavapipe"),
        "{err}"
    );
}

#[test]
fn inspect_and_load_report_on_stderr_and_fail_clearly() {
    let good = sample_file("good.safetensors", false);
    let (code, out, err) = kiln(&["inspect", good.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("emb") && out.contains("[3, 2]"), "{out}");

    let bad = sample_file("bad.safetensors", true);
    let (code, out, err) = kiln(&["inspect", bad.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("bad.safetensors") && err.contains("'emb'") && err.contains("truncated"),
        "{err}"
    );

    if !common::gpus().is_empty() {
        let (code, out, err) = kiln(
            &["load", good.to_str().expect("utf-8"), "--adapter", "0"],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.is_empty(), "load prints nothing on stdout: {out}");
        assert!(
            err.contains("100%") && err.contains("loaded 1 tensors"),
            "{err}"
        );
    }

    // Usage errors exit 2, with clap's message.
    let (code, _, err) = kiln(&["load"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("<FILE>"), "{err}");
    let (code, _, err) = kiln(&["bench", "--size", "huge"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("possible values: small, large"), "{err}");
}

/// Every command, from `kiln COMMAND --help`.
const COMMANDS: [&str; 14] = [
    "generate",
    "chat",
    "logits",
    "perplexity",
    "serve",
    "embed",
    "transcribe",
    "convert",
    "adapters",
    "inspect",
    "load",
    "bench",
    "tune",
    "completions",
];

#[test]
fn help_version_suggestions_and_odd_input() {
    let (code, out, _) = kiln(&["--help"], &[]);
    assert_eq!(code, 0);
    for c in COMMANDS {
        assert!(out.contains(c), "kiln --help names no {c}: {out}");
    }
    for c in COMMANDS {
        let (code, out, err) = kiln(&[c, "--help"], &[]);
        assert_eq!(code, 0, "kiln {c} --help: {err}");
        assert!(
            out.contains(&format!("Usage: kiln {c}")),
            "kiln {c} --help: {out}"
        );
    }
    // Defaults are in the help.
    let (_, out, _) = kiln(&["generate", "--help"], &[]);
    for default in ["[default: 256;", "[default: 0.8]", "[default: 40]"] {
        assert!(out.contains(default), "no {default} in {out}");
    }
    let (code, out, _) = kiln(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("kiln ") && out.contains(env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    // A typo'd flag names the right one; nothing reaches stdout.
    let (code, out, err) = kiln(&["generate", "--promt", "hi"], &[]);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("'--prompt'"), "{err}");
    for (args, want) in [
        (&["adapters", "extra"][..], "unexpected argument 'extra'"),
        (&["kiln-nonsense"][..], "unrecognized subcommand"),
        (
            &["generate", "--system", "x", "--prompt", "y"][..],
            "--chat",
        ),
        (
            &["generate", "--max-tokens", "x", "--prompt", "y"][..],
            "--max-tokens",
        ),
        (&["transcribe"][..], "<FILE.wav>"),
        (
            &["embed", "--file", "x.txt", "some text"][..],
            "cannot be used with",
        ),
    ] {
        let (code, out, err) = kiln(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(want), "{args:?}: no '{want}' in {err}");
    }
    // Values the parser takes but kiln cannot use fail before a model loads. The last of a
    // repeated option counts; a prompt may start with '-'.
    for (args, want) in [
        (
            &[
                "generate",
                "--model",
                "synthetic:smollm2-135m",
                "--prompt",
                "y",
                "--max-tokens",
                "5",
                "--max-tokens",
                "0",
            ][..],
            "--max-tokens 0",
        ),
        (
            &[
                "generate",
                "--model",
                "synthetic:smollm2-135m",
                "--prompt",
                "- a list item",
                "--max-tokens",
                "0",
            ][..],
            "--max-tokens 0",
        ),
        (
            &[
                "generate",
                "--model",
                "synthetic:smollm2-135m",
                "--prompt",
                "y",
                "--max-tokens",
                "0",
            ][..],
            "--max-tokens 0",
        ),
        (
            &[
                "logits",
                "--model",
                "synthetic:smollm2-135m",
                "--prompt",
                "y",
                "--top-k",
                "0",
            ][..],
            "--top-k 0",
        ),
    ] {
        let (code, out, err) = kiln(args, &[]);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(want), "{args:?}: no '{want}' in {err}");
    }
    // Sampling values out of range (negative ones too: they parse, then are refused with
    // the valid range).
    for (flag, value, want) in [
        (
            "--temperature",
            "-1",
            "temperature -1 must be 0 (greedy) or more",
        ),
        ("--top-p", "0", "top_p 0 must be in (0, 1]"),
        ("--top-p", "1.5", "top_p 1.5 must be in (0, 1]"),
        ("--min-p", "-0.1", "min_p -0.1 must be in [0, 1)"),
        (
            "--repeat-penalty",
            "-1",
            "repetition_penalty -1 must be positive",
        ),
    ] {
        let args = [
            "generate",
            "--model",
            "synthetic:smollm2-135m",
            "--prompt",
            "y",
            flag,
            value,
        ];
        let (code, out, err) = kiln(&args, &[]);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(want), "{args:?}: no '{want}' in {err}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = kiln(&["completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains("generate") && out.contains("max-tokens"),
            "{shell}: {out}"
        );
    }
}

#[test]
fn without_pip_the_default_model_error_says_how_to_get_it() {
    let cache = std::env::temp_dir().join(format!("kiln-cli-{}-empty-cache", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let (code, out, err) = kiln(
        &["generate", "--prompt", "hi"],
        &[("PATH", ""), ("KILN_CACHE", cache.to_str().expect("utf-8"))],
    );
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("python3 is not installed")
            && err.contains("by hand")
            && err.contains("--model"),
        "{err}"
    );
}

#[test]
fn several_prompts_print_one_json_line_each_in_order() {
    let dir = match kiln::fetch::ensure(
        &kiln::fetch::SMOLLM2_135M,
        &kiln::fetch::cache_dir(),
        &mut |m| eprintln!("{m}"),
    ) {
        Ok(d) => d,
        Err(e) if common::ci() => panic!("CI=true and the SmolLM2 model could not be fetched: {e}"),
        Err(e) => {
            eprintln!(
                "WARNING: the batch CLI test did not run: the model could not be fetched: {e}"
            );
            return;
        }
    };
    let model = dir.to_str().expect("utf-8");
    let prompts = ["The capital of France is", "Hi"];
    let args = |ps: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            model,
            "--max-tokens",
            "6",
            "--temperature",
            "0",
        ];
        for p in ps {
            a.extend(["--prompt", *p]);
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| kiln(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let (code, out, err) = run(args(&prompts));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(err.contains("2 prompts as one batch"), "{err}");
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(lines[i]["index"], i, "{out}");
        let (code, alone, err) = run(args(&[p]));
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            lines[i]["text"],
            alone.as_str(),
            "prompt {i} in a batch and alone"
        );
    }
    // --profile: the same text, and GPU time per kernel for prefill and decode on stderr.
    let mut a = args(&prompts[..1]);
    a.push("--profile".into());
    let (code, profiled, err) = run(a);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["text"], profiled.as_str(), "profiled text");
    assert!(err.contains("GPU time per kernel"), "{err}");
    for phase in ["prefill: 1 step(s)", "decode: ", "gemv"] {
        assert!(err.contains(phase), "no '{phase}' in {err}");
    }
}

#[test]
fn adapters_split_the_model_and_bad_placements_fail_clearly() {
    if common::gpus().is_empty() {
        return;
    }
    let synthetic = [
        "generate",
        "--model",
        "synthetic:smollm2-135m",
        "--prompt",
        "t1",
    ];
    let with = |extra: &[&str]| {
        let mut a = synthetic.to_vec();
        a.extend(extra);
        kiln(&a, &[])
    };
    for (extra, want) in [
        (
            &["--adapters", "vulkan,99"][..],
            "--adapters vulkan,99: adapter '99'",
        ),
        (&["--split", "layers"][..], "add --adapters"),
        (
            &[
                "--adapters",
                "vulkan,vulkan,vulkan,vulkan",
                "--split",
                "tensor",
            ][..],
            "4 adapters but the model has 3 KV heads",
        ),
        (
            &["--adapters", "vulkan,vulkan", "--split", "rows"][..],
            "none of 'tensor', 'layers' and 'auto'",
        ),
        (
            &["--adapters", "vulkan,vulkan", "--split-weights", "2,x"][..],
            "not a list of numbers",
        ),
        (
            &["--adapters", "vulkan,vulkan", "--split-weights", "1"][..],
            "1 split weights for 2 adapters",
        ),
        (
            &["--adapters", "vulkan", "--adapter", "vulkan"][..],
            "use one",
        ),
    ] {
        let (code, out, err) = with(extra);
        assert_eq!(code, 1, "{extra:?}: {err}");
        assert!(out.is_empty(), "{extra:?}: {out}");
        assert!(err.contains(want), "{extra:?}: no '{want}' in {err}");
    }
    for option in ["--split", "--split-weights"] {
        let (code, _, err) = kiln(&["bench", option, "1"], &[]);
        assert_eq!(code, 1);
        assert!(err.contains("give --model"), "{option}: {err}");
    }

    // The default model split over lavapipe opened twice prints what lavapipe alone does.
    let Some(path) = common::smollm2::path() else {
        return;
    };
    let model = path.to_str().expect("utf-8");
    let run = |adapters: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            model,
            "--prompt",
            "The capital of France is",
        ];
        a.extend(["--max-tokens", "8", "--temperature", "0"]);
        a.extend(adapters);
        kiln(&a, &[])
    };
    let (code, alone, err) = run(&["--adapter", "vulkan"]);
    assert_eq!(code, 0, "{err}");
    // By default (auto), tensor-parallel: this model can be so placed.
    let (code, tensor, err) = run(&["--adapters", "vulkan,vulkan"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("stage 1: KV heads 2..3, hidden units 768..1536, vocabulary 24576..49152 on"),
        "{err}"
    );
    let (code, split, err) = run(&["--adapters", "vulkan,vulkan", "--split", "layers"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stage 1: layers 15..30 on"), "{err}");
    assert_eq!(split, alone, "split by layers and alone");
    assert_eq!(tensor, alone, "tensor-parallel and alone");
}
