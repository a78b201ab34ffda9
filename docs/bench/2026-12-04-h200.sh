#!/usr/bin/env bash
# The H200 run of 2026-12-04 (docs/bench/2026-12-04-h200.md): one device call of the project's
# device tool ran this as `bash h200.sh H200 llama-1b llama-8b`, with OUT set to the folder
# whose files come back and the Vulkan loader unpacked beforehand; kiln is a stripped release build.
set -u
A=${1:-H200}; SMALL=${2:-llama-1b}; BIG=${3:-llama-8b}
K=${K:-.dev/kiln}
R=$OUT/r; mkdir -p $R
export KILN_CACHE=${KILN_CACHE:-/tmp/kc}
start=$(date +%s)
t() { # name limit command...
  local name=$1 lim=$2; shift 2; local s=$(date +%s)
  timeout $lim "$@" > $R/$name.txt 2>&1; local rc=$?
  echo "== $name rc=$rc $(( $(date +%s) - s ))s (at $(( $(date +%s) - start ))s)"; tail -n 25 $R/$name.txt
}
(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv; nproc; uname -r) > $R/machine.txt 2>&1
$K adapters > $R/adapters.txt 2>&1; cat $R/adapters.txt
if ! grep -q "${GREP:-$A}" $R/adapters.txt; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  $K adapters > $R/adapters.txt 2>&1; cat $R/adapters.txt
  grep -q "${GREP:-$A}" $R/adapters.txt || { echo "no adapter $A"; ls /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d; exit 3; }
fi
t tune 110 $K tune --adapter $A --dtype q4_0,q8_0,q4_k,f32
cp $KILN_CACHE/tune.json $R/ 2>/dev/null
for d in q4_0 q8_0 q4_k; do
  t $SMALL-$d 50 $K bench --model synthetic:$SMALL --dtype $d --adapter $A --runs 3 --json $R/$SMALL-$d.json
done
t $SMALL-q4_0-profile 50 $K bench --model synthetic:$SMALL --dtype q4_0 --adapter $A --runs 1 --profile --json $R/$SMALL-q4_0-profile.json
t $BIG-q4_0 100 $K bench --model synthetic:$BIG --dtype q4_0 --adapter $A --runs 3 --json $R/$BIG-q4_0.json
t suite 110 $K bench --adapter $A --dtype f32,f16,q8_0,q4_0,q4_k --json $R/suite.json --plot $R/suite.svg
tar czf $OUT/results.tgz -C $OUT r
echo "done at $(( $(date +%s) - start ))s"

# The second and third calls (tune.json of the first carried in KILN_CACHE):
# t llama-1b-f32 50 $K bench --model synthetic:llama-1b --dtype f32 --adapter $A --runs 3 --profile --json $R/llama-1b-f32.json
# t llama-8b-q8_0 70 $K bench --model synthetic:llama-8b --dtype q8_0 --adapter $A --runs 3 --json $R/llama-8b-q8_0.json
# t llama-8b-q4_k 70 $K bench --model synthetic:llama-8b --dtype q4_k --adapter $A --runs 3 --json $R/llama-8b-q4_k.json
# t llama-8b-f32 110 $K bench --model synthetic:llama-8b --dtype f32 --adapter $A --runs 3 --json $R/llama-8b-f32.json
# t smollm2-q4_0 40 $K bench --model synthetic:smollm2-135m --dtype q4_0 --adapter $A --runs 3 --profile --json $R/smollm2-q4_0.json
# t smollm2-f32 40 $K bench --model synthetic:smollm2-135m --dtype f32 --adapter $A --runs 3 --json $R/smollm2-f32.json
# t qwen-q4_0 40 $K bench --model synthetic:qwen-0.5b --dtype q4_0 --adapter $A --runs 3 --json $R/qwen-q4_0.json
# t llama-3b-q4_0 50 $K bench --model synthetic:llama-3b --dtype q4_0 --adapter $A --runs 3 --json $R/llama-3b-q4_0.json
