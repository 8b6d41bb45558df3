#!/usr/bin/env bash
# ctest smoke test (label bench): bench/compare.sh with 2,000 jobs and a 3 s mode (c) must
# finish, print its table and write a JSON with every figure for both engines and every
# mode, and the chart.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
bench/compare.sh 2000 --quick | tee "$log"
json=$(sed -n 's/^JSON: //p' "$log")
png=$(sed -n 's/^chart: //p' "$log")
[ -s "$png" ] || { echo "no chart at '$png'" >&2; exit 1; }
/usr/bin/python3 - "$json" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
missing = []
def need(obj, path, flat=False):
    v = obj
    for k in ([path] if flat else path.split(".")):
        if not isinstance(v, dict) or k not in v:
            missing.append(path); return
        v = v[k]
    if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        missing.append(f"{path} = {v!r}")
for k in ("nproc", "mem_gib"):
    need(r["machine"], k)
ab = ["jobs", "jobs_per_s", "worker_cpu_us_per_job", "redis_cpu_us_per_job", "redis_cmds_per_job", "worker_peak_rss_mib"]
c = ["jobs", "offered_per_s", "latency_ms.p50", "latency_ms.p99", "latency_ms.max", "worker_cpu_us_per_job",
     "redis_cpu_us_per_job", "redis_cmds_per_job", "worker_peak_rss_mib"]
for mode, fields in (("a", ab), ("b", ab), ("c", c)):
    m = r["modes"][mode]
    for engine in ("cascade", "bullmq"):
        for f in fields:
            need(m[engine], f)
    for f in fields:
        if f not in ("jobs", "offered_per_s"):
            need(m["ratio_cascade_over_bullmq"], f, flat=True)
if missing:
    sys.exit("missing or not positive in the JSON: " + ", ".join(missing))
print("compare JSON complete:", sys.argv[1])
PY
