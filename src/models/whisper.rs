//! Whisper (OpenAI's speech recognition models, HF's `WhisperForConditionalGeneration`
//! layout) as two graphs over one session's states.
//!
//! Glossary: S sequences, M mel bins, D width, H heads, F feed-forward size, A audio positions
//! (1500 for 30 s), V vocabulary, C text positions, N cache slots.
//!
//! ```text
//! encoder (once per 30-second window), mel (S, 2A, M) -> every decoder layer's cross K, V:
//!     x = gelu(conv1(mel)), x = gelu(conv2(x), stride 2) + positions      (S, A, D)
//!     for each layer:
//!         h = LN(x), x = x + attention(h Wq^T + bq, h Wk^T, h Wv^T + bv) Wo^T + bo
//!         h = LN(x), x = x + gelu(h W1^T + b1) W2^T + b2
//!     e = LN(x)
//!     cross_k[l] <- e Wk_l^T, cross_v[l] <- e Wv_l^T + bv_l               (N, A, D) states
//! decoder (each step), ids (S, T):
//!     x = embed[ids] + positions[pos + t]
//!     for each layer:
//!         h = LN(x), x = x + causal self-attention over the KV cache (as the encoder's)
//!         h = LN(x), x = x + attention(h Wq^T + bq, cross_k[l], cross_v[l]) Wo^T + bo
//!         h = LN(x), x = x + gelu(h W1^T + b1) W2^T + b2
//!     logits = LN(x) embed^T                                             (S, T or 1, V)
//! ```
//!
//! The decoder is a [`Decoder`], so text generation's session machinery runs it: the cross
//! states are states of its session, which [`WhisperEncoder::forward`] fills.

use super::{Cache, Decoder, Logits, Part, Span, Special};
use crate::error::{Error, Result};
use crate::graph::{Graph, Value};
use crate::kernels::Act;
use crate::load::Weights;
use crate::ops::attention::{Heads, Mask};
use crate::tensor::Tensor;

/// What `config.json` says of a Whisper model.
#[derive(Clone, Debug, PartialEq)]
pub struct WhisperConfig {
    /// Width of the hidden state (`d_model`), a whole number of heads in encoder and decoder.
    pub d: usize,
    /// Audio encoder layers (`encoder_layers`).
    pub encoder_layers: usize,
    /// Text decoder layers (`decoder_layers`).
    pub decoder_layers: usize,
    /// Attention heads per encoder layer (`encoder_attention_heads`).
    pub encoder_heads: usize,
    /// Attention heads per decoder layer (`decoder_attention_heads`).
    pub decoder_heads: usize,
    /// Width of an encoder MLP's inner layer (`encoder_ffn_dim`).
    pub encoder_ffn: usize,
    /// Width of a decoder MLP's inner layer (`decoder_ffn_dim`).
    pub decoder_ffn: usize,
    /// Mel bands of the input spectrogram (`num_mel_bins`: 80, or 128 for large-v3).
    pub mels: usize,
    /// Encoder positions: 1500 for 30 s of audio (3000 mel frames).
    pub audio_positions: usize,
    /// Decoder positions: the longest transcript window, prompt included.
    pub text_positions: usize,
    /// Token vocabulary size (`vocab_size`).
    pub vocab: usize,
    /// The end-of-transcript token (`eos_token_id`).
    pub eot: u32,
    /// The token a transcript starts with, `<|startoftranscript|>` (`decoder_start_token_id`).
    pub decoder_start: u32,
    /// Tokens never sampled (`suppress_tokens`).
    pub suppress: Vec<u32>,
    /// Tokens not sampled as a window's first token (`begin_suppress_tokens`).
    pub begin_suppress: Vec<u32>,
}

/// Layer norms' epsilon in Whisper.
const EPS: f32 = 1e-5;

impl WhisperConfig {
    /// Parse HF's `config.json` of a Whisper model; `origin` names the file in errors.
    pub fn from_json(origin: &str, json: &str) -> Result<WhisperConfig> {
        let bad = |what: String| Error::load(origin, what);
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let model_type = v["model_type"].as_str().unwrap_or("");
        if model_type != "whisper" {
            return Err(bad(format!(
                "model_type is {model_type:?}, not \"whisper\": this is not a Whisper model"
            )));
        }
        let n = |key: &str| -> Result<usize> {
            v[key]
                .as_u64()
                .filter(|&x| x > 0)
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("{key} is missing or not a positive integer")))
        };
        let id = |key: &str| n(key).map(|x| x as u32);
        let ids = |key: &str| -> Vec<u32> {
            v[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_u64().map(|x| x as u32))
                .collect()
        };
        match v["activation_function"].as_str().unwrap_or("gelu") {
            "gelu" => {}
            other => return Err(bad(format!("activation_function {other:?} is not gelu"))),
        }
        if v["scale_embedding"].as_bool() == Some(true) {
            return Err(bad("scale_embedding is true; Whisper's is false".into()));
        }
        let c = WhisperConfig {
            d: n("d_model")?,
            encoder_layers: n("encoder_layers")?,
            decoder_layers: n("decoder_layers")?,
            encoder_heads: n("encoder_attention_heads")?,
            decoder_heads: n("decoder_attention_heads")?,
            encoder_ffn: n("encoder_ffn_dim")?,
            decoder_ffn: n("decoder_ffn_dim")?,
            mels: n("num_mel_bins")?,
            audio_positions: n("max_source_positions")?,
            text_positions: n("max_target_positions")?,
            vocab: n("vocab_size")?,
            eot: id("eos_token_id")?,
            decoder_start: id("decoder_start_token_id")?,
            suppress: ids("suppress_tokens"),
            begin_suppress: ids("begin_suppress_tokens"),
        };
        for heads in [c.encoder_heads, c.decoder_heads] {
            if !c.d.is_multiple_of(heads) {
                return Err(bad(format!(
                    "d_model {} is not a whole number of {heads} heads",
                    c.d
                )));
            }
        }
        if c.eot as usize >= c.vocab || c.decoder_start as usize >= c.vocab {
            return Err(bad(format!(
                "eos_token_id {} or decoder_start_token_id {} is outside the vocabulary of {}",
                c.eot, c.decoder_start, c.vocab
            )));
        }
        Ok(c)
    }
}

/// A weight and its bias (key projections have none).
struct Linear {
    w: Tensor,
    b: Option<Tensor>,
}

struct Norm {
    w: Tensor,
    b: Tensor,
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

/// The feed-forward block and its norm.
struct Mlp {
    norm: Norm,
    fc1: Linear,
    fc2: Linear,
}

struct EncoderLayer {
    attn_norm: Norm,
    attn: Attention,
    mlp: Mlp,
}

struct DecoderLayer {
    attn_norm: Norm,
    attn: Attention,
    cross_norm: Norm,
    cross: Attention,
    mlp: Mlp,
}

/// Reads a Whisper's tensors by HF's names, with or without the `model.` prefix.
struct Names<'w> {
    w: &'w Weights,
    prefix: &'static str,
}

impl Names<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.w
            .get_shaped(&format!("{}{name}", self.prefix), shape)
            .cloned()
    }
    fn linear(&self, name: &str, out: usize, k: usize, bias: bool) -> Result<Linear> {
        Ok(Linear {
            w: self.get(&format!("{name}.weight"), &[out, k])?,
            b: match bias {
                true => Some(self.get(&format!("{name}.bias"), &[out])?),
                false => None,
            },
        })
    }
    fn norm(&self, name: &str, d: usize) -> Result<Norm> {
        Ok(Norm {
            w: self.get(&format!("{name}.weight"), &[d])?,
            b: self.get(&format!("{name}.bias"), &[d])?,
        })
    }
    fn attention(&self, name: &str, d: usize) -> Result<Attention> {
        Ok(Attention {
            q: self.linear(&format!("{name}.q_proj"), d, d, true)?,
            k: self.linear(&format!("{name}.k_proj"), d, d, false)?,
            v: self.linear(&format!("{name}.v_proj"), d, d, true)?,
            o: self.linear(&format!("{name}.out_proj"), d, d, true)?,
        })
    }
    fn mlp(&self, layer: &str, d: usize, f: usize) -> Result<Mlp> {
        Ok(Mlp {
            norm: self.norm(&format!("{layer}.final_layer_norm"), d)?,
            fc1: self.linear(&format!("{layer}.fc1"), f, d, true)?,
            fc2: self.linear(&format!("{layer}.fc2"), d, f, true)?,
        })
    }
}

fn names(w: &Weights) -> Names<'_> {
    let prefix = match w.names().any(|n| n.starts_with("model.")) {
        true => "model.",
        false => "",
    };
    Names { w, prefix }
}

/// The graph pieces both halves share.
struct Ops<'g> {
    g: &'g Graph,
}

impl Ops<'_> {
    fn w(&self, t: &Tensor) -> Value {
        self.g.weight(t)
    }
    fn linear(&self, x: Value, l: &Linear) -> Value {
        self.g
            .linear(x, self.w(&l.w), l.b.as_ref().map(|b| self.w(b)))
    }
    fn norm(&self, x: Value, n: &Norm) -> Value {
        self.g.layer_norm(x, self.w(&n.w), Some(self.w(&n.b)), EPS)
    }
    /// x + fc2(gelu(fc1(LN(x))))
    fn mlp(&self, x: Value, m: &Mlp) -> Value {
        let h = self
            .g
            .act(self.linear(self.norm(x, &m.norm), &m.fc1), Act::GeluErf);
        self.g.add(x, self.linear(h, &m.fc2))
    }
}

fn heads(d: usize, heads: usize) -> Heads {
    Heads {
        heads,
        kv_heads: heads,
        head_dim: d / heads,
    }
}

/// Names of the cross-attention states of decoder layer `l`: its keys and values over the
/// encoder's output, (slots, audio positions, D).
pub fn cross_names(l: usize) -> (String, String) {
    (format!("cross.{l}.k"), format!("cross.{l}.v"))
}

/// Whisper's audio encoder, ending in every decoder layer's cross-attention keys and values.
pub struct WhisperEncoder {
    /// The configuration it was built from.
    pub config: WhisperConfig,
    conv1: Linear,
    conv2: Linear,
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    norm: Norm,
    /// Per decoder layer: its cross-attention's key and value projections.
    cross: Vec<(Linear, Linear)>,
}

impl WhisperEncoder {
    /// The encoder of `config`, its weights taken from `w` (HF names); an error names a missing
    /// or misshapen tensor.
    pub fn new(config: WhisperConfig, w: &Weights) -> Result<WhisperEncoder> {
        let c = &config;
        let (d, n) = (c.d, names(w));
        let conv = |name: &str, c_in: usize| -> Result<Linear> {
            Ok(Linear {
                w: n.get(&format!("encoder.{name}.weight"), &[d, c_in, 3])?,
                b: Some(n.get(&format!("encoder.{name}.bias"), &[d])?),
            })
        };
        let layers = (0..c.encoder_layers)
            .map(|l| {
                let p = format!("encoder.layers.{l}");
                Ok(EncoderLayer {
                    attn_norm: n.norm(&format!("{p}.self_attn_layer_norm"), d)?,
                    attn: n.attention(&format!("{p}.self_attn"), d)?,
                    mlp: n.mlp(&p, d, c.encoder_ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let cross = (0..c.decoder_layers)
            .map(|l| {
                let p = format!("decoder.layers.{l}.encoder_attn");
                Ok((
                    n.linear(&format!("{p}.k_proj"), d, d, false)?,
                    n.linear(&format!("{p}.v_proj"), d, d, true)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WhisperEncoder {
            conv1: conv("conv1", c.mels)?,
            conv2: conv("conv2", d)?,
            positions: n.get("encoder.embed_positions.weight", &[c.audio_positions, d])?,
            layers,
            norm: n.norm("encoder.layer_norm", d)?,
            cross,
            config,
        })
    }

    /// Frames of mel one window holds: twice the audio positions (the second convolution
    /// halves them).
    pub fn frames(&self) -> usize {
        2 * self.config.audio_positions
    }

    /// The encoder over `mel` (S, frames, M), each sequence's window; writes every decoder
    /// layer's cross keys and values into the states of a cache of `slots` (at each
    /// sequence's slot) and returns the encoder's output (S, A, D).
    pub fn forward(&self, g: &Graph, mel: Value, slots: usize) -> Value {
        let c = &self.config;
        let o = Ops { g };
        let gelu = Act::GeluErf;
        let conv = |x: Value, l: &Linear, stride: usize, add: Option<Value>| {
            let b = l.b.as_ref().map(|b| o.w(b));
            g.conv1d_act(x, o.w(&l.w), b, stride, 1, gelu, add)
        };
        let x = conv(mel, &self.conv1, 1, None);
        let mut x = conv(x, &self.conv2, 2, Some(o.w(&self.positions))); // (S, A, D)
        let h = heads(c.d, c.encoder_heads);
        for l in &self.layers {
            let n = o.norm(x, &l.attn_norm);
            let a = &l.attn;
            let (q, k, v) = (o.linear(n, &a.q), o.linear(n, &a.k), o.linear(n, &a.v));
            x = g.add(x, o.linear(g.attention(q, k, v, h, Mask::Full), &a.o));
            x = o.mlp(x, &l.mlp);
        }
        let e = o.norm(x, &self.norm);
        let shape = [slots, c.audio_positions, c.d];
        for (l, (k, v)) in self.cross.iter().enumerate() {
            let (kn, vn) = cross_names(l);
            g.kv_write(o.linear(e, k), g.state(&kn, &shape));
            g.kv_write(o.linear(e, v), g.state(&vn, &shape));
        }
        e
    }
}

/// Whisper's text decoder: a [`Decoder`] whose cross-attention reads states the encoder
/// fills.
pub struct WhisperDecoder {
    /// The configuration it was built from.
    pub config: WhisperConfig,
    embed: Tensor,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Norm,
    /// The output projection: the embedding (tied) or `proj_out`.
    head: Tensor,
}

impl WhisperDecoder {
    /// The decoder of `config`, its weights taken from `w` (HF names); an error names a missing
    /// or misshapen tensor.
    pub fn new(config: WhisperConfig, w: &Weights) -> Result<WhisperDecoder> {
        let c = &config;
        let (d, n) = (c.d, names(w));
        let layers = (0..c.decoder_layers)
            .map(|l| {
                let p = format!("decoder.layers.{l}");
                Ok(DecoderLayer {
                    attn_norm: n.norm(&format!("{p}.self_attn_layer_norm"), d)?,
                    attn: n.attention(&format!("{p}.self_attn"), d)?,
                    cross_norm: n.norm(&format!("{p}.encoder_attn_layer_norm"), d)?,
                    cross: n.attention(&format!("{p}.encoder_attn"), d)?,
                    mlp: n.mlp(&p, d, c.decoder_ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = n.get("decoder.embed_tokens.weight", &[c.vocab, d])?;
        let head = match w.get_shaped("proj_out.weight", &[c.vocab, d]) {
            Ok(t) => t.clone(),
            Err(_) => embed.clone(),
        };
        Ok(WhisperDecoder {
            positions: n.get("decoder.embed_positions.weight", &[c.text_positions, d])?,
            norm: n.norm("decoder.layer_norm", d)?,
            embed,
            layers,
            head,
            config,
        })
    }

    /// Names of the self-attention cache states of layer `l`.
    pub fn cache_names(l: usize) -> (String, String) {
        (format!("cache.{l}.k"), format!("cache.{l}.v"))
    }
}

impl Decoder for WhisperDecoder {
    fn architecture(&self) -> &str {
        "whisper"
    }
    fn layers(&self) -> usize {
        self.config.decoder_layers
    }
    fn vocab(&self) -> usize {
        self.config.vocab
    }
    fn max_positions(&self) -> usize {
        self.config.text_positions
    }
    fn special(&self) -> Special {
        Special {
            bos: None,
            eos: vec![self.config.eot],
        }
    }
    fn weight_bytes(&self) -> u64 {
        let norms = |n: &Norm| n.w.bytes() + n.b.bytes();
        let linear = |l: &Linear| l.w.bytes() + l.b.as_ref().map_or(0, Tensor::bytes);
        let attn = |a: &Attention| linear(&a.q) + linear(&a.k) + linear(&a.v) + linear(&a.o);
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                norms(&l.attn_norm)
                    + attn(&l.attn)
                    + norms(&l.cross_norm)
                    + attn(&l.cross)
                    + norms(&l.mlp.norm)
                    + linear(&l.mlp.fc1)
                    + linear(&l.mlp.fc2)
            })
            .sum();
        layers + self.embed.bytes() + self.positions.bytes() + norms(&self.norm)
    }
    fn decode_bytes(&self, position: usize) -> u64 {
        let c = &self.config;
        let row = self.embed.bytes() / c.vocab.max(1) as u64;
        // Weights, minus the embedding but one row, plus the head; the caches, self and cross.
        let kv = (2 * c.decoder_layers * c.d * 4 * (position + c.audio_positions)) as u64;
        self.weight_bytes() - self.embed.bytes() + row + self.head.bytes() + kv
    }
    fn span(&self) -> Span {
        Span::whole(self.config.decoder_layers)
    }
    fn part(&self) -> Part {
        Part::Whole
    }
    fn hidden(&self) -> usize {
        self.config.d
    }
    fn forward(&self, g: &Graph, ids: Value, cache: Cache, logits: Logits) -> Value {
        let c = &self.config;
        let o = Ops { g };
        let h = heads(c.d, c.decoder_heads);
        let mut x = g.add(
            g.embedding(o.w(&self.embed), ids),
            g.position_embedding(o.w(&self.positions), ids),
        ); // (S, T, D)
        let kv_shape = [cache.slots, cache.capacity, c.d];
        let cross_shape = [cache.slots, c.audio_positions, c.d];
        for (l, layer) in self.layers.iter().enumerate() {
            g.set_scope(format!("layer.{l}"));
            let (kn, vn) = Self::cache_names(l);
            let n = o.norm(x, &layer.attn_norm);
            let a = &layer.attn;
            let q = o.linear(n, &a.q);
            let k = g.kv_write(o.linear(n, &a.k), g.state(&kn, &kv_shape));
            let v = g.kv_write(o.linear(n, &a.v), g.state(&vn, &kv_shape));
            x = g.add(x, o.linear(g.attention(q, k, v, h, Mask::Causal), &a.o));

            let (ckn, cvn) = cross_names(l);
            let n = o.norm(x, &layer.cross_norm);
            let q = o.linear(n, &layer.cross.q);
            let (ck, cv) = (g.state(&ckn, &cross_shape), g.state(&cvn, &cross_shape));
            let a = g.cross_attention(q, ck, cv, h, c.audio_positions);
            x = g.add(x, o.linear(a, &layer.cross.o));
            x = o.mlp(x, &layer.mlp);
        }
        g.set_scope("head");
        if logits == Logits::Last && g.shape(x).get(1).is_some_and(|&t| t > 1) {
            x = g.last_token(x);
        }
        g.matmul(o.norm(x, &self.norm), o.w(&self.head))
    }
}
