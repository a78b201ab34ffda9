//! Op families. Each module is one unit: the op's value type, its graph builder (an
//! `impl Graph` block, so model code writes `g.rms_norm(x, w, eps)`), its shape rule, its
//! typed uniform `Params`, its dispatch emission and its CPU twin. Its kernel is the `.wgsl`
//! file of the same family under `shaders/`.
//!
//! Adding an op means writing its module and its shader, and naming the module in `ops!`
//! below: the graph, scheduler, reference evaluator, executor and the naga tests reach it
//! through [`Op`](crate::graph::Op) and [`variants`].

use crate::kernels::{Family, Kernel};

macro_rules! ops {
    ($($family:ident),* $(,)?) => {
        $(pub mod $family;)*

        /// Every kernel variant any op can ask for (tests validate each with naga).
        pub fn variants() -> Vec<Kernel> {
            let mut all = Vec::new();
            $(all.extend($family::variants());)*
            all
        }
    };
}

ops!(
    matmul,
    elementwise,
    norm,
    softmax,
    rope,
    kv,
    attention,
    embedding,
    sample,
    candidates,
    conv,
    pool,
    copy,
    roofline,
    exchange,
);

/// Every kernel family, once each.
pub fn families() -> Vec<&'static Family> {
    let mut out: Vec<&'static Family> = Vec::new();
    for k in variants() {
        if !out.iter().any(|f| std::ptr::eq(*f, k.family)) {
            out.push(k.family);
        }
    }
    out
}

/// Rows of an (S, T, ...) value whose lengths a step gives: row `s * tokens + t` holds a
/// token when `t < len`.
pub(crate) fn token_rows(step: &crate::graph::Step, tokens: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (s, q) in step.seqs.iter().enumerate() {
        for t in 0..q.len.min(tokens) {
            out.push((s, t, s * tokens + t));
        }
    }
    out
}
