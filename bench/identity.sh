#!/usr/bin/env bash
# Identity benchmark, self-contained: builds release, serves on PostgreSQL then SQLite with the
# per-IP limits lifted (all load comes from one address), each with quiet logging
# (LOG_LEVEL=warn) and with production logging (LOG_FORMAT=json LOG_LEVEL=info, the access log
# on), runs bench/auth.sh against each, and prints one table and the cost of the logging.
#   bench/identity.sh               # 10 s per step
#   DURATION=30 bench/identity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

bench_prepare
cargo build --release --quiet --bin autorisen
export DURATION

echo "Logging: \`warn\` = LOG_FORMAT=json LOG_LEVEL=warn; \`info (production)\` = LOG_FORMAT=json" \
  "LOG_LEVEL=info, one access-log line per /api request. ${DURATION} s per step."
echo
echo "| database | logging | scenario | connections | req/s | p50 (ms) | p99 (ms) | HTTP >= 400 | socket errors | peak RSS (MB) | log lines dropped | target |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for db in postgres sqlite; do
  for logging in warn info; do
    # shellcheck disable=SC2046 # the settings are VAR=value words
    start_server "$db" RATE_LIMIT_GENERAL=1000000000/60 RATE_LIMIT_AUTH=1000000000/60 \
      MAX_CONCURRENT_PER_IP=100000 MAX_IN_FLIGHT=100000 DATABASE_MAX_CONNECTIONS=32 \
      $(logging_env "$logging")
    BASE_URL="$SERVER_URL" AUTORISEN_PID=$SERVER_PID LOGGING="$(logging_label "$logging")" \
      AUTH_HEADER=0 bench/auth.sh | tee -a "$BENCH_TMP/rows.md"
    stop_server
  done
done

echo
peak_note
echo "Log lines dropped: the rise of /api/status \`log_lines_dropped\` during the step (the flood" \
  "and the /me inside it share one)."
# The cost of production logging on /me at 64 connections: 1 - info / warn, per database.
awk -F'|' '
  { for (i = 2; i <= NF; i++) gsub(/^ +| +$/, "", $i) }
  $4 == "GET /api/auth/me" && $5 == 64 { rps[$2 "," $3] = $6; dbs[$2] = 1 }
  END {
    line = "Cost of production logging on GET /api/auth/me at 64 connections (target <= 5%):"
    for (db in dbs) {
      warn = rps[db ",warn"]; info = rps[db ",info (production)"]
      if (warn > 0) line = line sprintf(" %s %.1f%% (%d -> %d req/s);", db, 100 * (1 - info / warn), warn, info)
    }
    print line
  }' "$BENCH_TMP/rows.md"
