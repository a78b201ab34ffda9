//! Token sampling on the GPU (`shaders/sample.wgsl`), one workgroup per sequence, so that
//! only the chosen ids leave the GPU; and its CPU twin, [`sample_reference`].
//!
//! The sampler reads each sequence's last-position logits (S, 1, V), marks the step's input
//! ids seen, and writes the chosen token into the per-slot `token` state, marking it seen in
//! the per-slot `seen` flags (slots, V). Its parameters come per sequence with the step.

use crate::error::{Error, Result};
use crate::graph::{Bound, Buf, Emit, Eval, Graph, GridShape, Op, Rows, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};
use crate::sample::Sampling;

/// Threads per workgroup (one workgroup per sequence) on GPUs ([`crate::Target::row_threads`]
/// says how many a device gets).
pub const WG: u32 = crate::kernels::GPU_ROW_THREADS;

crate::kernels::gpu_struct! {
    /// The sampler's parameters (`shaders/sample.wgsl`); each sequence's sampling options come
    /// with the step.
    pub struct Params("Params") {
        /// Sequences in the step (S).
        seqs: u32,
        /// Logits per row: the vocabulary (V).
        vocab: u32,
        /// Token rows per sequence of the ids marked seen; 0 when there are none.
        tokens: u32,
        /// Slots of the `seen` flags and the `token` state.
        slots: u32,
    }
}

/// The sampler, reducing in workgroup memory (`shaders/sample.wgsl`).
pub static FAMILY: Family = Family {
    name: "sample",
    source: include_str!("../../shaders/sample.wgsl"),
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
        Params::LAYOUT,
        crate::graph::SeqParams::LAYOUT,
        crate::sample::SamplingParams::LAYOUT,
    ],
};

/// The same kernel with subgroup reductions.
pub static FAMILY_SG: Family = FAMILY.with_includes(
    "sample_sg",
    &[Include::Seq, Include::SampleKey, Include::ReduceSubgroup],
);

fn kernel(sg: Option<u32>, wg: u32) -> Kernel {
    crate::kernels::reducing(&FAMILY, &FAMILY_SG, wg, sg)
}

/// Every kernel variant of the sampler (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    let cpu = crate::kernels::CPU_ROW_THREADS;
    vec![
        kernel(None, WG),
        kernel(Some(4), WG),
        kernel(Some(32), WG),
        // CPU adapters' row of threads (Target::row_threads).
        kernel(None, cpu),
        kernel(Some(4), cpu),
        kernel(Some(8), cpu),
    ]
}

/// Token sampling: see [`Graph::sample`].
#[derive(Clone, Debug)]
pub struct Sample {
    /// Each sequence's last-position logits, (S, 1, V).
    pub logits: Value,
    /// The step's ids (S, T) to mark seen first (the prompt, in prefill), if any.
    pub ids: Option<Value>,
    /// The per-slot seen-token flags, (slots, V).
    pub seen: Value,
    /// The per-slot token state, (slots, 1), that receives the chosen token.
    pub token: Value,
}

impl Graph {
    /// Sample each sequence's next token from `logits` (S, 1, V) into the state `token`
    /// (slots, 1), after marking `ids` (S, T) seen in `seen` (slots, V) when given (the
    /// prompt, in prefill). The result is `token` after the write.
    pub fn sample(&self, logits: Value, ids: Option<Value>, seen: Value, token: Value) -> Value {
        self.apply(Sample { logits, ids, seen, token })
    }
}

impl Op for Sample {
    fn name(&self) -> &'static str {
        "sample"
    }

    fn inputs(&self) -> Vec<Value> {
        let mut v = vec![self.logits];
        v.extend(self.ids);
        v.extend([self.seen, self.token]);
        v
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let [s, t, v] = g.dims3(self.logits)?;
        if t != 1 {
            return Err(format!("logits must be one row per sequence, got {t}"));
        }
        let (seen, token) = (g.shape(self.seen), g.shape(self.token));
        if !g.is_state(self.seen) || seen.len() != 2 || seen[1] != v {
            return Err(format!("the seen state {seen:?} is not (slots, {v})"));
        }
        if !g.is_state(self.token) || token != [seen[0], 1] {
            return Err(format!("the token state {token:?} is not ({}, 1)", seen[0]));
        }
        if let Some(ids) = self.ids
            && (g.shape(ids).first() != Some(&s) || g.shape(ids).len() != 2)
        {
            return Err(format!("ids {:?} are not ({s}, T)", g.shape(ids)));
        }
        Ok(token)
    }

    fn ragged(&self, _: &[bool]) -> bool {
        false
    }

    fn updates(&self) -> Option<Value> {
        Some(self.token)
    }

    fn yields_ids(&self) -> bool {
        true
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let [seqs, _, vocab] = <[usize; 3]>::try_from(e.shape(self.logits).to_vec())
            .map_err(|_| Error::Shape("sample: logits are not 3-D".into()))?;
        let slots = e.shape(self.seen)[0];
        let tokens = self.ids.map_or(0, |i| e.shape(i)[1]);
        if let Some(ids) = self.ids {
            e.bound_ids(ids, vocab);
        }
        let name = e.state_name(self.token)?;
        e.bound(Bound::Slots { what: format!("sampler state '{name}'"), slots });
        let params = Params {
            seqs: seqs as u32,
            vocab: vocab as u32,
            tokens: tokens as u32,
            slots: slots as u32,
        };
        let bindings = vec![
            Buf::Params,
            Buf::Seqs,
            Buf::Sampling,
            e.buf(self.logits),
            e.buf_or_dummy(self.ids),
            e.buf(self.seen),
            e.buf(self.token),
        ];
        let grid = e.grid(Rows::Fixed(seqs), GridShape::Fixed([seqs as u32, 1, 1]));
        e.dispatch(kernel(e.target.subgroups, e.target.row_threads), bindings, &params, grid);
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let [_, _, vocab] = <[usize; 3]>::try_from(e.shape(self.logits).to_vec())
            .map_err(|_| Error::Shape("sample: logits are not 3-D".into()))?;
        let tokens = self.ids.map_or(0, |i| e.shape(i)[1]);
        let (seen_name, token_name) = (e.state_name(self.seen)?, e.state_name(self.token)?);
        let logits = e.value(self.logits).to_vec();
        let ids = self.ids.map(|i| e.value(i).to_vec());
        let seqs = e.step.seqs.clone();
        let mut chosen = Vec::new();
        for (s, q) in seqs.iter().enumerate() {
            if q.len == 0 {
                continue;
            }
            let flags = e.state_mut(&seen_name)?;
            let row = &mut flags[q.slot * vocab..(q.slot + 1) * vocab];
            if let Some(ids) = &ids {
                for &id in &ids[s * tokens..s * tokens + q.len.min(tokens)] {
                    row[id as usize] = 1.0;
                }
            }
            let seen: Vec<bool> = row.iter().map(|&f| f != 0.0).collect();
            let t = sample_reference(&logits[s * vocab..(s + 1) * vocab], &seen, &q.sampling, q.rand);
            row[t as usize] = 1.0;
            chosen.push((q.slot, t));
        }
        let token = e.state_mut(&token_name)?;
        for (slot, t) in chosen {
            token[slot] = t as f32;
        }
        Ok(token.clone())
    }
}

/// Logit `l` after the repetition penalty `r` of a token already seen, as the shaders'
/// `penalise` computes it.
pub(crate) fn penalise(l: f32, was_seen: bool, r: f32) -> f32 {
    match (r != 1.0 && was_seen, l > 0.0) {
        (true, true) => l / r,
        (true, false) => l * r,
        (false, _) => l,
    }
}

/// The order-preserving u32 key of an f32, as the shader computes it.
pub(crate) fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The CPU twin of the GPU sampler: the token chosen from `logits` given the tokens
/// already `seen`, the parameters and the step's random bits.
pub fn sample_reference(logits: &[f32], seen: &[bool], s: &Sampling, rand: u32) -> u32 {
    let pen: Vec<f32> = logits
        .iter()
        .zip(seen)
        .map(|(&l, &was)| penalise(l, was, s.repetition_penalty))
        .collect();
    let mut best = 0;
    for (i, &l) in pen.iter().enumerate() {
        if l > pen[best] {
            best = i;
        }
    }
    if s.is_greedy() {
        return best as u32;
    }
    let t = s.temperature;
    let scaled: Vec<f32> = pen.iter().map(|l| l / t).collect();
    let m = pen[best] / t;
    let mut sorted: Vec<f32> = scaled.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut thr = 0u32;
    if s.top_k > 0 && s.top_k < scaled.len() {
        thr = key(sorted[s.top_k - 1]);
    }
    if s.top_p < 1.0 {
        let w = |l: f32| f64::from((l - m).exp());
        let kept: Vec<f32> = sorted.iter().copied().filter(|&l| key(l) >= thr).collect();
        let total: f64 = kept.iter().map(|&l| w(l)).sum();
        let need = f64::from(s.top_p) * total;
        let mut acc = 0.0;
        for &l in &kept {
            // All tokens equal to the boundary value stay in.
            acc += w(l);
            if acc >= need {
                thr = thr.max(key(l));
                break;
            }
        }
    }
    if s.min_p > 0.0 {
        thr = thr.max(key(m + s.min_p.ln()));
    }
    let weights: Vec<f64> = scaled
        .iter()
        .map(|&l| {
            if key(l) >= thr {
                f64::from((l - m).exp())
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let target = f64::from(rand >> 8) / 16_777_216.0 * total;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if *w > 0.0 && acc > target {
            return i as u32;
        }
    }
    best as u32
}
