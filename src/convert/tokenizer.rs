//! Rebuilding an HF `tokenizer.json` from a GGUF's `tokenizer.ggml.*` metadata: a byte-level
//! BPE (`gpt2`) with the vocabulary, merges, special tokens and the pre-tokenizer the model
//! was trained with (`tokenizer.ggml.pre`), or a SentencePiece vocabulary (`llama`, see
//! `convert::spm`).

use crate::error::{Error, Result};
use crate::load::gguf::{Gguf, Meta};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's token types.
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// Llama 3's split, then byte-level without its own regex.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: the same with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn pre_tokenizer(path: &str, pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        let s = Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::load(path, format!("pre-tokenizer regex: {e}")))?;
        Ok(PreTokenizerWrapper::Split(s))
    };
    Ok(match pre {
        // GPT-2's byte-level split.
        "gpt2" | "default" => byte_level(true),
        // SmolLM: every digit on its own, then GPT-2's split.
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3_SPLIT)?,
            byte_level(false),
        ])),
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2_SPLIT)?,
            byte_level(false),
        ])),
        other => {
            return Err(Error::load(
                path,
                format!(
                    "tokenizer.ggml.pre '{other}' is not supported (kiln knows gpt2, smollm, llama-bpe, qwen2)"
                ),
            ));
        }
    })
}

/// Build the tokenizer the GGUF describes.
pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
    let path = g.path();
    let model = g.str("tokenizer.ggml.model")?;
    match model {
        "gpt2" => {}
        "llama" => return super::spm::from_gguf(g),
        other => {
            return Err(Error::load(
                path,
                format!(
                    "tokenizer.ggml.model '{other}' is not supported for import (kiln rebuilds \
                     byte-level BPE, 'gpt2', and SentencePiece, 'llama')"
                ),
            ));
        }
    }
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges = g.strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match g
        .meta
        .get("tokenizer.ggml.token_type")
        .and_then(Meta::as_array)
    {
        Some(a) => a.iter().map(|m| m.as_u64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::load(path, format!("merge '{m}' is not two tokens")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::load(path, format!("building the BPE model: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = g
        .meta
        .get("tokenizer.ggml.pre")
        .and_then(Meta::as_str)
        .unwrap_or("gpt2");
    tok.with_pre_tokenizer(Some(pre_tokenizer(path, pre)?));
    tok.with_decoder(Some(tokenizers::DecoderWrapper::ByteLevel(
        ByteLevel::default(),
    )));
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == CONTROL || **t == USER_DEFINED)
        .map(|(s, t)| AddedToken::from(s.to_string(), *t == CONTROL))
        .collect();
    tok.add_special_tokens(&added);
    Ok(tok)
}
