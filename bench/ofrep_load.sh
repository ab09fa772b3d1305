#!/usr/bin/env bash
# OFREP single-flag evaluation under load (wrk, keep-alive, loopback), next to a trivial
# Beast server measured in the same run. Usage: bench/ofrep_load.sh [connections] [seconds]
# Needs the release build (make bench-server does both).
# PROFILE=perf.data bench/ofrep_load.sh also records the server with `perf record -g` during
# its run (perf report -i perf.data --no-children).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-64}
SECS=${2:-10}
BIN=build/release/server/gonfalon
TRIVIAL=build/release/bench/trivial_http_server
command -v wrk >/dev/null || { echo "wrk missing: scripts/install-deps --bench"; exit 1; }
DIR=$(mktemp -d)
cleanup() { kill "${SPID:-}" "${TPID:-}" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

GONFALON_ADMIN_TOKEN=gfa_load_admin_token_0123456789 $BIN serve --listen 127.0.0.1:0 --data-dir "$DIR" \
  --no-sync > "$DIR/out" 2>"$DIR/err" &
SPID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$DIR/out" && break; sleep 0.1; done
PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$DIR/out" | grep -o '[0-9]*$')
A=(-s -H "Authorization: Bearer gfa_load_admin_token_0123456789")
curl "${A[@]}" -X POST "localhost:$PORT/api/v1/projects" -d '{"key":"load","environments":["production"]}' >/dev/null
curl "${A[@]}" -X POST "localhost:$PORT/api/v1/projects/load/flags" -d '{"key":"checkout","variations":[false,true]}' >/dev/null
curl "${A[@]}" -X PATCH "localhost:$PORT/api/v1/projects/load/environments/production/flags/checkout" \
  -d '{"on":true,"fallthrough":{"variation":null,"rollout":{"variations":[{"variation":0,"weight":50000},{"variation":1,"weight":50000}]}},"rules":[{"id":"fr","variation":1,"clauses":[{"contextKind":"user","attribute":"country","op":"in","values":["FR"]}]}]}' >/dev/null
KEY=$(curl "${A[@]}" -X POST "localhost:$PORT/api/v1/keys" -d '{"kind":"server","project":"load","environment":"production"}' | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
cat > "$DIR/ofrep.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"context":{"targetingKey":"user-42","country":"DE"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
curl -s -X POST "localhost:$PORT/ofrep/v1/evaluate/flags/checkout" -H "Authorization: Bearer $KEY" \
  -d '{"context":{"targetingKey":"user-42","country":"DE"}}'; echo
echo "== gonfalon OFREP single flag: wrk -t2 -c$CONNS -d${SECS}s --latency"
if [[ -n "${PROFILE:-}" ]]; then
  perf record -F 499 ${PERF_ARGS:--g} -p $SPID -o "$PROFILE" -- sleep "$SECS" 2>/dev/null &
fi
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$DIR/ofrep.lua" "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags/checkout" | tee "$DIR/g.txt"
kill $SPID; wait $SPID 2>/dev/null || true; SPID=
$TRIVIAL 18099 2 > "$DIR/tout" &
TPID=$!
for _ in $(seq 1 50); do grep -q "listening" "$DIR/tout" && break; sleep 0.1; done
echo "== trivial Beast server (200 ok): same wrk settings"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$DIR/ofrep.lua" "http://127.0.0.1:18099/" | tee "$DIR/t.txt"
G=$(grep Requests/sec "$DIR/g.txt" | awk '{print $2}')
T=$(grep Requests/sec "$DIR/t.txt" | awk '{print $2}')
echo "== gonfalon $G req/s, trivial $T req/s, ratio trivial/gonfalon $(echo "scale=2; $T / $G" | bc)"
