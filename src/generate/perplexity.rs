//! Perplexity with llama.cpp's semantics (`llama-perplexity`): the text's tokens are cut into
//! non-overlapping windows of `context` tokens, each run from position 0 with a fresh cache,
//! and the second half of each window is scored: for positions `j` from `context / 2` to
//! `context - 2`, the negative log-likelihood of token `j + 1` under the logits at `j`.
//! Tokens past the last whole window are not used.

use super::TextModel;
use crate::error::{Error, Result};
use std::sync::Arc;

/// The result of [`perplexity`].
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub value: f64,
    /// Standard error of `value` (the mean's standard error, carried through exp).
    pub stderr: f64,
    /// Windows of `context` tokens scored (a shorter tail is left out).
    pub windows: usize,
    /// Tokens scored in all.
    pub scored: usize,
}

/// Negative log-likelihood of `target` under `logits`, in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln() - logits[target as usize] as f64
}

/// Summarise per-token negative log-likelihoods as llama.cpp does.
pub fn summarise(nlls: &[f64], windows: usize) -> Perplexity {
    let n = nlls.len() as f64;
    let mean = nlls.iter().sum::<f64>() / n;
    let var = nlls.iter().map(|x| x * x).sum::<f64>() / n - mean * mean;
    let value = mean.exp();
    let stderr = if nlls.len() > 1 {
        value * (var.max(0.0) / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Perplexity {
        value,
        stderr,
        windows,
        scored: nlls.len(),
    }
}

/// The perplexity of `model` on `ids`, in windows of `context` tokens; `progress(done, total)`
/// is called after each window.
pub async fn perplexity(
    model: &Arc<TextModel>,
    ids: &[u32],
    context: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if context < 4 {
        return Err(Error::Invalid(format!(
            "a context of {context} tokens is too short to score"
        )));
    }
    let windows = ids.len() / context;
    if windows == 0 {
        return Err(Error::Invalid(format!(
            "the text has {} tokens, fewer than one window of {context}",
            ids.len()
        )));
    }
    let mut session = model.session(context).await?;
    let first = context / 2;
    let mut nlls = Vec::with_capacity(windows * (context - 1 - first));
    for w in 0..windows {
        let window = &ids[w * context..(w + 1) * context];
        let rows = session.logits(window, true).await?;
        for j in first..context - 1 {
            nlls.push(nll(&rows[j], window[j + 1]));
        }
        progress(w + 1, windows);
    }
    Ok(summarise(&nlls, windows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_the_vocabulary_size() {
        let p = summarise(&vec![nll(&[0.0; 50], 7); 10], 1);
        assert!((p.value - 50.0).abs() < 1e-9, "{p:?}");
        assert!(p.stderr < 1e-5, "{p:?}");
        // A certain token costs nothing.
        assert!(nll(&[0.0, 100.0, 0.0], 1) < 1e-40);
    }
}
