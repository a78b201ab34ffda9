//! Embedding lookup (`shaders/embedding.wgsl`), from a table that may be split into parts,
//! of the rows that token ids (S, T) from the host name, of the token each sequence sampled
//! last (a per-slot state, for decode), or of each token's position (learned absolute
//! position embeddings: BERT, GPT-2, Whisper's decoder).

use super::token_rows;
use crate::dtype::WeightFormat;
use crate::error::Result;
use crate::graph::{Bound, Buf, Emit, Eval, Graph, Layout, Leaf, Op, Value};
use crate::kernels::{Family, GpuStruct, Include, Kernel, Slot};

/// Threads per workgroup, one output value each.
pub const WG: u32 = 256;

crate::kernels::gpu_struct! {
    /// The lookup kernel's parameters, one dispatch per part of the table
    /// (`shaders/embedding.wgsl`).
    pub struct Params("Params") {
        /// Token rows of the output (S x T).
        rows: u32,
        /// Token rows per sequence (T).
        tokens: u32,
        /// Values per table row: the embedding's width.
        dim: u32,
        /// The first table row this part holds.
        row_start: u32,
        /// Table rows this part holds.
        part_rows: u32,
        /// 0: `ids[row]`; 1: `ids[slot of the row's sequence]`; 2: the row's position.
        source: u32,
        /// Block formats: the word of the table's buffer where its scales start.
        table_meta: u32,
        /// The first id the table holds (a vocabulary shard's), and its rows: other ids
        /// read zeros.
        first: u32,
        /// Rows of the whole table, every part together.
        table_rows: u32,
    }
}

/// The lookup kernel (`shaders/embedding.wgsl`).
pub static FAMILY: Family = Family {
    name: "embedding",
    source: include_str!("../../shaders/embedding.wgsl"),
    includes: &[Include::Seq],
    bindings: &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::Write],
    structs: &[Params::LAYOUT, crate::graph::SeqParams::LAYOUT],
};

fn kernel(table: WeightFormat) -> Kernel {
    Kernel::new(&FAMILY).weight("table", table).constant("WG", WG)
}

/// Every kernel variant embedding lookups can ask for (tests validate each with naga).
pub fn variants() -> Vec<Kernel> {
    WeightFormat::all().into_iter().map(kernel).collect()
}

/// Which row of the table each token row reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The id at the same row of `ids` (S, T).
    Ids,
    /// The id in the sequence's slot of a per-slot state (slots, 1).
    Slots,
    /// The token's position, `pos + t` (`ids` only gives the shape).
    Positions,
}

impl Source {
    fn code(self) -> u32 {
        match self {
            Source::Ids => 0,
            Source::Slots => 1,
            Source::Positions => 2,
        }
    }
}

/// An embedding lookup: see the module docs.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The table, (rows, D).
    pub table: Value,
    /// The ids (S, T), or the per-slot token state (slots, 1) for [`Source::Slots`].
    pub ids: Value,
    /// Which row each token row reads.
    pub source: Source,
    /// The ids the table's rows stand for, `first..first + rows`, out of `vocab`: all of
    /// them, or a vocabulary shard's (other ids read zeros).
    pub first: usize,
    /// The ids (or positions) the whole table stands for; a step with larger ones is refused.
    pub vocab: usize,
}

impl Graph {
    /// table (vocab, D) gathered at ids (S, T) -> (S, T, D). When `ids` is a state of one
    /// id per slot (the token each sequence sampled last), each sequence reads its slot's:
    /// -> (S, 1, D).
    ///
    /// From a table split by rows (a vocabulary shard, the ids `first..first + rows`),
    /// other ids read zero rows: each part's lookup is a partial sum, which the graph adds
    /// across the parts.
    pub fn embedding(&self, table: Value, ids: Value) -> Value {
        let rows = self.shape(table).first().copied().unwrap_or(0);
        let (first, vocab) = match self.layout(table).along(0) {
            Some((range, total)) => (range.start, total),
            None => (0, rows),
        };
        let source = if self.is_state(ids) { Source::Slots } else { Source::Ids };
        self.apply(Embedding { table, ids, source, first, vocab })
    }

    /// table (positions, D) gathered at each token's position `pos + t`, for the tokens of
    /// ids (S, T) -> (S, T, D).
    pub fn position_embedding(&self, table: Value, ids: Value) -> Value {
        let first = 0;
        let vocab = self.shape(table).first().copied().unwrap_or(0);
        self.apply(Embedding { table, ids, source: Source::Positions, first, vocab })
    }
}

impl Op for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn inputs(&self) -> Vec<Value> {
        vec![self.table, self.ids]
    }

    /// A table split by rows gives a partial sum (zeros for the ids it does not hold).
    fn layout(&self, _: &Graph, inputs: &[Layout]) -> std::result::Result<Layout, String> {
        match (&inputs[0], &inputs[1]) {
            (Layout::Whole, Layout::Whole) => Ok(Layout::Whole),
            (t, Layout::Whole) if t.along(0).is_some() && self.source != Source::Positions => {
                Ok(Layout::Partial)
            }
            (t, i) => Err(format!("a table {t} looked up at ids {i}")),
        }
    }

    fn shape(&self, g: &Graph) -> std::result::Result<Vec<usize>, String> {
        let d = match g.shape(self.table).as_slice() {
            [_, d] => *d,
            s => return Err(format!("the table must be 2-D, got {s:?}")),
        };
        let rows = g.shape(self.table)[0];
        if self.first + rows > self.vocab || (self.source == Source::Positions && self.first > 0) {
            return Err(format!(
                "table rows {}..{} are not a share of a vocabulary of {}",
                self.first,
                self.first + rows,
                self.vocab
            ));
        }
        if self.source == Source::Ids && !matches!(g.leaf(self.ids), Some(Leaf::Ids { .. })) {
            return Err("ids must be an ids input (checked against the vocabulary each step) or \
                 a per-slot token state"
                .into());
        }
        let ids = g.shape(self.ids);
        match (self.source == Source::Slots, ids.as_slice()) {
            (true, [_, 1]) => Ok(vec![g.seqs(), 1, d]),
            (false, [s, t]) if *s == g.seqs() => Ok(vec![*s, *t, d]),
            _ => Err(format!(
                "ids {ids:?} are neither (S, T) with S = {} nor a state of one id per slot",
                g.seqs()
            )),
        }
    }

    fn ragged(&self, _: &[bool]) -> bool {
        true
    }

    fn emit(&self, e: &mut Emit) -> Result<()> {
        let fmt = e.weight(self.table, true)?;
        let (vocab, rows) = (self.vocab, e.shape(self.table)[0]);
        match self.source {
            Source::Ids => e.bound_ids(self.ids, vocab),
            Source::Slots => {
                let name = e.state_name(self.ids)?;
                let slots = e.shape(self.ids)[0];
                e.bound(Bound::Slots { what: format!("token state '{name}'"), slots });
            }
            Source::Positions => e.bound(Bound::Positions {
                what: "the position embedding table".into(),
                capacity: vocab,
            }),
        }
        let s = e.out_shape().to_vec();
        let (tokens, d) = (s[1], s[2]);
        let parts = e.tensor(self.table)?.parts().to_vec();
        for (pi, part) in parts.iter().enumerate() {
            let bindings = vec![
                Buf::Params,
                Buf::Seqs,
                e.buf(self.ids),
                Buf::Weight { value: self.table, part: pi },
                e.out(),
            ];
            let params = Params {
                rows: (s[0] * tokens) as u32,
                tokens: tokens as u32,
                dim: d as u32,
                row_start: part.rows.start as u32,
                part_rows: part.rows.len() as u32,
                source: self.source.code(),
                table_meta: e.tensor(self.table)?.meta_word(part),
                first: self.first as u32,
                table_rows: rows as u32,
            };
            let grid = e.linear(e.this(), d, WG);
            e.dispatch(kernel(fmt), bindings, &params, grid);
        }
        Ok(())
    }

    fn eval(&self, e: &mut Eval) -> Result<Vec<f32>> {
        let s = e.out_shape().to_vec();
        let (tokens, d) = (s[1], s[2]);
        let (table, ids) = (e.value(self.table), e.value(self.ids));
        let mut y = vec![0.0; s.iter().product()];
        for (si, t, r) in token_rows(e.step, tokens) {
            let q = &e.step.seqs[si];
            let id = match self.source {
                Source::Ids => ids[r] as usize,
                Source::Slots => ids[q.slot] as usize,
                Source::Positions => q.pos + t,
            };
            // Ids outside a shard's rows stay zero.
            if let Some(row) = id.checked_sub(self.first).and_then(|i| table.get(i * d..(i + 1) * d)) {
                y[r * d..(r + 1) * d].copy_from_slice(row);
            }
        }
        Ok(y)
    }
}

/// Rows of table (vocab, d) at ids.
pub fn embedding(table: &[f32], ids: &[u32], d: usize) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| table[i as usize * d..][..d].iter().copied())
        .collect()
}
