#!/usr/bin/env bash
# Identity benchmark, self-contained: builds release, serves on PostgreSQL then SQLite with the
# per-IP limits lifted (all load comes from one address), and runs bench/auth.sh against each.
#   bench/identity.sh               # 10 s per step
#   DURATION=30 bench/identity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

bench_prepare
command -v jq >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null)
cargo build --release --quiet --bin autorisen
export DURATION="${DURATION}s"

for db in postgres sqlite; do
  echo "## $db"
  start_server "$db" RATE_LIMIT_GENERAL=1000000000/60 RATE_LIMIT_AUTH=1000000000/60 \
    MAX_CONCURRENT_PER_IP=100000 MAX_IN_FLIGHT=100000 DATABASE_MAX_CONNECTIONS=32
  BASE_URL="http://127.0.0.1:$SERVER_PORT" AUTORISEN_PID=$SERVER_PID bench/auth.sh
  stop_server
done
