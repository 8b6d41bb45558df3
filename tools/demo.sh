#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a local redis-server and
# cascade-mock-provider on free loopback ports, runs cascaded, creates an account, an API
# key and channel keys, sends three jobs and prints their results, then stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source tools/stack.sh
echo "building (first time: a few minutes)..."
build_targets cascaded cascadectl cascade-mock-provider

bin=$root/build/tools
work=$stack_work
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

start_redis
export CASCADE_REDIS_URL=$redis_url
# Provider credentials are sealed in Redis under $CASCADE_MASTER_KEY_FILE, made by
# stack.sh (by hand: openssl rand -hex 32 > master.key && chmod 600 master.key).
start_mock "$bin/mock_provider/cascade-mock-provider"
mock=$mock_url
say "redis on 127.0.0.1:$redis_port, mock provider on $mock"

export CASCADE_TELEGRAM_API_BASE=$mock CASCADE_WABA_API_BASE=$mock CASCADE_POSTMARK_API_BASE=$mock
"$bin/cascaded/cascaded" --concurrency 64 >"$work/cascaded.log" 2>&1 &
stack_track $!

ctl="$bin/cascadectl/cascadectl"
say "cascadectl: an account, an API key, channel keys"
account=$($ctl account create --name "Demo Shop")
echo "account $account"
wa=$($ctl --json channel create --account "$account" --type whatsapp --name "shop phone" \
  --api-base "$mock" --session default --gateway-key @<(printf demo-gateway-key))
tg=$($ctl --json channel create --account "$account" --type telegram --name "shop bot" \
  --bot-token - <<<"123456:demo-bot-token")
field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
wa_key=$(field key <<<"$wa"); tg_key=$(field key <<<"$tg")
echo "whatsapp channel $(field id <<<"$wa"), telegram channel $(field id <<<"$tg") (keys shown once, kept in this shell only)"
api=$($ctl --json apikey create --account "$account" --name demo --scopes send)
api_key=$(field key <<<"$api")
echo "API key $(field id <<<"$api")"
other=$($ctl account create --name "Someone Else")
other_tg=$($ctl --json channel create --account "$other" --type telegram --name "their bot" \
  --bot-token - <<<"999:their-token" | field key)

say "job 1: delivered on its primary channel (telegram)"
cat >"$work/job1.json" <<JSON
{"keys":{"telegram":{"token":"$tg_key"}},"to":{"telegram":"123456789"},
 "message":{"text":"Your code is 123456"},"metadata":{"order":"A-1042"}}
JSON
export CASCADE_API_KEY=$api_key  # send's key, off the command line
$ctl send --wait 15s "$work/job1.json" || true

say "job 2: the WhatsApp device fails (the gateway answers 503), tier 1 (telegram) delivers"
curl -s -X POST "$mock/__mock/rules" -d '{"provider":"whatsapp","recipient":"33612345678","status":503}' >/dev/null
cat >"$work/job2.json" <<JSON
{"keys":{"whatsapp":{"token":"$wa_key"},
         "telegram":{"token":"$tg_key","fallback":true,"fallback_sequence":1}},
 "to":{"phone":"+33612345678","telegram":"123456789"},
 "message":{"text":"Your parcel is on its way"}}
JSON
$ctl send --wait 15s "$work/job2.json" || true

say "job 3: rejected with 403 (the telegram channel key belongs to another account)"
cat >"$work/job3.json" <<JSON
{"keys":{"telegram":{"token":"$other_tg"}},"to":{"telegram":"123456789"},
 "message":{"text":"Not yours"}}
JSON
$ctl send --wait 15s "$work/job3.json" || true

say "what the mock provider received"
curl -s "$mock/__mock/requests" | /usr/bin/python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print("  %-9s to %-14s answered %s  text=%r" % (r["provider"], r["recipient"], r["status"], r["text"]))'
say "done: stopping cascaded, the mock provider and redis"
