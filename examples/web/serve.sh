#!/usr/bin/env bash
# Serve the demo page on http://127.0.0.1:${PORT:-8765}/ with a model folder at /model/
# (default: kiln's cached SmolLM2 as an HF folder; run `cargo run --release -- generate
# --prompt hi` once to fetch its GGUF, then `kiln convert` it into
# $CACHE/models/SmolLM2-135M-Instruct, as e2e.sh does), and, where kiln's cache has them,
# all-MiniLM-L6-v2 at /embedding/ and Whisper base at /whisper/ (`kiln embed hi` and
# `kiln transcribe FILE.wav` fetch them once; EMBED_MODEL and WHISPER_MODEL name other
# folders). Build the package first with build.sh.
#   examples/web/serve.sh [MODEL_DIR]
set -euo pipefail
WEB=$(cd "$(dirname "$0")" && pwd)
CACHE=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
MODEL=$(cd "${1:-$CACHE/models/SmolLM2-135M-Instruct}" && pwd)
PORT=${PORT:-8765}
[ -f "$WEB/pkg/kiln_web.js" ] || { echo "no package yet: run examples/web/build.sh" >&2; exit 1; }
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL" >&2; exit 1; }
SITE="$WEB/out/site"
rm -rf "$SITE" && mkdir -p "$SITE"
for f in index.html app.js bench.html bench.js kiln.js kiln.d.ts style.css pkg; do ln -s "$WEB/$f" "$SITE/$f"; done
ln -s "$MODEL" "$SITE/model"
served="model: $MODEL"
for pair in "embedding:${EMBED_MODEL:-$CACHE/models/all-MiniLM-L6-v2}" \
            "whisper:${WHISPER_MODEL:-$CACHE/models/whisper-base}"; do
  at=${pair%%:*} dir=${pair#*:}
  if [ -f "$dir/config.json" ]; then
    ln -s "$(cd "$dir" && pwd)" "$SITE/$at"
    served="$served; $at: $dir"
  fi
done
echo "serving http://127.0.0.1:$PORT/ ($served)" >&2
exec python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$SITE"
