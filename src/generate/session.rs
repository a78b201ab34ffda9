//! A [`Session`] owns the KV caches of up to `slots` sequences, the tokens each cache holds,
//! and the programs that extend them: a decode program per batch size, built once, and a
//! prefill program per batch size that grows by powers of two of tokens when a prompt needs
//! more rows than it has, and otherwise serves every shorter prompt (a step computes only
//! the rows it has). A chat therefore allocates GPU memory only when a turn is longer than
//! any before it. Generation itself is in `run.rs`.

use super::TextModel;
use super::active::Active;
use crate::error::{Error, Result};
use crate::exec::{Feed, Profile, Program, State};
use crate::graph::{Graph, Step};
use crate::models::{Cache, Logits};
use crate::schedule::{Plan, Target};
use std::sync::Arc;

/// A conversation (or several, generated together): KV caches, their tokens, programs, and
/// the generation in progress.
pub struct Session {
    pub(super) model: Arc<TextModel>,
    pub(super) state: State,
    pub(super) cache: Cache,
    /// Decode programs, by sequences per step.
    pub(super) decode: Vec<(usize, Program)>,
    /// Prefill programs, by sequences per step.
    pub(super) prefill: Vec<(usize, Program)>,
    /// Per slot: the tokens whose keys and values are in its cache, in order.
    pub(super) contexts: Vec<Vec<u32>>,
    pub(super) active: Option<Active>,
    /// Submit decode step n + 1 before reading step n's token.
    pub(super) pipelined: bool,
    /// The program `logits` built last, for (tokens, every position); perplexity runs many
    /// windows of one length through it.
    pub(super) inspect: Option<((usize, bool), Program)>,
    /// Where every program's dispatch times go, when profiling.
    profile: Option<Arc<Profile>>,
}

/// Where programs of `seqs` sequences per step are kept.
pub(super) fn find(programs: &[(usize, Program)], seqs: usize) -> Option<&Program> {
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
        let plan = Self::plan(&model, cache, 1, None)?;
        let gpu = model.gpu();
        let state = State::new(gpu, &[&plan]).await?;
        let decode = Program::new(gpu, plan, Some(&state)).await?;
        Ok(Session {
            model,
            state,
            cache,
            decode: vec![(1, decode)],
            prefill: Vec::new(),
            contexts: vec![Vec::new(); slots],
            active: None,
            pipelined: true,
            inspect: None,
            profile: None,
        })
    }

    /// The graph of one step over `seqs` sequences, ending in the sampler. Prefill reads
    /// `tokens` ids per sequence from the host; decode (`None`) reads the token each
    /// sequence sampled last, already on the GPU.
    fn plan(model: &TextModel, cache: Cache, seqs: usize, tokens: Option<usize>) -> Result<Plan> {
        let g = Graph::batch(seqs);
        let vocab = model.decoder().vocab();
        let seen = g.state("seen", &[cache.slots, vocab]);
        let token = g.state("token", &[cache.slots, 1]);
        let ids = match tokens {
            Some(t) => g.ids("ids", t),
            None => token,
        };
        let logits = model.decoder().forward(&g, ids, cache, Logits::Last);
        let marked = tokens.map(|_| ids);
        g.output("token", g.sample(logits, marked, seen, token));
        Plan::new(&g, Target::of(model.gpu()))
    }

    /// Build the decode program for `seqs` sequences per step if there is none.
    pub(super) async fn ensure_decode(&mut self, seqs: usize) -> Result<()> {
        if find(&self.decode, seqs).is_none() {
            let plan = Self::plan(&self.model, self.cache, seqs, None)?;
            let program = self.program(plan, "decode").await?;
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
        let plan = Self::plan(&self.model, self.cache, seqs, Some(bucket))?;
        let program = self.program(plan, "prefill").await?;
        self.prefill.retain(|(s, _)| *s != seqs);
        self.prefill.push((seqs, program));
        Ok(())
    }

    /// A program over the session's state, profiling into the session's profile if any.
    async fn program(&self, plan: Plan, phase: &str) -> Result<Program> {
        let mut program = Program::new(self.model.gpu(), plan, Some(&self.state)).await?;
        if let Some(p) = &self.profile {
            program.profile_into(Some((p.clone(), phase))).await?;
        }
        Ok(program)
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
        self.state.bytes()
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
    pub fn set_pipelined(&mut self, on: bool) {
        self.pipelined = on;
    }

    /// Logits for `ids` from position 0 (every position, or only the last), for inspection.
    /// Replaces the first conversation.
    pub async fn logits(&mut self, ids: &[u32], all_positions: bool) -> Result<Vec<Vec<f32>>> {
        if ids.is_empty() || ids.len() > self.cache.capacity {
            return Err(Error::Limit(format!(
                "{} tokens do not fit a context of {}",
                ids.len(),
                self.cache.capacity
            )));
        }
        self.active = None;
        let key = (ids.len(), all_positions);
        if self.inspect.as_ref().is_none_or(|(k, _)| *k != key) {
            self.inspect = None;
            let g = Graph::new();
            let which = if all_positions {
                Logits::All
            } else {
                Logits::Last
            };
            let input = g.ids("ids", ids.len());
            g.output(
                "logits",
                self.model.decoder().forward(&g, input, self.cache, which),
            );
            let plan = Plan::new(&g, Target::of(self.model.gpu()))?;
            let program = self.program(plan, "logits").await?;
            self.inspect = Some((key, program));
        }
        let (_, program) = self
            .inspect
            .as_ref()
            .ok_or_else(|| Error::Invalid("no program".into()))?;
        let out = program
            .run(&Step::single(0, ids.len()), &[("ids", Feed::Ids(ids))])
            .await?;
        self.contexts[0] = ids.to_vec();
        let vocab = self.model.decoder().vocab();
        let logits = out
            .get("logits")
            .ok_or_else(|| Error::Gpu("no logits came back".into()))?;
        Ok(logits.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}
