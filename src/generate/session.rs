//! A [`Session`] owns the KV caches of up to `slots` sequences, the tokens each cache holds,
//! and the programs that extend them: a decode program per batch size, built once, and a
//! prefill program per batch size that grows by powers of two of tokens when a prompt needs
//! more rows than it has, and otherwise serves every shorter prompt (a step computes only
//! the rows it has). A chat therefore allocates GPU memory only when a turn is longer than
//! any before it. Generation itself is in `run.rs`.

use super::active::Active;
use super::chain::{Chain, HIDDEN};
use super::{Stage, TextModel};
use crate::error::{Error, Result};
use crate::exec::{Feed, Profile, Program, State};
use crate::graph::{Graph, Step};
use crate::models::{Cache, Logits};
use crate::schedule::{Plan, Target};
use crate::split::Split;
use std::sync::Arc;

/// What a step's last stage ends in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum End {
    /// The sampler: the step gives each sequence's next token.
    Sample,
    /// The logits themselves, for inspection.
    Logits(Logits),
}

/// A conversation (or several, generated together): KV caches, their tokens, programs, and
/// the generation in progress.
pub struct Session {
    pub(super) model: Arc<TextModel>,
    /// Per stage (adapter): its KV caches; the last also holds the sampler's states.
    pub(super) states: Vec<State>,
    pub(super) cache: Cache,
    /// Decode programs, by sequences per step.
    pub(super) decode: Vec<(usize, Chain)>,
    /// Prefill programs, by sequences per step.
    pub(super) prefill: Vec<(usize, Chain)>,
    /// Per slot: the tokens whose keys and values are in its cache, in order.
    pub(super) contexts: Vec<Vec<u32>>,
    pub(super) active: Option<Active>,
    /// Submit decode step n + 1 before reading step n's token.
    pub(super) pipelined: bool,
    /// The program `logits` built last, for (tokens, every position); perplexity runs many
    /// windows of one length through it.
    pub(super) inspect: Option<((usize, bool), Chain)>,
    /// Where every program's dispatch times go, when profiling.
    profile: Option<Arc<Profile>>,
    /// Whether decode steps keep their all-reduce time ([`Session::record_exchanges`]).
    recording: bool,
}

/// Where programs of `seqs` sequences per step are kept.
pub(super) fn find(programs: &[(usize, Chain)], seqs: usize) -> Option<&Chain> {
    programs.iter().find(|(s, _)| *s == seqs).map(|(_, p)| p)
}

impl Session {
    pub(super) async fn new(
        model: Arc<TextModel>,
        capacity: usize,
        slots: usize,
    ) -> Result<Session> {
        let max = model.decoder().max_positions();
        if capacity == 0 || capacity > max {
            return Err(Error::Invalid(format!(
                "a context of {capacity} tokens is outside 1..={max}, what the model supports"
            )));
        }
        if slots == 0 {
            return Err(Error::Invalid(
                "a session needs at least one sequence slot".into(),
            ));
        }
        let cache = Cache { slots, capacity };
        let plans = Self::plans(&model, cache, 1, None, End::Sample)?;
        let mut states = Vec::with_capacity(plans.len());
        let mut programs = Vec::with_capacity(plans.len());
        for (stage, plan) in model.stages().iter().zip(plans) {
            let state = State::new(&stage.gpu, &[&plan]).await?;
            programs.push(Program::new(&stage.gpu, plan, Some(&state)).await?);
            states.push(state);
        }
        let decode = Chain::new(programs).await?;
        Ok(Session {
            model,
            states,
            cache,
            decode: vec![(1, decode)],
            prefill: Vec::new(),
            contexts: vec![Vec::new(); slots],
            active: None,
            pipelined: true,
            inspect: None,
            profile: None,
            recording: false,
        })
    }

    /// The plans of one step over `seqs` sequences, one per stage. Prefill reads `tokens`
    /// ids per sequence from the host; decode (`None`) reads the token each sequence sampled
    /// last, a state of every stage that embeds. Split by layers, each stage but the last
    /// ends in its hidden state, which the next takes as input; tensor-parallel, the parts
    /// but the last end in their exchanges. The last ends in `end`.
    fn plans(
        model: &TextModel,
        cache: Cache,
        seqs: usize,
        tokens: Option<usize>,
        end: End,
    ) -> Result<Vec<Plan>> {
        let vocab = model.decoder().vocab();
        let parts = match model.split() {
            Split::Tensor => model.stages().len(),
            Split::Layers | Split::Auto => 1,
        };
        let stages = model.stages().len();
        let plan = |(i, stage): (usize, &Stage)| {
            let g = Graph::batch(seqs).part(i, parts);
            let d = stage.decoder.as_ref();
            let span = d.span();
            // The last stage's outputs are the step's.
            let last = i + 1 == stages;
            let sampler = end == End::Sample && span.heads();
            let seen = sampler.then(|| g.state("seen", &[cache.slots, vocab]));
            let token = (sampler || (span.embeds() && tokens.is_none()))
                .then(|| g.state("token", &[cache.slots, 1]));
            // The sampler marks the prompt's ids as seen.
            let ids = tokens
                .filter(|_| span.embeds() || sampler)
                .map(|t| g.ids("ids", t));
            let input = match span.embeds() {
                true => ids.or(token),
                false => Some(g.input(HIDDEN, tokens.unwrap_or(1), d.hidden())),
            }
            .ok_or_else(|| Error::Invalid("a step with neither ids nor a token".into()))?;
            let which = match end {
                End::Logits(which) => which,
                End::Sample => Logits::Last,
            };
            let out = d.forward(&g, input, cache, which);
            // Tensor-parallel, every part's logits are its share of the vocabulary (split
            // by columns): they are gathered, or its sampling candidates, and the last
            // samples. Parts before the last read nothing back: their exchanges are their
            // effect.
            match (span.heads(), end, seen, token) {
                (false, ..) => g.output(HIDDEN, out),
                (true, End::Logits(_), ..) => {
                    let all = g.all_gather(out);
                    if last {
                        g.output("logits", all)
                    }
                }
                (true, End::Sample, Some(seen), Some(token)) => {
                    let t = g.sample_shards(out, ids, seen, token, last);
                    if last {
                        g.output("token", t)
                    }
                }
                _ => return Err(Error::Invalid("a sampling step without its states".into())),
            }
            Plan::new(&g, Target::of(&stage.gpu))
        };
        model.stages().iter().enumerate().map(plan).collect()
    }

    /// Build the decode program for `seqs` sequences per step if there is none.
    pub(super) async fn ensure_decode(&mut self, seqs: usize) -> Result<()> {
        if find(&self.decode, seqs).is_none() {
            let plans = Self::plans(&self.model, self.cache, seqs, None, End::Sample)?;
            let program = self.chain(plans, "decode").await?;
            program.record_exchanges(self.recording);
            self.decode.push((seqs, program));
        }
        Ok(())
    }

    /// Make sure the prefill program for `seqs` sequences takes `tokens` per sequence,
    /// growing it to the next power of two (at most the context) when it does not.
    pub(super) async fn ensure_prefill(&mut self, seqs: usize, tokens: usize) -> Result<()> {
        if find(&self.prefill, seqs).is_some_and(|p| p.tokens() >= tokens) {
            return Ok(());
        }
        let bucket = crate::exec::bucket(tokens, self.cache.capacity);
        let plans = Self::plans(&self.model, self.cache, seqs, Some(bucket), End::Sample)?;
        let program = self.chain(plans, "prefill").await?;
        self.prefill.retain(|(s, _)| *s != seqs);
        self.prefill.push((seqs, program));
        Ok(())
    }

    /// The programs of `plans` (one per stage) over the session's states, profiling into
    /// the session's profile if any.
    async fn chain(&self, plans: Vec<Plan>, phase: &str) -> Result<Chain> {
        let mut programs = Vec::with_capacity(plans.len());
        for ((stage, state), plan) in self.model.stages().iter().zip(&self.states).zip(plans) {
            programs.push(Program::new(&stage.gpu, plan, Some(state)).await?);
        }
        let mut chain = Chain::new(programs).await?;
        if let Some(p) = &self.profile {
            chain.profile_into(Some((p.clone(), phase))).await?;
        }
        Ok(chain)
    }

    /// Time every kernel of every later step on the GPU, by phase ("prefill", "decode",
    /// "logits"), into `profile`; `None` stops. Each dispatch then runs in a compute pass of
    /// its own, which costs a little speed. Errors where the adapter has no TIMESTAMP_QUERY.
    pub async fn set_profile(&mut self, profile: Option<Arc<Profile>>) -> Result<()> {
        let sink = |phase| profile.clone().map(|p| (p, phase));
        for (_, p) in &mut self.decode {
            p.profile_into(sink("decode")).await?;
        }
        for (_, p) in &mut self.prefill {
            p.profile_into(sink("prefill")).await?;
        }
        if let Some((_, p)) = &mut self.inspect {
            p.profile_into(sink("logits")).await?;
        }
        self.profile = profile;
        Ok(())
    }

    /// Start (or stop) keeping the time each later decode step of a model split
    /// tensor-parallel spends in all-reduces through the host; read it with
    /// [`Session::take_exchanges`].
    pub fn record_exchanges(&mut self, on: bool) {
        self.recording = on;
        for (_, chain) in &self.decode {
            chain.record_exchanges(on);
        }
    }

    /// Seconds in all-reduces of each decode step since the last call, while recording
    /// (empty for a model that is not split tensor-parallel).
    pub fn take_exchanges(&self) -> Vec<f64> {
        self.decode
            .iter()
            .flat_map(|(_, chain)| chain.take_exchanges())
            .collect()
    }

    /// The model this session runs.
    pub fn model(&self) -> &Arc<TextModel> {
        &self.model
    }

    /// Positions each sequence's KV cache holds.
    pub fn capacity(&self) -> usize {
        self.cache.capacity
    }

    /// Sequences the session can generate at once.
    pub fn slots(&self) -> usize {
        self.cache.slots
    }

    /// Tokens in the KV cache of the first sequence (the conversation of a one-slot session).
    pub fn context(&self) -> &[u32] {
        self.context_of(0)
    }

    /// Tokens in the KV cache of `slot`.
    pub fn context_of(&self, slot: usize) -> &[u32] {
        self.contexts.get(slot).map_or(&[], Vec::as_slice)
    }

    /// GPU bytes of this session: KV caches and other states, and its programs' buffers.
    pub fn gpu_bytes(&self) -> u64 {
        self.states.iter().map(State::bytes).sum::<u64>()
            + self
                .decode
                .iter()
                .chain(&self.prefill)
                .map(|(_, p)| p.bytes())
                .sum::<u64>()
            + self.inspect.as_ref().map_or(0, |(_, p)| p.bytes())
    }

    /// Forget the conversations (the caches are overwritten as they refill).
    pub fn reset(&mut self) {
        self.contexts.iter_mut().for_each(Vec::clear);
        self.active = None;
    }

    /// Whether decode submits each step before reading the previous one's token (the
    /// default). Off, every step waits for the last: for measuring what pipelining gains.
    /// A model split across adapters never pipelines: its token crosses the host first.
    pub fn set_pipelined(&mut self, on: bool) {
        self.pipelined = on;
    }

    /// Logits for `ids` from position 0 (every position, or only the last), for inspection.
    /// Replaces the first conversation.
    pub async fn logits(&mut self, ids: &[u32], all_positions: bool) -> Result<Vec<Vec<f32>>> {
        self.logits_after(0, ids, all_positions).await
    }

    /// Logits for `ids` fed after the first `keep` tokens slot 0's cache holds (every
    /// position of them, or only the last), reading that cache and extending it: a decoder
    /// whose host picks each token from the logits (Whisper's rules) steps with this, one
    /// token at a time after its prompt.
    pub async fn logits_after(
        &mut self,
        keep: usize,
        ids: &[u32],
        all_positions: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let held = self.contexts[0].len();
        if keep > held {
            return Err(Error::Invalid(format!(
                "cannot keep {keep} cached tokens: slot 0 holds {held}"
            )));
        }
        if ids.is_empty() || keep + ids.len() > self.cache.capacity {
            return Err(Error::Limit(format!(
                "{} tokens after {keep} do not fit a context of {}",
                ids.len(),
                self.cache.capacity
            )));
        }
        self.active = None;
        let key = (ids.len(), all_positions);
        if self.inspect.as_ref().is_none_or(|(k, _)| *k != key) {
            self.inspect = None;
            let which = if all_positions {
                Logits::All
            } else {
                Logits::Last
            };
            let plans = Self::plans(
                &self.model,
                self.cache,
                1,
                Some(ids.len()),
                End::Logits(which),
            )?;
            let program = self.chain(plans, "logits").await?;
            self.inspect = Some((key, program));
        }
        let (_, program) = self
            .inspect
            .as_ref()
            .ok_or_else(|| Error::Invalid("no program".into()))?;
        let out = program
            .run(&Step::single(keep, ids.len()), &[("ids", Feed::Ids(ids))])
            .await?;
        self.contexts[0].truncate(keep);
        self.contexts[0].extend_from_slice(ids);
        let vocab = self.model.decoder().vocab();
        let logits = out
            .get("logits")
            .ok_or_else(|| Error::Gpu("no logits came back".into()))?;
        Ok(logits.chunks(vocab).map(<[f32]>::to_vec).collect())
    }

    /// A program of `g` over this session's states on its (single) adapter: a model's other
    /// half that fills states the decoder reads (Whisper's encoder writes the cross-attention
    /// keys and values). Errors for a model split across adapters.
    pub async fn attach(&self, g: &Graph) -> Result<Program> {
        let ([stage], [state]) = (self.model.stages(), self.states.as_slice()) else {
            return Err(Error::Invalid(
                "only a model on one adapter can attach a program to its session".into(),
            ));
        };
        let plan = Plan::new(g, Target::of(&stage.gpu))?;
        Program::new(&stage.gpu, plan, Some(state)).await
    }
}
