//! One model across several adapters: how the work is divided, as data.
//!
//! A model placed on a group of adapters is split one of two ways ([`Split`]):
//! - **tensor-parallel**, Megatron-style: each adapter owns a range of KV heads (with their
//!   query heads, their rows of q/k/v, their columns of `o_proj` and their KV cache), a
//!   range of the MLP's hidden units (rows of `gate`/`up`, columns of `down`) and a range of
//!   the vocabulary (rows of the embedding and of `lm_head`); `o_proj`, `down` and the
//!   embedding lookup then give partial sums that the host adds, and each adapter proposes
//!   sampling candidates from its logits, which the host gathers;
//! - **by layers** (pipeline): each adapter owns contiguous layers, and the hidden state
//!   crosses over once per boundary. It is for capacity, not speed.
//!
//! [`Placement`] computes the ranges from the model's shape and each adapter's relative
//! speed, in units that keep every slice at block boundaries; [`llama_cut`] says which rows
//! or columns of each tensor that makes, and the loader cuts the stored weights to them
//! ([`crate::load::Cut`], [`crate::load::slice`]).
//!
//! [`Gpus`] is the group a model is placed on. Both modes run: split by layers, each adapter
//! loads and runs its own layers and the session hands the hidden state from one to the
//! next through the host; tensor-parallel, every adapter runs every layer on its share and
//! the host sums the partials of `o_proj` and `down` ([`crate::exec::AllReduce`], twice a
//! layer, and once for the embedding). Each adapter's rows of `lm_head` give its logits,
//! from which it proposes candidates (`crate::ops::candidates`); the host gathers them and
//! the last adapter samples from them, as it would from the whole logits.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::Cut;
pub use crate::models::Shard;
use crate::models::Span;
use crate::models::config::Config;
use std::ops::Range;

/// A group of adapters one model is placed on, and how the model is divided among them.
#[derive(Clone)]
pub struct Gpus {
    gpus: Vec<Gpu>,
    split: Split,
    weights: Vec<f64>,
}

impl Gpus {
    /// One adapter: the model whole.
    pub fn one(gpu: Gpu) -> Gpus {
        Gpus {
            gpus: vec![gpu],
            split: Split::Layers,
            weights: vec![1.0],
        }
    }

    /// `gpus`, in order, the model divided `split`, equal shares each (see
    /// [`Gpus::weighted`] and [`Gpus::by_bandwidth`]). Errors when the group is empty.
    pub fn new(gpus: Vec<Gpu>, split: Split) -> Result<Gpus> {
        if gpus.is_empty() {
            return Err(Error::Invalid(
                "a placement needs at least one adapter".into(),
            ));
        }
        let weights = vec![1.0; gpus.len()];
        Ok(Gpus {
            gpus,
            split,
            weights,
        })
    }

    /// Shares in proportion to `weights`, one positive number per adapter (say, each one's
    /// bandwidth).
    pub fn weighted(mut self, weights: &[f64]) -> Result<Gpus> {
        check_weights(weights)?;
        if weights.len() != self.gpus.len() {
            return Err(Error::Invalid(format!(
                "{} split weights for {} adapters",
                weights.len(),
                self.gpus.len()
            )));
        }
        self.weights = weights.to_vec();
        Ok(self)
    }

    /// Shares in proportion to each adapter's copy bandwidth ([`crate::tune::bandwidth`]:
    /// cached, or measured now); `log` hears of any measuring.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn by_bandwidth(self, log: &mut dyn FnMut(&str)) -> Result<Gpus> {
        let mut weights = Vec::with_capacity(self.gpus.len());
        for gpu in &self.gpus {
            weights.push(crate::tune::bandwidth(gpu, log).await?);
        }
        self.weighted(&weights)
    }

    /// The adapters, in order.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// How the model is divided among them.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Each adapter's relative share (equal unless set), in adapter order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The span of layers each adapter holds, for a model of `layers` (the whole model on
    /// one adapter).
    pub fn spans(&self, layers: usize) -> Result<Vec<Span>> {
        match Placement::layers(layers, &self.weights)? {
            Placement::Layers(ranges) => ranges.into_iter().map(|r| Span::new(r, layers)).collect(),
            Placement::Tensor(_) => Err(Error::Invalid("not a layer placement".into())),
        }
    }

    /// The same group with its fastest adapter (the largest weight; the later of equals)
    /// moved last: split tensor-parallel, the last adapter holds the head and samples.
    pub fn fastest_last(&self) -> Gpus {
        let n = self.gpus.len();
        let fastest = (0..n)
            .rev()
            .max_by(|&a, &b| self.weights[a].total_cmp(&self.weights[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        let order: Vec<usize> = (0..n).filter(|&i| i != fastest).chain([fastest]).collect();
        Gpus {
            gpus: order.iter().map(|&i| self.gpus[i].clone()).collect(),
            split: self.split,
            weights: order.iter().map(|&i| self.weights[i]).collect(),
        }
    }

    /// The same adapters and weights, the model divided `split`.
    pub fn with_split(self, split: Split) -> Gpus {
        Gpus { split, ..self }
    }

    /// Each adapter's share of a model of config `c` split tensor-parallel, slices kept at
    /// `blocks`.
    pub fn shards(&self, c: &Config, blocks: Blocks) -> Result<Vec<Shard>> {
        match Placement::tensor(c, &self.weights, blocks)? {
            Placement::Tensor(shards) => Ok(shards),
            Placement::Layers(_) => Err(Error::Invalid("not a tensor placement".into())),
        }
    }
}

/// How a model is divided across a group of adapters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Split {
    /// Tensor-parallel: heads, hidden units and vocabulary divided, partial sums reduced.
    Tensor,
    /// Contiguous layers per adapter.
    Layers,
    /// Tensor-parallel where the model can be placed so (at least one KV head per adapter,
    /// cuts at whole quant blocks), else by layers. A loaded model's split is one of the
    /// other two ([`crate::TextModel::split`]).
    Auto,
}

impl Split {
    /// `tensor`, `layers` or `auto`.
    pub fn parse(text: &str) -> Result<Split> {
        match text {
            "tensor" => Ok(Split::Tensor),
            "layers" => Ok(Split::Layers),
            "auto" => Ok(Split::Auto),
            _ => Err(Error::Invalid(format!(
                "split '{text}' is none of 'tensor', 'layers' and 'auto'"
            ))),
        }
    }
}

/// A model's division across a group of adapters, one entry per adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Tensor-parallel: each adapter's share of heads, hidden units and vocabulary.
    Tensor(Vec<Shard>),
    /// By layers: the layers each adapter holds, consecutive ranges in order.
    Layers(Vec<Range<usize>>),
}

/// Block alignment the slices must keep: the weights per block of the matrices cut by
/// columns (`o_proj` and `down`; 1 for float formats, 32 or 256 for block formats).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Blocks {
    /// Weights per block of `o_proj`'s format.
    pub o_proj: usize,
    /// Weights per block of `down`'s format.
    pub down: usize,
}

impl Placement {
    /// Tensor-parallel ranges for `c` over adapters of relative speeds `weights` (one per
    /// adapter, positive): each adapter's share of KV heads and of hidden units (in units of
    /// `down`'s blocks) and of the vocabulary follows its weight. Errors, naming the limit,
    /// when there are more adapters than KV heads or block units, or when a KV-head
    /// boundary would cut `o_proj`'s blocks.
    pub fn tensor(c: &Config, weights: &[f64], blocks: Blocks) -> Result<Placement> {
        check_weights(weights)?;
        let n = weights.len();
        if n > c.kv_heads {
            return Err(Error::Invalid(format!(
                "{n} adapters but the model has {} KV heads: tensor-parallel gives each \
                 adapter at least one (split by layers instead)",
                c.kv_heads
            )));
        }
        let group = c.heads / c.kv_heads;
        let kv = shares(c.kv_heads, weights)?;
        let cols_per_kv = group * c.head_dim;
        if let Some(r) = kv
            .iter()
            .find(|r| !(r.start * cols_per_kv).is_multiple_of(blocks.o_proj.max(1)))
        {
            return Err(Error::Invalid(format!(
                "o_proj's {}-weight blocks cannot be cut at KV head {} ({cols_per_kv} columns \
                 per KV head): requantize to a 32-weight format, or split by layers",
                blocks.o_proj, r.start
            )));
        }
        let unit = blocks.down.max(1);
        if !c.ffn.is_multiple_of(unit) || c.ffn / unit < n {
            return Err(Error::Invalid(format!(
                "the MLP's {} hidden units do not divide into {n} shares of whole {unit}-weight \
                 blocks of down_proj",
                c.ffn
            )));
        }
        let ffn = shares(c.ffn / unit, weights)?;
        let vocab = shares(c.vocab, weights)?;
        let shards = (0..n)
            .map(|i| Shard {
                heads: kv[i].start * group..kv[i].end * group,
                kv_heads: kv[i].clone(),
                ffn: ffn[i].start * unit..ffn[i].end * unit,
                vocab: vocab[i].clone(),
            })
            .collect();
        Ok(Placement::Tensor(shards))
    }

    /// Contiguous layers for adapters of relative speeds `weights`, at least one each.
    pub fn layers(layers: usize, weights: &[f64]) -> Result<Placement> {
        check_weights(weights)?;
        if weights.len() > layers {
            return Err(Error::Invalid(format!(
                "{} adapters but the model has {layers} layers",
                weights.len()
            )));
        }
        Ok(Placement::Layers(shares(layers, weights)?))
    }
}

/// The part of the Llama-family tensor `name` (its HF name) that an adapter holding `shard`
/// of a tensor-parallel split loads: rows of q, k, v (and their biases), gate, up, the
/// embedding and lm_head (with tied embeddings, the embedding's rows are the head);
/// columns of o_proj and down_proj; `None` (all of it) for the norms, which every adapter
/// holds.
pub fn llama_cut(c: &Config, shard: &Shard, name: &str) -> Option<Cut> {
    let dh = c.head_dim;
    let heads = shard.heads.start * dh..shard.heads.end * dh;
    let kv = shard.kv_heads.start * dh..shard.kv_heads.end * dh;
    if name == "lm_head.weight" || name == "model.embed_tokens.weight" {
        return (shard.vocab.len() < c.vocab).then(|| Cut::Rows(shard.vocab.clone()));
    }
    let (_, rest) = name.strip_prefix("model.layers.")?.split_once('.')?;
    Some(match rest {
        "self_attn.q_proj.weight" | "self_attn.q_proj.bias" => Cut::Rows(heads),
        "self_attn.k_proj.weight" | "self_attn.k_proj.bias" => Cut::Rows(kv.clone()),
        "self_attn.v_proj.weight" | "self_attn.v_proj.bias" => Cut::Rows(kv),
        "self_attn.o_proj.weight" => Cut::Columns(heads),
        "mlp.gate_proj.weight" | "mlp.up_proj.weight" => Cut::Rows(shard.ffn.clone()),
        "mlp.down_proj.weight" => Cut::Columns(shard.ffn.clone()),
        _ => return None,
    })
}

/// What an adapter holding `span` of a Llama-family model split by layers loads: its layers'
/// tensors, the embedding where the span starts at layer 0 (or ends with a head tied to it),
/// the final norm and `lm_head` where it ends at the last layer. Everything else is skipped
/// (`Some(Cut::Skip)`); `None` loads the tensor whole.
pub fn layers_cut(c: &Config, span: &Span, name: &str) -> Option<Cut> {
    let keep = if let Some(rest) = name.strip_prefix("model.layers.") {
        let layer = rest
            .split_once('.')
            .and_then(|(l, _)| l.parse::<usize>().ok());
        layer.is_none_or(|l| span.layers.contains(&l))
    } else {
        match name {
            "model.embed_tokens.weight" => span.embeds() || (c.tied_embeddings && span.heads()),
            "model.norm.weight" | "lm_head.weight" => span.heads(),
            _ => true,
        }
    };
    (!keep).then_some(Cut::Skip)
}

fn check_weights(weights: &[f64]) -> Result<()> {
    if weights.is_empty() {
        return Err(Error::Invalid(
            "a placement needs at least one adapter".into(),
        ));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(Error::Invalid(format!(
            "split weight {w} is not a positive number"
        )));
    }
    Ok(())
}

/// `units` divided into consecutive ranges in proportion to `weights`, each at least one
/// unit: largest remainders get the units rounding leaves, ties to the earlier adapter, so
/// the result is reproducible. Errors when there are fewer units than weights.
pub fn shares(units: usize, weights: &[f64]) -> Result<Vec<Range<usize>>> {
    check_weights(weights)?;
    let n = weights.len();
    if units < n {
        return Err(Error::Invalid(format!(
            "{units} units cannot be shared by {n} adapters, at least one each"
        )));
    }
    let total: f64 = weights.iter().sum();
    // One unit each first, the rest by weight.
    let rest = units - n;
    let exact: Vec<f64> = weights.iter().map(|w| rest as f64 * w / total).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize + 1).collect();
    let mut left = units - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    let mut start = 0;
    Ok(counts
        .into_iter()
        .map(|c| {
            let r = start..start + c;
            start += c;
            r
        })
        .collect())
}
