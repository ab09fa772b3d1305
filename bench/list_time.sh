#!/bin/bash
# Times an environment's flag lists (GET …/environments/{e}/flags?fields=summary, then the full
# form), five requests each, on a fresh server with N flags created in bulk.
#   bench/list_time.sh build/release/server/gonfalon 18601 10000
# Prints "seconds bytes" per request; the first of each form includes the environment's first
# use (its load and, for the full form, encoding each flag's JSON once).
set -euo pipefail
BIN=$1; PORT=$2; N=$3
D=$(mktemp -d)
T=gfa_list_time_admin_token_0123456789abcdef
H="Authorization: Bearer $T"
GONFALON_ADMIN_TOKEN=$T "$BIN" serve --listen 127.0.0.1:"$PORT" --data-dir "$D/data" --max-body-bytes 16777216 >"$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 50); do curl -sf "localhost:$PORT/readyz" >/dev/null && break; sleep 0.2; done
curl -sf -o /dev/null -H "$H" -XPOST "localhost:$PORT/api/v1/projects" -d '{"key":"p","environments":["e"]}'
for b in $(seq 0 $((N / 1000 - 1))); do
  python3 -c "import json,sys; b=int(sys.argv[1]); print(json.dumps({'flags':[{'key':'f%d'%i,'name':'Flag %d'%i,'variations':[False,True],'tags':['t']} for i in range(b*1000,b*1000+1000)]}))" "$b" >"$D/bulk.json"
  curl -sf -o /dev/null -H "$H" -XPOST "localhost:$PORT/api/v1/projects/p/flags" --data-binary @"$D/bulk.json"
done
for form in '?fields=summary' ''; do
  echo "GET …/flags$form"
  for _ in 1 2 3 4 5; do
    curl -sf -o /dev/null -w "%{time_total} %{size_download}\n" -H "$H" "localhost:$PORT/api/v1/projects/p/environments/e/flags$form"
  done
done
