#!/usr/bin/env bash
# Build the ready-to-serve browser package into examples/web/pkg: kiln compiled to wasm32,
# then wasm-bindgen (installed at the exact version of the wasm-bindgen crate if missing).
set -euo pipefail
WEB=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$WEB/../.." && pwd)
rustup target add wasm32-unknown-unknown >&2
WBG=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print}' "$ROOT/Cargo.lock")
if ! wasm-bindgen --version 2>/dev/null | grep -qF "$WBG"; then
  echo "installing wasm-bindgen-cli $WBG, the version of the wasm-bindgen crate (a few minutes)" >&2
  cargo install wasm-bindgen-cli --version "$WBG" >&2
fi
(cd "$ROOT" && cargo build -p kiln-web --release --target wasm32-unknown-unknown >&2)
wasm-bindgen --target web --out-dir "$WEB/pkg" "$ROOT/target/wasm32-unknown-unknown/release/kiln_web.wasm"
echo "built $WEB/pkg ($(du -h "$WEB/pkg/kiln_web_bg.wasm" | cut -f1) of wasm)" >&2
