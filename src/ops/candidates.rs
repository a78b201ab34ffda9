//! Sampling across vocabulary shards: each shard proposes its candidates
//! (`shaders/propose.wgsl`), the host gathers them ([`Graph::all_gather`]), and the part
//! that samples spreads them back into whole logits rows (`shaders/spread.wgsl`) for the
//! unchanged sampler. Full logits never leave a GPU; the sampler sees the candidates at
//! their ids and -inf elsewhere, and so chooses what it would from the whole logits.
//!
//! That holds because a shard proposes every token of its own top `top_k + MARGIN` (greedy:
//! its best), a superset of its tokens in the global top-k; the sampler's later stages
//! (top-p, min-p, the draw) only ever weigh kept tokens, and excluded ones add exact zeros
//! to its sums whether they are -inf or not. So sampling over shards needs top-k between 1
//! and [`MAX_TOP_K`] (or greedy).

use crate::error::{Error, Result};
use crate::graph::{Buf, Emit, Eval, Graph, GridShape, Layout, Leaf, Op, Rows, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup of both kernels (one workgroup per sequence).
pub const WG: u32 = 256;
/// The largest top-k that vocabulary shards can sample with.
pub const MAX_TOP_K: usize = 256;
/// Candidates a shard proposes beyond top-k, against rounding at the boundary on another
/// adapter.
pub const MARGIN: usize = 8;
/// The most candidates one shard proposes per sequence.
pub const CAP: usize = MAX_TOP_K + MARGIN;
/// Words of one shard's proposal per sequence: a count, then (id, bits) pairs.
pub const WIDTH: usize = 1 + 2 * CAP;

crate::kernels::gpu_struct! {
    /// The proposal kernel's parameters (`shaders/propose.wgsl`).
    pub struct ProposeParams("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// Logits in this shard's row (V_i).
        vocab: u32,
        /// The global id of the shard's first logit.
        first: u32,
        /// The whole vocabulary: the width of the seen-token flags.
        total: u32,
        /// Token rows per sequence of the ids marked (prefill); 0 when marking from the token
        /// state.
        tokens: u32,
        /// Slots of the seen-token flags.
        slots: u32,
        /// The most candidates proposed per sequence ([`CAP`]).
        cap: u32,
        /// Candidates proposed beyond top-k ([`MARGIN`]).
        margin: u32,
        /// 0: mark the step's ids (S, tokens) seen; 1: the token of each sequence's slot
        /// (slots, 1).
        marks: u32,
        /// Padding to 48 bytes; always 0.
        pad0: u32,
        /// Padding; always 0.
        pad1: u32,
        /// Padding; always 0.
        pad2: u32,
    }
}

crate::kernels::gpu_struct! {
    /// The spreading kernel's parameters (`shaders/spread.wgsl`).
    pub struct SpreadParams("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// The whole vocabulary: the width of the logits written.
        vocab: u32,
        /// Proposals gathered per sequence, one per shard.
        parts: u32,
        /// The most candidates in one proposal ([`CAP`]).
        cap: u32,
    }
}

/// The proposal kernel, reducing in workgroup memory (`shaders/propose.wgsl`).
pub static PROPOSE: Family = Family {
    name: "propose",
    source: include_str!("../../shaders/propose.wgsl"),
    includes: &[Include::Seq, Include::SampleKey, Include::Reduce],
    bindings: &[
        Slot::Uniform,
        Slot::Read,
        Slot::Read,
        Slot::Read,
        Slot::Read,
        Slot::Write,
        Slot::Write,
    ],
    structs: &[
        ProposeParams::LAYOUT,
        crate::graph::SeqParams::LAYOUT,
        crate::sample::SamplingParams::LAYOUT,
    ],
};

/// The same kernel with subgroup reductions.
pub static PROPOSE_SG: Family = PROPOSE.with_includes(
    "propose_sg",
    &[Include::Seq, Include::SampleKey, Include::ReduceSubgroup],
);

/// The kernel that spreads gathered candidates into logits rows (`shaders/spread.wgsl`).
pub static SPREAD: Family = Family {
    name: "spread",
    source: include_str!("../../shaders/spread.wgsl"),
    includes: &[],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Write],
    structs: &[SpreadParams::LAYOUT],
};

fn propose_kernel(sg: Option<u32>) -> Kernel {
    crate::kernels::reducing(&PROPOSE, &PROPOSE_SG, WG, sg)
}

fn spread_kernel() -> Kernel {
    Kernel::new(&SPREAD).constant("WG", WG)
}

/// Every kernel variant the candidate ops can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    vec![
        propose_kernel(None),
        propose_kernel(Some(4)),
        propose_kernel(Some(32)),
        spread_kernel(),
    ]
}

/// One vocabulary shard's candidates: logits (S, 1, V_i) for the ids `first..first + V_i`
/// of a vocabulary of `total`, after marking `marks` seen in `seen` (slots, total): the
/// step's ids (S, T) in prefill, the token state (slots, 1) in decode. -> (S, 1, WIDTH)
/// words: each row a count, then (global id, logit bits) pairs.
#[derive(Clone, Debug)]
pub struct Propose {
    /// This shard's logits, (S, 1, V_i).
    pub logits: Value,
    /// What marks tokens seen: the step's ids (S, T), or the token state (slots, 1).
    pub marks: Value,
    /// The seen-token flags, (slots, total), updated in place.
    pub seen: Value,
    /// The global id of the shard's first logit.
    pub first: usize,
    /// The whole vocabulary.
    pub total: usize,
    /// Whether `marks` is the token state (decode) rather than ids.
    pub from_state: bool,
}

/// Gathered proposals (S, 1, parts x WIDTH) spread into logits (S, 1, `vocab`): each
/// candidate's logit at its id, -inf elsewhere.
#[derive(Clone, Debug)]
pub struct Spread {
    /// Every shard's proposals, gathered: (S, 1, parts x [`WIDTH`]).
    pub cands: Value,
    /// The whole vocabulary: the width of the logits rows.
    pub vocab: usize,
}

impl Graph {
    /// The next token sampled from `logits` (S, 1, V): whole, [`Graph::sample`]; split by
    /// columns (a part of a tensor-parallel model holding the ids `first..first + V_i` of
    /// the vocabulary), this shard's candidates, gathered from every part, spread and
    /// sampled where `samples` (the part whose token is the step's), or only proposed
    /// elsewhere. `ids` are the step's ids (prefill), else the token state marks the seen.
    pub fn sample_shards(
        &self,
        logits: Value,
        ids: Option<Value>,
        seen: Value,
        token: Value,
        samples: bool,
    ) -> Value {
        let Some((rows, total)) = self.layout(logits).along(2) else {
            return self.sample(logits, ids, seen, token);
        };
        let marks = ids.unwrap_or(token);
        let from_state = ids.is_none();
        let first = rows.start;
        let mine = self.apply(Propose { logits, marks, seen, first, total, from_state });
        let all = self.all_gather(mine);
        if !samples {
            return all;
        }
        let spread = self.apply(Spread { cands: all, vocab: total });
        self.sample(spread, ids, seen, token)
    }
}

impl Op for Propose {
    fn name(&self) -> &'static str {
        "propose"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.logits, self.marks, self.seen]
    }

    /// From a vocabulary shard, this part's block of the candidates of every part.
    fn layout(&self, g: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        let logits = Layout::common(&inputs[1..]).and_then(|rest| match rest {
            Layout::Whole => Ok(&inputs[0]),
            other => Err(format!("marks and seen flags are {other}, not whole")),
        })?;
        let (i, n) = (g.index(), g.parts());
        match logits {
            Layout::Whole => Ok(Layout::Whole),
            l if l.along(2).is_some() => Ok(Layout::split(2, i * WIDTH..(i + 1) * WIDTH, n * WIDTH)),
            l => Err(format!("proposes from logits whole or split by columns, not {l}")),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, v] = g.dims3(self.logits)?;
        if t != 1 || self.first + v > self.total {
            return Err(format!(
                "logits (S, {t}, {v}) are not one row per sequence of ids {}.. of a \
                 vocabulary of {}",
                self.first, self.total
            ));
        }
        let seen = g.shape(self.seen);
        if !g.is_state(self.seen) || seen.len() != 2 || seen[1] != self.total {
            return Err(format!("the seen state {seen:?} is not (slots, {})", self.total));
        }
        let marks = g.shape(self.marks);
        let fits = match g.leaf(self.marks) {
            Some(Leaf::Ids { .. }) => marks.first() == Some(&s) && marks.len() == 2,
            Some(Leaf::State { .. }) => marks == [seen[0], 1],
            _ => false,
        };
        if !fits {
            return Err(format!(
                "marks {marks:?} are neither ids ({s}, T) nor a token state ({}, 1)",
                seen[0]
            ));
        }
        Ok(vec![s, 1, WIDTH])
    }

    fn ragged(&self, _: &[bool]) -> bool {
        false
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let [seqs, _, vocab] = <[usize; 3]>::try_from(e.shape(self.logits).to_vec())
            .map_err(|_| Error::Shape("propose: logits are not 3-D".into()))?;
        let slots = e.shape(self.seen)[0];
        let from_ids = !self.from_state;
        let tokens = if from_ids { e.shape(self.marks)[1] } else { 0 };
        if from_ids {
            e.bound_ids(self.marks, self.total);
        }
        let params = ProposeParams {
            seqs: seqs as u32,
            vocab: vocab as u32,
            first: self.first as u32,
            total: self.total as u32,
            tokens: tokens as u32,
            slots: slots as u32,
            cap: CAP as u32,
            margin: MARGIN as u32,
            marks: u32::from(!from_ids),
            pad0: 0,
            pad1: 0,
            pad2: 0,
        };
        let bindings = vec![
            Buf::Params,
            Buf::Seqs,
            Buf::Sampling,
            e.buf(self.logits),
            e.buf(self.marks),
            e.buf(self.seen),
            e.out(),
        ];
        let grid = e.grid(Rows::Fixed(seqs), GridShape::Fixed([seqs as u32, 1, 1]));
        e.dispatch(propose_kernel(e.target.subgroups), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let vocab = e.shape(self.logits)[2];
        let marks_shape = e.shape(self.marks).to_vec();
        let seen_name = e.state_name(self.seen)?;
        let from_state = self.from_state;
        let logits = e.value(self.logits).to_vec();
        let marks = e.value(self.marks).to_vec();
        let seqs = e.step.seqs.clone();
        let total = self.total;
        let mut out = vec![0.0f32; seqs.len() * WIDTH];
        for (s, q) in seqs.iter().enumerate() {
            if q.len == 0 {
                continue;
            }
            let flags = e.state_mut(&seen_name)?;
            let row = &mut flags[q.slot * total..(q.slot + 1) * total];
            match from_state {
                true => row[marks[q.slot] as usize] = 1.0,
                false => {
                    let t = marks_shape[1];
                    for &id in &marks[s * t..s * t + q.len.min(t)] {
                        row[id as usize] = 1.0;
                    }
                }
            }
            let seen: Vec<bool> = row[self.first..self.first + vocab].iter().map(|&f| f != 0.0).collect();
            let l = &logits[s * vocab..(s + 1) * vocab];
            let picked = propose_reference(l, &seen, &q.sampling);
            let o = &mut out[s * WIDTH..(s + 1) * WIDTH];
            o[0] = f32::from_bits(picked.len() as u32);
            for (j, &i) in picked.iter().enumerate() {
                o[1 + 2 * j] = f32::from_bits((self.first + i) as u32);
                o[2 + 2 * j] = l[i];
            }
        }
        Ok(out)
    }
}

/// The CPU twin of a shard's proposal: the local indices of its candidates in `logits`,
/// ascending (the GPU writes them in any order; past [`CAP`] ties it keeps any).
pub fn propose_reference(logits: &[f32], seen: &[bool], s: &crate::sample::Sampling) -> Vec<usize> {
    let pen: Vec<f32> = logits
        .iter()
        .zip(seen)
        .map(|(&l, &was)| super::sample::penalise(l, was, s.repetition_penalty))
        .collect();
    if s.is_greedy() {
        let mut best = 0;
        for (i, &l) in pen.iter().enumerate() {
            if l > pen[best] {
                best = i;
            }
        }
        return vec![best];
    }
    let keys: Vec<u32> = pen.iter().map(|l| super::sample::key(l / s.temperature)).collect();
    let want = (s.top_k + MARGIN).min(CAP);
    let thr = match want < keys.len() {
        true => {
            let mut sorted = keys.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            sorted[want - 1]
        }
        false => 0,
    };
    (0..keys.len()).filter(|&i| keys[i] >= thr).take(CAP).collect()
}

impl Op for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.cands]
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        match g.dims3(self.cands)? {
            [s, 1, w] if w > 0 && w.is_multiple_of(WIDTH) => Ok(vec![s, 1, self.vocab]),
            other => Err(format!(
                "candidates {other:?} are not (S, 1, parts x {WIDTH})"
            )),
        }
    }

    fn ragged(&self, _: &[bool]) -> bool {
        false
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let [seqs, _, w] = <[usize; 3]>::try_from(e.shape(self.cands).to_vec())
            .map_err(|_| Error::Shape("spread: candidates are not 3-D".into()))?;
        let params = SpreadParams {
            seqs: seqs as u32,
            vocab: self.vocab as u32,
            parts: (w / WIDTH) as u32,
            cap: CAP as u32,
        };
        let bindings = vec![Buf::Params, e.buf(self.cands), e.out()];
        let grid = e.grid(Rows::Fixed(seqs), GridShape::Fixed([seqs as u32, 1, 1]));
        e.dispatch(spread_kernel(), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let [seqs, _, w] = <[usize; 3]>::try_from(e.shape(self.cands).to_vec())
            .map_err(|_| Error::Shape("spread: candidates are not 3-D".into()))?;
        Ok(spread_reference(e.value(self.cands), seqs, w / WIDTH, self.vocab))
    }
}

/// The CPU twin of the spread: `seqs` rows of `vocab`, -inf but at the candidates of
/// `parts` proposals per row.
pub fn spread_reference(cands: &[f32], seqs: usize, parts: usize, vocab: usize) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; seqs * vocab];
    for s in 0..seqs {
        for p in 0..parts {
            let c = &cands[(s * parts + p) * WIDTH..][..WIDTH];
            let n = (c[0].to_bits() as usize).min(CAP);
            for j in 0..n {
                let id = c[1 + 2 * j].to_bits() as usize;
                if id < vocab {
                    out[s * vocab + id] = c[2 + 2 * j];
                }
            }
        }
    }
    out
}
