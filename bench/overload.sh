#!/usr/bin/env bash
# Overload benchmark (issue 15 point 14): GET /api/auth/me with a bearer token at CONNECTIONS
# (2000) keep-alive connections against MAX_IN_FLIGHT=1024 in front of a 16-connection
# PostgreSQL pool, once with the queue-based shedding off (DATABASE_QUEUE_TARGET_MS=0, the old
# behaviour) and once on (100 ms), then at 64 connections with it on (light load: nothing should
# be shed). One server start per row, on a fresh database, with production logging
# (LOG_FORMAT=json LOG_LEVEL=info) and the per-IP limits lifted (all load comes from one
# address). The load comes from examples/overload.rs, which reports the latencies of the 2xx and
# of the 503 answers apart (wrk mixes them). Prints a markdown table; fails (exit 1, `FAIL: …`)
# if a server does not start, the token does not work, or a row admitted nothing.
#   bench/overload.sh                                              # release build, 10 s per row
#   PROFILE=debug DURATION=2 CONNECTIONS=300 bench/overload.sh     # smoke run of the script
# Settings: CONNECTIONS (2000), LIGHT_CONNECTIONS (64), DURATION (10), WARMUP (2, not recorded),
# QUEUE_TARGETS ("0 100"), REQUEST_TIMEOUT (10 s; a request slower than it counts as a timeout).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BENCH_BIN=$TARGET_DIR/$PROFILE/autorisen
LOADGEN=$TARGET_DIR/$PROFILE/examples/overload
source bench/lib.sh
CONNECTIONS=${CONNECTIONS:-2000}
LIGHT_CONNECTIONS=${LIGHT_CONNECTIONS:-64}
WARMUP=${WARMUP:-2}
WARMUP=${WARMUP%s}
QUEUE_TARGETS=${QUEUE_TARGETS:-0 100}
REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-10}
PASSWORD=orbit-velvet-cactus-lantern-42

fail() { echo "FAIL: $*" >&2; exit 1; }

bench_prepare
case $PROFILE in
  debug) cargo build --quiet --bin autorisen --example overload ;;
  *) cargo build --quiet --profile "$PROFILE" --bin autorisen --example overload ;;
esac

# Both the server and the load generator hold a descriptor per connection (plus the pool, the
# log, the listener): below that the server answers new connections 503 by itself.
need=$((CONNECTIONS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null ||
    fail "the open-file limit is $(ulimit -n) (hard $(ulimit -Hn)); $CONNECTIONS connections need $need"
fi

SERVER_SETTINGS=(
  MAX_IN_FLIGHT=1024 DATABASE_MAX_CONNECTIONS=16
  # All load comes from one address: the per-IP limits are lifted as bench/identity.sh does,
  # and the per-IP caps on requests and connections are above any row.
  RATE_LIMIT_GENERAL=1000000000/60 RATE_LIMIT_AUTH=1000000000/60
  MAX_CONCURRENT_PER_IP=100000 MAX_CONNECTIONS_PER_IP=100000
  LOG_FORMAT=json LOG_LEVEL=info
)

# A customer on the running server; prints its access token.
register() {
  curl -fsS --max-time 30 -X POST "$SERVER_URL/api/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"bench.overload.$$.$RANDOM@example.com\",\"password\":\"$PASSWORD\",\"first_name\":\"Bench\"}" |
    jq -r '.access_token // empty'
}

# The log of a row ($1) summed up as JSON: access-log lines with status 503, and the lines of the
# shed summary (message `requests shed`) with their `count` fields added up.
log_summary() {
  local access shed count
  access=$(grep '"request finished"' "$1" | grep -c '"status":503[,}]' || true)
  shed=$(grep -c '"requests shed"' "$1" || true)
  count=$(grep '"requests shed"' "$1" | jq -R -n '[inputs | fromjson? | .count // 0] | add // 0')
  printf '{"access_503": %s, "shed_lines": %s, "shed_count": %s}' "$access" "$shed" "$count"
}

# print_row REPORT LOG_SUMMARY CONNECTIONS TARGET PEAK LINES DROPPED CLIENTS: one table row from the load
# generator's report and the row's log. 503 answers (whole load) count the warm-up too, like
# the log columns.
print_row() {
  jq -r --argjson log "$2" --arg c "$3" --arg target "$4" --arg peak "$5" --arg lines "$6" \
    --arg dropped "$7" --arg clients "$8" '
    def n: if . == null then "-" else tostring end;
    .classes as $k
    | ($k["429"].count + $k.other.count + $k.errors.count) as $others
    | ([ "429: \($k["429"].count)", "other statuses: \(.other_statuses | tojson)",
         (.errors | to_entries[] | "\(.key): \(.value)") ]
       | map(select(test(": (0|\\{\\})$") | not)) | join(", ")) as $detail
    | [ $c, $clients, $target, (.req_per_s | n), ($k["2xx"].count | n), ($k["2xx"].p50_ms | n),
        ($k["2xx"].p99_ms | n), ($k["2xx"].max_ms | n), ($k["503"].count | n),
        ($k["503"].p99_ms | n), (if $others == 0 then "0" else "\($others) (\($detail))" end),
        (.reconnects | n), $peak, $lines, $dropped, ((.warmup["503"] + $k["503"].count) | n),
        ($log.access_503 | n), "\($log.shed_lines) (\($log.shed_count))" ]
    | "| " + join(" | ") + " |"' "$1"
}

# row CONNECTIONS QUEUE_TARGET_MS CLIENTS: one server, one load, one table row. CLIENTS is
# `at once` (every connection asks again as soon as it is answered, 503s included: the worst
# case, in which answering refusals takes the cores) or `Retry-After` (a connection refused with
# 503 or 429 waits what `Retry-After` says, as the web app and well-behaved clients do).
row() {
  local c=$1 target=$2 clients=$3 token status log_from before peak dropped lines honour=()
  [ "$clients" = Retry-After ] && honour=(--honour-retry-after)
  start_server postgres "${SERVER_SETTINGS[@]}" DATABASE_QUEUE_TARGET_MS="$target" ||
    fail "the server did not start (DATABASE_QUEUE_TARGET_MS=$target); its log is above"
  token=$(register) || true
  [ -n "$token" ] || fail "could not register the run's customer on $SERVER_URL"
  status=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$SERVER_URL/api/auth/me" \
    -H "Authorization: Bearer $token") || true
  [ "$status" = 200 ] || fail "GET /api/auth/me with the run's token answered $status, not 200"
  before=$(dropped_lines "$SERVER_URL")
  log_from=$(($(wc -l <"$BENCH_TMP/server.log") + 1))
  peak_reset "$SERVER_PID"
  timeout -k 5 $((WARMUP + DURATION + REQUEST_TIMEOUT + 60)) "$LOADGEN" \
    --url "$SERVER_URL/api/auth/me" --connections "$c" --duration "$DURATION" --warmup "$WARMUP" \
    --timeout "$REQUEST_TIMEOUT" --header "Authorization: Bearer $token" "${honour[@]}" \
    >"$BENCH_TMP/load.json" 2>"$BENCH_TMP/load.err" ||
    { cat "$BENCH_TMP/load.err" >&2; fail "the load generator failed ($c connections, target $target ms)"; }
  peak=$(peak_mb "$SERVER_PID")
  dropped=$(dropped_since "$before" "$SERVER_URL")
  # The log is counted up to the server's exit, so a shed summary still pending is included.
  stop_server
  tail -n "+$log_from" "$BENCH_TMP/server.log" | grep -v '^--- serve' >"$BENCH_TMP/row.log" || true
  lines=$(wc -l <"$BENCH_TMP/row.log")
  [ "$(jq '.classes["2xx"].count' "$BENCH_TMP/load.json")" -gt 0 ] ||
    fail "no request was admitted ($c connections, target $target ms): $(cat "$BENCH_TMP/load.json")"
  print_row "$BENCH_TMP/load.json" "$(log_summary "$BENCH_TMP/row.log")" "$c" "$target" "$peak" \
    "$lines" "$dropped" "$clients"
}

echo "GET /api/auth/me (PostgreSQL, MAX_IN_FLIGHT=1024, DATABASE_MAX_CONNECTIONS=16, production" \
  "logging, $PROFILE build): ${WARMUP} s warm-up (not in the latencies), ${DURATION} s measured," \
  "request timeout ${REQUEST_TIMEOUT} s."
echo
echo "| connections | clients ask again | queue target (ms) | req/s | 2xx | 2xx p50 (ms) | 2xx p99 (ms) | 2xx max (ms) | 503 | 503 p99 (ms) | other errors | reconnects | peak RSS (MB) | log lines written | log lines dropped | 503 answers (whole load) | 503 access-log lines | shed summary lines (sum of count) |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for clients in 'at once' Retry-After; do
  for target in $QUEUE_TARGETS; do
    row "$CONNECTIONS" "$target" "$clients"
  done
done
row "$LIGHT_CONNECTIONS" 100 'at once'

echo
peak_note
echo "Queue target: DATABASE_QUEUE_TARGET_MS (0: queue-based shedding off, only MAX_IN_FLIGHT sheds)."
echo "Clients ask again: at once (after every answer, 503s included) or after Retry-After (a 503 or" \
  "429 makes the connection wait the seconds it names)."
echo "req/s: answers of any status per measured second; latencies and counts are of the requests" \
  "started in the measured window (those in flight at its end are awaited)."
echo "Other errors: 429, other statuses, and failures: connect, timeout, closed (before the answer's" \
  "head was complete), body (a head with a broken body), other."
echo "Log columns cover the whole load (warm-up included) up to the server's exit: lines written" \
  "to the log file, lines dropped (/api/status log_lines_dropped; - when it did not answer)," \
  "access-log lines with status 503, and \"requests shed\" summary lines (their counts summed)."
