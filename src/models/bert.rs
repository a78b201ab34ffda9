//! BERT encoders as sentence-embedding models (all-MiniLM-L6-v2 and the sentence-transformers
//! family built on `BertModel`), as a graph.
//!
//! Glossary: S inputs in the step, T tokens per input, D hidden size, H heads, Dh head dim,
//! F intermediate size, P positions.
//!
//! ```text
//!     x = LN(word[ids] + positions[t])                            (S, T, D)
//!         positions = pos + type[0]: every input is one segment
//!     for each layer:
//!         a = attention(x Wq^T + bq, x Wk^T + bk, x Wv^T + bv)    each input's own tokens
//!         x = LN(x + a Wo^T + bo)
//!         x = LN(x + gelu(x Wi^T + bi) Wout^T + bout)
//!     e = mean of x over each input's tokens                     (S, 1, D)
//!     e = e / |e|                                                 where the recipe normalizes
//! ```
//!
//! Padding never enters a sum: attention and the mean read each input's length from the step.

use super::Encoder;
use crate::error::{Error, Result};
use crate::graph::{Graph, Value};
use crate::kernels::Act;
use crate::load::Weights;
use crate::ops::attention::{Heads, Mask};
use crate::tensor::Tensor;

/// What `config.json` says of a BERT model.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Token vocabulary size (`vocab_size`).
    pub vocab: usize,
    /// Width of the hidden state (`hidden_size`), a whole number of heads.
    pub hidden: usize,
    /// Encoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// Attention heads per layer (`num_attention_heads`).
    pub heads: usize,
    /// Width of the MLP's inner layer (`intermediate_size`).
    pub intermediate: usize,
    /// Positions the position embeddings cover: the longest input (`max_position_embeddings`).
    pub max_positions: usize,
    /// Token types (`type_vocab_size`, 2 when absent); kiln embeds every token as type 0.
    pub type_vocab: usize,
    /// LayerNorm epsilon (`layer_norm_eps`, 1e-12 when absent).
    pub eps: f32,
    /// The MLP's activation (`hidden_act`: `gelu` is [`Act::GeluErf`], `gelu_new` and
    /// `gelu_pytorch_tanh` are [`Act::GeluTanh`]).
    pub act: Act,
}

impl BertConfig {
    /// Parse HF's `config.json` of a `BertModel`; `origin` names the file in errors.
    pub fn from_json(origin: &str, json: &str) -> Result<BertConfig> {
        let bad = |what: String| Error::load(origin, what);
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let model_type = v["model_type"].as_str().unwrap_or("");
        if model_type != "bert" {
            return Err(bad(format!(
                "model_type is {model_type:?}, not \"bert\": this is not a BERT encoder"
            )));
        }
        let n = |key: &str| -> Result<usize> {
            v[key]
                .as_u64()
                .filter(|&x| x > 0)
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("{key} is missing or not a positive integer")))
        };
        let act = match v["hidden_act"].as_str().unwrap_or("gelu") {
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Act::GeluTanh,
            other => return Err(bad(format!("hidden_act {other:?} is not supported (gelu)"))),
        };
        match v["position_embedding_type"].as_str().unwrap_or("absolute") {
            "absolute" => {}
            other => {
                return Err(bad(format!(
                    "position_embedding_type {other:?} is not supported (absolute)"
                )));
            }
        }
        let c = BertConfig {
            vocab: n("vocab_size")?,
            hidden: n("hidden_size")?,
            layers: n("num_hidden_layers")?,
            heads: n("num_attention_heads")?,
            intermediate: n("intermediate_size")?,
            max_positions: n("max_position_embeddings")?,
            type_vocab: n("type_vocab_size").unwrap_or(2),
            eps: v["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            act,
        };
        if !c.hidden.is_multiple_of(c.heads) {
            return Err(bad(format!(
                "hidden_size {} is not a whole number of {} heads",
                c.hidden, c.heads
            )));
        }
        Ok(c)
    }
}

/// A weight and its bias.
struct Linear {
    w: Tensor,
    b: Tensor,
}

struct Norm {
    w: Tensor,
    b: Tensor,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    mlp_norm: Norm,
}

/// A BERT encoder whose weights are on the GPU, pooled to one embedding per input.
pub struct Bert {
    /// The configuration it was built from.
    pub config: BertConfig,
    word: Tensor,
    /// Position embeddings plus the first token type's, (P, D).
    positions: Tensor,
    embed_norm: Norm,
    layers: Vec<Layer>,
    /// Inputs longer than this are refused (the tokenizer truncates to it).
    max_tokens: usize,
    normalize: bool,
}

impl Bert {
    /// Take the model's tensors from `w` by HF's names (with or without the `bert.` prefix),
    /// checking every shape. `positions` is `embeddings.position_embeddings` plus row 0 of
    /// `embeddings.token_type_embeddings`, (P, D), uploaded by the caller. Inputs are
    /// limited to `max_tokens` (at most P); `normalize` divides each embedding by its norm.
    pub fn new(
        config: BertConfig,
        w: &Weights,
        positions: Tensor,
        max_tokens: usize,
        normalize: bool,
    ) -> Result<Bert> {
        let c = &config;
        let (d, f) = (c.hidden, c.intermediate);
        let prefix = if w.names().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        let get =
            |name: &str, shape: &[usize]| w.get_shaped(&format!("{prefix}{name}"), shape).cloned();
        let linear = |name: &str, out: usize, k: usize| -> Result<Linear> {
            Ok(Linear {
                w: get(&format!("{name}.weight"), &[out, k])?,
                b: get(&format!("{name}.bias"), &[out])?,
            })
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                w: get(&format!("{name}.weight"), &[d])?,
                b: get(&format!("{name}.bias"), &[d])?,
            })
        };
        let mut layers = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let p = |n: &str| format!("encoder.layer.{l}.{n}");
            layers.push(Layer {
                q: linear(&p("attention.self.query"), d, d)?,
                k: linear(&p("attention.self.key"), d, d)?,
                v: linear(&p("attention.self.value"), d, d)?,
                o: linear(&p("attention.output.dense"), d, d)?,
                attn_norm: norm(&p("attention.output.LayerNorm"))?,
                up: linear(&p("intermediate.dense"), f, d)?,
                down: linear(&p("output.dense"), d, f)?,
                mlp_norm: norm(&p("output.LayerNorm"))?,
            });
        }
        if positions.shape() != [c.max_positions, d] {
            return Err(Error::Shape(format!(
                "the position table is {:?}, not ({}, {d})",
                positions.shape(),
                c.max_positions
            )));
        }
        Ok(Bert {
            word: get("embeddings.word_embeddings.weight", &[c.vocab, d])?,
            positions,
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
            max_tokens: max_tokens.clamp(1, c.max_positions),
            normalize,
            config,
        })
    }

    fn heads(&self) -> Heads {
        let c = &self.config;
        Heads {
            heads: c.heads,
            kv_heads: c.heads,
            head_dim: c.hidden / c.heads,
        }
    }
}

impl Encoder for Bert {
    fn max_positions(&self) -> usize {
        self.max_tokens
    }

    fn width(&self) -> usize {
        self.config.hidden
    }

    fn forward(&self, g: &Graph, ids: Value) -> Value {
        let c = &self.config;
        let w = |t: &Tensor| g.weight(t);
        let linear = |x: Value, l: &Linear| g.linear(x, w(&l.w), Some(w(&l.b)));
        let norm = |x: Value, n: &Norm| g.layer_norm(x, w(&n.w), Some(w(&n.b)), c.eps);
        let x = g.add(
            g.embedding(w(&self.word), ids),
            g.position_embedding(w(&self.positions), ids),
        );
        let mut x = norm(x, &self.embed_norm);
        for l in &self.layers {
            let (q, k, v) = (linear(x, &l.q), linear(x, &l.k), linear(x, &l.v));
            let a = g.attention(q, k, v, self.heads(), Mask::Full);
            x = norm(g.add(x, linear(a, &l.o)), &l.attn_norm);
            let h = g.act(linear(x, &l.up), c.act);
            x = norm(g.add(x, linear(h, &l.down)), &l.mlp_norm);
        }
        let e = g.mean_pool(x);
        match self.normalize {
            true => g.l2_normalize(e, 1e-12),
            false => e,
        }
    }
}
