#!/usr/bin/env bash
# End to end in a real browser: build the wasm package, serve the demo page with SmolLM2,
# all-MiniLM-L6-v2 and Whisper base on localhost, and drive Debian's headless Chromium (WebGPU
# on SwiftShader) through the page's three tabs: generate greedily, embed sentences, and
# transcribe a WAV file, each checked against what native kiln (`kiln generate`, `kiln
# embed`, `kiln transcribe`) gives for the same input.
# The last lines are the generated text and the browser's tokens/s; non-zero exit on any
# mismatch or error. Needs: chromium (apt), node + npm, python3 (to serve and to fetch the model).
set -euo pipefail
WEB=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$WEB/../.." && pwd)
OUT="$WEB/out"
PROMPT="The capital of France is"
TOKENS=12
# A free port unless PORT says which: a server someone left on 8765 would otherwise answer
# in place of this one.
export PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$OUT"

echo "== tools" >&2
command -v chromium >/dev/null || { echo "e2e.sh needs Debian's chromium: apt-get install chromium" >&2; exit 1; }
if [ ! -d "$WEB/node_modules/playwright-core" ] || [ ! -d "$WEB/node_modules/ajv" ]; then
  (cd "$WEB" && npm install --no-save --no-audit --no-fund --loglevel=error playwright-core@1 ajv@8 >&2)
fi

echo "== the wasm package" >&2
"$WEB/build.sh"

echo "== native reference (fetches the model on first use)" >&2
(cd "$ROOT" && cargo build --release >&2)
"$ROOT/target/release/kiln" generate --prompt "$PROMPT" --max-tokens "$TOKENS" --temperature 0 \
  > "$OUT/native.txt" 2> "$OUT/native.err" || { cat "$OUT/native.err" >&2; exit 1; }
grep -E "^load|first token" "$OUT/native.err" | sed 's/^/native: /' >&2
# The page streams an HF folder (safetensors); native kiln runs the cached GGUF itself, so
# convert it once for the browser (the same values, in F32).
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
FOLDER="$CACHE/models/SmolLM2-135M-Instruct"
if [ ! -f "$FOLDER/model.safetensors" ]; then
  "$ROOT/target/release/kiln" convert "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$FOLDER" >&2
fi

echo "== native embeddings and transcript (fetch their models on first use)" >&2
# Golden sentences of tests/embed.rs that fit on one line of the page's textarea: the first,
# the empty and blank ones, every one with non-ASCII text (accents, CJK, Cyrillic, emoji),
# and the longest (over the model's 128 tokens). tests/embed.rs checks all of them natively;
# the rest add a minute of SwiftShader in the browser and no other path.
python3 - "$ROOT/tests/golden/minilm.json" > "$OUT/sentences.txt" <<'PY'
import json, sys
lines = [s["text"] for s in json.load(open(sys.argv[1]))["sentences"]]
lines = [t for t in lines if "\n" not in t and "\r" not in t]
longest = max(lines, key=len)
for i, t in enumerate(lines):
    if i == 0 or not t.strip() or not t.isascii() or t == longest:
        print(t)
PY
"$ROOT/target/release/kiln" embed --file "$OUT/sentences.txt" > "$OUT/embed-native.jsonl" \
  2> "$OUT/embed-native.err" || { cat "$OUT/embed-native.err" >&2; exit 1; }
grep -E "^adapter|inputs/s" "$OUT/embed-native.err" | sed 's/^/native: /' >&2
WAV="$ROOT/tests/data/speech/train-station.wav"
"$ROOT/target/release/kiln" transcribe "$WAV" > "$OUT/transcript-native.txt" \
  2> "$OUT/transcript-native.err" || { cat "$OUT/transcript-native.err" >&2; exit 1; }
grep -E "^adapter|real time" "$OUT/transcript-native.err" | sed 's/^/native: /' >&2

echo "== serving" >&2
"$WEB/serve.sh" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/index.html" >/dev/null && break; sleep 0.2; done
kill -0 $SERVER 2>/dev/null || { echo "the page server exited (port $PORT taken?):" >&2; cat "$OUT/server.log" >&2; exit 1; }
# A broken model next to the real one: its weights are cut short.
BAD="$OUT/site/bad"
mkdir -p "$BAD"
for f in config.json tokenizer.json tokenizer_config.json; do ln -sf "$OUT/site/model/$f" "$BAD/$f"; done
head -c 4000000 "$OUT/site/model/model.safetensors" > "$BAD/model.safetensors"

# The benchmark page runs what this runs natively, on the same SwiftShader, in the same e2e.
BENCH=(--model synthetic:smollm2-135m --dtype q4_0 -p 16 -n 16 -r 2)
echo "== native benchmark on SwiftShader: kiln bench ${BENCH[*]}" >&2
"$ROOT/target/release/kiln" bench --adapter swiftshader "${BENCH[@]}" --json "$OUT/bench-native.json" \
  > "$OUT/bench-native.md" 2> "$OUT/bench-native.err" || { cat "$OUT/bench-native.err" >&2; exit 1; }

echo "== headless Chromium, WebGPU on SwiftShader" >&2
cd "$WEB"
EMBED_LINES="$OUT/sentences.txt" EMBED_NATIVE="$OUT/embed-native.jsonl" \
SPEECH_WAV="$WAV" SPEECH_NATIVE="$OUT/transcript-native.txt" \
BENCH_OUT="$OUT/bench-browser.json" BENCH_SCHEMA="$ROOT/docs/bench.schema.json" BENCH_PNR=16,16,2 BENCH_DTYPE=q4_0 \
MODEL_DIR="$(readlink -f "$OUT/site/model")" node e2e.mjs "http://127.0.0.1:$PORT/index.html" "$PROMPT" "$TOKENS" "$OUT/native.txt" "$OUT/screenshot.png"

echo "== the browser's benchmark against the native one (kiln bench --compare)" >&2
"$ROOT/target/release/kiln" bench --from "$OUT/bench-browser.json" --compare "$OUT/bench-native.json" >&2
python3 - "$OUT/bench-native.json" "$OUT/bench-browser.json" <<'PY'
import json, sys
native, browser = (json.load(open(p))["adapters"][0]["models"][0] for p in sys.argv[1:])
for test, key in (("prefill", "prefill"), ("decode", "decode")):
    n, b = native[key]["median"], browser[key]["median"]
    print(f"browser {test} {b:.2f} tok/s = {100 * b / n:.0f}% of native {n:.2f} tok/s (SwiftShader, synthetic smollm2-135m q4_0)")
PY
