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

use super::config::Config;
use super::{Cache, Decoder, Logits, Special};
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

/// A Llama-family model whose weights are on the GPU.
pub struct Llama {
    pub config: Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
}

impl Llama {
    /// Take the model's tensors from `w` by their HF names, checking every shape.
    pub fn new(config: Config, w: &Weights) -> Result<Llama> {
        let c = &config;
        let (d, q_dim, kv_dim) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let get = |name: &str, shape: &[usize]| w.get_shaped(name, shape).cloned();
        let embed = get("model.embed_tokens.weight", &[c.vocab, d])?;
        let mut layers = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
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
                gate: get(&p("mlp.gate_proj.weight"), &[c.ffn, d])?,
                up: get(&p("mlp.up_proj.weight"), &[c.ffn, d])?,
                down: get(&p("mlp.down_proj.weight"), &[d, c.ffn])?,
            });
        }
        let norm = get("model.norm.weight", &[d])?;
        let lm_head = if c.tied_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight", &[c.vocab, d])?
        };
        Ok(Llama {
            config,
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    /// Names of the KV-cache states of layer `l`.
    pub fn cache_names(l: usize) -> (String, String) {
        (format!("cache.{l}.k"), format!("cache.{l}.v"))
    }

    /// One forward step over the token ids `ids` (S, T), each sequence from its own position,
    /// with KV caches of `cache.slots` x `cache.capacity` positions. Returns the logits.
    pub fn forward(&self, g: &Graph, ids: Value, cache: Cache, logits: Logits) -> Value {
        let c = &self.config;
        let heads = Heads {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        let (h, kv, dh) = (c.heads, c.kv_heads, c.head_dim);
        let mask = c.sliding_window.map_or(Mask::Causal, Mask::Window);
        let rope = g.constant(
            "rope",
            &[cache.capacity, dh],
            rope_table(&c.inv_freq, cache.capacity),
        );
        let kv_shape = [cache.slots, cache.capacity, kv * dh];
        g.set_scope("embed");
        let mut x = g.embedding(g.weight(&self.embed), ids); // (S, T, D)
        for (l, layer) in self.layers.iter().enumerate() {
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
        g.set_scope("head");
        if logits == Logits::Last && g.shape(x).get(1).is_some_and(|&t| t > 1) {
            x = g.last_token(x); // (S, 1, D)
        }
        g.matmul(
            g.rms_norm(x, g.weight(&self.norm), c.eps),
            g.weight(&self.lm_head),
        ) // (S, T or 1, V)
    }

    /// Bytes of weights on the GPU (tied embeddings counted once).
    pub fn weight_bytes(&self) -> u64 {
        let mut n = self.embed.bytes() + self.norm.bytes();
        if !self.config.tied_embeddings {
            n += self.lm_head.bytes();
        }
        for l in &self.layers {
            let a = &l.attn;
            n += [
                &l.attn_norm,
                &a.q,
                &a.k,
                &a.v,
                &a.o,
                &l.mlp_norm,
                &l.gate,
                &l.up,
                &l.down,
            ]
            .iter()
            .map(|t| t.bytes())
            .sum::<u64>();
            n += a.bias.iter().flatten().map(Tensor::bytes).sum::<u64>();
        }
        n
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
        let embed = self.embed.bytes();
        let stored_head = if c.tied_embeddings {
            0
        } else {
            self.lm_head.bytes()
        };
        let layers_and_norm = self.weight_bytes() - embed - stored_head;
        // K and V, f32, for every layer and KV head.
        let kv = (2 * c.layers * c.kv_heads * c.head_dim * 4 * position) as u64;
        layers_and_norm + self.lm_head.bytes() + embed / c.vocab.max(1) as u64 + kv
    }
    fn forward(&self, g: &Graph, ids: Value, cache: Cache, logits: Logits) -> Value {
        Llama::forward(self, g, ids, cache, logits)
    }
}
