#!/usr/bin/env bash
# Heavy fault scenarios: two cascaded workers, 20,000 jobs, one kill -9'd and restarted
# mid-run (tests/chaos_*.cpp). Usage: tools/chaos.sh [BUILD_DIR] (default build).
# CASCADE_CHAOS_JOBS=N changes the number of jobs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCASCADE_BUILD_BENCH=OFF
fi
ninja -C "$build" chaos_reliability
"$build/tests/chaos_reliability"
