#!/usr/bin/env python3
"""Check an HF Whisper folder written by `kiln convert` against the CTranslate2 model it came
from, independently of kiln: the CTranslate2 file is read by scripts/ct2.py, the output by
the `safetensors` package, and HF's names are mapped from the CTranslate2 ones here.

    python3 scripts/check_whisper_convert.py CT2_DIR HF_DIR

Every HF tensor must equal (bit for bit) its rows of the CTranslate2 variable, every
CTranslate2 weight must be used, and config.json must state the dimensions. Exit 0 on success.
"""
import importlib.util
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("ct2", os.path.join(here, "ct2.py"))
ct2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ct2)


def main():
    src, out = sys.argv[1], sys.argv[2]
    _, v, _ = ct2.load(os.path.join(src, "model.bin"))
    hf = load_file(os.path.join(out, "model.safetensors"))
    cfg = json.load(open(os.path.join(out, "config.json")))
    d = v["encoder/conv1/weight"].shape[0]
    want = {}
    used = set()

    def take(name, key, rows=None):
        a = v[key]
        used.add(key)
        want[name] = a if rows is None else a[rows[0] * d:rows[1] * d]

    def linear(name, key):
        take(name + ".weight", key + "/weight")
        take(name + ".bias", key + "/bias")

    def norm(name, key):
        take(name + ".weight", key + "/gamma")
        take(name + ".bias", key + "/beta")

    def fused(name, key, parts):
        for i, p in enumerate(parts):
            take(f"{name}.{p}_proj.weight", key + "/weight", (i, i + 1))
            if p == "k":
                assert not np.any(v[key + "/bias"][i * d:(i + 1) * d]), key
            else:
                take(f"{name}.{p}_proj.bias", key + "/bias", (i, i + 1))

    e, dd = "model.encoder", "model.decoder"
    linear(e + ".conv1", "encoder/conv1")
    linear(e + ".conv2", "encoder/conv2")
    take(e + ".embed_positions.weight", "encoder/position_encodings/encodings")
    layers = {"encoder": 0, "decoder": 0}
    for side in layers:
        while f"{side}/layer_{layers[side]}/ffn/linear_0/weight" in v:
            layers[side] += 1
    for l in range(layers["encoder"]):
        h, c = f"{e}.layers.{l}", f"encoder/layer_{l}"
        fused(h + ".self_attn", c + "/self_attention/linear_0", "qkv")
        linear(h + ".self_attn.out_proj", c + "/self_attention/linear_1")
        norm(h + ".self_attn_layer_norm", c + "/self_attention/layer_norm")
        linear(h + ".fc1", c + "/ffn/linear_0")
        linear(h + ".fc2", c + "/ffn/linear_1")
        norm(h + ".final_layer_norm", c + "/ffn/layer_norm")
    norm(e + ".layer_norm", "encoder/layer_norm")
    take(dd + ".embed_tokens.weight", "decoder/embeddings/weight")
    take(dd + ".embed_positions.weight", "decoder/position_encodings/encodings")
    for l in range(layers["decoder"]):
        h, c = f"{dd}.layers.{l}", f"decoder/layer_{l}"
        fused(h + ".self_attn", c + "/self_attention/linear_0", "qkv")
        linear(h + ".self_attn.out_proj", c + "/self_attention/linear_1")
        norm(h + ".self_attn_layer_norm", c + "/self_attention/layer_norm")
        linear(h + ".encoder_attn.q_proj", c + "/attention/linear_0")
        fused(h + ".encoder_attn", c + "/attention/linear_1", "kv")
        linear(h + ".encoder_attn.out_proj", c + "/attention/linear_2")
        norm(h + ".encoder_attn_layer_norm", c + "/attention/layer_norm")
        linear(h + ".fc1", c + "/ffn/linear_0")
        linear(h + ".fc2", c + "/ffn/linear_1")
        norm(h + ".final_layer_norm", c + "/ffn/layer_norm")
    norm(dd + ".layer_norm", "decoder/layer_norm")

    assert set(hf) == set(want), (sorted(set(hf) ^ set(want)))[:10]
    for name, a in want.items():
        b = hf[name]
        assert b.dtype == a.dtype and b.shape == a.shape, (name, b.dtype, b.shape, a.dtype, a.shape)
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), name
    weights = {k for k, a in v.items() if a.ndim > 0 and k != "decoder/projection/weight"}
    assert weights == used, sorted(weights - used)[:10]
    for key, value in [("d_model", d), ("encoder_layers", layers["encoder"]),
                       ("decoder_layers", layers["decoder"]),
                       ("vocab_size", v["decoder/embeddings/weight"].shape[0]),
                       ("num_mel_bins", v["encoder/conv1/weight"].shape[1]),
                       ("encoder_attention_heads", int(v["encoder/num_heads"])),
                       ("decoder_attention_heads", int(v["decoder/num_heads"]))]:
        assert cfg[key] == value, (key, cfg[key], value)
    print(f"{len(hf)} tensors equal to their CTranslate2 rows; config agrees")


if __name__ == "__main__":
    main()
