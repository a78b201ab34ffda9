//! The interactive side of `kiln generate`: Ctrl-C during a reply, and prefill progress.

use super::*;

/// Send SIGINT to `child` once its stdout has produced something (the generation is under
/// way); returns everything it printed, stdout and stderr, and its exit status.
fn interrupt_once_streaming(
    mut child: std::process::Child,
    then: impl FnOnce(&mut std::process::Child),
) -> (i32, String, String) {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    rx.recv_timeout(std::time::Duration::from_secs(600))
        .expect("no text within 10 minutes");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    then(&mut child);
    let out = child.wait_with_output().expect("wait");
    let printed = reader.join().expect("reader");
    (
        out.status.code().unwrap_or(-1),
        printed,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctrl_c_stops_the_reply_not_the_conversation() {
    use std::process::Stdio;
    if common::gpus().is_empty() {
        return;
    }
    // generate: the text so far and the stats, then status 130.
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "generate",
            "--model",
            "synthetic:smollm2-135m",
            "--adapter",
            "vulkan",
            "--prompt",
            "t1",
            "--max-tokens",
            "2000",
            "--temperature",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln");
    let (code, out, err) = interrupt_once_streaming(child, |_| {});
    assert_eq!(code, 130, "{err}");
    assert!(!out.is_empty());
    assert!(err.contains("stopped: Cancelled"), "{err}");

    // chat: Ctrl-C ends the reply; the conversation goes on to /exit.
    let Some(model) = common::smollm2::path() else {
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["chat", "--model"])
        .arg(&model)
        .args([
            "--adapter",
            "vulkan",
            "--max-tokens",
            "1000",
            "--temperature",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln");
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "Tell me a very long story about a dragon.").expect("write");
    }
    let (code, _, err) = interrupt_once_streaming(child, |c| {
        use std::io::Write;
        let mut stdin = c.stdin.take().expect("stdin");
        writeln!(stdin, "/help").expect("write");
        writeln!(stdin, "/exit").expect("write");
    });
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stopped: Cancelled"), "{err}");
    let after = &err[err.find("stopped: Cancelled").expect("cancelled")..];
    assert!(after.contains("/reset starts a new conversation"), "{err}");
}

#[test]
fn a_long_prompt_shows_prefill_progress() {
    if common::gpus().is_empty() {
        return;
    }
    let prompt = "the quick brown fox jumps over the lazy dog. ".repeat(40);
    let (code, out, err) = kiln(
        &[
            "generate",
            "--model",
            "synthetic:smollm2-135m",
            "--adapter",
            "vulkan",
            "--prompt",
            &prompt,
            "--max-tokens",
            "2",
            "--temperature",
            "0",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty(), "no text");
    // Not a terminal: a line at each quarter, in tokens, ending at 100%.
    assert!(err.contains("prefill  25% ("), "{err}");
    assert!(err.contains("prefill 100% ("), "{err}");
    assert!(err.contains(" tokens)"), "{err}");
    // A short prompt shows no bar.
    let (code, _, err) = kiln(
        &[
            "generate",
            "--model",
            "synthetic:smollm2-135m",
            "--adapter",
            "vulkan",
            "--prompt",
            "t1",
            "--max-tokens",
            "2",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("prefill  "), "{err}");
}
