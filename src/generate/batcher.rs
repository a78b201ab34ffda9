//! Continuous batching: requests join and leave a running batch between steps.
//!
//! A [`Batcher`] owns a [`Session`] of N slots (a KV cache each). Its caller admits a
//! request whenever a slot is free, and calls [`Batcher::step`] in a loop. Each step:
//! - retires requests whose caller has gone (their sink refused an update);
//! - runs one prefill chunk of at most `chunk` tokens for every request still reading its
//!   prompt, all in one submission, so a long prompt never stalls the others for more than
//!   a chunk;
//! - decodes one token for every other request, all in one submission;
//! - hands each request its text, and frees the slots of those that ended.
//!
//! A request's tokens are those it gets alone: every row of a step is computed apart from
//! the others, and its prompt is cut into the same chunks whoever else is running. A free
//! slot whose cache already holds the longest prefix of a new prompt is chosen, and that
//! prefix is not computed again (a conversation's next turn, a shared system prompt).

use super::active::{SeqGen, Took, end, now};
use super::generation::{Finish, GenerateOptions, Stats};
use super::session::find;
use super::{Session, TextModel};
use crate::error::{Error, Result};
use crate::exec::Feed;
use crate::graph::{Seq, Step};
use std::collections::VecDeque;

/// What a request's caller is told.
#[derive(Clone, Debug)]
pub enum Update {
    /// More text.
    Text(String),
    /// The end, with why and the request's timings (from its admission).
    Done(Finish, Stats),
}

/// Where a request's updates go; it returns false once nobody listens, and the request is
/// then cancelled at the next step.
pub type Sink = Box<dyn FnMut(Update) -> bool + Send>;

/// A request for the batcher: a prompt's token ids and how to generate after it.
pub struct Request {
    /// The prompt's token ids (at least one).
    pub prompt: Vec<u32>,
    /// How to sample, when to stop, and what may cancel it.
    pub options: GenerateOptions,
    /// Where its text and its end are sent.
    pub sink: Sink,
}

/// What one [`Batcher::step`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepReport {
    /// Prompt tokens computed by the step's prefill chunk.
    pub prompt_tokens: usize,
    /// Requests in the prefill chunk.
    pub prefilling: usize,
    /// Requests in the decode step.
    pub decoding: usize,
    /// Tokens sampled (first tokens included).
    pub generated_tokens: usize,
    /// Requests that ended.
    pub finished: usize,
    /// Wall time of the step.
    pub secs: f64,
}

struct Running {
    q: SeqGen,
    sink: Sink,
    prompt: Vec<u32>,
    /// Prompt tokens in the slot's cache so far.
    computed: usize,
    started: f64,
    /// The sink refused an update.
    gone: bool,
}

impl Running {
    fn prefilling(&self) -> bool {
        self.computed < self.prompt.len()
    }
}

/// Continuous batching over one [`Session`]: admits requests into free slots and steps them all together; see the module docs.
pub struct Batcher {
    session: Session,
    chunk: usize,
    /// Per slot, the request it serves.
    slots: Vec<Option<Running>>,
}

impl Batcher {
    /// Serve through `session` (one slot per concurrent request), prompts computed at most
    /// `chunk` tokens a step.
    pub fn new(session: Session, chunk: usize) -> Result<Batcher> {
        if chunk == 0 {
            return Err(Error::Invalid("a prefill chunk of 0 tokens".into()));
        }
        let slots = (0..session.slots()).map(|_| None).collect();
        Ok(Batcher {
            session,
            chunk,
            slots,
        })
    }

    /// The session the batcher serves through.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Requests being served.
    pub fn running(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Slots free for [`Batcher::admit`].
    pub fn free(&self) -> usize {
        self.slots.len() - self.running()
    }

    /// The share of KV-cache slots in use, 0 to 1 (each request holds a whole slot).
    pub fn kv_usage(&self) -> f64 {
        self.running() as f64 / self.slots.len().max(1) as f64
    }

    /// Check a request against the session's limits without admitting it.
    pub fn check(&self, prompt: &[u32], options: &GenerateOptions) -> Result<()> {
        let capacity = self.session.capacity();
        let vocab = self.session.model.decoder().vocab();
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt is empty".into()));
        }
        if prompt.len() >= capacity {
            return Err(Error::Invalid(format!(
                "the prompt has {} tokens, but the context holds {capacity}",
                prompt.len()
            )));
        }
        if prompt.len() + options.max_tokens > capacity {
            return Err(Error::Limit(format!(
                "the prompt's {} tokens and max_tokens {} exceed the context of {capacity}",
                prompt.len(),
                options.max_tokens
            )));
        }
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        options.sampling.validate()?;
        self.session.model.check_sampling(&options.sampling)
    }

    /// Give `request` a free slot: the one whose cache shares the longest prefix with its
    /// prompt. It joins the batch at the next step. Errors (the request is handed back
    /// unserved) when it breaks the session's limits or no slot is free.
    pub fn admit(&mut self, request: Request) -> std::result::Result<(), (Request, Error)> {
        if let Err(e) = self.check(&request.prompt, &request.options) {
            return Err((request, e));
        }
        let prompt = &request.prompt;
        let shared = |slot: usize| {
            let cached = self.session.context_of(slot);
            let same = cached
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count();
            // Always compute at least the last prompt token: its logits give the first.
            same.min(prompt.len() - 1)
        };
        let best = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .max_by_key(|&s| (shared(s), std::cmp::Reverse(s)));
        let Some(slot) = best else {
            let e = Error::Limit("every slot is serving a request".into());
            return Err((request, e));
        };
        let reused = shared(slot);
        self.session.contexts[slot].truncate(reused);
        self.session.write_seen(slot, &prompt[..reused]);
        let Request {
            prompt,
            options,
            sink,
        } = request;
        let q = SeqGen::new(slot, options, prompt.len(), reused);
        self.slots[slot] = Some(Running {
            q,
            sink,
            prompt,
            computed: reused,
            started: now(),
            gone: false,
        });
        Ok(())
    }

    /// Run one step of every request being served (see the module's description). An
    /// error ends every running request with [`Finish::Error`] and frees their slots.
    pub async fn step(&mut self) -> Result<StepReport> {
        let t0 = now();
        let mut report = StepReport::default();
        let result = self.advance(&mut report).await;
        if let Err(e) = &result {
            log::warn!("a batch step failed: {e}");
            for r in self.slots.iter_mut().flatten() {
                r.q.finish.get_or_insert(Finish::Error);
            }
        }
        report.finished = self.retire();
        report.secs = now() - t0;
        result.map(|()| report)
    }

    async fn advance(&mut self, report: &mut StepReport) -> Result<()> {
        for r in self.slots.iter_mut().flatten() {
            if r.q.finish.is_none() && (r.gone || r.q.cancelled()) {
                r.q.finish = Some(Finish::Cancelled);
            }
        }
        self.prefill(report).await?;
        self.decode(report).await
    }

    /// One chunk of every prompt still being read, as one step.
    async fn prefill(&mut self, report: &mut StepReport) -> Result<()> {
        let chunk = self.chunk;
        let members: Vec<usize> = (0..self.slots.len())
            .filter(|&s| {
                self.slots[s]
                    .as_ref()
                    .is_some_and(|r| r.q.finish.is_none() && r.prefilling())
            })
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        let n = members.len();
        let lens: Vec<usize> = members
            .iter()
            .filter_map(|&s| self.slots[s].as_ref())
            .map(|r| (r.prompt.len() - r.computed).min(chunk))
            .collect();
        let longest = lens.iter().copied().max().unwrap_or(1);
        self.session.ensure_prefill(n, longest).await?;
        let program = find(&self.session.prefill, n)
            .ok_or_else(|| Error::Invalid("no prefill program".into()))?;
        let t = program.tokens();
        let mut ids = vec![0u32; if n == 1 { longest } else { n * t }];
        let mut step = Step {
            seqs: Vec::with_capacity(n),
        };
        for (i, (&slot, &len)) in members.iter().zip(&lens).enumerate() {
            let r = self.slots[slot]
                .as_mut()
                .ok_or_else(|| Error::Invalid("a prefilling slot is empty".into()))?;
            let part = &r.prompt[r.computed..r.computed + len];
            ids[i * t..i * t + len].copy_from_slice(part);
            step.seqs.push(Seq {
                pos: r.computed,
                len,
                slot,
                sampling: r.q.options.sampling,
                rand: r.q.rng.next_u32(),
            });
        }
        let ticket = program.submit(&step, &[("ids", Feed::Ids(&ids))]).await?;
        let out = program.read(ticket).await?;
        let tokens = out
            .ids("token")
            .ok_or_else(|| Error::Gpu("no token came back".into()))?;
        report.prefilling = n;
        report.prompt_tokens = lens.iter().sum();
        let capacity = self.session.capacity();
        let at = now();
        for (&slot, &len) in members.iter().zip(&lens) {
            let Some(r) = self.slots[slot].as_mut() else {
                continue;
            };
            let from = r.computed;
            r.computed += len;
            let context = &mut self.session.contexts[slot];
            context.extend_from_slice(&r.prompt[from..r.computed]);
            if r.prefilling() {
                continue; // the chunk's sample is not a token of the answer
            }
            let token = *tokens
                .get(slot)
                .ok_or_else(|| Error::Gpu("a token is missing".into()))?;
            let took = Took {
                token,
                prefill: true,
                at,
                started: r.started,
                capacity,
            };
            report.generated_tokens += 1;
            deliver(r, took, &self.session.model, context)?;
        }
        Ok(())
    }

    /// One token for every request past its prompt, as one step.
    async fn decode(&mut self, report: &mut StepReport) -> Result<()> {
        let capacity = self.session.capacity();
        let members: Vec<usize> = (0..self.slots.len())
            .filter(|&s| {
                self.slots[s].as_ref().is_some_and(|r| {
                    let q = &r.q;
                    q.finish.is_none()
                        && !r.prefilling()
                        && !q.tokens.is_empty()
                        && 1 + q.decodes < q.options.max_tokens
                        && q.prompt_len + q.decodes < capacity
                })
            })
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        let n = members.len();
        self.session.ensure_decode(n).await?;
        let mut step = Step {
            seqs: Vec::with_capacity(n),
        };
        for &slot in &members {
            let r = self.slots[slot]
                .as_mut()
                .ok_or_else(|| Error::Invalid("a decoding slot is empty".into()))?;
            let q = &mut r.q;
            let mut seq = Seq::new(q.prompt_len + q.decodes, 1).slot(slot);
            seq.sampling = q.options.sampling;
            seq.rand = q.rng.next_u32();
            q.decodes += 1;
            step.seqs.push(seq);
        }
        let program = find(&self.session.decode, n)
            .ok_or_else(|| Error::Invalid("no decode program".into()))?;
        let ticket = program.submit(&step, &[]).await?;
        let out = program.read(ticket).await?;
        let tokens = out
            .ids("token")
            .ok_or_else(|| Error::Gpu("no token came back".into()))?;
        report.decoding = n;
        let at = now();
        for &slot in &members {
            let Some(r) = self.slots[slot].as_mut() else {
                continue;
            };
            let token = *tokens
                .get(slot)
                .ok_or_else(|| Error::Gpu("a token is missing".into()))?;
            let took = Took {
                token,
                prefill: false,
                at,
                started: r.started,
                capacity,
            };
            report.generated_tokens += 1;
            let context = &mut self.session.contexts[slot];
            deliver(r, took, &self.session.model, context)?;
        }
        Ok(())
    }

    /// Tell the requests that ended, and free their slots; how many ended.
    fn retire(&mut self) -> usize {
        let capacity = self.session.capacity();
        let mut ended = 0;
        for slot in self.slots.iter_mut() {
            let Some(r) = slot.as_mut() else { continue };
            // A request that can take no more tokens ends now, not a step later.
            let q = &r.q;
            if q.finish.is_none()
                && !r.prefilling()
                && !q.tokens.is_empty()
                && (q.tokens.len() >= q.options.max_tokens || q.prompt_len + q.decodes >= capacity)
            {
                let why = match q.tokens.len() >= q.options.max_tokens {
                    true => Finish::MaxTokens,
                    false => Finish::Context,
                };
                let mut events = VecDeque::new();
                end(&mut r.q, 0, why, String::new(), &mut events);
                send_all(r, events);
            }
            if let Some(why) = r.q.finish {
                if !r.gone {
                    (r.sink)(Update::Done(why, r.q.stats.clone()));
                }
                *slot = None;
                ended += 1;
            }
        }
        ended
    }
}

/// Take a sampled token for `r` and send what text it gives.
fn deliver(r: &mut Running, took: Took, model: &TextModel, context: &mut Vec<u32>) -> Result<()> {
    let mut events = VecDeque::new();
    r.q.take(0, took, model, context, &mut events)?;
    send_all(r, events);
    Ok(())
}

fn send_all(r: &mut Running, events: VecDeque<(usize, String)>) {
    for (_, text) in events {
        if !r.gone && !(r.sink)(Update::Text(text)) {
            r.gone = true;
        }
    }
}
