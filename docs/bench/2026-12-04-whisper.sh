#!/usr/bin/env bash
# The H200 run of docs/bench/2026-12-04-whisper.md: one device call ran `bash run.sh` from a
# folder .devrun holding a stripped release kiln (as of this commit), the converted
# whisper-base config.json, generation_config.json, preprocessor_config.json and
# tokenizer.json, header.json (the JSON header of its model.safetensors), speech-29s.wav and
# gen.py (2026-12-04-whisper-gen.py), with the Vulkan loader and glvnd unpacked beforehand.
set -u
cd .devrun
K=./kiln
export KILN_CACHE=/tmp/kc
(nvidia-smi --query-gpu=name,driver_version --format=csv; nproc) 2>&1
$K adapters > adapters.txt 2>&1
if ! grep -q H200 adapters.txt; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  $K adapters > adapters.txt 2>&1
fi
grep -E "^\s*[0-9]+:|H200" adapters.txt | head
mkdir -p synth && cp config.json tokenizer.json generation_config.json preprocessor_config.json synth/
t0=$(date +%s.%N); python3 gen.py header.json synth/model.safetensors; echo "generated in $(echo "$(date +%s.%N) - $t0" | bc) s"
ls -la synth
for i in 1 2 3; do
  timeout 100 $K transcribe --adapter H200 --model synth speech-29s.wav 2>&1 | tail -1
done
for i in 1 2; do
  timeout 100 $K transcribe --adapter H200 --model synth --timestamps speech-29s.wav 2>&1 | tail -1
done
