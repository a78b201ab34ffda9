//! Fuzz target `request`: see `checks::request` (fuzz/checks.rs) for what it reads and checks.
#![no_main]

#[allow(dead_code)] // each target calls one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    checks::request(input);
});
