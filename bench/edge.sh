#!/usr/bin/env bash
# Edge-protection benchmark: GET /health (exempt) and GET /api/status (limited) with the limiter
# off, on the memory backend (enforce, limits too high to trip) and on Redis, same run, printed
# as a markdown table. Never part of the tests; run it on a quiet machine.
#   bench/edge.sh                              # release build, 10 s per row
#   DURATION=2 PROFILE=debug bench/edge.sh     # quick smoke run of the script itself
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PROFILE=${PROFILE:-release}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bin autorisen; fi
BIN=target/$PROFILE/autorisen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start LABEL [env...]: serves on SQLite with the given variables; sets PORT and PID.
start() {
  PORT=$(free_port)
  env AUTORISEN_ENV=test SECRET_KEY=bench-only-0123456789abcdef0123456789abcdef \
    DATABASE_URL="sqlite://$TMP/bench-$RANDOM.db" DATA_DIR="$TMP" PORT="$PORT" LOG_LEVEL=warn \
    REDIS_KEY_PREFIX="autorisen-bench:$RANDOM:" MAX_IN_FLIGHT=100000 MAX_CONCURRENT_PER_IP=100000 \
    "$@" "$BIN" serve >>"$TMP/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "server did not come up" >&2; cat "$TMP/server.log" >&2; exit 1
}

stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; }

row() {
  local label=$1 path=$2 out rps p99 errors
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT$path")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
  echo "| $label | $path | $CONNECTIONS | $rps | $p99 |${errors:+ $errors}"
}

HIGH=(RATE_LIMIT_GENERAL=1000000000/60)
echo "| limiter | endpoint | connections | req/s | p99 |"
echo "|---|---|---|---|---|"
for setup in off memory redis; do
  case $setup in
    off) start RATE_LIMIT_MODE=off ABUSE_BAN_THRESHOLD=0 ;;
    memory) start RATE_LIMIT_MODE=enforce "${HIGH[@]}" ;;
    redis) start RATE_LIMIT_MODE=enforce "${HIGH[@]}" REDIS_URL="$REDIS" ;;
  esac
  for path in /health /api/status; do row "$setup" "$path"; done
  stop
done
