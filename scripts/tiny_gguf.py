"""Build a tiny random Llama-family model twice: as a GGUF file written by the `gguf` package
the way llama.cpp's converter writes one, and as an HF folder holding the same weights.

    python3 scripts/tiny_gguf.py OUT_DIR ARCH TYPE [spm]

ARCH is llama or qwen2. TYPE is the ggml type of every 2-D weight (F32, F16, Q8_0, Q4_0,
Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K, or Q4_K_M: llama.cpp's mix of Q4_K and Q6_K); norms
and biases stay F32, as llama.cpp keeps them.

Writes OUT_DIR/model.gguf and OUT_DIR/hf/{config.json, model.safetensors, tokenizer.json}.
The HF weights are the GGUF's values as the gguf package dequantizes them, in HF row order:
for llama, llama.cpp permutes the rows of q and k (its RoPE pairs adjacent elements), so the
GGUF holds them permuted; qwen2 (NEOX RoPE) is stored in HF order. Types the gguf package
cannot quantize (the K-quants) get random blocks with small scales.

With `spm`, the vocabulary is a SentencePiece BPE model trained here (on
/usr/share/common-licenses/GPL-3, with byte fallback and Llama's normalization), stored as
llama.cpp stores one (`tokenizer.ggml.model = llama`: pieces, scores, token types), and
OUT_DIR/spm_cases.json holds texts with the ids and decoded text SentencePiece gives them.

Needs numpy, gguf and safetensors (pip install numpy gguf safetensors), and sentencepiece
for `spm`.
"""

import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, VOCAB, CONTEXT = 256, 512, 2, 4, 2, 97, 128
EPS, THETA = 1e-5, 10000.0
# Offsets of each K-quant block's f16 scales, and their magnitude (Q2_K: for a test that
# kiln refuses it by name).
K_SCALES = {"Q4_K": ([0, 2], 1e-3), "Q5_K": ([0, 2], 5e-4), "Q6_K": ([208], 1e-4), "Q2_K": ([80, 82], 1e-3)}


def permute(w, heads):
    """llama.cpp's LlamaModel.permute: HF rotate-half rows to interleaved pairs."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def encode(rng, values, qtype):
    """(stored array for the GGUF, the values it holds) for a 2-D weight."""
    if qtype == "F32":
        return values, values
    if qtype == "F16":
        h = values.astype(np.float16)
        return h, h.astype(np.float32)
    t = T[qtype]
    if qtype in K_SCALES:
        block, size = gguf.GGML_QUANT_SIZES[t]
        rows, cols = values.shape
        raw = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
        offsets, scale = K_SCALES[qtype]
        for off in offsets:
            d = (rng.uniform(-1, 1, size=raw.shape[0]) * scale).astype(np.float16)
            raw[:, off:off + 2] = d.view(np.uint8).reshape(-1, 2)
        stored = raw.reshape(rows, -1)
    else:
        stored = quantize(values, t)
    return stored, dequantize(stored, t).astype(np.float32).reshape(values.shape)


SPM_TEXTS = [
    "Hello world",
    "  two leading spaces and  a double space",
    "This program is free software: you can redistribute it.",
    "caf\u00e9 na\u00efve \u2603 \U0001F600 \u4e2d\u6587",
    "line one\nline two\ttab",
    "GNU General Public License, version 3",
]


def sentencepiece_vocab(out):
    """Train a small SentencePiece BPE model; its (tokens, scores, GGUF token types)."""
    import sentencepiece as spm
    prefix = os.path.join(out, "spm")
    spm.SentencePieceTrainer.train(
        input="/usr/share/common-licenses/GPL-3", model_prefix=prefix, vocab_size=400,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, character_coverage=1.0,
        minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
                     else 5 if sp.is_unused(i) else 1)
    cases = [{"text": t, "ids": sp.encode(t), "decoded": sp.decode(sp.encode(t))} for t in SPM_TEXTS]
    with open(os.path.join(out, "spm_cases.json"), "w") as f:
        json.dump({"bos": sp.bos_id(), "cases": cases}, f)
    return tokens, scores, types


def main():
    out, arch, qtype = sys.argv[1], sys.argv[2], sys.argv[3]
    spm_vocab = len(sys.argv) > 4 and sys.argv[4] == "spm"
    assert arch in ("llama", "qwen2"), arch
    rng = np.random.default_rng(1234)
    os.makedirs(os.path.join(out, "hf"), exist_ok=True)
    global VOCAB
    if spm_vocab:
        tokens, scores, types = sentencepiece_vocab(out)
        VOCAB = len(tokens)
    else:
        tokens = [chr(33 + i) for i in range(VOCAB - 1)] + ['!"']
    hd = HIDDEN // HEADS
    tied = arch == "llama"

    w = gguf.GGUFWriter(os.path.join(out, "model.gguf"), arch)
    w.add_block_count(LAYERS)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(THETA)
    w.add_rope_dimension_count(hd)
    if spm_vocab:
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt2")
        w.add_token_list(tokens)
        w.add_token_types([1] * VOCAB)
        w.add_token_merges(['! "'])
        w.add_bos_token_id(0)
        w.add_eos_token_id(1)

    hf = {}

    def matrix(gguf_name, hf_name, rows, cols, heads=None):
        values = (rng.uniform(-1, 1, size=(rows, cols)) / np.sqrt(cols)).astype(np.float32)
        kind = qtype
        if qtype == "Q4_K_M":
            # llama.cpp's Q4_K_M mix: Q6_K for the embedding, attn_v and ffn_down, Q4_K else.
            six = ("token_embd", "attn_v", "ffn_down")
            kind = "Q6_K" if any(t in gguf_name for t in six) else "Q4_K"
        stored, held = encode(rng, values, kind)
        if heads is not None and arch == "llama":
            stored = permute(stored, heads)
        raw = None if kind in ("F32", "F16") else T[kind]
        w.add_tensor(gguf_name, stored, raw_dtype=raw)
        hf[hf_name] = held

    def vector(gguf_name, hf_name, n, around):
        values = (around + rng.uniform(-0.2, 0.2, size=n)).astype(np.float32)
        w.add_tensor(gguf_name, values)
        hf[hf_name] = values

    matrix("token_embd.weight", "model.embed_tokens.weight", VOCAB, HIDDEN)
    for i in range(LAYERS):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        vector(b + "attn_norm.weight", p + "input_layernorm.weight", HIDDEN, 1.0)
        matrix(b + "attn_q.weight", p + "self_attn.q_proj.weight", HEADS * hd, HIDDEN, HEADS)
        matrix(b + "attn_k.weight", p + "self_attn.k_proj.weight", KV_HEADS * hd, HIDDEN, KV_HEADS)
        matrix(b + "attn_v.weight", p + "self_attn.v_proj.weight", KV_HEADS * hd, HIDDEN)
        if arch == "qwen2":
            vector(b + "attn_q.bias", p + "self_attn.q_proj.bias", HEADS * hd, 0.0)
            vector(b + "attn_k.bias", p + "self_attn.k_proj.bias", KV_HEADS * hd, 0.0)
            vector(b + "attn_v.bias", p + "self_attn.v_proj.bias", KV_HEADS * hd, 0.0)
        matrix(b + "attn_output.weight", p + "self_attn.o_proj.weight", HIDDEN, HEADS * hd)
        vector(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", HIDDEN, 1.0)
        matrix(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", FFN, HIDDEN)
        matrix(b + "ffn_up.weight", p + "mlp.up_proj.weight", FFN, HIDDEN)
        matrix(b + "ffn_down.weight", p + "mlp.down_proj.weight", HIDDEN, FFN)
    vector("output_norm.weight", "model.norm.weight", HIDDEN, 1.0)
    if not tied:
        matrix("output.weight", "lm_head.weight", VOCAB, HIDDEN)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    save_file(hf, os.path.join(out, "hf", "model.safetensors"))
    config = {
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
        "model_type": arch, "hidden_size": HIDDEN, "intermediate_size": FFN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "rms_norm_eps": EPS, "rope_theta": THETA,
        "max_position_embeddings": CONTEXT, "vocab_size": VOCAB, "tie_word_embeddings": tied,
        "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1,
    }
    with open(os.path.join(out, "hf", "config.json"), "w") as f:
        json.dump(config, f)
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(tokens)}, "unk_token": "!"},
    }
    with open(os.path.join(out, "hf", "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f)


if __name__ == "__main__":
    main()
