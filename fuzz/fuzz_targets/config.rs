//! Fuzz target `config`: see `checks::config` (fuzz/checks.rs) for what it reads and checks.
#![no_main]

#[allow(dead_code)] // each target calls one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|text: &str| {
    checks::config(text);
});
