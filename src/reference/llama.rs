//! A plain-Rust Llama forward pass over host weights by HF name, in the style of llama2.c:
//! no graph, no GPU, f64 accumulation in the CPU twins of the ops. Tests run the GPU model
//! against it, in prefill and in decode. It takes its dimensions as a plain [`Spec`], not
//! the engine's config type, so that the two stay independent.

use crate::kernels::Act;
use crate::ops::attention::{Heads, attention};
use crate::ops::elementwise::tail;
use crate::ops::embedding::embedding;
use crate::ops::matmul::matmul;
use crate::ops::norm::rms_norm;
use crate::ops::rope::{rope, rope_table};
use std::collections::HashMap;

/// The dimensions of a Llama-family model.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Width of the hidden state.
    pub hidden: usize,
    /// Width of the MLP's inner layer.
    pub ffn: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// KV heads per layer; divides `heads`.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Token vocabulary size.
    pub vocab: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// RoPE inverse frequencies, any scaling applied.
    pub inv_freq: Vec<f32>,
    /// q, k and v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// The head reuses the embedding matrix.
    pub tied_embeddings: bool,
    /// Keys further back than this are not attended to (Mistral); `None`: all are.
    pub sliding_window: Option<usize>,
}

/// The reference model's state: weights and the KV cache so far.
pub struct Reference<'a> {
    spec: Spec,
    w: &'a HashMap<String, Vec<f32>>,
    /// Per layer: (k rows, v rows) of kv_heads * head_dim values, one per position.
    cache: Vec<(Vec<f32>, Vec<f32>)>,
    table: Vec<f32>,
}

impl<'a> Reference<'a> {
    /// A model of `spec` over `weights` (HF names, f32), with an empty KV cache and RoPE tables
    /// for `capacity` positions.
    pub fn new(spec: Spec, weights: &'a HashMap<String, Vec<f32>>, capacity: usize) -> Self {
        let table = rope_table(&spec.inv_freq, capacity);
        Reference {
            cache: vec![(Vec::new(), Vec::new()); spec.layers],
            spec,
            w: weights,
            table,
        }
    }

    fn w(&self, name: &str) -> &[f32] {
        self.w
            .get(name)
            .unwrap_or_else(|| panic!("reference: no weight {name}"))
    }

    /// x (t, in) times the named projection, plus its bias if the model has one.
    fn proj(&self, x: &[f32], name: &str, n: usize, k: usize, bias: bool) -> Vec<f32> {
        let y = matmul(x, self.w(&format!("{name}.weight")), x.len() / k, n, k);
        if bias {
            let b = self.w(&format!("{name}.bias"));
            tail(&y, n, Some(b), Act::Identity, None, None)
        } else {
            y
        }
    }

    /// Logits (t, vocab) for `ids` following the tokens already in the cache.
    pub fn forward(&mut self, ids: &[u32]) -> Vec<f32> {
        let c = &self.spec;
        let (d, hd) = (c.hidden, c.head_dim);
        let (qd, kvd) = (c.heads * hd, c.kv_heads * hd);
        let heads = Heads {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: hd,
        };
        let pos = self.cache[0].0.len() / kvd;
        let mut x = embedding(self.w("model.embed_tokens.weight"), ids, d);
        for l in 0..c.layers {
            let p = |n: &str| format!("model.layers.{l}.{n}");
            let h = rms_norm(&x, self.w(&p("input_layernorm.weight")), d, c.eps);
            let q = self.proj(&h, &p("self_attn.q_proj"), qd, d, c.qkv_bias);
            let q = rope(&q, &self.table, c.heads, hd, pos);
            let k = self.proj(&h, &p("self_attn.k_proj"), kvd, d, c.qkv_bias);
            let k = rope(&k, &self.table, c.kv_heads, hd, pos);
            let v = self.proj(&h, &p("self_attn.v_proj"), kvd, d, c.qkv_bias);
            self.cache[l].0.extend(&k);
            self.cache[l].1.extend(&v);
            let (kc, vc) = &self.cache[l];
            let a = attention(&q, kc, vc, heads, pos, true, c.sliding_window);
            let o = self.proj(&a, &p("self_attn.o_proj"), d, qd, false);
            x = x.iter().zip(&o).map(|(a, b)| a + b).collect();

            let h = rms_norm(&x, self.w(&p("post_attention_layernorm.weight")), d, c.eps);
            let gate = self.proj(&h, &p("mlp.gate_proj"), c.ffn, d, false);
            let up = self.proj(&h, &p("mlp.up_proj"), c.ffn, d, false);
            let m = tail(
                &gate,
                c.ffn,
                None,
                Act::Silu,
                Some((&up, Act::Identity)),
                None,
            );
            let down = self.proj(&m, &p("mlp.down_proj"), d, c.ffn, false);
            x = x.iter().zip(&down).map(|(a, b)| a + b).collect();
        }
        let x = rms_norm(&x, self.w("model.norm.weight"), d, c.eps);
        let head = if c.tied_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        matmul(&x, self.w(head), ids.len(), c.vocab, d)
    }
}
