//! Turning generated token ids into text deltas: only complete UTF-8 is emitted (a character
//! whose bytes span several tokens waits for its last byte), and text that might be the start
//! of a stop string is held back until it is known not to be one.

use crate::error::{Error, Result};
use tokenizers::Tokenizer;

/// Incremental detokenizer with stop strings.
pub struct TextStream {
    ids: Vec<u32>,
    /// Tokens before `prefix` are already emitted and no longer decoded.
    prefix: usize,
    /// Tokens in [prefix, read) have been decoded into emitted text.
    read: usize,
    stops: Vec<String>,
    /// Decoded text not yet emitted (it may start a stop string).
    held: String,
    stopped: bool,
}

impl TextStream {
    /// A stream that ends at the first of `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> TextStream {
        TextStream {
            ids: Vec::new(),
            prefix: 0,
            read: 0,
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
        tok.decode(ids, false)
            .map_err(|e| Error::Invalid(format!("decoding tokens failed: {e}")))
    }

    /// Add a token; returns the text that is now safe to show (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        self.ids.push(id);
        // Decode with a few tokens of left context so that spacing decoders behave, and
        // take only what the new tokens add.
        let before = Self::decode(tok, &self.ids[self.prefix..self.read])?;
        let after = Self::decode(tok, &self.ids[self.prefix..])?;
        if after.len() <= before.len()
            || after.ends_with('\u{FFFD}')
            || !after.is_char_boundary(before.len())
        {
            // An incomplete character: wait for its remaining bytes.
            return Ok(String::new());
        }
        self.held.push_str(&after[before.len()..]);
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(self.release())
    }

    /// Emit what cannot be part of a stop string; stop at one.
    fn release(&mut self) -> String {
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return out;
        }
        // Hold back the longest tail of `held` that is a proper prefix of a stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.held.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        out
    }

    /// At the end of generation: whatever is held back, now known not to be a stop string.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    /// A byte-level BPE with no merges: every UTF-8 byte is its own token.
    fn bytes_tokenizer() -> Tokenizer {
        let vocab: tokenizers::models::bpe::Vocab = ByteLevel::alphabet()
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .expect("bpe");
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(ByteLevel::new(false, true, true)));
        tok
    }

    fn stream(text: &str, stops: &[&str]) -> Vec<String> {
        let tok = bytes_tokenizer();
        let ids = tok.encode(text, false).expect("encode").get_ids().to_vec();
        let mut s = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for id in ids {
            let d = s.push(&tok, id).expect("push");
            if !d.is_empty() {
                out.push(d);
            }
            if s.stopped() {
                break;
            }
        }
        out.push(s.finish());
        out.retain(|d| !d.is_empty());
        out
    }

    #[test]
    fn multibyte_characters_come_out_whole() {
        // "é" is 2 bytes, "🦀" 4: each arrives as several tokens.
        let deltas = stream("aé🦀b", &[]);
        assert_eq!(deltas, ["a", "é", "🦀", "b"]);
        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')));
    }

    #[test]
    fn stop_strings_end_the_text_and_are_not_shown() {
        assert_eq!(stream("Hello\nUser: hi", &["\nUser:"]).concat(), "Hello");
        // A partial match is held back, then released when it turns out not to be one.
        let deltas = stream("a\nUb", &["\nUser:"]);
        assert_eq!(deltas.concat(), "a\nUb");
        assert!(
            deltas.iter().all(|d| d != "\n"),
            "the newline waited: {deltas:?}"
        );
    }
}
