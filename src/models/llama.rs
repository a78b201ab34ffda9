//! The Llama family (Llama 2/3, SmolLM/SmolLM2, Qwen2, Mistral, TinyLlama) as a graph.
//!
//! Glossary: S sequences in the step, T tokens per sequence, D hidden size, H query heads,
//! KV key/value heads, Dh head dim, F feed-forward size, V vocabulary, C KV-cache capacity
//! (positions), N cache slots.
//!
//! ```text
//!     x = embed[ids]                                              (S, T, D)
//!     for each layer:
//!         h = rmsnorm(x) * w_attn_norm
//!         q, k, v = rope(h Wq^T + bq), rope(h Wk^T + bk), h Wv^T + bv
//!         x = x + attention(q, cache_k <- k, cache_v <- v) Wo^T
//!         h = rmsnorm(x) * w_mlp_norm
//!         x = x + (silu(h Wgate^T) * h Wup^T) Wdown^T
//!     logits = rmsnorm(x) * w_norm  Wlm^T                         (S, T or 1, V)
//! ```
//!
//! Split tensor-parallel, each adapter holds a [`Shard`]: its weights are cut to its KV
//! heads (with their query heads and cache), its hidden units and its rows of the
//! vocabulary, and H, KV, F and V above are its shares. The code is the same: the cut
//! weights' layouts ([`crate::graph::Layout`]) make `embed[ids]`, `Wo` and `Wdown` partial
//! sums, which the graph reduces across the adapters, and the logits a shard of the
//! vocabulary.

use super::config::Config;
use super::{Cache, Decoder, Logits, Part, Shard, Span, Special};
use crate::error::Result;
use crate::graph::{Graph, Value};
use crate::kernels::Act;
use crate::load::Weights;
use crate::ops::attention::{Heads, Mask};
use crate::ops::rope::rope_table;
use crate::tensor::Tensor;

struct Attention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    bias: Option<[Tensor; 3]>,
}

struct Layer {
    attn_norm: Tensor,
    attn: Attention,
    mlp_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

impl Layer {
    fn bytes(&self) -> u64 {
        let a = &self.attn;
        let t = [
            &self.attn_norm,
            &a.q,
            &a.k,
            &a.v,
            &a.o,
            &self.mlp_norm,
            &self.gate,
            &self.up,
            &self.down,
        ];
        t.into_iter()
            .chain(a.bias.iter().flatten())
            .map(Tensor::bytes)
            .sum()
    }
}

/// The final norm and the vocabulary projection.
struct Head {
    norm: Tensor,
    lm_head: Tensor,
}

/// How many heads one adapter computes: all of them, or a shard's (as its weights hold).
#[derive(Clone, Debug, PartialEq)]
struct Local {
    heads: usize,
    kv_heads: usize,
}

impl Local {
    /// The heads `attn`'s weights hold: whole heads, as many query heads per KV head as the
    /// model has.
    fn of(c: &Config, attn: &Attention) -> Result<Local> {
        let dh = c.head_dim.max(1);
        let (q, k) = (attn.q.rows(), attn.k.rows());
        let group = c.heads / c.kv_heads.max(1);
        let local = Local {
            heads: q / dh,
            kv_heads: k / dh,
        };
        match q % dh == 0 && k % dh == 0 && local.heads == local.kv_heads * group {
            true => Ok(local),
            false => Err(crate::error::Error::Invalid(format!(
                "q_proj holds {q} rows and k_proj {k}: not whole heads of {dh}, {group} query \
                 heads to a KV head"
            ))),
        }
    }
}

/// A Llama-family model, a span of its layers or a tensor-parallel shard of it, whose
/// weights are on the GPU.
pub struct Llama {
    /// The whole model's config.
    pub config: Config,
    span: Span,
    /// What of the model this instance holds.
    part: Part,
    local: Local,
    /// The input embedding, where the span starts at layer 0.
    embed: Option<Tensor>,
    layers: Vec<Layer>,
    /// Where the span ends at the last layer.
    head: Option<Head>,
}

impl Llama {
    /// Take the model's tensors from `w` by their HF names, checking every shape.
    pub fn new(config: Config, w: &Weights) -> Result<Llama> {
        let span = Span::whole(config.layers);
        Self::span(config, w, span)
    }

    /// The layers of `span` only, with the embedding and the head where the span has them:
    /// the part of a model split by layers that one adapter holds.
    pub fn span(config: Config, w: &Weights, span: Span) -> Result<Llama> {
        let part = match span.layers.len() == config.layers {
            true => Part::Whole,
            false => Part::Layers(span.layers.clone()),
        };
        Self::build(config, w, span, part)
    }

    /// One adapter's `shard` of every layer of a model split tensor-parallel, and of its
    /// embedding and head: `w` holds the weights cut to it ([`crate::split::llama_cut`]).
    pub fn shard(config: Config, w: &Weights, shard: Shard) -> Result<Llama> {
        let c = &config;
        let group = c.heads / c.kv_heads.max(1);
        let fits = !shard.kv_heads.is_empty()
            && shard.kv_heads.end <= c.kv_heads
            && shard.heads == (shard.kv_heads.start * group..shard.kv_heads.end * group)
            && !shard.ffn.is_empty()
            && shard.ffn.end <= c.ffn
            && !shard.vocab.is_empty()
            && shard.vocab.end <= c.vocab;
        if !fits {
            return Err(crate::error::Error::Invalid(format!(
                "shard {shard:?} is not a share of a model of {} heads in {} KV groups, {} \
                 hidden units and a vocabulary of {}",
                c.heads, c.kv_heads, c.ffn, c.vocab
            )));
        }
        let want = Local {
            heads: shard.heads.len(),
            kv_heads: shard.kv_heads.len(),
        };
        let span = Span::whole(c.layers);
        let model = Self::build(config, w, span, Part::Shard(shard))?;
        match model.local == want {
            true => Ok(model),
            false => Err(crate::error::Error::Invalid(format!(
                "the weights hold {:?} of a shard of {want:?}: they were cut for another \
                 placement",
                model.local
            ))),
        }
    }

    /// The model's tensors checked against its whole shapes (a shard's are cut from them,
    /// [`crate::tensor::Tensor::slice`]); the heads this adapter computes follow from them.
    fn build(config: Config, w: &Weights, span: Span, part: Part) -> Result<Llama> {
        let c = &config;
        let (d, dh) = (c.hidden, c.head_dim);
        let (q_dim, kv_dim, ffn, vocab) = (c.heads * dh, c.kv_heads * dh, c.ffn, c.vocab);
        let get = |name: &str, shape: &[usize]| w.get_shaped(name, shape).cloned();
        let embed_name = "model.embed_tokens.weight";
        let embed = match span.embeds() {
            true => Some(get(embed_name, &[vocab, d])?),
            false => None,
        };
        let mut layers = Vec::with_capacity(span.layers.len());
        for l in span.layers.clone() {
            let p = |n: &str| format!("model.layers.{l}.{n}");
            let bias = if c.qkv_bias {
                Some([
                    get(&p("self_attn.q_proj.bias"), &[q_dim])?,
                    get(&p("self_attn.k_proj.bias"), &[kv_dim])?,
                    get(&p("self_attn.v_proj.bias"), &[kv_dim])?,
                ])
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: get(&p("input_layernorm.weight"), &[d])?,
                attn: Attention {
                    q: get(&p("self_attn.q_proj.weight"), &[q_dim, d])?,
                    k: get(&p("self_attn.k_proj.weight"), &[kv_dim, d])?,
                    v: get(&p("self_attn.v_proj.weight"), &[kv_dim, d])?,
                    o: get(&p("self_attn.o_proj.weight"), &[d, q_dim])?,
                    bias,
                },
                mlp_norm: get(&p("post_attention_layernorm.weight"), &[d])?,
                gate: get(&p("mlp.gate_proj.weight"), &[ffn, d])?,
                up: get(&p("mlp.up_proj.weight"), &[ffn, d])?,
                down: get(&p("mlp.down_proj.weight"), &[d, ffn])?,
            });
        }
        let head = match span.heads() {
            true => Some(Head {
                norm: get("model.norm.weight", &[d])?,
                lm_head: match (c.tied_embeddings, &embed) {
                    (true, Some(e)) => e.clone(),
                    (true, None) => get(embed_name, &[vocab, d])?,
                    (false, _) => get("lm_head.weight", &[vocab, d])?,
                },
            }),
            false => None,
        };
        let local = match layers.first() {
            Some(l) => Local::of(c, &l.attn)?,
            None => Local {
                heads: c.heads,
                kv_heads: c.kv_heads,
            },
        };
        for l in &layers {
            if Local::of(c, &l.attn)? != local {
                return Err(crate::error::Error::Invalid(
                    "the layers' attention weights are cut to different heads".into(),
                ));
            }
        }
        Ok(Llama {
            config,
            span,
            part,
            local,
            embed,
            layers,
            head,
        })
    }

    /// Names of the KV-cache states of layer `l`.
    pub fn cache_names(l: usize) -> (String, String) {
        (format!("cache.{l}.k"), format!("cache.{l}.v"))
    }

    /// One forward step over the span's layers, each sequence from its own position, with
    /// KV caches of `cache.slots` x `cache.capacity` positions: from token ids (S, T) where
    /// the span has the embedding, else from the hidden state (S, T, D); to the logits where
    /// it has the head, else to the hidden state.
    pub fn forward(&self, g: &Graph, input: Value, cache: Cache, logits: Logits) -> Value {
        let c = &self.config;
        let (h, kv, dh) = (self.local.heads, self.local.kv_heads, c.head_dim);
        let heads = Heads {
            heads: h,
            kv_heads: kv,
            head_dim: dh,
        };
        let mask = c.sliding_window.map_or(Mask::Causal, Mask::Window);
        let rope = g.constant(
            "rope",
            &[cache.capacity, dh],
            rope_table(&c.inv_freq, cache.capacity),
        );
        let kv_shape = [cache.slots, cache.capacity, kv * dh];
        let mut x = match &self.embed {
            Some(embed) => {
                g.set_scope("embed");
                g.embedding(g.weight(embed), input) // (S, T, D)
            }
            None => input,
        };
        for (l, layer) in self.span.layers.clone().zip(&self.layers) {
            g.set_scope(format!("layer.{l}"));
            let w = |t: &Tensor| g.weight(t);
            let a = &layer.attn;
            let b = |i: usize| a.bias.as_ref().map(|b| w(&b[i]));
            let (k_name, v_name) = Self::cache_names(l);

            let hn = g.rms_norm(x, w(&layer.attn_norm), c.eps);
            let q = g.rope(g.linear(hn, w(&a.q), b(0)), rope, h, dh); // (S, T, H*Dh)
            let k = g.rope(g.linear(hn, w(&a.k), b(1)), rope, kv, dh); // (S, T, KV*Dh)
            let v = g.linear(hn, w(&a.v), b(2));
            let k = g.kv_write(k, g.state(&k_name, &kv_shape)); // (N, C, KV*Dh)
            let v = g.kv_write(v, g.state(&v_name, &kv_shape));
            let att = g.attention(q, k, v, heads, mask);
            x = g.add(x, g.matmul(att, w(&a.o)));

            let hn = g.rms_norm(x, w(&layer.mlp_norm), c.eps);
            let m = g.glu(
                g.matmul(hn, w(&layer.gate)),
                g.matmul(hn, w(&layer.up)),
                Act::Silu,
            ); // (S, T, F)
            x = g.add(x, g.matmul(m, w(&layer.down)));
        }
        let Some(head) = &self.head else {
            return x; // (S, T, D), for the next span
        };
        g.set_scope("head");
        if logits == Logits::Last && g.shape(x).get(1).is_some_and(|&t| t > 1) {
            x = g.last_token(x); // (S, 1, D)
        }
        g.matmul(
            g.rms_norm(x, g.weight(&head.norm), c.eps),
            g.weight(&head.lm_head),
        ) // (S, T or 1, V), or a shard's rows of V
    }

    /// Bytes of weights on the GPU (tied embeddings counted once).
    pub fn weight_bytes(&self) -> u64 {
        let layers: u64 = self.layers.iter().map(Layer::bytes).sum();
        let embed = self.embed.as_ref().map_or(0, Tensor::bytes);
        let head = self.head.as_ref().map_or(0, |h| {
            let shared = self.config.tied_embeddings && self.embed.is_some();
            h.norm.bytes() + if shared { 0 } else { h.lm_head.bytes() }
        });
        layers + embed + head
    }
}

impl Decoder for Llama {
    fn architecture(&self) -> &str {
        &self.config.model_type
    }
    fn layers(&self) -> usize {
        self.config.layers
    }
    fn vocab(&self) -> usize {
        self.config.vocab
    }
    fn max_positions(&self) -> usize {
        self.config.max_positions
    }
    fn special(&self) -> Special {
        Special {
            bos: self.config.bos,
            eos: self.config.eos.clone(),
        }
    }
    fn weight_bytes(&self) -> u64 {
        Llama::weight_bytes(self)
    }
    fn decode_bytes(&self, position: usize) -> u64 {
        let c = &self.config;
        let layers: u64 = self.layers.iter().map(Layer::bytes).sum();
        let head = self
            .head
            .as_ref()
            .map_or(0, |h| h.norm.bytes() + h.lm_head.bytes());
        let embed_row = self
            .embed
            .as_ref()
            .map_or(0, |e| e.bytes() / e.rows().max(1) as u64);
        // K and V, f32, for each of the span's layers and each of its KV heads.
        let kv = (2 * self.layers.len() * self.local.kv_heads * c.head_dim * 4 * position) as u64;
        layers + head + embed_row + kv
    }
    fn span(&self) -> Span {
        self.span.clone()
    }
    fn part(&self) -> Part {
        self.part.clone()
    }
    fn hidden(&self) -> usize {
        self.config.hidden
    }
    fn forward(&self, g: &Graph, input: Value, cache: Cache, logits: Logits) -> Value {
        Llama::forward(self, g, input, cache, logits)
    }
}
