"""Write the committed seed corpus of the fuzz targets (fuzz/corpus/TARGET/*): small valid
inputs made here by the `gguf` and `safetensors` packages (not by kiln), a few KiB each, so
that each run starts from files that get deep into the parsers.

    python3 fuzz/seeds.py [MODELS_DIR]

MODELS_DIR (default ~/.cache/kiln/models, where `kiln` keeps the default models) supplies
real config.json files and SmolLM2's chat template; without it those seeds are left out.
Needs numpy, gguf and safetensors (pip install numpy gguf safetensors).
"""

import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize
from safetensors.numpy import save

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(d, name), mode) as f:
        f.write(data)


def safetensors_seeds():
    r = lambda *s: rng.standard_normal(s)
    out("safetensors", "f32_f16_i64", save({
        "a": r(3, 5).astype(np.float32), "b": r(7).astype(np.float16),
        "c": r(2, 2, 2).astype(np.float32).view(np.uint32)[..., None].astype(np.int64)[..., 0]}))
    out("safetensors", "metadata", save({"w": r(4, 4).astype(np.float32)},
                                        metadata={"format": "pt", "note": "seed"}))
    out("safetensors", "scalar_and_empty", save({"s": np.array(1.5, np.float32),
                                                 "e": np.zeros((0, 3), np.float16)}))


def tokenizer_kv(w, kind):
    """A tiny vocabulary of `kind` (gpt2: byte-level BPE with merges; llama: SentencePiece
    with scores, types and byte fallback)."""
    if kind == "gpt2":
        tokens = [chr(c) for c in range(33, 127)] + ["He", "ll", "Hell", "Hello", "<|im_start|>", "<|im_end|>"]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_types([1] * (len(tokens) - 2) + [3, 3])
        w.add_token_merges(["H e", "l l", "He ll", "Hell o"])
        w.add_bos_token_id(len(tokens) - 2)
        w.add_eos_token_id(len(tokens) - 1)
    else:
        tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [
            "\u2581", "\u2581H", "el", "lo", "\u2581Hel", "\u2581Hello", "\u2581w", "or", "ld"]
        scores = [0.0] * 259 + [-float(i) for i in range(len(tokens) - 259)]
        types = [2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259)
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
    return len(tokens)


def gguf_file(path, kind, qtype, tensors=True):
    w = gguf.GGUFWriter(path, "llama")
    hidden, ffn, heads = 32, 32, 2
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    vocab = tokenizer_kv(w, kind)
    if tensors:
        def matrix(name, rows, cols):
            v = (rng.standard_normal((rows, cols)) / 8).astype(np.float32)
            if qtype == "F32":
                w.add_tensor(name, v)
            elif qtype == "F16":
                w.add_tensor(name, v.astype(np.float16))
            else:
                w.add_tensor(name, quantize(v, T[qtype]), raw_dtype=T[qtype])
        hd = hidden // heads
        matrix("token_embd.weight", vocab, hidden)
        w.add_tensor("blk.0.attn_norm.weight", np.ones(hidden, np.float32))
        matrix("blk.0.attn_q.weight", hidden, hidden)
        matrix("blk.0.attn_k.weight", hd, hidden)
        matrix("blk.0.attn_v.weight", hd, hidden)
        matrix("blk.0.attn_output.weight", hidden, hidden)
        w.add_tensor("blk.0.ffn_norm.weight", np.ones(hidden, np.float32))
        matrix("blk.0.ffn_gate.weight", ffn, hidden)
        matrix("blk.0.ffn_up.weight", ffn, hidden)
        matrix("blk.0.ffn_down.weight", hidden, ffn)
        w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_seeds():
    tmp = os.path.join(HERE, "target", "seeds")
    os.makedirs(tmp, exist_ok=True)
    # The model seeds keep the vocabulary small so that a file stays a few KiB.
    for kind, qtype in [("gpt2", "Q8_0"), ("gpt2", "Q4_0"), ("llama", "Q4_1")]:
        p = os.path.join(tmp, "m.gguf")
        gguf_file(p, kind, qtype)
        out("gguf", f"llama_{kind}_{qtype.lower()}", open(p, "rb").read())
    for kind in ["gpt2", "llama"]:
        p = os.path.join(tmp, "t.gguf")
        gguf_file(p, kind, None, tensors=False)
        out("gguf_tokenizer", f"vocab_{kind}", open(p, "rb").read())


def config_and_template_seeds(models):
    for name in ["SmolLM2-135M-Instruct", "all-MiniLM-L6-v2", "whisper-base"]:
        p = os.path.join(models, name, "config.json")
        if os.path.exists(p):
            out("config", name, open(p).read())
    out("config", "qwen2_head_dim", json.dumps({
        "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "vocab_size": 300,
        "max_position_embeddings": 4096, "tie_word_embeddings": True,
        "sliding_window": 1024, "use_sliding_window": False}))
    conversation = "\0system\0You are helpful.\0user\0Hi!\0assistant\0Hello.\0user\0Bye"
    p = os.path.join(models, "SmolLM2-135M-Instruct", "tokenizer_config.json")
    if os.path.exists(p):
        out("chat_template", "smollm2", json.load(open(p))["chat_template"] + conversation)
    out("chat_template", "chatml",
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}" + conversation)
    out("chat_template", "llama2",
        "{{ bos_token }}{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
        "{% if m.role == 'user' %}[INST] {{ m.content.strip() }} [/INST]{% else %} {{ m.content }} "
        "{{ eos_token }}{% endif %}{% endfor %}" + "\0user\0Hi\0assistant\0Hello\0user\0Again")
    out("chat_template", "macros_and_filters",
        "{% macro turn(r, c) %}<{{ r|upper }}>{{ c|replace('\\n', ' ')|title }}{% endmacro %}"
        "{% set ns = namespace(n=0) %}{% for m in messages if m.content %}{% set ns.n = ns.n + 1 %}"
        "{{ turn(m.role, m.content) }}{% endfor %}{{ ns.n }}{{ messages|length }}"
        "{{ messages[-1].content.split(' ')|join('|') }}" + conversation)


def request_seeds():
    # The first byte: bit 0 the endpoint (0 completions, 1 chat), the rest the context
    # (1 + 8 * (byte >> 1) positions).
    def body(first, obj):
        return bytes([first]) + json.dumps(obj).encode()
    out("request", "completion", body(64 << 1, {
        "model": "kiln-model", "prompt": "Once upon a time", "max_tokens": 16,
        "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
        "repetition_penalty": 1.1, "seed": 7, "stop": ["\n\n", "The end"], "stream": True,
        "stream_options": {"include_usage": True}, "n": 1, "unknown": [1, {"a": None}]}))
    out("request", "chat", body((64 << 1) | 1, {
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                  {"type": "text", "text": " there"}]},
                     {"role": "assistant", "content": None},
                     {"role": "user", "content": "What is 2+2?"}],
        "max_completion_tokens": 8, "temperature": 0, "stop": "."}))
    out("request", "completion_list_prompt", body(10 << 1, {"prompt": ["abc"]}))


if __name__ == "__main__":
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/kiln/models")
    safetensors_seeds()
    gguf_seeds()
    config_and_template_seeds(models)
    request_seeds()
    for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        d = os.path.join(HERE, "corpus", t)
        print(t, {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))})
