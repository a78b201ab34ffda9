#!/usr/bin/env bash
# The desktop app, checked as a person would check it: under Xvfb, rendering and running the
# default model on lavapipe, xdotool types a question into the window and presses Enter.
#   1. The greedy answer the app shows (--print-transcript) must equal the README's chat
#      example's, run on its own; the window's screenshot is saved.
#   2. A longer reply with frame-time stats, paced (the default) and unpaced (--no-pacing):
#      the 99th-percentile frame times go to $OUT/frames.txt (figures, not assertions).
#   3. Escape stops a long reply; Ctrl+N starts a new chat, whose answer is a fresh one's.
#   4. Models opened through the file dialog (Ctrl+O, Ctrl+Shift+O): a file that is not a
#      model (an error in the window, the app lives on), the default GGUF by its typed path,
#      and an F32 folder (`kiln convert` of it) by browsing with the arrow keys; each answers
#      as the chat example does on the same file.
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

# Wait up to $3 seconds until the pattern $1 is in the app's log $4 at least $2 times.
wait_count() {
  local i
  for i in $(seq "$3"); do
    [ "$(grep -c "$1" "$4")" -ge "$2" ] && return 0
    kill -0 "$APP" 2>/dev/null || { echo "error: the app exited waiting for '$1'"; cat "$4"; exit 1; }
    sleep 1
  done
  echo "error: '$1' not seen $2 times within $3 s"; cat "$4"; exit 1
}

# Open the file dialog with the keys $1 and type the path $2 into its path field; Enter.
dialog() {
  local before
  before=$(grep -c "file dialog open" "$OUT/$NAME.err" || true)
  xdotool key "$1"
  wait_count "file dialog open" $((before + 1)) 30 "$OUT/$NAME.err"
  sleep 1
  xdotool key slash # the dialog's key for editing the path
  sleep 0.5
  xdotool key ctrl+a
  xdotool type --delay 40 "$2"
  sleep 0.3
  xdotool key Return
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

echo "== 4. models opened through the file dialog"
GGUF=$(sed -n 's/^kiln-desktop: loading \(.*\.gguf\)$/\1/p' "$OUT/greedy.err" | head -1)
[ -f "$GGUF" ] || { echo "error: the default model's path is not in the log"; cat "$OUT/greedy.err"; exit 1; }
rm -rf "$OUT/models" && mkdir -p "$OUT/models"
cargo run --release -q --bin kiln -- convert "$GGUF" "$OUT/models/smollm2-f32" > "$OUT/convert.log" 2>&1 \
  || { echo "error: kiln convert failed"; cat "$OUT/convert.log"; exit 1; }
expected_f32=$(cargo run --release -q --example chat -- "$OUT/models/smollm2-f32" 2> "$OUT/chat-f32.err") \
  || { echo "error: the chat example failed on the folder"; cat "$OUT/chat-f32.err"; exit 1; }
echo "not a model" > "$OUT/not-a-model.gguf"
start dialog --temperature 0
dialog ctrl+o "$OUT/not-a-model.gguf"
wait_for "kiln-desktop: error: " 120 "$OUT/dialog.err"
dialog ctrl+o "$GGUF"
wait_count "kiln-desktop: ready" 2 600 "$OUT/dialog.err"
say "What is the capital of France?"
replies 1
# The folder by browsing: type its parent's path; Down selects the folder, Enter goes into
# it, and Enter again picks it (the dialog's Open).
dialog ctrl+shift+o "$OUT/models/"
sleep 1
xdotool key Down
sleep 0.5
xdotool key Return
sleep 1
xdotool key Return
wait_count "kiln-desktop: ready" 3 600 "$OUT/dialog.err"
say "What is the capital of France?"
replies 2
quit
python3 - "$OUT/dialog.out" "$OUT/dialog.err" "$expected" "$expected_f32" "$GGUF" "$OUT/models/smollm2-f32" <<'PY'
import os, sys
out, err, expected, expected_f32, gguf, folder = sys.argv[1:]
out, err = open(out).read(), open(err).read()
replies = [r.split("\nuser: ")[0].strip() for r in out.split("assistant: ")[1:]]
errors = [l for l in err.splitlines() if l.startswith("kiln-desktop: error: ")]
loads = [l.split("loading ", 1)[1] for l in err.splitlines() if l.startswith("kiln-desktop: loading ")]
assert len(errors) == 1 and "not-a-model.gguf" in errors[0], f"errors: {errors}"
real = lambda ps: [os.path.realpath(p) for p in ps]
assert real(loads[-2:]) == real([gguf, folder]), f"loaded through the dialog: {loads}"
assert replies == [expected.strip(), expected_f32.strip()], f"{replies} != {[expected, expected_f32]}"
print(f"ok: through the dialog, a bad file gave {errors[0][len('kiln-desktop: error: '):]!r};"
      f" the GGUF answered {replies[0]!r} and the folder {replies[1]!r}, as the chat example does")
PY

echo "ok: the desktop app (screenshot $OUT/desktop.png, frame times $OUT/frames.txt)"
