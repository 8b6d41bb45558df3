#!/usr/bin/env bash
# Micro-benchmarks (Google Benchmark) against a redis-server started on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/stack.sh
build_targets bench_verify
start_redis
CASCADE_BENCH_REDIS="$redis_url" build/bench/bench_verify "$@"
