# Sourced by tools/demo.sh and the bench scripts (from the repository root): builds,
# starts redis-server and cascade-mock-provider on free loopback ports, and stops all it
# started on exit.
#   build_targets T... installs what is missing, builds T in build/ (RelWithDebInfo)
#   start_redis        -> $redis_port, $redis_url
#   start_mock BIN     -> $mock_url
#   stack_track PID    -> killed on exit too
# Sourcing it also makes a fresh master key in $stack_work and exports
# CASCADE_MASTER_KEY_FILE: cascaded, cascadectl and cascade-bench seal and open the
# provider credentials with it.
# $stack_work is a scratch directory removed on exit.
stack_pids=()
stack_work=$(mktemp -d /tmp/cascade-stack.XXXXXX)
stack_cleanup() {
  for p in "${stack_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$stack_work"
}
trap stack_cleanup EXIT
stack_track() { stack_pids+=("$1"); }

build_targets() {
  tools/deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  # Only ninja's progress lines are dropped: errors show, and a failed build fails the
  # script (callers run with pipefail).
  cmake --build build -j "$(nproc)" --target "$@" | { grep -vE '^\[[0-9]+/[0-9]+\] ' || true; }
}

(umask 077 && openssl rand -hex 32 >"$stack_work/master.key")
export CASCADE_MASTER_KEY_FILE=$stack_work/master.key

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$stack_work" >"$stack_work/redis.log" 2>&1 &
  stack_track $!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis_url="redis://127.0.0.1:$redis_port/0"
}

start_mock() {
  "$1" --listen 127.0.0.1:0 "${@:2}" >"$stack_work/mock.out" 2>"$stack_work/mock.log" &
  stack_track $!
  for _ in $(seq 100); do grep -q "listening on" "$stack_work/mock.out" 2>/dev/null && break; sleep 0.1; done
  mock_url=$(sed -n 's/^listening on \([^ ]*\).*$/http:\/\/\1/p' "$stack_work/mock.out")
}
