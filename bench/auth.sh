#!/usr/bin/env bash
# Load test of the identity endpoints against a RUNNING server; prints markdown table rows.
#
#   BASE_URL=http://127.0.0.1:8000 AUTORISEN_PID=<server pid> DURATION=30 bench/auth.sh
#
# Measures: GET /api/auth/me at 64 and at 16 connections; POST /api/auth/login at 16; then a
# login flood (64 connections) started first and warmed up (FLOOD_WARMUP s, default 2), /me at 16
# connections for the full DURATION inside it, then the flood stopped: the flood gets its own row
# (its logins/s, answers >= 400 and socket errors over its whole run) beside /me's. Each row
# gives the server's peak RSS during it and the log lines it dropped (/api/status).
# Targets (PostgreSQL, release build, 2 cores): /me at 64 connections >= 15,000 req/s with
# p99 <= 5 ms (issue 8), reported at 16; login >= 100/s with p99 <= 500 ms and no errors; /me p99
# <= 20 ms during the flood; RSS <= 100 MB (issue 3).
# Per-IP rate limits on the `auth` route class must be raised for the run (all load comes from
# one address). Needs: wrk, curl, jq.
# LOGGING labels the logging column (bench/identity.sh passes the server's setting);
# AUTH_HEADER=0 leaves out the table header (for a caller printing several servers in one table).
set -euo pipefail

DURATION="${DURATION:-30}"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
PASSWORD="${BENCH_PASSWORD:-orbit-velvet-cactus-lantern-42}"
LOGGING="${LOGGING:-as configured}"
FLOOD_WARMUP="${FLOOD_WARMUP:-2}"
# wrk records no latency above its timeout (2 s by default) and counts such a request as a socket
# error: logins, slow by design and slower under a flood, get a longer one, so that their p99 is
# the real one and their socket errors are real failures.
LOGIN_TIMEOUT="${LOGIN_TIMEOUT:-10}"

for tool in wrk curl jq; do
    command -v "$tool" >/dev/null || { echo "bench/auth.sh needs $tool" >&2; exit 2; }
done

# The server's pid, for RSS: given, or whoever listens on the port.
PORT="$(sed -E 's#^[a-z]+://[^:/]+:?([0-9]*).*#\1#' <<<"$BASE_URL")"
PID="${AUTORISEN_PID:-$(ss -ltnpH "sport = :${PORT:-80}" 2>/dev/null | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -1)}"
DB="$(curl -fsS --max-time 5 "$BASE_URL/api/status" | jq -r '.database // "?"')"

# The accounts to log in as (LOGIN_ACCOUNTS, default 64), and a token for /me. Logins rotate over
# them: the lockout lets at most 10 guesses of one account be checked at once (issue 15), so 64
# connections logging in to one account would mostly be refused by design, which is not what
# these rows measure.
LOGIN_ACCOUNTS="${LOGIN_ACCOUNTS:-64}"
BODIES=""
for i in $(seq 1 "$LOGIN_ACCOUNTS"); do
    email="bench.$i.$(date +%s).$$@example.com"
    curl -fsS --max-time 30 -X POST "$BASE_URL/api/auth/register" -H 'content-type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$PASSWORD\",\"first_name\":\"Bench\"}" >"$BENCH_TMP/register.json"
    BODIES+="  '{\"email\":\"$email\",\"password\":\"$PASSWORD\"}',"$'\n'
done
TOKEN="$(jq -r .access_token "$BENCH_TMP/register.json")"
ME=(-H "Authorization: Bearer $TOKEN")
LOGIN_LUA="$(wrk_script login "local bodies = {
$BODIES}
local n = 0
request = function()
  n = n + 1
  return wrk.format(\"POST\", nil, {[\"Content-Type\"] = \"application/json\"}, bodies[n % #bodies + 1])
end")"

# print_row SCENARIO CONNECTIONS "RESULT fields" PEAK DROPPED TARGET
print_row() {
    local rps p50 p99 http sock _n
    read -r rps p50 p99 http sock _n <<<"$3"
    echo "| $DB | $LOGGING | $1 | $2 | $rps | $p50 | $p99 | $http | $sock | $4 | $5 | $6 |"
}

# step SCENARIO CONNECTIONS SCRIPT PATH TARGET [wrk args...]: one measured row.
step() {
    local scenario=$1 conns=$2 script=$3 path=$4 target=$5 before result
    shift 5
    before="$(dropped_lines "$BASE_URL")"
    peak_reset "$PID"
    result="$(measure "$conns" "$script" "$BASE_URL$path" "$@")"
    print_row "$scenario" "$conns" "$result" "$(peak_mb "$PID")" "$(dropped_since "$before" "$BASE_URL")" "$target"
}

echo "Running (each step ${DURATION} s, the flood ${FLOOD_WARMUP} s longer) against $BASE_URL ..." >&2
if [[ "${AUTH_HEADER:-1}" != 0 ]]; then
    echo "| database | logging | scenario | connections | req/s | p50 (ms) | p99 (ms) | HTTP >= 400 | socket errors | peak RSS (MB) | log lines dropped | target |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
fi
REPORT="$BENCH_TMP/report.lua"
step "GET /api/auth/me" 64 "$REPORT" /api/auth/me ">= 15000 req/s, p99 <= 5 ms (PostgreSQL)" "${ME[@]}"
step "GET /api/auth/me" 16 "$REPORT" /api/auth/me "p99 reported" "${ME[@]}"
step "POST /api/auth/login" 16 "$LOGIN_LUA" /api/auth/login ">= 100/s, p99 <= 500 ms, 0 errors" \
    --timeout "${LOGIN_TIMEOUT}s"

# The flood runs over the whole /me step: started first, warmed up, stopped (SIGINT: wrk then
# reports what it did) once /me is done. Its -d is only the deadline.
before="$(dropped_lines "$BASE_URL")"
peak_reset "$PID"
wrk -t1 -c64 -d"$((FLOOD_WARMUP + DURATION + 30))s" --timeout "${LOGIN_TIMEOUT}s" -s "$LOGIN_LUA" "$BASE_URL/api/auth/login" \
    >"$BENCH_TMP/flood.txt" 2>&1 &
FLOOD_PID=$!
BENCH_PIDS+=("$FLOOD_PID")
sleep "$FLOOD_WARMUP"
alive "$FLOOD_PID" || { echo "the login flood ended before /me started:" >&2; cat "$BENCH_TMP/flood.txt" >&2; exit 1; }
ME_RESULT="$(measure 16 "$REPORT" "$BASE_URL/api/auth/me" "${ME[@]}")"
alive "$FLOOD_PID" || { echo "the login flood ended before /me did:" >&2; cat "$BENCH_TMP/flood.txt" >&2; exit 1; }
stop_pid "$FLOOD_PID" INT
FLOOD_RESULT="$(awk '/^RESULT/ { print $2, $3, $4, $5, $6, $7 }' "$BENCH_TMP/flood.txt")"
[[ -n "$FLOOD_RESULT" ]] || { echo "the login flood gave no result:" >&2; cat "$BENCH_TMP/flood.txt" >&2; exit 1; }
PEAK="$(peak_mb "$PID")"
DROPPED="$(dropped_since "$before" "$BASE_URL")"
print_row "POST /api/auth/login flood (whole run, $((FLOOD_WARMUP + DURATION)) s)" 64 "$FLOOD_RESULT" "$PEAK" "$DROPPED" "its own errors shown"
print_row "GET /api/auth/me during the login flood" 16 "$ME_RESULT" "$PEAK" "$DROPPED" "p99 <= 20 ms, peak RSS <= 100 MB"
