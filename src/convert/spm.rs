//! Rebuilding a SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`: Llama 2, TinyLlama,
//! Mistral and their fine-tunes) from a GGUF's vocabulary, scores and token types, as HF's
//! `LlamaTokenizerFast` expresses it:
//!
//! - the normalizer replaces spaces with `▁` and, unless `tokenizer.ggml.add_space_prefix`
//!   is false, prepends one `▁`;
//! - the model is a BPE whose merges are every split of a vocabulary piece into two pieces,
//!   ranked by the merged piece's score (SentencePiece merges the best-scored pair first);
//! - characters outside the vocabulary fall back to their UTF-8 bytes (`<0x41>` tokens);
//! - the decoder turns `▁` back into spaces, fuses byte tokens and drops the prefix space.

use crate::error::{Error, Result};
use crate::load::gguf::{Gguf, Meta};
use serde_json::json;
use std::collections::HashMap;
use tokenizers::Tokenizer;

/// SentencePiece's token types, as GGUF stores them.
const NORMAL: u64 = 1;
const UNKNOWN: u64 = 2;
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// The tokenizer the GGUF's SentencePiece vocabulary describes.
pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
    let path = g.path();
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let scores: Vec<f64> = match g.meta.get("tokenizer.ggml.scores").and_then(Meta::as_array) {
        Some(a) if a.len() == tokens.len() => a.iter().map(|m| m.as_f64().unwrap_or(0.0)).collect(),
        _ => {
            return Err(Error::load(
                path,
                "a SentencePiece vocabulary needs tokenizer.ggml.scores, one per token",
            ));
        }
    };
    let types: Vec<u64> = match g
        .meta
        .get("tokenizer.ggml.token_type")
        .and_then(Meta::as_array)
    {
        Some(a) => a.iter().map(|m| m.as_u64().unwrap_or(NORMAL)).collect(),
        None => vec![NORMAL; tokens.len()],
    };
    let kind = |i: usize| types.get(i).copied().unwrap_or(NORMAL);
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();

    // Every split of a normal piece into two pieces is a merge, ranked by the piece's score.
    let mut merges: Vec<(f64, usize, usize, &str, &str)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if kind(i) != NORMAL {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[i], li, ri, l, r));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

    let unk = tokens
        .iter()
        .enumerate()
        .find(|(i, _)| kind(*i) == UNKNOWN)
        .map(|(_, t)| t.to_string());
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(kind(*i), CONTROL | USER_DEFINED | UNKNOWN))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": kind(i) != USER_DEFINED})
        })
        .collect();
    let prefix = g
        .meta
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(Meta::as_bool)
        .unwrap_or(true);
    let mut normalizers = Vec::new();
    if prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab,
            "merges": merges.iter().map(|m| json!([m.3, m.4])).collect::<Vec<_>>(),
        }
    });
    spec.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| Error::load(path, format!("building the SentencePiece tokenizer: {e}")))
}
