//! A CTranslate2 Whisper model (`model.bin`, `config.json`, `vocabulary.txt`,
//! `tokenizer.json`: faster-whisper's layout) becomes an HF Whisper folder:
//! `model.safetensors` with HF's tensor names, `config.json`, `generation_config.json`,
//! `preprocessor_config.json` and `tokenizer.json`.
//!
//! Weights keep their type (f16 stays f16) and values. CTranslate2 fuses the attention's
//! projections, and HF keeps them apart:
//!
//! | CTranslate2 | HF (`model.encoder.` / `model.decoder.` + `layers.N.`) |
//! |---|---|
//! | `self_attention/linear_0` (3D x D) | `self_attn.{q,k,v}_proj`, rows in thirds |
//! | `self_attention/linear_1` | `self_attn.out_proj` |
//! | `attention/linear_0`, `linear_1` (2D x D), `linear_2` | `encoder_attn.q_proj`, `{k,v}_proj`, `out_proj` |
//! | `*/layer_norm/{gamma,beta}` | `*_layer_norm.{weight,bias}` |
//! | `ffn/linear_0`, `ffn/linear_1` | `fc1`, `fc2` |
//!
//! HF's key projections have no bias, so a fused bias whose key part is not zero is refused
//! rather than dropped. Int8-quantized CTranslate2 models (with `weight_scale` variables) are
//! refused too.

use super::ConvertProgress;
use super::write::{self, Entry, io};
use crate::error::{Error, Result};
use crate::load::ct2::{Ct2, Ct2DType, Ct2Var};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// One HF tensor: rows `rows` of a CTranslate2 variable (all of them where `None`).
struct Piece<'m> {
    hf: String,
    var: &'m Ct2Var,
    rows: Option<std::ops::Range<usize>>,
}

impl Piece<'_> {
    fn shape(&self) -> Vec<usize> {
        let mut s = self.var.shape.clone();
        if let (Some(r), Some(first)) = (&self.rows, s.first_mut()) {
            *first = r.len();
        }
        s
    }
    fn byte_range(&self) -> std::ops::Range<usize> {
        let v = self.var;
        match &self.rows {
            None => v.start..v.end,
            Some(r) => {
                let row = (v.end - v.start) / v.shape.first().copied().unwrap_or(1).max(1);
                v.start + r.start * row..v.start + r.end * row
            }
        }
    }
}

fn dtype_name(path: &str, v: &Ct2Var) -> Result<&'static str> {
    match v.dtype {
        Ct2DType::F32 => Ok("F32"),
        Ct2DType::F16 => Ok("F16"),
        Ct2DType::BF16 => Ok("BF16"),
        other => Err(Error::tensor(
            path,
            &v.name,
            format!("is {other:?}; kiln converts float Whisper models only (f32, f16, bf16)"),
        )),
    }
}

/// The model's dimensions, read from its variables' shapes.
struct Dims {
    d: usize,
    mels: usize,
    ffn: usize,
    vocab: usize,
    audio_positions: usize,
    text_positions: usize,
    encoder_layers: usize,
    decoder_layers: usize,
    encoder_heads: i64,
    decoder_heads: i64,
}

fn dims(m: &Ct2) -> Result<Dims> {
    let shape = |name: &str, rank: usize| -> Result<Vec<usize>> {
        let v = m.var(name)?;
        match v.shape.len() == rank {
            true => Ok(v.shape.clone()),
            false => Err(Error::tensor(
                m.path(),
                name,
                format!("has shape {:?}", v.shape),
            )),
        }
    };
    let conv1 = shape("encoder/conv1/weight", 3)?;
    let embed = shape("decoder/embeddings/weight", 2)?;
    let count = |prefix: &str| {
        (0..)
            .take_while(|l| {
                m.get(&format!("{prefix}/layer_{l}/ffn/linear_0/weight"))
                    .is_some()
            })
            .count()
    };
    Ok(Dims {
        d: conv1[0],
        mels: conv1[1],
        ffn: shape("encoder/layer_0/ffn/linear_0/weight", 2)?[0],
        vocab: embed[0],
        audio_positions: shape("encoder/position_encodings/encodings", 2)?[0],
        text_positions: shape("decoder/position_encodings/encodings", 2)?[0],
        encoder_layers: count("encoder"),
        decoder_layers: count("decoder"),
        encoder_heads: m.int("encoder/num_heads")?,
        decoder_heads: m.int("decoder/num_heads")?,
    })
}

/// Scalars that must hold the values of OpenAI's Whisper for the HF model to compute the
/// same function.
fn check_spec(m: &Ct2) -> Result<()> {
    if m.spec != "WhisperSpec" {
        return Err(Error::load(
            m.path(),
            format!(
                "holds a {} model; kiln converts CTranslate2's WhisperSpec",
                m.spec
            ),
        ));
    }
    if let Some(v) = m.vars.iter().find(|v| v.name.ends_with("weight_scale")) {
        return Err(Error::tensor(
            m.path(),
            &v.name,
            "marks an int8-quantized model; convert it with CTranslate2's --quantization \
             float16 (or float32) instead",
        ));
    }
    for (name, want) in [
        ("decoder/pre_norm", 1),
        ("decoder/activation", 3), // GELU
        ("decoder/scale_embeddings", 0),
        ("decoder/alibi", 0),
        ("decoder/start_from_zero_embedding", 0),
    ] {
        if let Ok(got) = m.int(name)
            && got != want
        {
            return Err(Error::tensor(
                m.path(),
                name,
                format!("is {got}; OpenAI's Whisper has {want}"),
            ));
        }
    }
    Ok(())
}

/// Every HF tensor and where its bytes are.
fn pieces<'m>(m: &'m Ct2, dims: &Dims) -> Result<Vec<Piece<'m>>> {
    let mut out = Vec::new();
    let whole = |out: &mut Vec<Piece<'m>>, hf: String, ct2: &str| -> Result<()> {
        out.push(Piece {
            hf,
            var: m.var(ct2)?,
            rows: None,
        });
        Ok(())
    };
    let d = dims.d;
    // A fused projection: `names` in row blocks of D; a key bias (HF has none) must be zero.
    let fused = |out: &mut Vec<Piece<'m>>, hf: &str, ct2: &str, names: &[&str]| -> Result<()> {
        let w = m.var(&format!("{ct2}/weight"))?;
        let b = m.var(&format!("{ct2}/bias"))?;
        let n = names.len();
        if w.shape != [n * d, d] || b.shape != [n * d] {
            return Err(Error::tensor(
                m.path(),
                &w.name,
                format!(
                    "has shape {:?} and its bias {:?}; want {n} fused {d} x {d}",
                    w.shape, b.shape
                ),
            ));
        }
        for (i, name) in names.iter().enumerate() {
            let rows = Some(i * d..(i + 1) * d);
            out.push(Piece {
                hf: format!("{hf}.{name}_proj.weight"),
                var: w,
                rows: rows.clone(),
            });
            let bias = Piece {
                hf: format!("{hf}.{name}_proj.bias"),
                var: b,
                rows,
            };
            if *name == "k" {
                if m.data(b)[bias.byte_range().start - b.start..bias.byte_range().end - b.start]
                    .iter()
                    .any(|&x| x != 0 && x != 0x80)
                // +0 and -0 in every float format's bytes
                {
                    return Err(Error::tensor(
                        m.path(),
                        &b.name,
                        "has a key bias that is not zero, which HF's Whisper cannot hold",
                    ));
                }
                continue;
            }
            out.push(bias);
        }
        Ok(())
    };
    let linear = |out: &mut Vec<Piece<'m>>, hf: &str, ct2: &str| -> Result<()> {
        whole(out, format!("{hf}.weight"), &format!("{ct2}/weight"))?;
        whole(out, format!("{hf}.bias"), &format!("{ct2}/bias"))
    };
    let norm = |out: &mut Vec<Piece<'m>>, hf: &str, ct2: &str| -> Result<()> {
        whole(out, format!("{hf}.weight"), &format!("{ct2}/gamma"))?;
        whole(out, format!("{hf}.bias"), &format!("{ct2}/beta"))
    };
    let e = "model.encoder";
    linear(&mut out, &format!("{e}.conv1"), "encoder/conv1")?;
    linear(&mut out, &format!("{e}.conv2"), "encoder/conv2")?;
    whole(
        &mut out,
        format!("{e}.embed_positions.weight"),
        "encoder/position_encodings/encodings",
    )?;
    for l in 0..dims.encoder_layers {
        let (hf, ct2) = (format!("{e}.layers.{l}"), format!("encoder/layer_{l}"));
        fused(
            &mut out,
            &format!("{hf}.self_attn"),
            &format!("{ct2}/self_attention/linear_0"),
            &["q", "k", "v"],
        )?;
        linear(
            &mut out,
            &format!("{hf}.self_attn.out_proj"),
            &format!("{ct2}/self_attention/linear_1"),
        )?;
        norm(
            &mut out,
            &format!("{hf}.self_attn_layer_norm"),
            &format!("{ct2}/self_attention/layer_norm"),
        )?;
        linear(
            &mut out,
            &format!("{hf}.fc1"),
            &format!("{ct2}/ffn/linear_0"),
        )?;
        linear(
            &mut out,
            &format!("{hf}.fc2"),
            &format!("{ct2}/ffn/linear_1"),
        )?;
        norm(
            &mut out,
            &format!("{hf}.final_layer_norm"),
            &format!("{ct2}/ffn/layer_norm"),
        )?;
    }
    norm(&mut out, &format!("{e}.layer_norm"), "encoder/layer_norm")?;
    let dd = "model.decoder";
    whole(
        &mut out,
        format!("{dd}.embed_tokens.weight"),
        "decoder/embeddings/weight",
    )?;
    whole(
        &mut out,
        format!("{dd}.embed_positions.weight"),
        "decoder/position_encodings/encodings",
    )?;
    for l in 0..dims.decoder_layers {
        let (hf, ct2) = (format!("{dd}.layers.{l}"), format!("decoder/layer_{l}"));
        fused(
            &mut out,
            &format!("{hf}.self_attn"),
            &format!("{ct2}/self_attention/linear_0"),
            &["q", "k", "v"],
        )?;
        linear(
            &mut out,
            &format!("{hf}.self_attn.out_proj"),
            &format!("{ct2}/self_attention/linear_1"),
        )?;
        norm(
            &mut out,
            &format!("{hf}.self_attn_layer_norm"),
            &format!("{ct2}/self_attention/layer_norm"),
        )?;
        linear(
            &mut out,
            &format!("{hf}.encoder_attn.q_proj"),
            &format!("{ct2}/attention/linear_0"),
        )?;
        fused(
            &mut out,
            &format!("{hf}.encoder_attn"),
            &format!("{ct2}/attention/linear_1"),
            &["k", "v"],
        )?;
        linear(
            &mut out,
            &format!("{hf}.encoder_attn.out_proj"),
            &format!("{ct2}/attention/linear_2"),
        )?;
        norm(
            &mut out,
            &format!("{hf}.encoder_attn_layer_norm"),
            &format!("{ct2}/attention/layer_norm"),
        )?;
        linear(
            &mut out,
            &format!("{hf}.fc1"),
            &format!("{ct2}/ffn/linear_0"),
        )?;
        linear(
            &mut out,
            &format!("{hf}.fc2"),
            &format!("{ct2}/ffn/linear_1"),
        )?;
        norm(
            &mut out,
            &format!("{hf}.final_layer_norm"),
            &format!("{ct2}/ffn/layer_norm"),
        )?;
    }
    norm(&mut out, &format!("{dd}.layer_norm"), "decoder/layer_norm")?;
    // The output projection: tied to the embedding (an alias), or a matrix of its own.
    if m.get("decoder/projection/weight").is_some()
        && !m.aliases.contains_key("decoder/projection/weight")
    {
        whole(
            &mut out,
            "proj_out.weight".into(),
            "decoder/projection/weight",
        )?;
    }
    Ok(out)
}

/// `vocabulary.txt`: one token a line, its id the line number.
fn vocabulary(path: &Path) -> Result<BTreeMap<String, u32>> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::load(path.display(), format!("not JSON: {e}")))
}

/// Convert the CTranslate2 Whisper model whose `model.bin` is `bin`.
pub(super) fn convert(bin: &Path, out: &Path, progress: &mut ConvertProgress) -> Result<()> {
    let dir = bin.parent().unwrap_or(Path::new("."));
    let map = super::map(bin)?;
    let label = bin.display().to_string();
    let m = Ct2::parse(&label, &map)?;
    check_spec(&m)?;
    let dims = dims(&m)?;
    let plan = pieces(&m, &dims)?;
    let ct2_config = read_json(&dir.join("config.json"))?;
    let vocab = vocabulary(&dir.join("vocabulary.txt"))?;
    let id = |token: &str| -> Result<u32> {
        vocab.get(token).copied().ok_or_else(|| {
            Error::load(
                dir.join("vocabulary.txt").display(),
                format!("has no {token}"),
            )
        })
    };
    let ids = |key: &str| -> Value { ct2_config.get(key).cloned().unwrap_or(json!([])) };
    let eot = id("<|endoftext|>")?;
    let sot = id("<|startoftranscript|>")?;
    let config = json!({
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "d_model": dims.d,
        "encoder_layers": dims.encoder_layers,
        "decoder_layers": dims.decoder_layers,
        "encoder_attention_heads": dims.encoder_heads,
        "decoder_attention_heads": dims.decoder_heads,
        "encoder_ffn_dim": dims.ffn,
        "decoder_ffn_dim": dims.ffn,
        "num_mel_bins": dims.mels,
        "max_source_positions": dims.audio_positions,
        "max_target_positions": dims.text_positions,
        "vocab_size": dims.vocab,
        "activation_function": "gelu",
        "scale_embedding": false,
        "tie_word_embeddings": !plan.iter().any(|p| p.hf == "proj_out.weight"),
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "suppress_tokens": ids("suppress_ids"),
        "begin_suppress_tokens": ids("suppress_ids_begin"),
        "torch_dtype": match plan.first().map(|p| p.var.dtype) {
            Some(Ct2DType::F32) => "float32",
            Some(Ct2DType::BF16) => "bfloat16",
            _ => "float16",
        },
    });
    let names: BTreeMap<u32, &String> = vocab.iter().map(|(t, &i)| (i, t)).collect();
    let mut lang_to_id = serde_json::Map::new();
    for l in ct2_config["lang_ids"].as_array().into_iter().flatten() {
        let name = l.as_u64().and_then(|i| names.get(&(i as u32)));
        if let (Some(name), Some(i)) = (name, l.as_u64()) {
            lang_to_id.insert((*name).clone(), json!(i));
        }
    }
    let generation = json!({
        "alignment_heads": ct2_config.get("alignment_heads").cloned().unwrap_or(json!([])),
        "lang_to_id": lang_to_id,
        "task_to_id": {"transcribe": id("<|transcribe|>")?, "translate": id("<|translate|>")?},
        "is_multilingual": lang_to_id.len() > 1,
        "no_timestamps_token_id": id("<|notimestamps|>")?,
        "prev_sot_token_id": id("<|startofprev|>")?,
        "max_initial_timestamp_index": 50,
        "decoder_start_token_id": sot,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "max_length": dims.text_positions,
        "suppress_tokens": ids("suppress_ids"),
        "begin_suppress_tokens": ids("suppress_ids_begin"),
    });
    let preprocessor = json!({
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": dims.mels,
        "sampling_rate": 16000,
        "hop_length": 160,
        "n_fft": 400,
        "chunk_length": 30,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_value": 0.0,
        "return_attention_mask": false,
    });

    let entries = plan
        .iter()
        .map(|p| {
            Ok(Entry {
                name: p.hf.clone(),
                dtype: dtype_name(&label, p.var)?,
                shape: p.shape(),
                bytes: p.byte_range().len() as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let partial = out.join("model.safetensors.partial");
    write::safetensors(out, &label, &entries, progress, &mut |i, w| {
        w.write_all(&map[plan[i].byte_range()])
            .map_err(|e| io(&partial, e))
    })?;
    write::json_file(out, "config.json", &config)?;
    write::json_file(out, "generation_config.json", &generation)?;
    write::json_file(out, "preprocessor_config.json", &preprocessor)?;
    let tok = dir.join("tokenizer.json");
    std::fs::copy(&tok, out.join("tokenizer.json")).map_err(|e| io(&tok, e))?;
    Ok(())
}
