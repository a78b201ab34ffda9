#!/usr/bin/env bash
# The desktop app, checked as a person would check it: under Xvfb, rendering and running the
# default model on lavapipe, xdotool types a question into the window and presses Enter.
#   1. The greedy answer the app shows (--print-transcript) must equal the README's chat
#      example's, run on its own; the window's screenshot is saved.
#   2. A longer reply with frame-time stats, paced (the default) and unpaced (--no-pacing):
#      the 99th-percentile frame times go to $OUT/frames.txt (figures, not assertions).
#   3. Escape stops a long reply; Ctrl+N starts a new chat, whose answer is a fresh one's.
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

# Start the app with "$@", logging to $OUT/$1.{out,err}; wait until its model is loaded.
start() {
  NAME=$1; shift
  "$BIN" --print-transcript "$@" > "$OUT/$NAME.out" 2> "$OUT/$NAME.err" &
  APP=$!
  wait_for "kiln-desktop: ready" 900 "$OUT/$NAME.err"
  local win
  win=$(xdotool search --sync --limit 1 --name '^kiln$')
  xdotool windowfocus --sync "$win"
  xdotool mousemove --window "$win" 300 300
  sleep 1
}

# Type $1 into the window and press Enter.
say() { xdotool type --delay 20 "$1"; xdotool key Return; }

# Wait for the n-th ($1) finished reply.
replies() {
  local i
  for i in $(seq 900); do
    [ "$(grep -c "kiln-desktop: reply done" "$OUT/$NAME.err")" -ge "$1" ] && return 0
    kill -0 "$APP" 2>/dev/null || { echo "error: the app exited"; cat "$OUT/$NAME.err"; exit 1; }
    sleep 1
  done
  echo "error: no reply $1 within 900 s"; cat "$OUT/$NAME.err"; exit 1
}

# Ctrl+Q, and the app must exit cleanly.
quit() {
  xdotool key ctrl+q
  for _ in $(seq 60); do kill -0 "$APP" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$APP" 2>/dev/null; then echo "error: Ctrl+Q did not close the window"; exit 1; fi
  wait "$APP" || { echo "error: the app failed"; cat "$OUT/$NAME.err"; exit 1; }
  APP=""
}

echo "== 1. a greedy answer, typed into the window"
QUESTION="What is the capital of France?"
expected=$(cargo run --release -q --example chat 2> "$OUT/chat.err") \
  || { echo "error: the chat example failed"; cat "$OUT/chat.err"; exit 1; }
start greedy --temperature 0 --screenshot "$OUT/desktop.png"
say "$QUESTION"
replies 1
wait_for "kiln-desktop: screenshot saved" 60 "$OUT/greedy.err"
quit
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
  start "$mode" "${flags[@]}"
  say "$QUESTION"
  replies 1
  sleep 2 # idle frames after the reply
  quit
  grep -q "generating: [0-9]* frames" "$OUT/$mode.err" \
    || { echo "error: no frames were drawn while generating"; cat "$OUT/$mode.err"; exit 1; }
  { echo "$mode:"; sed -n '/^frame times/,$p' "$OUT/$mode.err" | tail -n +2; } | tee -a "$OUT/frames.txt"
done
echo "== 3. Escape stops a reply; Ctrl+N starts a new chat, which answers as a fresh one"
start stop --temperature 0 --max-tokens 400
say "Tell me a very long story about a dragon."
wait_for "kiln-desktop: replying" 600 "$OUT/stop.err"
sleep 2
xdotool key Escape
replies 1
grep -q "reply done (.*Cancelled)" "$OUT/stop.err" \
  || { echo "error: Escape did not stop the reply"; cat "$OUT/stop.err"; exit 1; }
xdotool key ctrl+n
wait_for "kiln-desktop: new chat" 30 "$OUT/stop.err"
say "What is the capital of France?"
replies 2
quit
python3 - "$OUT/stop.out" "$expected" <<'PY'
import sys
out, expected = open(sys.argv[1]).read(), sys.argv[2].strip()
last = out.rsplit("assistant: ", 1)[1].strip()
assert out.count("user: ") == 2, out
assert last == expected, f"after New chat: {last!r}, expected {expected!r}"
print("ok: Escape stopped the story; after Ctrl+N the answer is the fresh conversation's")
PY

echo "ok: the desktop app (screenshot $OUT/desktop.png, frame times $OUT/frames.txt)"
