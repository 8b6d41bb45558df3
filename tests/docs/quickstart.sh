#!/usr/bin/env bash
# Runs the README's quick start as written: every ```sh block preceded by a
# `<!-- quickstart -->` line, in order, in one shell, with the built tools on PATH, against a
# fresh redis-server and the mock provider on free loopback ports; then checks that both
# jobs of the quick start were delivered through the mock provider.
#   tests/docs/quickstart.sh SOURCE_DIR TOOLS_DIR      (TOOLS_DIR: <build>/tools)
set -euo pipefail
src=$(cd "$1" && pwd)
tools=$(cd "$2" && pwd)
source "$src/tools/stack.sh"

script=$stack_work/quickstart.sh
{
  echo 'set -euo pipefail'
  echo 'trap "exit 143" TERM INT'
  # The quick start leaves the mock provider and cascaded running in the background.
  echo 'trap '\''kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true'\'' EXIT'
  /usr/bin/python3 - "$src/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r'<!-- quickstart -->\s*\n```sh\n(.*?)\n```', text, re.S)
if not blocks:
    sys.exit("no <!-- quickstart --> blocks in README.md")
for b in blocks:
    print(b)
PY
  cat <<'CHECK'
# --- the test's own checks (not in the README) ---
for _ in $(seq 100); do
  [ "$(redis-cli -u "$CASCADE_REDIS_URL" XLEN cascade:results)" -ge 2 ] && break
  sleep 0.1
done
states=$(redis-cli -u "$CASCADE_REDIS_URL" XRANGE cascade:results - + | /usr/bin/python3 -c '
import json, sys
print(" ".join(json.loads(l)["state"] for l in sys.stdin if l.startswith("{")))')
echo "quickstart results: $states"
[ "$states" = "delivered delivered" ] || { echo "FAIL: expected two delivered jobs" >&2; exit 1; }
sent=$(curl -s "http://127.0.0.1:$mock_port/__mock/requests" | /usr/bin/python3 -c '
import json, sys; print(sum(1 for r in json.load(sys.stdin) if r["provider"] == "telegram"))')
[ "$sent" = 2 ] || { echo "FAIL: the mock provider got $sent telegram requests, expected 2" >&2; exit 1; }
echo "quickstart: OK"
CHECK
} >"$script"

start_redis
export CASCADE_REDIS_URL=$redis_url
export MOCK_PORT=$(free_port)
export PATH="$tools/cascaded:$tools/cascadectl:$tools/mock_provider:$PATH"
cd "$stack_work"
echo "--- running the README quick start (redis $redis_url, mock port $MOCK_PORT)"
timeout 60 bash "$script"
