//! Fuzz target `chat_template`: see `checks::chat_template` (fuzz/checks.rs) for what it reads and checks.
#![no_main]

#[allow(dead_code)] // each target calls one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &str| {
    checks::chat_template(input);
});
