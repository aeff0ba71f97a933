#!/usr/bin/env bash
# Load test of the identity endpoints against a RUNNING server; prints a markdown table.
#
#   BASE_URL=http://127.0.0.1:8000 AUTORISEN_PID=<server pid> DURATION=30s bench/auth.sh
#
# Measures: GET /api/auth/me at 64 connections; POST /api/auth/login at 16 connections; /me at
# 16 connections while 64 connections flood /api/auth/login; and the server's RSS after each.
# Targets (issue 3, PostgreSQL, release build, 2 cores): /me >= 13,000 req/s with p99 <= 5 ms;
# login >= 100/s with p99 <= 500 ms and no errors; /me p99 <= 20 ms during the flood; RSS <= 100 MB.
# Per-IP rate limits on the `auth` route class must be raised for the run (all load comes from
# one address). Needs: wrk, curl, jq.
set -euo pipefail

BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
DURATION="${DURATION:-30s}"
THREADS="${THREADS:-2}"
PASSWORD="${BENCH_PASSWORD:-orbit-velvet-cactus-lantern-42}"
EMAIL="bench.$(date +%s).$$@example.com"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"; [[ -n "${FLOOD_PID:-}" ]] && kill "$FLOOD_PID" 2>/dev/null || true' EXIT

for tool in wrk curl jq; do
    command -v "$tool" >/dev/null || { echo "bench/auth.sh needs $tool" >&2; exit 2; }
done

# The server's pid, for RSS: given, or whoever listens on the port.
PORT="$(sed -E 's#^[a-z]+://[^:/]+:?([0-9]*).*#\1#' <<<"$BASE_URL")"
PID="${AUTORISEN_PID:-$(ss -ltnpH "sport = :${PORT:-80}" 2>/dev/null | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -1)}"

rss_mb() {
    if [[ -n "$PID" && -r "/proc/$PID/status" ]]; then
        awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"
    else
        echo "n/a"
    fi
}

# One account to log in as, and a token for /me.
curl -fsS -X POST "$BASE_URL/api/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"first_name\":\"Bench\"}" >"$WORK/register.json"
TOKEN="$(jq -r .access_token "$WORK/register.json")"

# wrk scripts: each prints "RESULT <req/s> <p99 ms> <non-2xx or socket errors>" when done.
cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
    local e = summary.errors
    local errors = e.connect + e.read + e.write + e.status + e.timeout
    io.write(string.format("RESULT %.0f %.2f %d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, errors))
end
LUA
cat "$WORK/report.lua" >"$WORK/login.lua"
cat >>"$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"$EMAIL","password":"$PASSWORD"}'
LUA

run() { # connections script-or-empty path extra-args...
    local conns="$1" script="$2" path="$3"; shift 3
    wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s "$script" "$@" "$BASE_URL$path" | awk '/^RESULT/ { print $2, $3, $4 }'
}

echo "Running (each step $DURATION) against $BASE_URL ..." >&2
read -r ME_RPS ME_P99 ME_ERR < <(run 64 "$WORK/report.lua" /api/auth/me -H "Authorization: Bearer $TOKEN")
ME_RSS="$(rss_mb)"
read -r LOGIN_RPS LOGIN_P99 LOGIN_ERR < <(run 16 "$WORK/login.lua" /api/auth/login)
LOGIN_RSS="$(rss_mb)"
wrk -t1 -c64 -d"$DURATION" -s "$WORK/login.lua" "$BASE_URL/api/auth/login" >"$WORK/flood.txt" 2>&1 &
FLOOD_PID=$!
sleep 1
read -r FLOOD_RPS FLOOD_P99 FLOOD_ERR < <(run 16 "$WORK/report.lua" /api/auth/me -H "Authorization: Bearer $TOKEN")
FLOOD_RSS="$(rss_mb)"
wait "$FLOOD_PID" || true
FLOOD_PID=""
FLOOD_LOGINS="$(awk '/^RESULT/ { print $2 }' "$WORK/flood.txt")"

cat <<TABLE

| scenario | connections | req/s | p99 (ms) | errors | RSS (MB) | target |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
| GET /api/auth/me | 64 | $ME_RPS | $ME_P99 | $ME_ERR | $ME_RSS | >= 13000 req/s, p99 <= 5 ms |
| POST /api/auth/login | 16 | $LOGIN_RPS | $LOGIN_P99 | $LOGIN_ERR | $LOGIN_RSS | >= 100/s, p99 <= 500 ms, 0 errors |
| GET /api/auth/me during login flood ($FLOOD_LOGINS logins/s at 64 conns) | 16 | $FLOOD_RPS | $FLOOD_P99 | $FLOOD_ERR | $FLOOD_RSS | p99 <= 20 ms, RSS <= 100 MB |
TABLE
