#!/usr/bin/env bash
# End-to-end load figure: starts redis-server, cascade-mock-provider and cascaded on free
# loopback ports, runs cascade-bench with N jobs (default 100000), and the same Redis's
# own XADD ceiling with redis-benchmark, then prints both and their ratio.
#   bench/run.sh [N] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
conc=${2:-1024}
source tools/stack.sh
build_targets cascaded cascade-mock-provider cascade-bench
start_redis
start_mock build/tools/mock_provider/cascade-mock-provider --record-limit 1000
build/tools/cascaded/cascaded --redis "$redis_url" --concurrency "$conc" --log-level warn &
daemon=$!
stack_track $daemon
echo "cascade-bench: $n jobs, concurrency $conc"
line=$(build/bench/cascade-bench --redis "$redis_url" --jobs "$n" --setup --mock "$mock_url")
echo "$line"
rss=$(ps -o rss= -p "$daemon" | tr -d ' ')
echo "cascaded RSS after run: $((rss / 1024)) MiB"
ceiling=$(redis-benchmark -p "$redis_port" -n "$n" -P 16 -q XADD bench:ceiling '*' f v | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
echo "redis-benchmark XADD ceiling (pipeline 16): $ceiling ops/s"
jps=$(sed -n 's/.*jobs_per_s=\([0-9]*\).*/\1/p' <<<"$line")
/usr/bin/python3 -c "print(f'ratio: cascade jobs/s = {$jps/$ceiling:.3f} x redis XADD ceiling (each job costs ~2 Redis commands besides its XADD, plus an HTTP round trip)')"
