//! The fuzz targets' checks (fuzz/checks.rs), run in the ordinary test suite on stable over
//! the committed seed corpus (fuzz/corpus/TARGET) and every input a fuzzer ever found
//! (fuzz/regressions/TARGET, one file per finding, named after what it found).

#[allow(dead_code)]
#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Each file under fuzz/{corpus,regressions}/`target`; how many were run. A seed (corpus)
/// must get all the way through its check: that is what makes it a seed.
fn replay(target: &str, check: impl Fn(&[u8]) -> bool) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for set in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(set).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = dir.map(|e| e.expect("dir entry").path()).collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).expect("read");
            eprintln!("{}", f.display());
            let through = check(&bytes);
            assert!(
                through || set == "regressions",
                "{}: a seed is refused",
                f.display()
            );
            n += 1;
        }
    }
    n
}

/// libFuzzer hands a `&str` target only the inputs that are UTF-8.
fn text(check: fn(&str) -> bool) -> impl Fn(&[u8]) -> bool {
    move |b| std::str::from_utf8(b).is_ok_and(check)
}

#[test]
fn safetensors_inputs() {
    assert!(replay("safetensors", checks::safetensors) >= 3);
}

#[test]
fn gguf_inputs() {
    assert!(replay("gguf", checks::gguf) >= 3);
}

#[test]
fn gguf_tokenizer_inputs() {
    assert!(replay("gguf_tokenizer", checks::gguf_tokenizer) >= 2);
}

#[test]
fn config_inputs() {
    assert!(replay("config", text(checks::config)) >= 3);
}

#[test]
fn chat_template_inputs() {
    assert!(replay("chat_template", text(checks::chat_template)) >= 3);
}

#[test]
fn request_inputs() {
    assert!(replay("request", checks::request) >= 3);
}
