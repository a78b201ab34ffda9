//! The host loop. A [`Session`] owns a conversation's KV cache and its programs: one decode
//! program built once, and prefill programs per prompt length. A [`Generation`] streams text
//! deltas: prefill runs the prompt in one step and samples on the GPU; each decode step feeds
//! the GPU-resident token back in and samples again, and only that token id is read back.

use super::TextModel;
use super::stream::TextStream;
use crate::error::{Error, Result};
use crate::exec::{Feed, Program, State, Step};
use crate::graph::Graph;
use crate::models::Logits;
use crate::sample::{Rng, Sampling};
use crate::schedule::{Plan, Target};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prefill programs kept per session (by prompt length), most recent first.
const PREFILL_CACHE: usize = 4;

/// How a generation runs and ends.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Text that ends generation when produced (not shown).
    pub stop: Vec<String>,
    /// Set to true from anywhere to stop at the next token.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: Sampling::default(),
            stop: vec![],
            cancel: None,
        }
    }
}

/// Why a generation ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    Eos,
    Stop,
    MaxTokens,
    /// The KV cache is full.
    Context,
    Cancelled,
}

/// Timings of one generation.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the conversation so far.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    /// From the start of the call to the first sampled token: the prefill step, with any
    /// program it had to build.
    pub first_token_secs: f64,
    /// Time in decode steps.
    pub decode_secs: f64,
}

impl Stats {
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        (self.prompt_tokens - self.reused_tokens) as f64 / self.first_token_secs.max(1e-9)
    }
    pub fn decode_tokens_per_sec(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }
}

/// A conversation: the KV cache, the tokens in it, the programs that extend it, and the
/// generation in progress.
pub struct Session {
    model: Arc<TextModel>,
    state: State,
    decode: Program,
    prefills: Vec<(usize, Program)>,
    capacity: usize,
    /// Tokens whose keys and values are in the cache, in order.
    context: Vec<u32>,
    active: Option<Active>,
}

/// The state of the generation in progress.
struct Active {
    options: GenerateOptions,
    stream: TextStream,
    rng: Rng,
    /// A sampled token not yet shown (and not yet in the cache).
    next: Option<u32>,
    finish: Option<Finish>,
    stats: Stats,
    tokens: Vec<u32>,
}

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

impl Session {
    pub(super) async fn new(model: Arc<TextModel>, capacity: usize) -> Result<Session> {
        let max = model.llama.config.max_positions;
        if capacity == 0 || capacity > max {
            return Err(Error::Invalid(format!(
                "a context of {capacity} tokens is outside 1..={max}, what the model supports"
            )));
        }
        let plan = Self::plan(&model, capacity, 1, true)?;
        let gpu = model.gpu();
        let state = State::new(gpu, &[&plan]).await?;
        let decode = Program::new(gpu, plan, Some(&state)).await?;
        Ok(Session {
            model,
            state,
            decode,
            prefills: Vec::new(),
            capacity,
            context: Vec::new(),
            active: None,
        })
    }

    /// The graph of one step over `tokens` tokens, ending in the sampler. Prefill reads its
    /// tokens from the host; decode (`from_gpu`) reads the token sampled last, already on the
    /// GPU.
    fn plan(model: &TextModel, capacity: usize, tokens: usize, from_gpu: bool) -> Result<Plan> {
        let g = Graph::new();
        let vocab = model.llama.config.vocab;
        let seen = g.state("seen", vocab, 1);
        let token = g.state("token", 1, 1);
        let ids = if from_gpu {
            token
        } else {
            g.ids("ids", tokens)
        };
        let logits = model.llama.forward(&g, ids, capacity, Logits::Last);
        let marked = (!from_gpu).then_some(ids);
        g.output("token", g.sample(logits, marked, seen, token));
        Plan::new(&g, Target::of(model.gpu()))
    }

    pub fn model(&self) -> &Arc<TextModel> {
        &self.model
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens in the KV cache.
    pub fn context(&self) -> &[u32] {
        &self.context
    }

    /// GPU bytes of this session: KV cache and other states, and its programs' buffers.
    pub fn gpu_bytes(&self) -> u64 {
        self.state.bytes()
            + self.decode.bytes()
            + self.prefills.iter().map(|(_, p)| p.bytes()).sum::<u64>()
    }

    /// Forget the conversation (the cache is overwritten as it refills).
    pub fn reset(&mut self) {
        self.context.clear();
        self.active = None;
    }

    /// Put the prefill program for `tokens` tokens first in the cache, building it if needed.
    async fn prefill_program(&mut self, tokens: usize) -> Result<()> {
        if let Some(i) = self.prefills.iter().position(|(t, _)| *t == tokens) {
            let entry = self.prefills.remove(i);
            self.prefills.insert(0, entry);
            return Ok(());
        }
        let plan = Self::plan(&self.model, self.capacity, tokens, false)?;
        let program = Program::new(self.model.gpu(), plan, Some(&self.state)).await?;
        self.prefills.insert(0, (tokens, program));
        self.prefills.truncate(PREFILL_CACHE);
        Ok(())
    }

    /// Start generating after `prompt` (token ids: the whole conversation so far) and return
    /// the stream of text. Tokens shared with what the cache already holds are not computed
    /// again.
    pub async fn generate(
        &mut self,
        prompt: &[u32],
        options: GenerateOptions,
    ) -> Result<Generation<'_>> {
        self.start(prompt, options).await?;
        Ok(Generation { session: self })
    }

    /// Run the prompt through the model and sample the first token; [`Session::next`] then
    /// yields the text. (What [`Session::generate`] does, for callers that cannot hold a
    /// borrow, such as JavaScript.)
    pub async fn start(&mut self, prompt: &[u32], options: GenerateOptions) -> Result<()> {
        self.active = None;
        let t0 = now();
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt is empty".into()));
        }
        options.sampling.validate()?;
        if prompt.len() >= self.capacity {
            return Err(Error::Limit(format!(
                "the prompt has {} tokens, but the context holds {} (the KV cache planned for this \
                 session); shorten the prompt or use a longer context",
                prompt.len(),
                self.capacity
            )));
        }
        let vocab = self.model.llama.config.vocab;
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        // Reuse the cached prefix, but always compute at least the last prompt token.
        let reuse = self
            .context
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        let suffix = &prompt[reuse..];
        // The repetition penalty sees the whole prompt: flags for the reused part are written
        // here, the sampler marks the rest.
        let mut flags = vec![0u32; vocab];
        for &t in &prompt[..reuse] {
            flags[t as usize] = 1;
        }
        self.model.gpu().queue().write_buffer(
            self.state.buffer("seen")?,
            0,
            bytemuck::cast_slice(&flags),
        );

        let mut rng = Rng::new(options.sampling.seed);
        let step = Step {
            pos: reuse,
            sampling: options.sampling,
            rand: rng.next_u32(),
        };
        self.prefill_program(suffix.len()).await?;
        let out = self.prefills[0]
            .1
            .run_step(&step, &[("ids", Feed::Ids(suffix))])
            .await?;
        let token = out
            .ids("token")
            .and_then(|t| t.first().copied())
            .ok_or_else(|| Error::Gpu("no token came back".into()))?;
        self.context.truncate(reuse);
        self.context.extend_from_slice(suffix);
        let t1 = now();
        let stats = Stats {
            prompt_tokens: prompt.len(),
            reused_tokens: reuse,
            first_token_secs: t1 - t0,
            ..Default::default()
        };
        let stream = TextStream::new(options.stop.clone());
        self.active = Some(Active {
            options,
            stream,
            rng,
            next: Some(token),
            finish: None,
            stats,
            tokens: Vec::new(),
        });
        Ok(())
    }

    /// The next piece of text of the generation in progress, or `None` when it has ended.
    pub async fn next(&mut self) -> Option<Result<String>> {
        loop {
            let a = self.active.as_mut()?;
            if a.finish.is_some() {
                return None;
            }
            if a.options
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return a.end(Finish::Cancelled, String::new());
            }
            let token = match a.next.take() {
                Some(t) => t,
                None => match self.step().await {
                    Ok(t) => t,
                    Err(e) => {
                        if let Some(a) = self.active.as_mut() {
                            a.finish = Some(Finish::Cancelled);
                        }
                        return Some(Err(e));
                    }
                },
            };
            let model = self.model.clone();
            let full = self.context.len() >= self.capacity;
            let a = self.active.as_mut()?;
            if model.eos.contains(&token) {
                return a.end(Finish::Eos, String::new());
            }
            a.tokens.push(token);
            a.stats.generated_tokens += 1;
            let delta = match a.stream.push(model.tokenizer(), token) {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            };
            let finish = if a.stream.stopped() {
                Some(Finish::Stop)
            } else if a.tokens.len() >= a.options.max_tokens {
                Some(Finish::MaxTokens)
            } else if full {
                // No room to feed this token back.
                Some(Finish::Context)
            } else {
                None
            };
            if let Some(f) = finish {
                return a.end(f, delta);
            }
            if !delta.is_empty() {
                return Some(Ok(delta));
            }
        }
    }

    /// One decode step: the last sampled token goes into the cache; the next comes back.
    async fn step(&mut self) -> Result<u32> {
        let t0 = now();
        let a = self
            .active
            .as_mut()
            .ok_or_else(|| Error::Invalid("no generation in progress".into()))?;
        let last = *a
            .tokens
            .last()
            .ok_or_else(|| Error::Invalid("nothing to feed back".into()))?;
        let step = Step {
            pos: self.context.len(),
            sampling: a.options.sampling,
            rand: a.rng.next_u32(),
        };
        let out = self.decode.run_step(&step, &[]).await?;
        self.context.push(last);
        if let Some(a) = self.active.as_mut() {
            a.stats.decode_secs += now() - t0;
        }
        out.ids("token")
            .and_then(|t| t.first().copied())
            .ok_or_else(|| Error::Gpu("no token came back".into()))
    }

    /// Why the last generation ended, once it has.
    pub fn finish(&self) -> Option<Finish> {
        self.active.as_ref().and_then(|a| a.finish)
    }

    /// Timings of the last generation.
    pub fn stats(&self) -> Stats {
        self.active
            .as_ref()
            .map(|a| a.stats.clone())
            .unwrap_or_default()
    }

    /// Token ids generated by the last generation (EOS excluded).
    pub fn tokens(&self) -> &[u32] {
        self.active.as_ref().map_or(&[], |a| a.tokens.as_slice())
    }

    /// Logits for `ids` from position 0 (every position, or only the last), for inspection.
    /// Replaces the conversation.
    pub async fn logits(&mut self, ids: &[u32], all_positions: bool) -> Result<Vec<Vec<f32>>> {
        if ids.is_empty() || ids.len() > self.capacity {
            return Err(Error::Limit(format!(
                "{} tokens do not fit a context of {}",
                ids.len(),
                self.capacity
            )));
        }
        self.active = None;
        let g = Graph::new();
        let which = if all_positions {
            Logits::All
        } else {
            Logits::Last
        };
        let input = g.ids("ids", ids.len());
        g.output(
            "logits",
            self.model.llama.forward(&g, input, self.capacity, which),
        );
        let plan = Plan::new(&g, Target::of(self.model.gpu()))?;
        let program = Program::new(self.model.gpu(), plan, Some(&self.state)).await?;
        let out = program.run(0, &[("ids", Feed::Ids(ids))]).await?;
        self.context = ids.to_vec();
        let vocab = self.model.llama.config.vocab;
        Ok(out["logits"].chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}

impl Active {
    /// End with `why`, flushing held-back text after `delta`.
    fn end(&mut self, why: Finish, mut delta: String) -> Option<Result<String>> {
        self.finish = Some(why);
        delta.push_str(&self.stream.finish());
        (!delta.is_empty()).then_some(Ok(delta))
    }
}

/// A generation in progress, borrowing its session: call [`Generation::next`] for each delta.
pub struct Generation<'s> {
    session: &'s mut Session,
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
