//! The host loop: prefill runs each prompt in one step and samples on the GPU; each decode
//! step feeds every sequence's GPU-resident token back in and samples again, so only token
//! ids come back. Decode is pipelined: step n + 1 is submitted before step n's tokens are
//! read, and stop conditions (EOS, stop strings, the token budget, cancellation) are
//! checked one step late; a surplus step's token is dropped and its cache entry not counted.
//! Several prompts run as one batch: one submission per step for all of them. A long
//! one-sequence prompt may be prefilled in chunks (progress, cancellation and pacing between
//! them; see [`super::Pacer`]).

use super::Session;
use super::active::{Active, InFlight, SeqGen, Took, end, now};
use super::generation::{BatchGeneration, Finish, GenerateOptions, Generation, Stats};
use super::session::find;
use crate::error::{Error, Result};
use crate::exec::Feed;
use crate::graph::{Seq, Step};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

impl Session {
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

    /// Generate after each of `prompts` at once, sequence i in slot i; the stream yields
    /// `(i, text)`. Each sequence's tokens are those it would get alone.
    pub async fn generate_batch(
        &mut self,
        prompts: &[Vec<u32>],
        options: GenerateOptions,
    ) -> Result<BatchGeneration<'_>> {
        self.start_batch(prompts, options).await?;
        Ok(BatchGeneration { session: self })
    }

    /// Submit the prompt's prefill; [`Session::next`] then yields the text. (What
    /// [`Session::generate`] does, for callers that cannot hold a borrow, such as JavaScript.)
    pub async fn start(&mut self, prompt: &[u32], options: GenerateOptions) -> Result<()> {
        self.start_batch(&[prompt.to_vec()], options).await
    }

    /// Submit the prefill of every prompt as one step; [`Session::next_event`] then yields
    /// `(sequence, text)`.
    pub async fn start_batch(
        &mut self,
        prompts: &[Vec<u32>],
        options: GenerateOptions,
    ) -> Result<()> {
        self.active = None;
        let started = now();
        let n = prompts.len();
        if n == 0 || n > self.cache.slots {
            return Err(Error::Invalid(format!(
                "{n} prompts for a session of {} sequence slots",
                self.cache.slots
            )));
        }
        options.sampling.validate()?;
        self.model.check_sampling(&options.sampling)?;
        let vocab = self.model.decoder().vocab();
        let mut reuse = Vec::with_capacity(n);
        for (slot, prompt) in prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(Error::Invalid("the prompt is empty".into()));
            }
            if prompt.len() >= self.cache.capacity {
                return Err(Error::Invalid(format!(
                    "the prompt has {} tokens, but the context holds {} (the KV cache planned \
                     for this session); shorten the prompt or use a longer context (the CLI's --context)",
                    prompt.len(),
                    self.cache.capacity
                )));
            }
            if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::Invalid(format!(
                    "token id {bad} is outside the vocabulary of {vocab}"
                )));
            }
            // Reuse the cached prefix, but always compute at least the last prompt token.
            let cached = &self.contexts[slot];
            let same = cached
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count();
            reuse.push(same.min(prompt.len() - 1));
        }
        // What the conversation so far already held: the stats count these as reused, not
        // the tokens chunks compute below.
        let cached = reuse.clone();
        if n == 1
            && self
                .prefill_chunks(&prompts[0], &mut reuse[0], &options)
                .await?
        {
            // Cancelled between chunks: a generation that has ended, with nothing to read.
            let mut q = SeqGen::new(0, options, prompts[0].len(), cached[0]);
            q.finish = Some(Finish::Cancelled);
            self.active = Some(Active {
                seqs: vec![q],
                in_flight: VecDeque::new(),
                events: VecDeque::new(),
                started,
                failed: false,
            });
            return Ok(());
        }
        let tokens = prompts
            .iter()
            .zip(&reuse)
            .map(|(p, r)| p.len() - r)
            .max()
            .unwrap_or(1);
        self.ensure_prefill(n, tokens).await?;
        self.ensure_decode(n).await?;

        for (slot, (prompt, &r)) in prompts.iter().zip(&reuse).enumerate() {
            self.write_seen(slot, &prompt[..r]);
        }
        let program =
            find(&self.prefill, n).ok_or_else(|| Error::Invalid("no prefill program".into()))?;
        let t = program.tokens();
        let mut ids = vec![0u32; if n == 1 { tokens } else { n * t }];
        let mut seqs = Vec::with_capacity(n);
        let mut step = Step {
            seqs: Vec::with_capacity(n),
        };
        for (slot, (prompt, &r)) in prompts.iter().zip(&reuse).enumerate() {
            let suffix = &prompt[r..];
            ids[slot * t..slot * t + suffix.len()].copy_from_slice(suffix);
            let mut q = SeqGen::new(slot, options.clone(), prompt.len(), cached[slot]);
            step.seqs.push(Seq {
                pos: r,
                len: suffix.len(),
                slot,
                sampling: options.sampling,
                rand: q.rng.next_u32(),
            });
            seqs.push(q);
        }
        // The cache past each reused prefix is about to be overwritten (a paced submission
        // may be dropped half-way).
        for (slot, &r) in reuse.iter().enumerate() {
            self.contexts[slot].truncate(r);
        }
        let ids = [("ids", Feed::Ids(&ids))];
        let ticket = program
            .submit_paced(&step, &ids, options.pacer.as_ref())
            .await?;
        for (slot, prompt) in prompts.iter().enumerate() {
            self.contexts[slot] = prompt.clone();
        }
        let first = InFlight {
            prefill: true,
            ticket,
            members: vec![true; n],
        };
        self.active = Some(Active {
            seqs,
            in_flight: VecDeque::from([first]),
            events: VecDeque::new(),
            started,
            failed: false,
        });
        Ok(())
    }

    /// Prefill all but the last `options.prefill_chunk` (or fewer) tokens of `prompt` in
    /// chunks of that size, one step each, advancing `reused` and the slot's context as each
    /// lands. True when cancelled between chunks.
    async fn prefill_chunks(
        &mut self,
        prompt: &[u32],
        reused: &mut usize,
        options: &GenerateOptions,
    ) -> Result<bool> {
        let Some(chunk) = options.prefill_chunk.filter(|&c| c > 0) else {
            return Ok(false);
        };
        let report = |done: usize| {
            if let Some(p) = &options.on_prefill {
                (p.0)(done, prompt.len());
            }
        };
        if prompt.len() - *reused <= chunk {
            return Ok(false);
        }
        // The cache beyond the reused prefix is about to be overwritten.
        self.contexts[0].truncate(*reused);
        self.write_seen(0, &prompt[..*reused]);
        report(*reused);
        while prompt.len() - *reused > chunk {
            if options
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Ok(true);
            }
            self.ensure_prefill(1, chunk).await?;
            let program = find(&self.prefill, 1)
                .ok_or_else(|| Error::Invalid("no prefill program".into()))?;
            let ids = &prompt[*reused..*reused + chunk];
            // The chunk's sampled token is not used: no random draw, so the sequence of
            // draws is the one an unchunked prefill makes.
            let step = Step {
                seqs: vec![Seq {
                    pos: *reused,
                    len: chunk,
                    slot: 0,
                    sampling: options.sampling,
                    rand: 0,
                }],
            };
            let feeds = [("ids", Feed::Ids(ids))];
            let ticket = program
                .submit_paced(&step, &feeds, options.pacer.as_ref())
                .await?;
            program.read(ticket).await?;
            *reused += chunk;
            self.contexts[0] = prompt[..*reused].to_vec();
            report(*reused);
        }
        Ok(options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed)))
    }

    /// Mark `ids` as already seen in `slot`, and nothing else, for the repetition penalty:
    /// the part of a prompt whose KV entries are reused. The sampler marks the rest as the
    /// prefill computes it. Written on every stage that keeps the flags: tensor-parallel,
    /// each part proposes candidates with its penalties.
    pub(super) fn write_seen(&self, slot: usize, ids: &[u32]) {
        let vocab = self.model.decoder().vocab();
        for (stage, state) in self.model.stages().iter().zip(&self.states) {
            let Ok(seen) = state.buffer("seen") else {
                continue;
            };
            let mut flags = vec![0u32; vocab];
            for &t in ids {
                if let Some(f) = flags.get_mut(t as usize) {
                    *f = 1;
                }
            }
            let offset = (slot * vocab * 4) as u64;
            stage
                .gpu
                .queue()
                .write_buffer(seen, offset, bytemuck::cast_slice(&flags));
        }
    }

    /// The next piece of text of the (one-sequence) generation in progress, or `None` when
    /// it has ended.
    pub async fn next(&mut self) -> Option<Result<String>> {
        self.next_event().await.map(|r| r.map(|(_, text)| text))
    }

    /// The next `(sequence, text)` of the generation in progress, or `None` when every
    /// sequence has ended.
    pub async fn next_event(&mut self) -> Option<Result<(usize, String)>> {
        loop {
            let a = self.active.as_mut()?;
            if let Some(ev) = a.events.pop_front() {
                return Some(Ok(ev));
            }
            if a.failed {
                return None;
            }
            for (i, q) in a.seqs.iter_mut().enumerate() {
                if q.finish.is_none() && q.cancelled() {
                    end(q, i, Finish::Cancelled, String::new(), &mut a.events);
                }
            }
            if !a.events.is_empty() {
                continue;
            }
            if a.seqs.iter().all(|q| q.finish.is_some()) {
                a.in_flight.clear();
                return None;
            }
            // A split model's token crosses the host to the other stages between steps.
            let depth = if self.pipelined && self.states.len() == 1 {
                2
            } else {
                1
            };
            while self
                .active
                .as_ref()
                .is_some_and(|a| a.in_flight.len() < depth)
            {
                match self.submit_decode().await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Some(Err(self.fail(e))),
                }
            }
            // Nothing to read: a sequence was cancelled between the check above and the
            // submission. Go round again and end it.
            if self.active.as_ref().is_some_and(|a| a.in_flight.is_empty()) {
                continue;
            }
            if let Err(e) = self.read_one().await {
                return Some(Err(self.fail(e)));
            }
        }
    }

    /// End every running sequence with `Finish::Error`, and hand the error on.
    fn fail(&mut self, e: Error) -> Error {
        if let Some(a) = self.active.as_mut() {
            a.failed = true;
            a.in_flight.clear();
            for q in a.seqs.iter_mut().filter(|q| q.finish.is_none()) {
                q.finish = Some(Finish::Error);
            }
        }
        e
    }

    /// Submit a decode step for every sequence that may still need a token; false when none
    /// does.
    async fn submit_decode(&mut self) -> Result<bool> {
        let capacity = self.cache.capacity;
        let Some(a) = self.active.as_mut() else {
            return Ok(false);
        };
        let members: Vec<bool> = a
            .seqs
            .iter()
            .map(|q| {
                q.finish.is_none()
                    && !q.cancelled()
                    && 1 + q.decodes < q.options.max_tokens
                    && q.prompt_len + q.decodes < capacity
            })
            .collect();
        if !members.contains(&true) {
            return Ok(false);
        }
        let mut step = Step {
            seqs: Vec::with_capacity(a.seqs.len()),
        };
        for (q, &m) in a.seqs.iter_mut().zip(&members) {
            let mut seq = Seq::new(q.prompt_len + q.decodes, usize::from(m)).slot(q.slot);
            if m {
                seq.sampling = q.options.sampling;
                seq.rand = q.rng.next_u32();
                q.decodes += 1;
            }
            step.seqs.push(seq);
        }
        let program = find(&self.decode, a.seqs.len())
            .ok_or_else(|| Error::Invalid("no decode program".into()))?;
        let pacer = a.seqs[0].options.pacer.as_ref();
        let ticket = program.submit_paced(&step, &[], pacer).await?;
        a.in_flight.push_back(InFlight {
            prefill: false,
            ticket,
            members,
        });
        Ok(true)
    }

    /// Read the oldest step in flight and take its tokens.
    async fn read_one(&mut self) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let Some(f) = a.in_flight.pop_front() else {
            return Err(Error::Invalid(
                "the generation is waiting on no step".into(),
            ));
        };
        let n = a.seqs.len();
        let programs = if f.prefill {
            &self.prefill
        } else {
            &self.decode
        };
        let program =
            find(programs, n).ok_or_else(|| Error::Invalid("the step's program is gone".into()))?;
        let out = program.read(f.ticket).await?;
        let ids = out
            .ids("token")
            .ok_or_else(|| Error::Gpu("no token came back".into()))?;
        // Split, the stages before the last that embed (the first, split by layers; every
        // part, tensor-parallel) take the token the last sampled.
        let stages = self.model.stages();
        for (state, stage) in self.states.iter().zip(stages).take(stages.len() - 1) {
            if state.buffer("token").is_ok() {
                state.write(&stage.gpu, "token", bytemuck::cast_slice(ids))?;
            }
        }
        let t = now();
        let model = self.model.clone();
        if f.prefill {
            for q in &a.seqs {
                if let Some(p) = &q.options.on_prefill {
                    (p.0)(q.prompt_len, q.prompt_len);
                }
            }
        }
        for (i, q) in a.seqs.iter_mut().enumerate() {
            if !f.members[i] || q.finish.is_some() {
                continue; // not in this step, or a surplus step after its end
            }
            let token = *ids
                .get(q.slot)
                .ok_or_else(|| Error::Gpu("a token is missing".into()))?;
            let took = Took {
                token,
                prefill: f.prefill,
                at: t,
                started: a.started,
                capacity: self.cache.capacity,
            };
            q.take(i, took, &model, &mut self.contexts[q.slot], &mut a.events)?;
        }
        Ok(())
    }

    /// Why sequence `i` of the last generation ended, once it has.
    pub fn finish_of(&self, i: usize) -> Option<Finish> {
        self.active
            .as_ref()
            .and_then(|a| a.seqs.get(i))
            .and_then(|q| q.finish)
    }

    /// Why the last generation (its first sequence) ended, once it has.
    pub fn finish(&self) -> Option<Finish> {
        self.finish_of(0)
    }

    /// Timings of sequence `i` of the last generation.
    pub fn stats_of(&self, i: usize) -> Stats {
        self.active
            .as_ref()
            .and_then(|a| a.seqs.get(i))
            .map(|q| q.stats.clone())
            .unwrap_or_default()
    }

    /// Timings of the last generation (its first sequence).
    pub fn stats(&self) -> Stats {
        self.stats_of(0)
    }

    /// Token ids generated for sequence `i` (EOS excluded).
    pub fn tokens_of(&self, i: usize) -> &[u32] {
        self.active
            .as_ref()
            .and_then(|a| a.seqs.get(i))
            .map_or(&[], |q| q.tokens.as_slice())
    }

    /// Token ids generated by the last generation (its first sequence).
    pub fn tokens(&self) -> &[u32] {
        self.tokens_of(0)
    }

    /// Sequences in the last generation.
    pub(super) fn sequences(&self) -> usize {
        self.active.as_ref().map_or(0, |a| a.seqs.len())
    }

    /// Whether sequence `i` has ended and all its text has been handed out.
    pub(super) fn done(&self, i: usize) -> bool {
        self.active.as_ref().is_some_and(|a| {
            a.seqs.get(i).is_some_and(|q| q.finish.is_some())
                && !a.events.iter().any(|(j, _)| *j == i)
        })
    }
}
