#!/usr/bin/env bash
# The desktop app, checked as a person would check it: under Xvfb, rendering and running the
# default model on lavapipe, xdotool types a question into the window and presses Enter.
#   1. The greedy answer the app shows (--print-transcript) must equal the README's chat
#      example's, run on its own; the window's screenshot is saved.
#   2. A longer reply with frame-time stats, paced (the default) and unpaced (--no-pacing):
#      the 99th-percentile frame times go to $OUT/frames.txt (figures, not assertions).
# Needs Xvfb and xdotool (CI installs them). OUT defaults to target/desktop-test.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-${CARGO_TARGET_DIR:-target}/desktop-test}
BIN=${CARGO_TARGET_DIR:-target}/release/kiln-desktop
mkdir -p "$OUT"
for tool in Xvfb xdotool; do
  command -v $tool >/dev/null || { echo "error: $tool is not installed (apt install xvfb xdotool)"; exit 1; }
done
cargo build --release -q -p kiln-desktop
# lavapipe renders and runs the model (SwiftShader is left out; it would rank after anyway).
unset VK_ADD_DRIVER_FILES

n=90
while [ -e /tmp/.X11-unix/X$n ] || [ -e /tmp/.X$n-lock ]; do n=$((n + 1)); done
Xvfb :$n -screen 0 1280x800x24 -nolisten tcp > "$OUT/xvfb.log" 2>&1 &
XVFB=$!
APP=""
cleanup() { [ -n "$APP" ] && kill "$APP" 2>/dev/null; kill "$XVFB" 2>/dev/null; true; }
trap cleanup EXIT
export DISPLAY=:$n
for _ in $(seq 50); do xdotool getmouselocation >/dev/null 2>&1 && break; sleep 0.2; done

# Wait up to $2 seconds for the pattern $1 in the app's log $3.
wait_for() {
  local i
  for i in $(seq "$2"); do
    grep -q "$1" "$3" && return 0
    kill -0 "$APP" 2>/dev/null || { echo "error: the app exited waiting for '$1'"; cat "$3"; exit 1; }
    sleep 1
  done
  echo "error: no '$1' within $2 s"; cat "$3"; exit 1
}

# Start the app with "$@", ask $QUESTION, wait for the reply, quit with Ctrl+Q.
ask() {
  local name=$1; shift
  "$BIN" --print-transcript "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" &
  APP=$!
  wait_for "kiln-desktop: ready" 900 "$OUT/$name.err"
  local win
  win=$(xdotool search --sync --name '^kiln$' | head -1)
  xdotool windowfocus --sync "$win"
  xdotool mousemove --window "$win" 300 300
  sleep 1
  xdotool type --delay 20 "$QUESTION"
  xdotool key Return
  wait_for "kiln-desktop: reply done" 900 "$OUT/$name.err"
  if grep -q -- "--screenshot" <<< "$*"; then
    wait_for "kiln-desktop: screenshot saved" 60 "$OUT/$name.err"
  fi
  sleep 2 # idle frames after the reply
  xdotool key ctrl+q
  for _ in $(seq 60); do kill -0 "$APP" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$APP" 2>/dev/null; then echo "error: Ctrl+Q did not close the window"; exit 1; fi
  wait "$APP" || { echo "error: the app failed"; cat "$OUT/$name.err"; exit 1; }
  APP=""
}

echo "== 1. a greedy answer, typed into the window"
QUESTION="What is the capital of France?"
expected=$(cargo run --release -q --example chat 2>/dev/null)
ask greedy --temperature 0 --screenshot "$OUT/desktop.png"
python3 - "$OUT/greedy.out" "$expected" "$QUESTION" "$OUT/desktop.png" <<'PY'
import struct, sys
out, expected, question, png = open(sys.argv[1]).read(), sys.argv[2].strip(), sys.argv[3], sys.argv[4]
user, sep, reply = out.partition("\nassistant: ")
assert user == "user: " + question, f"the typed question came out as {user!r}"
assert sep and reply.strip() == expected, f"app: {reply.strip()!r}\nexample: {expected!r}"
head = open(png, "rb").read(24)
assert head[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
w, h = struct.unpack(">II", head[16:24])
assert w >= 400 and h >= 300, f"the screenshot is {w}x{h}"
print(f"ok: the app answered {reply.strip()!r}, as the chat example does; screenshot {w}x{h}")
PY

echo "== 2. frame times while generating, paced and unpaced"
QUESTION="Write a short story about a dragon who learns to paint."
: > "$OUT/frames.txt"
for mode in paced unpaced; do
  flags=(--temperature 0 --max-tokens 48 --frame-stats)
  [ $mode = unpaced ] && flags+=(--no-pacing)
  ask "$mode" "${flags[@]}"
  grep -q "generating: [0-9]* frames" "$OUT/$mode.err" \
    || { echo "error: no frames were drawn while generating"; cat "$OUT/$mode.err"; exit 1; }
  { echo "$mode:"; sed -n '/^frame times/,$p' "$OUT/$mode.err" | tail -n +2; } | tee -a "$OUT/frames.txt"
done
echo "ok: the desktop app (screenshot $OUT/desktop.png, frame times $OUT/frames.txt)"
