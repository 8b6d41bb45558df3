#!/usr/bin/env bash
# Micro-benchmarks (Google Benchmark) against a redis-server started on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target bench_verify | grep -vE "^\[[0-9]+/[0-9]+\] " || true
source tools/stack.sh
start_redis
CASCADE_BENCH_REDIS="$redis_url" build/bench/bench_verify "$@"
