//! What callers hold: the options of a generation, why it ended, its timings, and the
//! handles that stream its text ([`Generation`] for one sequence, [`BatchGeneration`] for
//! several).

use super::Session;
use crate::error::Result;
use crate::exec::Pacer;
use crate::sample::Sampling;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// How a generation runs and ends.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Stop after this many generated tokens.
    pub max_tokens: usize,
    /// How each next token is chosen.
    pub sampling: Sampling,
    /// Text that ends generation when produced (not shown).
    pub stop: Vec<String>,
    /// Set to true from anywhere to stop at the next token.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Keep generating past end-of-sequence tokens (benchmarks, which need a fixed count).
    pub ignore_eos: bool,
    /// Prefill a one-sequence prompt in steps of at most this many tokens, reporting each to
    /// `on_prefill` and checking `cancel` between them. `None`: the whole prompt in one step
    /// (the fastest, but a long prompt then shows no progress and holds the queue).
    pub prefill_chunk: Option<usize>,
    /// Told `(done, total)` prompt tokens before the first prefill chunk and after each,
    /// and `(total, total)` once the prompt's last step has run (with or without chunks).
    pub on_prefill: Option<Progress>,
    /// Take a permit from this pacer before each submission (a UI sharing the queue hands
    /// out a few per frame).
    pub pacer: Option<Pacer>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: Sampling::default(),
            stop: vec![],
            cancel: None,
            ignore_eos: false,
            prefill_chunk: None,
            on_prefill: None,
            pacer: None,
        }
    }
}

/// Why a generation ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token was sampled.
    Eos,
    /// A stop string was produced.
    Stop,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The KV cache is full.
    Context,
    /// The `cancel` flag was set.
    Cancelled,
    /// A step failed; the error was returned by `next`.
    Error,
}

/// Timings of one sequence's generation.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Tokens in the prompt, reused ones included.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the conversation so far.
    pub reused_tokens: usize,
    /// Tokens generated, an end-of-sequence token not counted.
    pub generated_tokens: usize,
    /// From the start of the call to the first sampled token: the prefill step, with any
    /// program it had to build.
    pub first_token_secs: f64,
    /// From the first token to the last.
    pub decode_secs: f64,
}

impl Stats {
    /// Prompt tokens computed (not reused) per second of `first_token_secs`.
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        (self.prompt_tokens - self.reused_tokens) as f64 / self.first_token_secs.max(1e-9)
    }
    /// Tokens after the first, per second of `decode_secs`.
    pub fn decode_tokens_per_sec(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }
}

/// A generation in progress, borrowing its session: call [`Generation::next`] for each delta.
pub struct Generation<'s> {
    pub(super) session: &'s mut Session,
}

impl Generation<'_> {
    /// The next piece of text, or `None` when the generation has ended.
    pub async fn next(&mut self) -> Option<Result<String>> {
        self.session.next().await
    }

    /// Why it ended (once [`Generation::next`] has returned `None`).
    pub fn finish(&self) -> Option<Finish> {
        self.session.finish()
    }

    /// Its timings so far.
    pub fn stats(&self) -> Stats {
        self.session.stats()
    }

    /// The generated token ids so far (EOS excluded).
    pub fn tokens(&self) -> &[u32] {
        self.session.tokens()
    }

    /// Drive the generation to the end, calling `on_text` with each delta (for native callers).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn for_each_blocking(&mut self, mut on_text: impl FnMut(&str)) -> Result<()> {
        while let Some(delta) = pollster::block_on(self.next()) {
            on_text(&delta?);
        }
        Ok(())
    }

    /// All remaining text.
    pub async fn text(&mut self) -> Result<String> {
        let mut out = String::new();
        while let Some(d) = self.next().await {
            out.push_str(&d?);
        }
        Ok(out)
    }
}

/// Several generations in progress as one batch: [`BatchGeneration::next`] yields
/// `(sequence, text)` as each sequence produces it.
pub struct BatchGeneration<'s> {
    pub(super) session: &'s mut Session,
}

impl BatchGeneration<'_> {
    /// The next `(sequence, text)` piece, or `None` when every sequence has ended.
    pub async fn next(&mut self) -> Option<Result<(usize, String)>> {
        self.session.next_event().await
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.session.sequences()
    }

    /// Whether the batch has no sequences.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why sequence `i` ended, once it has.
    pub fn finish(&self, i: usize) -> Option<Finish> {
        self.session.finish_of(i)
    }

    /// Whether sequence `i` has ended and all its text has been handed out.
    pub fn done(&self, i: usize) -> bool {
        self.session.done(i)
    }

    /// Sequence `i`'s timings so far.
    pub fn stats(&self, i: usize) -> Stats {
        self.session.stats_of(i)
    }

    /// Sequence `i`'s generated token ids so far (EOS excluded).
    pub fn tokens(&self, i: usize) -> &[u32] {
        self.session.tokens_of(i)
    }

    /// Every sequence's remaining text, in order.
    pub async fn texts(&mut self) -> Result<Vec<String>> {
        let mut out = vec![String::new(); self.len()];
        while let Some(ev) = self.next().await {
            let (i, text) = ev?;
            out[i].push_str(&text);
        }
        Ok(out)
    }
}

/// Called with `(done, total)` prompt tokens as a chunked prefill advances (see
/// [`GenerateOptions::prefill_chunk`]); `done`
/// counts tokens reused from the conversation so far too.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(usize, usize) + Send + Sync>);

impl Progress {
    /// Wrap a callback.
    pub fn new(f: impl Fn(usize, usize) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(f))
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}
