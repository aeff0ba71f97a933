#!/usr/bin/env bash
# Shared helpers for the bench scripts: tools, server start/stop, one wrk row.

DURATION=${DURATION:-10}
DURATION=${DURATION%s}
BENCH_TMP=$(mktemp -d)
trap 'stop_server; rm -rf "$BENCH_TMP"' EXIT

bench_prepare() {
  scripts/services.sh >/dev/null
  if ! command -v wrk >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on port $1 did not come up" >&2; return 1
}

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start_server sqlite|postgres [extra env...]: sets SERVER_PID and SERVER_PORT.
start_server() {
  local db=$1; shift
  local url
  if [ "$db" = sqlite ]; then
    url="sqlite://$BENCH_TMP/bench-$RANDOM.db"
  else
    local name="autorisen_bench_$RANDOM"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    # Loopback: no TLS, as a local database is normally reached (Heroku's URLs ask for TLS).
    url="postgres://postgres@127.0.0.1:5432/$name?sslmode=disable"
  fi
  SERVER_PORT=$(free_port)
  env AUTORISEN_ENV=test SECRET_KEY=bench-only-0123456789abcdef0123456789abcdef \
    DATABASE_URL="$url" DATA_DIR="$BENCH_TMP" PORT=$SERVER_PORT LOG_LEVEL=warn "$@" \
    target/release/autorisen serve >>"$BENCH_TMP/server.log" 2>&1 &
  SERVER_PID=$!
  wait_up "$SERVER_PORT"
}

stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
}

# row LABEL DB PORT PATH CONNECTIONS PID [wrk args...]
row() {
  local label=$1 db=$2 port=$3 path=$4 c=$5 pid=$6; shift 6
  local out
  out=$(wrk -t2 -c"$c" -d"${DURATION}s" --latency "$@" "http://127.0.0.1:$port$path")
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
  echo "| $label | $db | $path | $c | $rps | $p50 | $p99 | $(rss_mb "$pid") MB${errors:+ ($errors)} |"
}

ready_times() {
  local url="sqlite://$BENCH_TMP/ready.db" times=()
  AUTORISEN_ENV=test SECRET_KEY=bench-only-0123456789abcdef0123456789abcdef DATABASE_URL="$url" \
    target/release/autorisen migrate >/dev/null 2>&1
  for _ in 1 2 3 4 5; do
    local port; port=$(free_port)
    times+=("$(python3 - "$port" "$url" "$BENCH_TMP" <<'PY'
import os, socket, subprocess, sys, time
port, url, tmp = sys.argv[1:4]
env = dict(os.environ, AUTORISEN_ENV="test", SECRET_KEY="bench-only-0123456789abcdef0123456789abcdef",
           DATABASE_URL=url, DATA_DIR=tmp, PORT=port, LOG_LEVEL="warn")
t0 = time.monotonic()
p = subprocess.Popen(["target/release/autorisen", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=0.2)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if s.recv(64).startswith(b"HTTP/1.1 200"):
            break
    except OSError:
        time.sleep(0.002)
print(round((time.monotonic() - t0) * 1000))
p.terminate(); p.wait()
PY
)")
  done
  echo "${times[*]}"
}

idle_rss() {
  start_server sqlite
  sleep 1
  rss_mb "$SERVER_PID"
  stop_server
}
