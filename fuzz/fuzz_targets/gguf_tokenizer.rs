//! Fuzz target `gguf_tokenizer`: see `checks::gguf_tokenizer` (fuzz/checks.rs) for what it reads and checks.
#![no_main]

#[allow(dead_code)] // each target calls one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|file: &[u8]| {
    checks::gguf_tokenizer(file);
});
