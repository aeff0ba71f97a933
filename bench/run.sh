#!/usr/bin/env bash
# Service-foundation benchmark: builds release, serves on SQLite then PostgreSQL, drives
# GET /health and GET /api/health with wrk at 16 and 64 connections, and prints a markdown table
# beside a bare axum hello-world measured in the same run. Never part of the tests.
#   bench/run.sh            # 10 s per row
#   DURATION=5 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

bench_prepare
cargo build --release --quiet --bin autorisen --example hello

echo "| server | database | endpoint | connections | req/s | p50 | p99 | RSS after |"
echo "|---|---|---|---|---|---|---|---|"

port=$(free_port)
PORT=$port target/release/examples/hello & hello=$!
wait_up "$port"
for c in 16 64; do row "axum hello-world" "-" "$port" /health "$c" "$hello"; done
kill $hello; wait $hello 2>/dev/null || true

for db in sqlite postgres; do
  start_server "$db"
  for path in /health /api/health; do
    for c in 16 64; do row autorisen "$db" "$SERVER_PORT" "$path" "$c" "$SERVER_PID"; done
  done
  stop_server
done

echo
echo "Start-up on an already-migrated SQLite file (5 runs): $(ready_times) ms to first /health 200;" \
  "idle RSS $(idle_rss) MB"
