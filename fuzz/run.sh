#!/usr/bin/env bash
# Run every fuzz target (or those named) for SECONDS each (default 60), FUZZ_JOBS (default 2)
# at a time, from the committed seeds; a crash, timeout or out-of-memory fails the run and
# leaves the input in fuzz/artifacts/TARGET/. Prints each target's executions, executions
# per second and coverage (libFuzzer's final stats), and writes them to
# fuzz/target/summary.txt.
#
#     fuzz/run.sh [-t SECONDS] [TARGET...]
#
# Needs the nightly Rust of rust-toolchain.toml and cargo-fuzz (in fuzz/: rustup toolchain
# install; cargo install cargo-fuzz). FUZZ_BUILD passes build options (FUZZ_BUILD="-s none": no AddressSanitizer);
# FUZZ_RUNS stops a target after that many executions if it gets there first (long runs:
# FUZZ_RUNS=10000000 fuzz/run.sh -t 1800).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=60
if [ "${1:-}" = "-t" ]; then SECONDS_EACH=$2; shift 2; fi
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(safetensors gguf gguf_tokenizer config chat_template request)
BUILD=(${FUZZ_BUILD:-})

# cargo here is rust-toolchain.toml's pinned nightly.
cargo fuzz build "${BUILD[@]}"
mkdir -p target/runs
run() {
  local t=$1 work=target/runs/$1
  rm -rf "$work" && mkdir -p "$work/corpus" "artifacts/$t"
  # libFuzzer: new inputs go to the scratch corpus; the committed seeds are only read.
  # 2 GB memory, 10 s per input; -print_final_stats for the figures.
  # A fixed seed (FUZZ_SEED; 0 = libFuzzer picks one) makes a run explore the same inputs on
  # the same build, so a short CI run does not fail at random on what it happens to reach.
  cargo fuzz run "${BUILD[@]}" "$t" "$work/corpus" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -runs="${FUZZ_RUNS:--1}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -seed="${FUZZ_SEED:-1}" -print_final_stats=1 -close_fd_mask=1 \
    > "$work/log" 2>&1
}
status=0
pids=()
for t in "${TARGETS[@]}"; do
  run "$t" &
  pids+=("$!:$t")
  if [ ${#pids[@]} -ge "${FUZZ_JOBS:-2}" ]; then
    p=${pids[0]}; pids=("${pids[@]:1}")
    wait "${p%%:*}" || { echo "FAILED: ${p#*:}"; tail -30 "target/runs/${p#*:}/log"; status=1; }
  fi
done
for p in "${pids[@]}"; do
  wait "${p%%:*}" || { echo "FAILED: ${p#*:}"; tail -30 "target/runs/${p#*:}/log"; status=1; }
done

{
  printf "%-15s %12s %10s %8s %8s\n" target executions exec/s cov ft
  for t in "${TARGETS[@]}"; do
    log=target/runs/$t/log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o "cov: [0-9]*" "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o "ft: [0-9]*" "$log" | tail -1 | cut -d' ' -f2)
    printf "%-15s %12s %10s %8s %8s\n" "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}"
  done
} | tee target/summary.txt
exit $status
