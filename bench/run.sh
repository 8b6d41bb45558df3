#!/usr/bin/env bash
# End-to-end load figure: starts redis-server, cascade-mock-provider and cascaded on free
# loopback ports, runs cascade-bench with N jobs (default 100000), and the same Redis's
# own XADD ceiling with redis-benchmark, then prints both and their ratio.
#   bench/run.sh [N] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
conc=${2:-1024}
tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target cascaded cascade-mock-provider cascade-bench | grep -vE "^\[[0-9]+/[0-9]+\] " || true
work=$(mktemp -d /tmp/cascade-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
build/tools/mock_provider/cascade-mock-provider --listen 127.0.0.1:0 --record-limit 1000 >"$work/mock.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/mock.out" 2>/dev/null && break; sleep 0.1; done
mock=$(sed -n 's/^listening on \(.*\)$/http:\/\/\1/p' "$work/mock.out")
url="redis://127.0.0.1:$port/0"
build/tools/cascaded/cascaded --redis "$url" --concurrency "$conc" --log-level warn &
pids+=($!)
echo "cascade-bench: $n jobs, concurrency $conc"
line=$(build/bench/cascade-bench --redis "$url" --jobs "$n" --setup --mock "$mock")
echo "$line"
rss=$(ps -o rss= -p "${pids[2]}" | tr -d ' ')
echo "cascaded RSS after run: $((rss / 1024)) MiB"
ceiling=$(redis-benchmark -p "$port" -n "$n" -P 16 -q XADD bench:ceiling '*' f v | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
echo "redis-benchmark XADD ceiling (pipeline 16): $ceiling ops/s"
jps=$(sed -n 's/.*jobs_per_s=\([0-9]*\).*/\1/p' <<<"$line")
/usr/bin/python3 -c "print(f'ratio: cascade jobs/s = {$jps/$ceiling:.3f} x redis XADD ceiling (each job costs ~8 Redis commands)')"
