#!/usr/bin/env bash
# Instructions per request, a number that a busy machine does not move (unlike req/s): serves
# the hello-world ceiling and the service under `valgrind --tool=callgrind`, sends REQUESTS
# sequential keep-alive requests (after a warm-up), and prints the instructions the server
# executed per request for `GET /health` (hello-world and service) and `GET /api/auth/me` (service
# on PostgreSQL, a bearer token), with quiet (`warn`) and production (`info`) logging.
# The profiles stay in OUT_DIR for `callgrind_annotate`.
#   bench/callgrind.sh                       # the release binary, 2000 requests
#   BENCH_BIN=target-prof/release/autorisen HELLO_BIN=… bench/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
HELLO_BIN=${HELLO_BIN:-target/release/examples/hello}
OUT_DIR=${OUT_DIR:-target/callgrind}
mkdir -p "$OUT_DIR"
bench_prepare
command -v valgrind >/dev/null || { echo "bench/callgrind.sh needs valgrind" >&2; exit 2; }

# send PORT PATH N [TOKEN]: N sequential requests on one keep-alive connection; fails on a
# non-2xx answer.
send() {
  timeout 600 python3 - "$@" <<'PY'
import http.client, sys
port, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
headers = {"Authorization": "Bearer " + sys.argv[4]} if len(sys.argv) > 4 else {}
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
for _ in range(n):
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    if r.status >= 300:
        sys.exit(f"{path} answered {r.status}")
PY
}

# profile NAME PORT PID PATH [TOKEN]: warm up, zero the counters, send REQUESTS, dump; prints
# the instructions per request.
profile() {
  local name=$1 port=$2 pid=$3 path=$4 token=${5:-} before ir
  send "$port" "$path" "$WARMUP" ${token:+"$token"}
  callgrind_control -z "$pid" >/dev/null 2>&1
  send "$port" "$path" "$REQUESTS" ${token:+"$token"}
  before=$(dumps "$pid")
  callgrind_control -d "$name" "$pid" >/dev/null 2>&1
  local deadline=$((SECONDS + 60)) file
  while [ "$(dumps "$pid")" -le "$before" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "callgrind wrote no dump for $name" >&2; return 1; }
    sleep 0.2
  done
  file="$OUT_DIR/callgrind.out.$pid.$(dumps "$pid")"
  cp "$file" "$OUT_DIR/$name.out"
  ir=$(awk '/^summary:/ {print $2}' "$file")
  echo "| $name | $path | $((ir / REQUESTS)) |"
}

dumps() { find "$OUT_DIR" -name "callgrind.out.$1.*" | wc -l; }

echo "| run | endpoint | instructions per request |"
echo "|---|---|---:|"
rm -f "$OUT_DIR"/callgrind.out.*
port=$(free_port)
PORT=$port valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/callgrind.out.%p" "$HELLO_BIN" \
  >/dev/null 2>>"$BENCH_TMP/valgrind.log" &
hello=$!
BENCH_PIDS+=("$hello")
WAIT_UP_SECONDS=120 wait_up "$port" "$hello"
profile hello "$port" "$hello" /health
stop_pid "$hello"

for logging in warn info; do
  bench_db postgres
  autorisen_cli migrate >/dev/null
  port=$(free_port)
  # shellcheck disable=SC2046 # the settings are VAR=value words
  env -i "${BENCH_ENV[@]}" DATABASE_URL="$DB_URL" DATA_DIR="$BENCH_TMP" PORT="$port" \
    RATE_LIMIT_GENERAL=1000000000/60 RATE_LIMIT_AUTH=1000000000/60 $(logging_env "$logging") \
    "${BENCH_SERVER_ENV[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/callgrind.out.%p" \
    "$BENCH_BIN" serve >/dev/null 2>>"$BENCH_TMP/server.log" &
  SERVER_PID=$!
  WAIT_UP_SECONDS=120 wait_up "$port" "$SERVER_PID"
  token=$(curl -fsS --max-time 60 -X POST "http://127.0.0.1:$port/api/auth/register" \
    -H 'content-type: application/json' \
    -d '{"email":"grind@example.com","password":"orbit-velvet-cactus-lantern-42","first_name":"G"}' |
    jq -r .access_token)
  profile "service-$logging-health" "$port" "$SERVER_PID" /health
  profile "service-$logging-me" "$port" "$SERVER_PID" /api/auth/me "$token"
  stop_server
done
echo
echo "Logging: warn = LOG_FORMAT=json LOG_LEVEL=warn; info = LOG_FORMAT=json LOG_LEVEL=info" \
  "(production, the access log on). $REQUESTS sequential keep-alive requests after $WARMUP" \
  "of warm-up; the server's instructions (callgrind Ir, every thread) divided by $REQUESTS."
