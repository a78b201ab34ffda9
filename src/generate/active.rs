//! The state of a generation in progress: its sequences, the steps in flight, and the text
//! not yet handed out. The loop that drives it is in `run.rs`.

use super::TextModel;
use super::generation::{Finish, GenerateOptions, Stats};
use super::stream::TextStream;
use crate::error::Result;
use crate::exec::Ticket;
use crate::sample::Rng;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// Seconds on a clock (the browser's `Date.now()` on the web, millisecond resolution).
pub(crate) fn now() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() / 1000.0
    }
}

/// One sequence of the generation in progress.
pub(super) struct SeqGen {
    pub(super) slot: usize,
    pub(super) options: GenerateOptions,
    pub(super) stream: TextStream,
    pub(super) rng: Rng,
    /// Tokens in its cache once prefill has run.
    pub(super) prompt_len: usize,
    /// Accepted tokens (EOS excluded).
    pub(super) tokens: Vec<u32>,
    /// Decode steps submitted for it.
    pub(super) decodes: usize,
    pub(super) finish: Option<Finish>,
    pub(super) stats: Stats,
}

/// A token a step sampled for a sequence, and when.
pub(super) struct Took {
    pub(super) token: u32,
    /// Sampled by the prefill: the sequence's first token.
    pub(super) prefill: bool,
    pub(super) at: f64,
    /// When the sequence's generation started.
    pub(super) started: f64,
    /// Positions its KV cache holds.
    pub(super) capacity: usize,
}

impl SeqGen {
    /// A sequence in `slot` about to compute its prompt of `prompt_len` tokens, the first
    /// `reused` of which its cache already holds.
    pub(super) fn new(
        slot: usize,
        options: GenerateOptions,
        prompt_len: usize,
        reused: usize,
    ) -> SeqGen {
        SeqGen {
            slot,
            stream: TextStream::new(options.stop.clone()),
            rng: Rng::new(options.sampling.seed),
            prompt_len,
            tokens: Vec::new(),
            decodes: 0,
            finish: None,
            stats: Stats {
                prompt_tokens: prompt_len,
                reused_tokens: reused,
                ..Default::default()
            },
            options,
        }
    }

    pub(super) fn cancelled(&self) -> bool {
        self.options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Take the token a step sampled for this sequence (number `i` of its generation):
    /// count the token the step fed into `context` (its slot's cached tokens), time it, and
    /// queue its text, or end the sequence on EOS, a stop string, its token budget or a
    /// full cache.
    pub(super) fn take(
        &mut self,
        i: usize,
        took: Took,
        model: &TextModel,
        context: &mut Vec<u32>,
        events: &mut VecDeque<(usize, String)>,
    ) -> Result<()> {
        let token = took.token;
        if !took.prefill {
            // This step fed the previous token into the cache.
            if let Some(&fed) = self.tokens.last() {
                context.push(fed);
            }
        }
        if self.tokens.is_empty() {
            self.stats.first_token_secs = took.at - took.started;
        } else {
            self.stats.decode_secs = took.at - took.started - self.stats.first_token_secs;
        }
        if self.options.max_tokens == 0 {
            end(self, i, Finish::MaxTokens, String::new(), events);
            return Ok(());
        }
        if !self.options.ignore_eos && model.eos.contains(&token) {
            end(self, i, Finish::Eos, String::new(), events);
            return Ok(());
        }
        self.tokens.push(token);
        self.stats.generated_tokens += 1;
        let delta = self.stream.push(model.tokenizer(), token)?;
        let finish = if self.stream.stopped() {
            Some(Finish::Stop)
        } else if self.tokens.len() >= self.options.max_tokens {
            Some(Finish::MaxTokens)
        } else if self.prompt_len + self.tokens.len() > took.capacity {
            // No room to feed this token back.
            Some(Finish::Context)
        } else {
            None
        };
        match finish {
            Some(why) => end(self, i, why, delta, events),
            None if !delta.is_empty() => events.push_back((i, delta)),
            None => {}
        }
        Ok(())
    }
}

/// A submitted step awaiting its read.
pub(super) struct InFlight {
    pub(super) prefill: bool,
    pub(super) ticket: Ticket,
    /// Which sequences it computes a token for.
    pub(super) members: Vec<bool>,
}

/// The generation in progress.
pub(super) struct Active {
    pub(super) seqs: Vec<SeqGen>,
    pub(super) in_flight: VecDeque<InFlight>,
    /// Text deltas not yet handed out, by sequence.
    pub(super) events: VecDeque<(usize, String)>,
    pub(super) started: f64,
    pub(super) failed: bool,
}

/// End sequence `i` with `why`, flushing held-back text after `delta`.
pub(super) fn end(
    q: &mut SeqGen,
    i: usize,
    why: Finish,
    mut delta: String,
    events: &mut VecDeque<(usize, String)>,
) {
    q.finish = Some(why);
    delta.push_str(&q.stream.finish());
    if !delta.is_empty() {
        events.push_back((i, delta));
    }
}
