//! What changes from one step of a program to the next: per sequence, where it starts, how
//! many of its rows hold tokens, which KV-cache slot it uses, and how to sample.

use crate::sample::Sampling;

/// One sequence's part of a step.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Seq {
    /// Position of its first token in this step: how many of its tokens the KV cache holds.
    pub pos: usize,
    /// How many of its T rows hold tokens this step; the rest is padding, masked out.
    /// 0 sits the sequence out: nothing of it is written or sampled.
    pub len: usize,
    /// Its KV-cache (and sampler-state) slot.
    pub slot: usize,
    /// How to pick its next token, where the step samples.
    pub sampling: Sampling,
    /// Random bits for this step's draw.
    pub rand: u32,
}

impl Seq {
    /// `len` tokens at `pos` in slot 0, sampled greedily.
    pub fn new(pos: usize, len: usize) -> Seq {
        Seq {
            pos,
            len,
            slot: 0,
            sampling: Sampling::greedy(),
            rand: 0,
        }
    }

    /// This sequence in KV-cache slot `slot` instead.
    pub fn slot(self, slot: usize) -> Seq {
        Seq { slot, ..self }
    }
}

/// The sequences of one step, one per sequence of the graph (S).
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Per sequence of the graph, its part of the step (S of them).
    pub seqs: Vec<Seq>,
}

impl Step {
    /// One sequence of `len` tokens at `pos`.
    pub fn single(pos: usize, len: usize) -> Step {
        Step {
            seqs: vec![Seq::new(pos, len)],
        }
    }

    /// The rows of an (S, T, ...) activation that hold tokens, as a prefix: every row below
    /// the result is computed, every token row is below it.
    pub fn rows(&self, tokens: usize) -> usize {
        self.seqs
            .iter()
            .enumerate()
            .filter(|(_, q)| q.len > 0)
            .map(|(s, q)| s * tokens + q.len.min(tokens))
            .max()
            .unwrap_or(0)
    }
}

crate::kernels::gpu_struct! {
    /// One sequence of the step as kernels read it (`shaders/seq.wgsl`).
    pub struct SeqParams("Seq") {
        /// Tokens already in its KV cache: the position of its first row.
        pos: u32,
        /// Rows of the step that hold its tokens; the rest of its T rows is padding.
        len: u32,
        /// Its KV-cache slot.
        slot: u32,
        /// Padding to 16 bytes; always 0.
        pad: u32,
    }
}

/// Zero the padding rows of a token-row value (S, T, ...): rows t >= len of each sequence.
pub fn mask_padding(values: &mut [f32], shape: &[usize], tokens: usize, lens: &[usize]) {
    let row = shape.iter().skip(2).product::<usize>().max(1);
    for (s, &len) in lens.iter().enumerate() {
        for t in len.min(tokens)..tokens {
            let at = (s * tokens + t) * row;
            if let Some(r) = values.get_mut(at..at + row) {
                r.fill(0.0);
            }
        }
    }
}
