//! Fuzz target `safetensors`: see `checks::safetensors` (fuzz/checks.rs) for what it reads and checks.
#![no_main]

#[allow(dead_code)] // each target calls one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|file: &[u8]| {
    checks::safetensors(file);
});
