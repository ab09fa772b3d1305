#!/usr/bin/env bash
# Fan-out: bench/fanout.sh [streams] [change sets per second] [seconds]
# Starts the release server (synced writes, as in production), opens the streams, writes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
RATE=${2:-10}
SECS=${3:-10}
DIR=$(mktemp -d)
cleanup() { kill "${SPID:-}" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
GONFALON_ADMIN_TOKEN=gfa_fanout_admin_token_0123456789 build/release/server/gonfalon serve --listen 127.0.0.1:0 \
  --data-dir "$DIR" --max-connections 20000 > "$DIR/out" 2>"$DIR/err" &
SPID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$DIR/out" && break; sleep 0.1; done
PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$DIR/out" | grep -o '[0-9]*$')
A=(-s -H "Authorization: Bearer gfa_fanout_admin_token_0123456789")
curl "${A[@]}" -X POST "localhost:$PORT/api/v1/projects" -d '{"key":"bench","environments":["production"]}' >/dev/null
KEY=$(curl "${A[@]}" -X POST "localhost:$PORT/api/v1/keys" -d '{"kind":"server","project":"bench","environment":"production"}' | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
build/release/bench/fanout "$PORT" gfa_fanout_admin_token_0123456789 "$KEY" "$N" "$RATE" "$SECS" "$SPID"
