#!/usr/bin/env bash
# Service-foundation benchmark: builds release, serves on SQLite then PostgreSQL, each with quiet
# logging (LOG_LEVEL=warn) and with production logging (LOG_FORMAT=json LOG_LEVEL=info), drives
# GET /health and GET /api/health with wrk at 16 and 64 connections, and prints a markdown table
# beside a bare axum hello-world (same allocator) measured in the same run. Never part of the
# tests.
#   bench/run.sh            # 10 s per row
#   DURATION=5 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

bench_prepare
cargo build --release --quiet --bin autorisen --example hello

echo "Logging: \`warn\` = LOG_FORMAT=json LOG_LEVEL=warn; \`info (production)\` = LOG_FORMAT=json" \
  "LOG_LEVEL=info, the access log on (these probes are exempt: their lines are at debug, so at" \
  "info only the request span is paid). ${DURATION} s per row."
echo
echo "| server | database | logging | endpoint | connections | req/s | p50 (ms) | p99 (ms) | HTTP >= 400 | socket errors | peak RSS (MB) | log lines dropped |"
echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"

port=$(free_port)
PORT=$port target/release/examples/hello &
hello=$!
BENCH_PIDS+=("$hello")
wait_up "$port" "$hello"
for c in 16 64; do
  measure_row "$c" "http://127.0.0.1:$port" /health "$hello"
  echo "| axum hello-world (ceiling) | - | - | /health | $c | $ROW_CELLS |"
done
stop_pid "$hello"

for db in sqlite postgres; do
  for logging in warn info; do
    # shellcheck disable=SC2046 # the settings are VAR=value words
    start_server "$db" $(logging_env "$logging")
    for path in /health /api/health; do
      for c in 16 64; do
        measure_row "$c" "$SERVER_URL" "$path" "$SERVER_PID"
        echo "| autorisen | $db | $(logging_label "$logging") | $path | $c | $ROW_CELLS |"
      done
    done
    stop_server
  done
done

echo
peak_note
echo "Log lines dropped: the rise of /api/status \`log_lines_dropped\` during the row (\"-\": the server has no such report)."
echo "Start-up on an already-migrated SQLite file (5 runs): $(ready_times) ms to first /health 200;" \
  "idle RSS $(idle_rss) MB"
