//! Synthetic models: the shapes of well-known models with random weights, made on the spot,
//! for benchmarks on machines that have no model file (`--model synthetic:NAME`).
//!
//! Each weight matrix is stored in the asked-for dtype. Its rows are drawn from a small pool
//! of random rows (quantized once per matrix), so that a billion weights are made in well
//! under a second. The GPU reads every row from its own address, so the pool changes
//! nothing about the bytes a kernel moves. Norm weights are near 1, biases near 0, and the
//! matrices' values are scaled by 1/sqrt(columns), so activations stay of order 1 and the
//! logits are finite.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::load::{LoadOptions, Loading, Weights};
use crate::sample::Rng;

/// A model shape.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    /// The preset's name, as `synthetic:NAME` and the benchmarks give it ("smollm2-135m").
    pub name: &'static str,
    /// The model whose shape it has, and other names it answers to.
    pub model: &'static str,
    /// Other names the preset answers to.
    pub aliases: &'static [&'static str],
    /// The `model_type` its config says ("llama", "qwen2").
    pub model_type: &'static str,
    /// Width of the hidden state.
    pub hidden: usize,
    /// Width of the MLP's inner layer.
    pub ffn: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Token vocabulary size.
    pub vocab: usize,
    /// The head reuses the embedding matrix.
    pub tied: bool,
    /// q, k and v projections carry biases.
    pub qkv_bias: bool,
}

/// The shapes of the models the benchmarks compare at, as their `config.json`s give them.
pub const PRESETS: [Preset; 5] = [
    Preset {
        name: "smollm2-135m",
        model: "SmolLM2-135M",
        aliases: &[],
        model_type: "llama",
        hidden: 576,
        ffn: 1536,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        vocab: 49152,
        tied: true,
        qkv_bias: false,
    },
    Preset {
        name: "qwen-0.5b",
        model: "Qwen2.5-0.5B",
        aliases: &["qwen2.5-0.5b"],
        model_type: "qwen2",
        hidden: 896,
        ffn: 4864,
        layers: 24,
        heads: 14,
        kv_heads: 2,
        head_dim: 64,
        vocab: 151936,
        tied: true,
        qkv_bias: true,
    },
    Preset {
        name: "llama-1b",
        model: "Llama-3.2-1B",
        aliases: &["llama-3.2-1b"],
        model_type: "llama",
        hidden: 2048,
        ffn: 8192,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        head_dim: 64,
        vocab: 128256,
        tied: true,
        qkv_bias: false,
    },
    Preset {
        name: "llama-3b",
        model: "Llama-3.2-3B",
        aliases: &["llama-3.2-3b"],
        model_type: "llama",
        hidden: 3072,
        ffn: 8192,
        layers: 28,
        heads: 24,
        kv_heads: 8,
        head_dim: 128,
        vocab: 128256,
        tied: true,
        qkv_bias: false,
    },
    Preset {
        name: "llama-8b",
        model: "Llama-3-8B",
        aliases: &["llama-3-8b", "llama-3.1-8b"],
        model_type: "llama",
        hidden: 4096,
        ffn: 14336,
        layers: 32,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        vocab: 128256,
        tied: false,
        qkv_bias: false,
    },
];

/// Rows in each matrix's pool of random rows.
const POOL: usize = 61;

impl Preset {
    /// The preset called `name` (case-insensitive); an error lists them all.
    pub fn find(name: &str) -> Result<&'static Preset> {
        PRESETS
            .iter()
            .find(|p| {
                p.name.eq_ignore_ascii_case(name)
                    || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                Error::Invalid(format!(
                    "no synthetic model '{name}'; there are {}",
                    names.join(", ")
                ))
            })
    }

    /// Its `config.json`, with no special tokens (so generation never stops early).
    pub fn config_json(&self) -> String {
        serde_json::json!({
            "model_type": self.model_type,
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "max_position_embeddings": 8192,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "attention_bias": self.qkv_bias,
        })
        .to_string()
    }

    /// A word-level tokenizer whose token i is `t{i}`: enough to print what is generated.
    pub fn tokenizer_json(&self) -> String {
        let vocab: serde_json::Map<String, serde_json::Value> = (0..self.vocab)
            .map(|i| (format!("t{i}"), serde_json::Value::from(i)))
            .collect();
        serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"},
        })
        .to_string()
    }

    /// Bytes of its weights with matrices stored in `dtype` (see [`stored_dtype`]).
    pub fn bytes(&self, dtype: DType) -> u64 {
        self.tensors()
            .iter()
            .map(|(_, s)| stored_as(dtype, s).file_bytes(s.iter().product()) as u64)
            .sum()
    }

    /// Refuse to make `need` bytes of its weights (in `dtype`) on an adapter that cannot
    /// hold them, before any is made, with the numbers. Only a CPU adapter says how much
    /// memory it has (see [`Gpu::memory_available`]); on a GPU, running out is caught as
    /// the weights upload, as for any model.
    pub fn check_fits(&self, gpu: &Gpu, dtype: DType, need: u64) -> Result<()> {
        let Some(have) = gpu.memory_available() else {
            return Ok(());
        };
        // Room for the KV cache, activations and the programs beside the weights.
        let spare = 512 << 20;
        if need + spare > have {
            let gb = |b: u64| b as f64 / 1e9;
            return Err(Error::Limit(format!(
                "synthetic:{} ({}) in {dtype} needs {:.2} GB of weights, and adapter '{}' has \
                 {:.2} GB of memory available ({:.2} GB kept for the cache and activations); \
                 pick a smaller shape or a smaller --dtype (q4_0 takes about a quarter of f16)",
                self.name,
                self.model,
                gb(need),
                gpu.info().name,
                gb(have),
                gb(spare),
            )));
        }
        Ok(())
    }

    /// Every tensor, by its HF name, with its shape.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, q, kv) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
        );
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab, d])];
        for l in 0..self.layers {
            let p = |n: &str| format!("model.layers.{l}.{n}");
            out.push((p("input_layernorm.weight"), vec![d]));
            out.push((p("self_attn.q_proj.weight"), vec![q, d]));
            out.push((p("self_attn.k_proj.weight"), vec![kv, d]));
            out.push((p("self_attn.v_proj.weight"), vec![kv, d]));
            if self.qkv_bias {
                out.push((p("self_attn.q_proj.bias"), vec![q]));
                out.push((p("self_attn.k_proj.bias"), vec![kv]));
                out.push((p("self_attn.v_proj.bias"), vec![kv]));
            }
            out.push((p("self_attn.o_proj.weight"), vec![d, q]));
            out.push((p("post_attention_layernorm.weight"), vec![d]));
            out.push((p("mlp.gate_proj.weight"), vec![self.ffn, d]));
            out.push((p("mlp.up_proj.weight"), vec![self.ffn, d]));
            out.push((p("mlp.down_proj.weight"), vec![d, self.ffn]));
        }
        out.push(("model.norm.weight".to_string(), vec![d]));
        if !self.tied {
            out.push(("lm_head.weight".to_string(), vec![self.vocab, d]));
        }
        out
    }
}

/// The dtype a tensor of `shape` is stored in when matrices are asked for in `dtype`: norm
/// weights and biases stay F32.
fn stored_as(dtype: DType, shape: &[usize]) -> DType {
    match shape {
        [_, k] => stored_dtype(dtype, *k),
        _ => DType::F32,
    }
}

/// The dtype a matrix with rows of `row_len` is stored in when `dtype` is asked for: a
/// K-quant whose 256-weight blocks do not divide the rows falls back as llama.cpp's
/// quantizer does (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0).
pub fn stored_dtype(dtype: DType, row_len: usize) -> DType {
    if row_len.is_multiple_of(dtype.block_elems()) {
        return dtype;
    }
    match dtype {
        DType::Q4K => DType::Q5_0,
        DType::Q5K => DType::Q5_1,
        _ => DType::Q8_0,
    }
}

/// The bytes of a tensor of `shape` in `dtype` (ggml blocks for block formats), made from
/// random values: matrices from a pool of rows, vectors around `center`.
pub(crate) fn random_bytes(
    dtype: DType,
    shape: &[usize],
    seed: u64,
    center: f32,
) -> Result<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut uniform = |scale: f32| (rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale;
    let encode = |values: &[f32], row_len: usize| match dtype.block() {
        Some(_) => crate::dtype::quantize::quantize(dtype, values, row_len),
        None => Ok(dtype.from_f32(values)),
    };
    let &[rows, row_len] = shape else {
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| center + uniform(0.05))
            .collect();
        return encode(&values, values.len());
    };
    // Uniform on ±sqrt(3/k): variance 1/k, so each dot product has variance about 1.
    let scale = (3.0 / row_len as f32).sqrt();
    if rows == 0 || row_len == 0 {
        return Ok(Vec::new());
    }
    let pool_rows = rows.min(POOL);
    let values: Vec<f32> = (0..pool_rows * row_len).map(|_| uniform(scale)).collect();
    let pool = encode(&values, row_len)?;
    let row_bytes = pool.len() / pool_rows;
    let mut out = Vec::with_capacity(rows * row_bytes);
    for r in 0..rows {
        let p = (r * 17 + (seed as usize)) % pool_rows;
        out.extend_from_slice(&pool[p * row_bytes..(p + 1) * row_bytes]);
    }
    Ok(out)
}

/// Upload `preset`'s tensors with random values: matrices in `options.dtype` (F16 when
/// none is given), norm weights and biases in F32, as GGUF files store them.
pub async fn upload(gpu: &Gpu, preset: &Preset, mut options: LoadOptions<'_>) -> Result<Weights> {
    let dtype = options.dtype.take().unwrap_or(DType::F16);
    let tensors = preset.tensors();
    let stored = |shape: &[usize]| stored_as(dtype, shape);
    let bytes_total = preset.bytes(dtype);
    let origin = format!("synthetic:{}", preset.name);
    // What this adapter holds: all of it, or at most its budget when split by layers (a
    // tensor-parallel share is cut from every tensor, and checked as it loads).
    if options.cut.is_none() {
        let need = options.budget.map_or(bytes_total, |b| b.min(bytes_total));
        preset.check_fits(gpu, dtype, need)?;
    }
    let mut load = Loading::new(gpu, &origin, options, bytes_total, tensors.len());
    let mut fallback = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let d = stored(shape);
        if d != DType::F32 && d != dtype && !fallback.contains(&d) {
            fallback.push(d);
        }
        if load.skips(name, shape) {
            load.pass(name, d.file_bytes(shape.iter().product()) as u64);
            continue;
        }
        let center = if name.ends_with("norm.weight") {
            1.0
        } else {
            0.0
        };
        let bytes = random_bytes(d, shape, i as u64 + 1, center)?;
        load.add(name, shape, d, &bytes).await?;
    }
    if !fallback.is_empty() {
        log::info!(
            "{origin}: rows not divisible into {dtype} blocks are stored as {:?}",
            fallback
        );
    }
    Ok(load.finish().await)
}
