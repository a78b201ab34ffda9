//! What each fuzz target checks, as plain functions: the targets in fuzz_targets/ call them
//! under libFuzzer, and `tests/fuzz_corpus.rs` replays the committed corpus and every past
//! finding (fuzz/regressions/) through them in the ordinary test suite. Each must return
//! (an error from kiln is a fine answer) and never panic; each returns whether the input got
//! all the way through (the seeds must).

use kiln::convert::hf;
use kiln::convert::tokenizer::from_gguf;
use kiln::generate::chat::MAX_RENDERED_BYTES;
use kiln::generate::{ChatTemplate, Message};
use kiln::load::gguf::Gguf;
use kiln::load::safetensors::{header_len, parse_header};
use kiln::models::{Config, bert::BertConfig, whisper::WhisperConfig};

/// The safetensors header and its validation, with a whole file's bytes as input: the length
/// prefix, the JSON, each entry's dtype, shape and offsets, and the layout of the data.
/// Any input must give a header whose tensors lie inside the file and agree with their
/// shapes, or an error.
pub fn safetensors(file: &[u8]) -> bool {
    let len = file.len() as u64;
    let Ok(n) = header_len("fuzz.safetensors", file, len) else {
        return false;
    };
    let json = &file[8..8 + n as usize];
    let Ok(header) = parse_header("fuzz.safetensors", json, len) else {
        return false;
    };
    for t in &header.tensors {
        assert!(
            header.data_start <= t.start && t.start <= t.end && t.end <= len,
            "{t:?}"
        );
        let numel = t.shape.iter().map(|&d| d as u64).product::<u64>();
        assert_eq!(
            numel * t.dtype.size(),
            t.bytes(),
            "{t:?}: shape and bytes disagree"
        );
    }
    true
}

/// The GGUF reader, with a whole file's bytes as input: header, metadata, tensor infos and
/// block sizes; then what `kiln convert` and loading do with a parsed file: the HF config
/// (range-checked as kiln loads it), tensor names, row order, and dequantization of every
/// tensor.
pub fn gguf(file: &[u8]) -> bool {
    let Ok(g) = Gguf::parse("fuzz.gguf", file) else {
        return false;
    };
    for t in &g.tensors {
        assert!(g.data(t).len() <= file.len());
        assert_eq!(g.dequantize(t).len(), t.numel(), "{}", t.name);
    }
    let Ok(cfg) = hf::config(&g) else {
        return false;
    };
    let config = Config::from_json("fuzz.gguf", &cfg.to_string());
    let tokenizer_config = hf::tokenizer_config(&g, &cfg);
    let Ok(plan) = hf::tensors(&g) else {
        return false;
    };
    for (name, t) in plan {
        if let Ok(bytes) = hf::hf_bytes(&g, &cfg, &name, t) {
            assert_eq!(
                bytes.len(),
                g.data(t).len(),
                "{name}: row order changed its size"
            );
        }
    }
    config.is_ok() && tokenizer_config.is_ok()
}

/// The tokenizer import from GGUF metadata (BPE `gpt2` and SentencePiece `llama` vocabularies:
/// tokens, scores, types, merges, special ids), with a GGUF file's bytes as input; an
/// imported tokenizer then encodes and decodes a short text.
pub fn gguf_tokenizer(file: &[u8]) -> bool {
    let Ok(g) = Gguf::parse("fuzz.gguf", file) else {
        return false;
    };
    let Ok(tok) = from_gguf(&g) else {
        return false;
    };
    let Ok(enc) = tok.encode("Hello, wörld! 12 <|im_start|>", true) else {
        return false;
    };
    tok.decode(enc.get_ids(), false).is_ok()
}

/// `config.json` into a model configuration: the Llama-family text models', BERT encoders'
/// and Whisper's, with the file's text as input. A configuration either passes its range
/// checks or is refused with an error.
pub fn config(text: &str) -> bool {
    let llama = Config::from_json("config.json", text);
    if let Ok(c) = &llama {
        assert!(
            c.layers > 0 && c.heads > 0 && c.kv_heads > 0 && c.head_dim > 0,
            "{c:?}"
        );
        assert!(c.heads % c.kv_heads == 0 && c.vocab > 0, "{c:?}");
    }
    let bert = BertConfig::from_json("config.json", text);
    let whisper = WhisperConfig::from_json("config.json", text);
    llama.is_ok() || bert.is_ok() || whisper.is_ok()
}

/// Chat-template rendering: a template is Jinja code from a stranger's
/// `tokenizer_config.json`, run on the user's machine. Input: the template text, then the
/// messages, separated by NUL bytes (`template \0 role \0 content \0 role \0 content ...`),
/// so that the committed corpus is readable. Rendering runs under kiln's fuel, recursion and
/// size limits: it must end (libFuzzer's timeout and memory limit catch a hang or a blow-up)
/// with a bounded text or an error.
pub fn chat_template(input: &str) -> bool {
    let mut parts = input.split('\0');
    let template = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let messages: Vec<Message> = rest
        .chunks(2)
        .map(|m| Message::new(m[0], m.get(1).copied().unwrap_or_default()))
        .collect();
    let config = serde_json::json!({
        "chat_template": template,
        "bos_token": "<s>",
        "eos_token": {"content": "</s>"},
    });
    let Ok(Some(t)) = ChatTemplate::from_tokenizer_config("tokenizer_config.json", &config) else {
        return false;
    };
    let mut rendered = true;
    for generation_prompt in [true, false] {
        match t.render(&messages, generation_prompt) {
            Ok(text) => assert!(text.len() <= MAX_RENDERED_BYTES),
            Err(_) => rendered = false,
        }
    }
    rendered
}

#[allow(dead_code)] // the server's responses are not read here
#[path = "../src/bin/kiln/serve/request.rs"]
mod request;

/// A stand-in for the served model, so that requests are parsed without a GPU: chat turns
/// rendered as "role: content" lines, one token per byte (chat templates and tokenizers have
/// targets of their own), and any sampling allowed.
struct ByteModel;

impl request::Prompter for ByteModel {
    fn render_chat(&self, messages: &[kiln::Message]) -> kiln::Result<String> {
        Ok(messages
            .iter()
            .map(|m| format!("{}: {}\n", m.role, m.content))
            .collect())
    }
    fn encode(&self, text: &str) -> kiln::Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn check_sampling(&self, _: &kiln::Sampling) -> kiln::Result<()> {
        Ok(())
    }
}

/// `kiln serve`'s request parsing (`src/bin/kiln/serve/request.rs`), as the server runs it:
/// the first byte picks the endpoint (completions or chat) and the context (1 to 1017
/// positions), the rest is the body. A refused body is a client error with a message; an
/// accepted one fits its context with room for at least one token, samples within range and
/// has no empty stop string.
pub fn request(input: &[u8]) -> bool {
    let Some((&first, body)) = input.split_first() else {
        return false;
    };
    let kind = match first & 1 {
        0 => request::Kind::Completion,
        _ => request::Kind::Chat,
    };
    let context = 1 + usize::from(first >> 1) * 8;
    match request::parse(body, kind, &ByteModel, "kiln-model", context) {
        Err(e) => {
            assert!(e.status.is_client_error(), "{}: {}", e.status, e.message);
            assert!(!e.message.is_empty());
            false
        }
        Ok(job) => {
            let (n, max) = (job.prompt.len(), job.options.max_tokens);
            assert!(
                n >= 1 && n < context,
                "a prompt of {n} in a context of {context}"
            );
            assert!(max >= 1 && n + max <= context, "{n} + {max} over {context}");
            if let Err(e) = job.options.sampling.validate() {
                panic!("accepted sampling out of range: {e}");
            }
            assert!(job.options.stop.iter().all(|s| !s.is_empty()));
            true
        }
    }
}
