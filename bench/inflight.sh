#!/usr/bin/env bash
# Many jobs in flight against a slow provider: the mock answers every Telegram request
# after DELAY ms and cascaded runs with --concurrency C. Prints cascade-bench's line
# (jobs/s), the peak RSS (VmHWM) of cascaded and of the mock, and the most descriptors
# each held (sampled every 0.5 s; ~ the provider connections).
#   bench/inflight.sh [jobs] [concurrency] [delay_ms] [extra cascaded flags...]
#   (defaults 50000 10000 1000). CASCADED=path runs another cascaded build (a baseline);
#   NO_BUILD=1 skips the build step; TIMEOUT=S stops waiting after S seconds (default 900;
#   then the bench reports how many results came, and the peaks are still printed).
# Little's law: with D ms per answer, C jobs in flight give at most C * 1000 / D jobs/s.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-50000}
conc=${2:-10000}
delay=${3:-1000}
shift $(($# < 3 ? $# : 3))
source tools/stack.sh
[ "${NO_BUILD:-}" = 1 ] || build_targets cascaded cascade-mock-provider cascade-bench
cascaded=${CASCADED:-build/tools/cascaded/cascaded}
start_redis
start_mock build/tools/mock_provider/cascade-mock-provider --record-limit 1000
mock_pid=${stack_pids[-1]}
curl -fsS -X POST "$mock_url/__mock/rules" \
  -d "{\"provider\":\"telegram\",\"delay_ms\":$delay}" >/dev/null
"$cascaded" --redis "$redis_url" --concurrency "$conc" --log-level warn "$@" &
daemon=$!
stack_track $daemon
hwm() { sed -n 's/^VmHWM:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
echo "inflight: $n jobs, concurrency $conc, provider delay ${delay} ms, cascaded $cascaded $*"
build/bench/cascade-bench --redis "$redis_url" --jobs "$n" --setup --mock "$mock_url" \
  --timeout "${TIMEOUT:-900}" >"$stack_work/bench.out" 2>&1 &
bench=$!
most_fds=0
mock_fds=0
while kill -0 "$bench" 2>/dev/null; do
  fds=$(ls "/proc/$daemon/fd" 2>/dev/null | wc -l)
  [ "$fds" -gt "$most_fds" ] && most_fds=$fds
  fds=$(ls "/proc/$mock_pid/fd" 2>/dev/null | wc -l)
  [ "$fds" -gt "$mock_fds" ] && mock_fds=$fds
  sleep 0.5
done
wait "$bench" || true
cat "$stack_work/bench.out"
echo "cascaded VmHWM $(($(hwm "$daemon") / 1024)) MiB ($(hwm "$daemon") kB), most fds $most_fds;" \
  "mock VmHWM $(($(hwm "$mock_pid") / 1024)) MiB, most fds $mock_fds" \
  "(limit $(sed -n 's/^Max open files *\([0-9]*\).*/\1/p' "/proc/$mock_pid/limits"))"
