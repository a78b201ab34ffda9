#!/usr/bin/env bash
# The figures of docs/bench/2026-12-04-bench-suite.md: each CPU adapter's rooflines and
# kernels, one after another on a quiet machine, then one plot across them.
set -euo pipefail
cd /work/main
export VK_ADD_DRIVER_FILES=/usr/lib/chromium/vk_swiftshader_icd.json XDG_RUNTIME_DIR=/tmp
K=./target/release/kiln
$K bench --adapter 1 --json /tmp/rec-lavapipe.json > /tmp/rec-lavapipe.md
$K bench --adapter 2 --dtype f32,q8_0,q4_1 --json /tmp/rec-gl.json > /tmp/rec-gl.md
$K bench --adapter 0 --dtype q8_0,q4_1 --json /tmp/rec-swiftshader.json > /tmp/rec-swiftshader.md
$K bench --from /tmp/rec-lavapipe.json,/tmp/rec-gl.json,/tmp/rec-swiftshader.json --plot /tmp/rec.svg --csv /tmp/rec.csv > /tmp/rec-all.md
$K bench --from /tmp/rec-lavapipe.json,/tmp/rec-gl.json,/tmp/rec-swiftshader.json --plot /tmp/rec.png > /dev/null
