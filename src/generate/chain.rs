//! One step through the stages of a model: a program per adapter. On one adapter that is
//! the program alone.
//! - **Split by layers**, each stage before the last runs and reads its hidden state back,
//!   and the next takes it as its input. The hidden state is (S, T, D) f32: what crosses
//!   each boundary.
//! - **Split tensor-parallel**, every stage runs the same step on its share of the heads,
//!   hidden units and vocabulary: each records its passes up to the plan's next exchange,
//!   the host sums the partials ([`AllReduce`]) or gathers the shards' sampling candidates
//!   (or logits) side by side, writes the result back, and so on to the end.
//!
//! Either way, only the last stage's outputs (the sampled tokens, or logits) are the step's.

use super::active::now;
use crate::error::{Error, Result};
use crate::exec::{AllReduce, Feed, Outputs, Pacer, Profile, Program, Ticket};
use crate::graph::{Rows, Step};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// The input and output through which a stage's hidden state crosses to the next.
pub(super) const HIDDEN: &str = "hidden";

pub(super) struct Chain {
    programs: Vec<Program>,
    /// Split tensor-parallel: the sums' staging, and each program's runs of passes between
    /// exchanges.
    tensor: Option<(AllReduce, Vec<Vec<Range<usize>>>)>,
    /// When recording ([`Chain::record_exchanges`]): each step's seconds in all-reduces.
    exchanged: Mutex<Option<Vec<f64>>>,
}

impl Chain {
    /// The programs of one step, one per stage in layer order (or one per part of a model
    /// split tensor-parallel, whose plans exchange partial sums).
    pub async fn new(programs: Vec<Program>) -> Result<Chain> {
        let first = programs
            .first()
            .ok_or_else(|| Error::Invalid("a step needs at least one program".into()))?;
        let exchanges = first.plan().exchanges.len();
        if exchanges == 0 {
            return Ok(Chain {
                programs,
                tensor: None,
                exchanged: Mutex::default(),
            });
        }
        let segments: Vec<Vec<Range<usize>>> =
            programs.iter().map(|p| p.plan().segments()).collect();
        if segments.iter().any(|s| s.len() != exchanges + 1) {
            return Err(Error::Invalid(
                "the parts of a tensor-parallel model exchange a different number of times".into(),
            ));
        }
        // Staging for the largest exchange any step makes.
        let mut floats = 0;
        for p in &programs {
            let plan = p.plan();
            for x in &plan.exchanges {
                let rows = match x.rows {
                    Rows::Fixed(n) => n,
                    Rows::Ragged { tokens } => plan.seqs * tokens,
                };
                floats = floats.max(rows * x.width);
            }
        }
        let gpus: Vec<_> = programs.iter().map(|p| p.gpu().clone()).collect();
        let reduce = AllReduce::new(&gpus, floats).await?;
        Ok(Chain {
            programs,
            tensor: Some((reduce, segments)),
            exchanged: Mutex::default(),
        })
    }

    /// Start (or stop) keeping each later step's time in all-reduces.
    pub fn record_exchanges(&self, on: bool) {
        let mut e = self.exchanged.lock().unwrap_or_else(|e| e.into_inner());
        *e = on.then(|| e.take().unwrap_or_default());
    }

    /// The seconds each step recorded since the last call spent in all-reduces (none
    /// unless recording, or for a model that is not split tensor-parallel).
    pub fn take_exchanges(&self) -> Vec<f64> {
        let mut e = self.exchanged.lock().unwrap_or_else(|e| e.into_inner());
        e.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn last(&self) -> &Program {
        &self.programs[self.programs.len() - 1]
    }

    /// The most tokens one sequence may bring to a step.
    pub fn tokens(&self) -> usize {
        self.last().tokens()
    }

    /// GPU bytes the programs allocated, on every adapter.
    pub fn bytes(&self) -> u64 {
        self.programs.iter().map(Program::bytes).sum()
    }

    /// Profile every stage's dispatches into `sink` (see [`Program::profile_into`]). A split
    /// model's stages each count under a phase of their own ("decode on adapter 1"), so each
    /// counts its steps once.
    pub async fn profile_into(&mut self, sink: Option<(Arc<Profile>, &str)>) -> Result<()> {
        let split = self.programs.len() > 1;
        for (i, p) in self.programs.iter_mut().enumerate() {
            let phase = match &sink {
                Some((_, phase)) if split => format!("{phase} on adapter {i}"),
                Some((_, phase)) => phase.to_string(),
                None => String::new(),
            };
            let stage_sink = sink
                .as_ref()
                .map(|(profile, _)| (profile.clone(), phase.as_str()));
            p.profile_into(stage_sink).await?;
        }
        Ok(())
    }

    /// Run the stages before the last, handing each one's hidden state to the next, and
    /// submit the last; read its outputs with [`Chain::read`]. `feeds` go to every stage
    /// that names them.
    pub async fn submit(&self, step: &Step, feeds: &[(&str, Feed<'_>)]) -> Result<Ticket> {
        if let Some((reduce, segments)) = &self.tensor {
            return self.submit_parts(reduce, segments, step, feeds).await;
        }
        let mut hidden: Option<Vec<f32>> = None;
        let (last, before) = self
            .programs
            .split_last()
            .ok_or_else(|| Error::Invalid("a step needs at least one program".into()))?;
        for program in before {
            let mut out = program
                .run(step, &with_hidden(feeds, hidden.as_deref()))
                .await?;
            let h = out.values.remove(HIDDEN).ok_or_else(|| {
                Error::Gpu("a stage gave back no hidden state for the next".into())
            })?;
            hidden = Some(h);
        }
        last.submit(step, &with_hidden(feeds, hidden.as_deref()))
            .await
    }

    /// [`Chain::submit`], sharing the queue with a UI: one stage's step is cut into the
    /// pacer's parts ([`Program::submit_paced`]); a split model's step takes one permit.
    pub async fn submit_paced(
        &self,
        step: &Step,
        feeds: &[(&str, Feed<'_>)],
        pacer: Option<&Pacer>,
    ) -> Result<Ticket> {
        match (pacer, self.programs.as_slice(), &self.tensor) {
            (Some(p), [one], None) => one.submit_paced(step, feeds, Some(p)).await,
            (Some(p), _, _) => {
                p.permit().await;
                self.submit(step, feeds).await
            }
            (None, _, _) => self.submit(step, feeds).await,
        }
    }

    /// Every part's passes up to each exchange, the sums, then the rest: the step of a
    /// model split tensor-parallel.
    async fn submit_parts(
        &self,
        reduce: &AllReduce,
        segments: &[Vec<Range<usize>>],
        step: &Step,
        feeds: &[(&str, Feed<'_>)],
    ) -> Result<Ticket> {
        let mut tickets = Vec::with_capacity(self.programs.len());
        for p in &self.programs {
            tickets.push(p.begin(step, feeds)?);
        }
        let exchanges = &self.programs[0].plan().exchanges;
        let timing = self
            .exchanged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let mut exchanged = 0.0;
        for k in 0..=exchanges.len() {
            let last = k == exchanges.len();
            for ((p, ticket), runs) in self.programs.iter().zip(&mut tickets).zip(segments) {
                p.record(ticket, step, runs[k].clone(), last).await?;
            }
            if let Some(x) = exchanges.get(k) {
                let mut partials = Vec::with_capacity(self.programs.len());
                let mut widths = Vec::with_capacity(self.programs.len());
                let mut into = Vec::with_capacity(self.programs.len());
                for p in &self.programs {
                    let (b, dst) = p.exchange_buffer(k)?;
                    partials.push(b);
                    into.push(dst);
                    widths.push(p.plan().exchanges[k].width);
                }
                if timing {
                    // Wait for the compute first, so that only the exchange is timed.
                    for p in &self.programs {
                        p.gpu().flush().await;
                    }
                }
                let t = now();
                let rows = x.rows.resolve(step);
                match x.gather {
                    Some(_) => reduce.gather(&partials, &widths, rows, &into).await?,
                    None => reduce.run(&partials, rows * x.width).await?,
                }
                exchanged += now() - t;
            }
        }
        if let Some(log) = self
            .exchanged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            log.push(exchanged);
        }
        tickets
            .pop()
            .ok_or_else(|| Error::Invalid("a step needs at least one program".into()))
    }

    /// Read the outputs of a step [`Chain::submit`] gave.
    pub async fn read(&self, ticket: Ticket) -> Result<Outputs> {
        self.last().read(ticket).await
    }

    /// Run one step and read its outputs.
    pub async fn run(&self, step: &Step, feeds: &[(&str, Feed<'_>)]) -> Result<Outputs> {
        let ticket = self.submit(step, feeds).await?;
        self.read(ticket).await
    }
}

fn with_hidden<'a>(
    feeds: &[(&'a str, Feed<'a>)],
    hidden: Option<&'a [f32]>,
) -> Vec<(&'a str, Feed<'a>)> {
    let mut all = feeds.to_vec();
    if let Some(h) = hidden {
        all.push((HIDDEN, Feed::F32(h)));
    }
    all
}
