#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest.
#   tools/test.sh             Release build in build/, all tests
#   tools/test.sh --sanitize  ASan+UBSan build in build-asan/, all tests
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASCADE_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DCASCADE_WERROR=ON -DCASCADE_SANITIZE=ON -DCASCADE_BUILD_BENCH=OFF)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
tools/deps.sh
cmake -S . -B "$build" -G Ninja "${flags[@]}" >/dev/null
jobs=$(nproc)
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs" --timeout 600
