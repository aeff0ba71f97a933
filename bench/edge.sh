#!/usr/bin/env bash
# Edge-protection benchmark: GET /health (exempt) and GET /api/status (limited) with the limiter
# off, on the memory backend (enforce, limits too high to trip) and on Redis, same run, with
# production logging (LOG_FORMAT=json LOG_LEVEL=info), printed as a markdown table. The Redis
# rows must really have used Redis: after each row the limiter's own report
# (GET /api/admin/rate-limits, as an admin made for the run) must say backend `redis` with no
# backend errors, and the general policy's keys under the server's REDIS_KEY_PREFIX
# (`<prefix>rl:general:…`) must have been seen in Redis during the /api/status row; otherwise the
# script fails (exit 1). Never part of the tests; run
# it on a quiet machine.
#   bench/edge.sh                              # release build, 10 s per row
#   DURATION=2 PROFILE=debug bench/edge.sh     # quick smoke run of the script itself
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
BENCH_BIN=target/$PROFILE/autorisen
source bench/lib.sh
CONNECTIONS=${CONNECTIONS:-64}
ADMIN_EMAIL=bench.admin@example.com
ADMIN_PASSWORD=orbit-velvet-cactus-lantern-42

bench_prepare
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bin autorisen; fi

# The limiter's report as "backend errors", read as the run's admin.
limiter_report() {
  curl -fsS --max-time 10 "$SERVER_URL/api/admin/rate-limits" -H "Authorization: Bearer $ADMIN_TOKEN" |
    jq -r '"\(.backend) \(.backend_errors)"'
}

# Counts keys matching PREFIX* every 0.2 s until $BENCH_TMP/stop-sampling exists (or a deadline);
# keeps the most seen in $BENCH_TMP/keys-seen. (A limit this high keeps each key about 1 ms after
# its last request, so keys are looked for while the load runs.)
sample_keys() {
  local prefix=$1 most=0 n deadline=$((SECONDS + DURATION + 60))
  echo 0 >"$BENCH_TMP/keys-seen"
  while [ ! -e "$BENCH_TMP/stop-sampling" ] && [ "$SECONDS" -lt "$deadline" ]; do
    n=$(redis_keys "$prefix")
    if [ "$n" -gt "$most" ]; then most=$n; echo "$most" >"$BENCH_TMP/keys-seen"; fi
    sleep 0.2
  done
}

fail() { echo "FAIL: $*" >&2; exit 1; }

HIGH=(RATE_LIMIT_MODE=enforce RATE_LIMIT_GENERAL=1000000000/60)
# shellcheck disable=SC2207 # the settings are VAR=value words
PRODUCTION_LOGS=($(logging_env info))
echo "Logging: LOG_FORMAT=json LOG_LEVEL=info (production; /api/status is access-logged, /health" \
  "is an exempt probe logged at debug). ${DURATION} s per row."
echo
echo "| limiter | endpoint | connections | req/s | p50 (ms) | p99 (ms) | HTTP >= 400 | socket errors | peak RSS (MB) | log lines dropped | limiter backend, errors | Redis general-limit keys seen |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
for setup in off memory redis; do
  prefix="autorisen-bench:$$:$RANDOM:"
  if [ "$setup" = redis ]; then BENCH_REDIS_PREFIXES+=("$prefix"); fi
  bench_db sqlite
  autorisen_cli AUTORISEN_ADMIN_PASSWORD="$ADMIN_PASSWORD" create-admin --email "$ADMIN_EMAIL" >/dev/null ||
    fail "could not create the run's admin (autorisen create-admin)"
  common=(REDIS_KEY_PREFIX="$prefix" MAX_IN_FLIGHT=100000 MAX_CONCURRENT_PER_IP=100000 "${PRODUCTION_LOGS[@]}")
  case $setup in
    off) serve "${common[@]}" RATE_LIMIT_MODE=off ABUSE_BAN_THRESHOLD=0 ;;
    memory) serve "${common[@]}" "${HIGH[@]}" ;;
    redis) serve "${common[@]}" "${HIGH[@]}" REDIS_URL="$REDIS_URL_BENCH" ;;
  esac
  ADMIN_TOKEN=$(curl -fsS --max-time 30 -X POST "$SERVER_URL/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | jq -r '.access_token // empty')
  [ -n "$ADMIN_TOKEN" ] || fail "could not log in as the run's admin ($setup)"
  for path in /health /api/status; do
    keys=-
    if [ "$setup" = redis ]; then
      rm -f "$BENCH_TMP/stop-sampling"
      sample_keys "${prefix}rl:general:" &
      sampler=$!
      BENCH_PIDS+=("$sampler")
    fi
    measure_row "$CONNECTIONS" "$SERVER_URL" "$path" "$SERVER_PID"
    if [ "$setup" = redis ]; then
      touch "$BENCH_TMP/stop-sampling"
      wait "$sampler" || true
      keys=$(cat "$BENCH_TMP/keys-seen")
    fi
    report=$(limiter_report) || fail "GET /api/admin/rate-limits did not answer ($setup)"
    read -r backend errors <<<"$report"
    echo "| $setup | $path | $CONNECTIONS | $ROW_CELLS | $backend, $errors | $keys |"
    if [ "$setup" = redis ]; then
      [ "$backend" = redis ] || fail "the Redis rows ran on the '$backend' limiter backend, not Redis"
      [ "$errors" = 0 ] || fail "the limiter counted $errors Redis backend errors (it fell back to memory or refused); see $REDIS_URL_BENCH"
      if [ "$path" = /api/status ] && [ "$keys" -eq 0 ]; then
        fail "no key of the general policy under the server's REDIS_KEY_PREFIX ('${prefix}rl:general:*') was seen in Redis during the /api/status row"
      fi
    fi
  done
  stop_server
done

echo
peak_note
echo "Log lines dropped: the rise of /api/status \`log_lines_dropped\` during the row."
echo "Limiter backend, errors: GET /api/admin/rate-limits after the row (backend errors since start)."
echo "Redis general-limit keys seen: the most keys <REDIS_KEY_PREFIX>rl:general:* found in Redis" \
  "during the row (none expected for the exempt /health); the Redis rows fail the run unless" \
  "backend = redis, 0 errors, and such keys were seen during /api/status."
