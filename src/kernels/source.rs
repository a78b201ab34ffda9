//! Assembling a kernel variant's WGSL from the real `.wgsl` files in `shaders/`.
//!
//! The only text substitution is from closed sets: each weight array's element type
//! (`array<WORD_name>`) and its reader functions (`load_name`, `load4_name`) come from its
//! [`WeightFormat`](crate::dtype::WeightFormat). Tile and workgroup sizes and switches are
//! WGSL override constants, set when the pipeline is created.

use super::Kernel;

/// The complete WGSL module for `kernel`: `enable f16;` and (in the browser)
/// `enable subgroups;` where needed, the weight readers,
/// the family's includes, then its own file.
pub fn compose(kernel: &Kernel) -> String {
    let mut out = String::new();
    if kernel.needs_f16() {
        out.push_str("enable f16;\n");
    }
    // Browsers require the directive for subgroup builtins; naga (every native backend)
    // accepts the builtins without it and rejects the directive.
    if cfg!(target_arch = "wasm32") && kernel.needs_subgroups() {
        out.push_str("enable subgroups;\n");
    }
    let mut body = kernel.family.source.to_string();
    for (name, format) in &kernel.weights {
        body = body.replace(
            &format!("array<WORD_{name}>"),
            &format!("array<{}>", format.wgsl_word()),
        );
        for piece in format.snippet() {
            out.push_str(&piece.replace("ARR", name));
            out.push('\n');
        }
    }
    for include in kernel.family.includes {
        out.push_str(include.source());
        out.push('\n');
    }
    out.push_str(&body);
    out
}
