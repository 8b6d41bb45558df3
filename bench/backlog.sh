#!/usr/bin/env bash
# Bounded memory under a backlog: pushes N jobs (default 1,000,000) while no worker runs,
# then starts cascaded and samples its RSS every second while it drains the backlog.
# Prints the RSS samples, their spread, and the jobs stream length at the end (acked
# entries are deleted, so it must be 0).
#   bench/backlog.sh [N] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
conc=${2:-1024}
source tools/stack.sh
build_targets cascaded cascade-mock-provider cascade-bench
start_redis
start_mock build/tools/mock_provider/cascade-mock-provider --record-limit 1000
# The bench pushes all N jobs and then waits for their results: nothing consumes yet.
build/bench/cascade-bench --redis "$redis_url" --jobs "$n" --setup --mock "$mock_url" --timeout 900 >"$stack_work/bench.out" &
bench=$!
until [ "$(redis-cli -p "$redis_port" XLEN cascade:jobs)" -ge "$n" ]; do sleep 0.5; done
echo "backlog: $(redis-cli -p "$redis_port" XLEN cascade:jobs) jobs queued; redis used_memory $(redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"
build/tools/cascaded/cascaded --redis "$redis_url" --concurrency "$conc" --log-level warn &
daemon=$!
stack_track $daemon
samples=()
while kill -0 "$bench" 2>/dev/null; do
  rss=$(ps -o rss= -p "$daemon" | tr -d ' ')
  [ -n "$rss" ] && samples+=("$rss")
  sleep 1
done
wait "$bench"
cat "$stack_work/bench.out"
printf 'cascaded RSS samples (MiB, 1/s): '
for s in "${samples[@]}"; do printf '%d ' $((s / 1024)); done
echo
printf '%s\n' "${samples[@]}" | sort -n | awk 'NR==1{min=$1} {max=$1} END{printf "RSS min %d MiB, max %d MiB over %d samples\n", min/1024, max/1024, NR}'
echo "jobs stream length after drain: $(redis-cli -p "$redis_port" XLEN cascade:jobs); results stream: $(redis-cli -p "$redis_port" XLEN cascade:results)"
