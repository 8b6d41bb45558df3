#!/usr/bin/env bash
# Cascade against BullMQ on this machine, same jobs, same Redis, same HTTP sink.
#   bench/compare.sh [N] [--quick]
# Installs what is missing (Debian nginx-light and gnuplot-nox; BullMQ from npm into
# bench/peers/bullmq with `npm ci`), builds cascaded and cascadectl, starts redis-server and
# an nginx keep-alive sink on free loopback ports, then bench/compare.js runs, for each of
# cascaded and the BullMQ worker (bench/peers/bullmq/worker.js):
#   (a) N jobs (default 100000) whose primary delivers: one POST per job;
#   (b) N jobs whose primary fails permanently (Telegram 400) and tier 1 (WABA) delivers;
#   (c) 2,000 jobs/s offered for 15 s: latency from enqueue to result.
# Prints the table, writes bench/out/compare-<UTC time>.json and a PNG chart of the
# Cascade/BullMQ ratios next to it, and stops everything it started.
# --quick: mode (c) runs 3 s instead of 15 (for the ctest smoke test, with N=2000).
# Other options after N are passed to bench/compare.js (--bullmq-concurrency C,
# --cascade-concurrency C, --bullmq-auth-cache 0|1, --rate R, --seconds S).
set -euo pipefail
cd "$(dirname "$0")/.."
n=100000
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then n=$1; shift; fi
extra=("$@")

# ---- what the comparison needs besides the build --------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  echo "compare: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # The package's own nginx service is not needed (ours runs on a free port).
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v node >/dev/null || { echo "compare: Node.js (20+) is required" >&2; exit 1; }
if [ ! -d bench/peers/bullmq/node_modules ]; then
  echo "compare: npm ci in bench/peers/bullmq" >&2
  (cd bench/peers/bullmq && npm ci --no-audit --no-fund --loglevel=error)
fi

source tools/stack.sh
build_targets cascaded cascadectl
start_redis

# ---- the HTTP sink: every provider path answered with its success body -------------------
sink_port=$(free_port)
mkdir -p "$stack_work/nginx"
cat >"$stack_work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $stack_work/nginx/nginx.pid;
error_log $stack_work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $stack_work/nginx/body;
  proxy_temp_path $stack_work/nginx/proxy;
  fastcgi_temp_path $stack_work/nginx/fastcgi;
  uwsgi_temp_path $stack_work/nginx/uwsgi;
  scgi_temp_path $stack_work/nginx/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  default_type application/json;
  server {
    listen 127.0.0.1:$sink_port reuseport backlog=4096;
    # Telegram: a bot token holding "fail" gets a permanent error, every other bot delivers.
    location ~ ^/bot[^/]*fail[^/]*/sendMessage\$ {
      return 400 '{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}';
    }
    location ~ ^/bot[^/]+/sendMessage\$ {
      return 200 '{"ok":true,"result":{"message_id":1}}';
    }
    # WhatsApp Cloud API (WABA): a phone number id holding "fail" gets a permanent error.
    location ~ ^/v[0-9.]+/[^/]*fail[^/]*/messages\$ {
      return 400 '{"error":{"message":"(#131026) Message undeliverable","type":"OAuthException","code":131026,"error_subcode":0,"fbtrace_id":"bench"}}';
    }
    location ~ ^/v[0-9.]+/[^/]+/messages\$ {
      return 200 '{"messaging_product":"whatsapp","contacts":[{"input":"+33612345678","wa_id":"33612345678"}],"messages":[{"id":"wamid.1"}]}';
    }
    # WAHA-style WhatsApp gateway and Postmark.
    location = /api/sendText { return 201 '{"id":"true_33612345678@c.us_1"}'; }
    location = /email { return 200 '{"ErrorCode":0,"Message":"OK","MessageID":"b7bc2f4a-1"}'; }
    location / { return 404 '{"error":"no such provider path"}'; }
  }
}
CONF
nginx -c "$stack_work/nginx/nginx.conf" -p "$stack_work/nginx" &
stack_track $!
sink="http://127.0.0.1:$sink_port"
for _ in $(seq 100); do curl -s -o /dev/null "$sink/" && break; sleep 0.1; done
ok=$(curl -s -X POST -d '{}' "$sink/bot1:x/sendMessage")
[ "$ok" = '{"ok":true,"result":{"message_id":1}}' ] || { echo "compare: nginx sink not answering ($ok)" >&2; exit 1; }

# ---- the run --------------------------------------------------------------------------------
mkdir -p bench/out
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/out/compare-$stamp.json
# Bounded: each drain has its own limit inside compare.js; this is the backstop.
limit=$((600 + n / 100))
timeout --kill-after=10 "$limit" node bench/compare.js --redis-port "$redis_port" --sink "$sink" \
  --bin build/tools --out "$out" --jobs "$n" "${extra[@]}"
echo "JSON: $out"

# ---- the chart of the ratios ------------------------------------------------------------------
# Bars of log2(Cascade/BullMQ) from the 1x line, labelled with the ratio itself.
png=${out%.json}.png
/usr/bin/python3 - "$out" >"$stack_work/ratios.dat" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
rows = [("a", "jobs_per_s", "jobs/s (a)"), ("b", "jobs_per_s", "jobs/s (b)"),
        ("a", "worker_cpu_us_per_job", "worker CPU/job (a)"), ("b", "worker_cpu_us_per_job", "worker CPU/job (b)"),
        ("c", "worker_cpu_us_per_job", "worker CPU/job (c)"),
        ("a", "redis_cpu_us_per_job", "Redis CPU/job (a)"), ("b", "redis_cpu_us_per_job", "Redis CPU/job (b)"),
        ("a", "redis_cmds_per_job", "Redis cmds/job (a)"), ("b", "redis_cmds_per_job", "Redis cmds/job (b)"),
        ("a", "worker_peak_rss_mib", "worker peak RSS (a)"),
        ("c", "latency_ms.p50", "latency p50 (c)"), ("c", "latency_ms.p99", "latency p99 (c)")]
for mode, key, label in rows:
    if mode in r["modes"]:
        v = r["modes"][mode]["ratio_cascade_over_bullmq"][key]
        print('"%s" %.6g %.4f' % (label, v, math.log2(v)))
PY
read -r lo hi < <(awk '{ if (NR == 1 || $NF < lo) lo = $NF; if (NR == 1 || $NF > hi) hi = $NF } END {
  lo = (lo > 0 ? 0 : int(lo) - 2); hi = (hi < 0 ? 0 : int(hi) + 1); print lo, hi }' "$stack_work/ratios.dat")
tics=$(awk -v lo="$lo" -v hi="$hi" 'BEGIN { for (i = lo; i <= hi; i++) {
  l = (i >= 0) ? sprintf("%d", 2 ^ i) : sprintf("1/%d", 2 ^ -i); printf "%s\"%s\" %d", (i > lo ? ", " : ""), l, i } }')
gnuplot <<GP
set terminal pngcairo size 1000,560 font "DejaVu Sans,10" noenhanced
set output "$png"
set title "Cascade / BullMQ, ${n} jobs, $stamp (one run, one machine)\njobs/s: above 1 = Cascade faster; CPU, commands, RSS, latency: below 1 = Cascade uses less"
set style fill solid 0.8 border -1
set boxwidth 0.7
set yrange [$lo:$hi]
set ytics ($tics)
set grid ytics
set xtics rotate by -35
set xrange [-0.6:*]
set rmargin 8
set ylabel "Cascade / BullMQ (log scale)"
set xzeroaxis lw 2 lc rgb "black"
plot "$stack_work/ratios.dat" using 0:3:xtic(1) with boxes notitle lc rgb "#3070b0", \
     "" using 0:(\$3 >= 0 ? \$3 + 0.25 : \$3 - 0.25):(sprintf("%.3g", \$2)) with labels notitle
GP
echo "chart: $png"
