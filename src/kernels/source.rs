//! Assembling a kernel variant's WGSL from the real `.wgsl` files in `shaders/`.
//!
//! The only text substitution is from closed sets: each weight array's element type
//! (`array<WORD_name>`) and its reader functions (`load_name`, `load4_name`) come from its
//! [`WeightFormat`](crate::dtype::WeightFormat). Tile and workgroup sizes and the epilogue's
//! stages are WGSL override constants, set when the pipeline is created.

use super::Kernel;

const EPILOGUE: &str = include_str!("../../shaders/epilogue.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");

/// The kernel family's own file.
pub fn family_source(kernel: &Kernel) -> &'static str {
    match kernel {
        Kernel::Matmul { .. } => include_str!("../../shaders/matmul.wgsl"),
        Kernel::Gemv { .. } => include_str!("../../shaders/gemv.wgsl"),
        Kernel::Elementwise { .. } => include_str!("../../shaders/elementwise.wgsl"),
        Kernel::Norm { .. } => include_str!("../../shaders/norm.wgsl"),
        Kernel::Softmax => include_str!("../../shaders/softmax.wgsl"),
        Kernel::Rope => include_str!("../../shaders/rope.wgsl"),
        Kernel::Attention => include_str!("../../shaders/attention.wgsl"),
        Kernel::KvWrite | Kernel::Copy => include_str!("../../shaders/copy.wgsl"),
        Kernel::Embedding { .. } => include_str!("../../shaders/embedding.wgsl"),
        Kernel::Sample => include_str!("../../shaders/sample.wgsl"),
    }
}

fn uses_epilogue(kernel: &Kernel) -> bool {
    matches!(
        kernel,
        Kernel::Matmul { .. } | Kernel::Gemv { .. } | Kernel::Elementwise { .. }
    )
}

/// The complete WGSL module for `kernel`.
pub fn compose(kernel: &Kernel) -> String {
    let mut out = String::new();
    if kernel.needs_f16() {
        out.push_str("enable f16;\n\n");
    }
    let mut body = family_source(kernel).to_string();
    for (name, format) in kernel.weight_arrays() {
        body = body.replace(
            &format!("array<WORD_{name}>"),
            &format!("array<{}>", format.wgsl_word()),
        );
        out.push_str(&format.snippet().replace("ARR", name));
        out.push('\n');
    }
    if uses_epilogue(kernel) {
        out.push_str(EPILOGUE);
        out.push('\n');
    }
    if matches!(
        kernel,
        Kernel::Norm { .. } | Kernel::Softmax | Kernel::Sample
    ) {
        out.push_str(REDUCE);
        out.push('\n');
    }
    out.push_str(&body);
    out
}
