#!/usr/bin/env bash
# Builds a libFuzzer target with Debian's clang (ASan + UBSan) and runs it for a bounded
# time from its seed corpus. Used by ctest (label fuzz); runnable by hand:
#   tests/fuzz/run.sh job|credentials SECONDS OUT_DIR
set -euo pipefail
target=$1
seconds=${2:-20}
out=${3:-/tmp/cascade-fuzz}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
case "$target" in
  job) sources=("$root/engine/job.cpp" "$root/util/json.cpp"); libs=(-lsimdjson) ;;
  credentials) sources=("$root/auth/credentials.cpp"); libs=() ;;
  *) echo "unknown fuzz target $target" >&2; exit 2 ;;
esac
bin="$out/fuzz_$target"
clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" "$root/tests/fuzz/fuzz_$target.cpp" "${sources[@]}" "${libs[@]}" -o "$bin"
corpus="$out/corpus_$target"
mkdir -p "$corpus"
cp -n "$root/tests/fuzz/corpus/$target/"* "$corpus/" 2>/dev/null || true
# -max_total_time bounds the run; a crash or a sanitizer report exits non-zero.
"$bin" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$corpus" 2>&1 | tail -15
