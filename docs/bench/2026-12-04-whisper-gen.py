# Random f16 weights of whisper-base's shapes (header.json, taken from the real model's
# safetensors header): every value +-[1/16, 1/8), no NaN or Inf; pure Python, no numpy.
import json, os, struct, sys
h = json.load(open(sys.argv[1]))
out = sys.argv[2]
meta = h.pop("__metadata__", None)
text = json.dumps(h).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
table = bytes(((b & 0x83) | 0x2C) for b in range(256))  # sign, exponent 01011, 2 mantissa bits
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text))); f.write(text)
    for name, t in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        buf = bytearray(os.urandom(b - a))
        buf[1::2] = bytes(buf[1::2]).translate(table)
        f.write(buf)
