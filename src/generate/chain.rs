//! One step through the stages of a model: a program per adapter, each over its span of
//! layers. On one adapter that is the program alone. Split by layers, each stage before the
//! last runs and reads its hidden state back, and the next takes it as its input; only the
//! last stage's outputs (the sampled tokens, or logits) are the step's. The hidden state is
//! (S, T, D) f32: what crosses each boundary.

use crate::error::{Error, Result};
use crate::exec::{Feed, Outputs, Profile, Program, Ticket};
use crate::graph::Step;
use std::sync::Arc;

/// The input and output through which a stage's hidden state crosses to the next.
pub(super) const HIDDEN: &str = "hidden";

pub(super) struct Chain {
    programs: Vec<Program>,
}

impl Chain {
    /// The programs of one step, one per stage in layer order.
    pub fn new(programs: Vec<Program>) -> Result<Chain> {
        if programs.is_empty() {
            return Err(Error::Invalid("a step needs at least one program".into()));
        }
        Ok(Chain { programs })
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
