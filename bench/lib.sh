#!/usr/bin/env bash
# Shared helpers for the bench scripts (sourced): tools, databases, server start/stop, one
# measured wrk run, peak RSS, dropped log lines. Sourcing it sets the EXIT trap that stops every
# process the script started, drops its PostgreSQL databases and deletes its Redis keys, also on
# Ctrl-C. Every wait has a deadline.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
THREADS=${THREADS:-2}
WAIT_UP_SECONDS=${WAIT_UP_SECONDS:-60}
BENCH_BIN=${BENCH_BIN:-$BENCH_ROOT/target/release/autorisen}
BENCH_SECRET=bench-only-0123456789abcdef0123456789abcdef
# Servers and one-off commands get a clean environment: only these, the script's settings and
# BENCH_SERVER_ENV ("VAR=value ..." for every server), so that a REDIS_URL, LOG_LEVEL or limit
# exported in the caller's shell cannot change what a row measures.
BENCH_ENV=("PATH=$PATH" "HOME=${HOME:-/root}" AUTORISEN_ENV=test "SECRET_KEY=$BENCH_SECRET")
read -r -a BENCH_SERVER_ENV <<<"${BENCH_SERVER_ENV:-}"
BENCH_TMP=$(mktemp -d)
BENCH_DBS=()            # PostgreSQL databases created by this script
BENCH_PIDS=()           # processes started besides the server (hello-world, a login flood)
BENCH_REDIS_PREFIXES=() # Redis key prefixes given to servers (keys deleted on exit)
SERVER_PID=
SERVER_DB=
PEAK_FROM_START=        # set when the kernel refused to reset a peak (then: peak since start)

bench_cleanup() {
  stop_server
  local pid db prefix
  for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
  for db in "${BENCH_DBS[@]}"; do drop_db "$db"; done
  for prefix in "${BENCH_REDIS_PREFIXES[@]}"; do redis_delete "$prefix"; done
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wrk's report, appended to by scripts that set a method or a body: prints
# "RESULT <req/s> <p50 ms> <p99 ms> <answers >= 400> <socket errors> <requests>".
cat >"$BENCH_TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %.0f %.2f %.2f %d %d %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
end
LUA

# Installs what the scripts use, starts PostgreSQL and Redis (scripts/services.sh), and sets
# PG_ADMIN_URL (the login services.sh found, on which CREATE DATABASE works).
bench_prepare() {
  # scripts/services.sh also drops the test databases it finds (autorisen_t_*), which would break
  # a test run going on beside the benchmark: it runs only when the services it recorded in
  # target/services.env do not answer.
  if ! services_answer; then (cd "$BENCH_ROOT" && scripts/services.sh >/dev/null); fi
  local missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v jq >/dev/null 2>&1 || missing+=(jq)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  PG_ADMIN_URL=$(
    . "$BENCH_ROOT/target/services.env" 2>/dev/null || true
    printf %s "${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  )
  REDIS_URL_BENCH=${REDIS_URL:-$(
    . "$BENCH_ROOT/target/services.env" 2>/dev/null || true
    printf %s "${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
  )}
}

# Whether the PostgreSQL and Redis recorded in target/services.env answer (within 10 s each).
services_answer() {
  (
    . "$BENCH_ROOT/target/services.env" || exit 1
    PGCONNECT_TIMEOUT=5 timeout 10 psql -X -w -Atc 'SELECT 1' "$TEST_DATABASE_URL" &&
      [ "$(timeout 10 redis-cli -u "$TEST_REDIS_URL" ping)" = PONG ]
  ) >/dev/null 2>&1
}

# Logging settings by name, as env assignments: `warn` (quiet) or `info` (production: JSON lines,
# the access log on). Server stderr goes to $BENCH_TMP/server.log in both.
logging_env() {
  case $1 in
    warn) echo "LOG_FORMAT=json LOG_LEVEL=warn" ;;
    info) echo "LOG_FORMAT=json LOG_LEVEL=info" ;;
    *) echo "unknown logging setting $1" >&2; return 1 ;;
  esac
}
logging_label() {
  case $1 in
    warn) echo "warn" ;;
    info) echo "info (production)" ;;
  esac
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# True while PID runs (a zombie, exited but not yet waited for, does not count).
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# stop_pid PID [SIGNAL]: sends SIGNAL (TERM), gives it 15 s to exit, then kills it.
stop_pid() {
  local pid=$1 sig=${2:-TERM} deadline=$((SECONDS + 15))
  kill -"$sig" "$pid" 2>/dev/null || true
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

psql_admin() { PGCONNECT_TIMEOUT=10 timeout 60 psql -X -w -q -v ON_ERROR_STOP=1 "$PG_ADMIN_URL" "$@"; }

drop_db() {
  psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 ||
    echo "could not drop the benchmark database $1; drop it by hand" >&2
}

# bench_db sqlite|postgres: a fresh database; sets DB_URL (PostgreSQL ones are dropped on exit).
bench_db() {
  if [ "$1" = sqlite ]; then
    DB_URL="sqlite://$BENCH_TMP/bench-$RANDOM$RANDOM.db"
    SERVER_DB=
  else
    SERVER_DB="autorisen_bench_$$_$RANDOM"
    BENCH_DBS+=("$SERVER_DB")
    psql_admin -c "CREATE DATABASE $SERVER_DB" >/dev/null
    # Loopback: no TLS, as a local database is normally reached (Heroku's URLs ask for TLS).
    DB_URL="${PG_ADMIN_URL%/*}/$SERVER_DB?sslmode=disable"
  fi
}

# autorisen_cli [VAR=value...] ARGS...: a one-off command of the binary on DB_URL (no input).
autorisen_cli() {
  local vars=()
  while [[ ${1:-} == [A-Z]*=* ]]; do vars+=("$1"); shift; done
  env -i "${BENCH_ENV[@]}" DATABASE_URL="$DB_URL" DATA_DIR="$BENCH_TMP" LOG_LEVEL=warn \
    "${BENCH_SERVER_ENV[@]}" "${vars[@]}" timeout 120 "$BENCH_BIN" "$@" </dev/null
}

# serve [VAR=value...]: serves the binary on DB_URL with the given variables (after the
# defaults and BENCH_SERVER_ENV, so they win); sets SERVER_PID, SERVER_PORT and SERVER_URL.
serve() {
  SERVER_PORT=$(free_port)
  # shellcheck disable=SC2034 # read by the scripts
  SERVER_URL="http://127.0.0.1:$SERVER_PORT"
  echo "--- serve $* (port $SERVER_PORT)" >>"$BENCH_TMP/server.log"
  env -i "${BENCH_ENV[@]}" DATABASE_URL="$DB_URL" DATA_DIR="$BENCH_TMP" PORT="$SERVER_PORT" \
    LOG_FORMAT=json LOG_LEVEL=warn "${BENCH_SERVER_ENV[@]}" "$@" \
    "$BENCH_BIN" serve >>"$BENCH_TMP/server.log" 2>&1 &
  SERVER_PID=$!
  wait_up "$SERVER_PORT" "$SERVER_PID"
}

# start_server sqlite|postgres [VAR=value...]: a fresh database and a server on it.
start_server() {
  local db=$1
  shift
  bench_db "$db"
  serve "$@"
}

# Stops the server and drops its PostgreSQL database.
stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then stop_pid "$SERVER_PID"; fi
  SERVER_PID=
  if [ -n "${SERVER_DB:-}" ]; then
    drop_db "$SERVER_DB"
    local db kept=()
    for db in "${BENCH_DBS[@]}"; do [ "$db" = "$SERVER_DB" ] || kept+=("$db"); done
    BENCH_DBS=("${kept[@]}")
  fi
  SERVER_DB=
}

# wait_up PORT [PID]: until /health answers 200; fails when PID exits or after WAIT_UP_SECONDS.
wait_up() {
  local port=$1 pid=${2:-} deadline=$((SECONDS + WAIT_UP_SECONDS))
  until curl -fsS --max-time 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! alive "$pid"; then
      echo "the server on port $port exited before answering /health; the end of its log:" >&2
      tail -n 20 "$BENCH_TMP/server.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "the server on port $port did not answer /health within ${WAIT_UP_SECONDS} s" >&2
      tail -n 20 "$BENCH_TMP/server.log" >&2
      return 1
    fi
    sleep 0.05
  done
}

# Current RSS (for idle readings), and the peak: reset the high-water mark (VmHWM) before a run,
# read it after. Without the reset (an old kernel) the reading is the peak since start.
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
peak_reset() {
  [ -n "${1:-}" ] && { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null || PEAK_FROM_START=1
}
peak_mb() {
  local v=
  [ -n "${1:-}" ] && v=$(awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null)
  echo "${v:-n/a}"
}

# The server's `log_lines_dropped` (from /api/status at BASE), or "-" where there is none.
dropped_lines() {
  local v
  v=$(curl -fsS --max-time 5 "$1/api/status" 2>/dev/null | jq -r '.log_lines_dropped // empty' 2>/dev/null)
  echo "${v:--}"
}
dropped_since() { # BEFORE BASE: lines dropped since BEFORE was read
  local now
  now=$(dropped_lines "$2")
  if [ "$1" = - ] || [ "$now" = - ]; then echo -; else echo $((now - $1)); fi
}

# wrk_script NAME LUA: report.lua plus LUA (a method, a body) as $BENCH_TMP/NAME.lua.
wrk_script() {
  { cat "$BENCH_TMP/report.lua"; printf '%s\n' "$2"; } >"$BENCH_TMP/$1.lua"
  echo "$BENCH_TMP/$1.lua"
}

# measure CONNECTIONS SCRIPT URL [wrk args...]: one wrk run of DURATION seconds (killed after
# DURATION + 30 s); prints "req/s p50 p99 answers>=400 socket-errors requests".
measure() {
  local c=$1 script=$2 url=$3 out result
  shift 3
  out=$(timeout -k 5 $((DURATION + 30)) wrk -t"$THREADS" -c"$c" -d"${DURATION}s" -s "$script" "$@" "$url" 2>&1) || true
  result=$(awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7}' <<<"$out")
  if [ -z "$result" ]; then
    echo "wrk gave no result for $url:" >&2
    echo "$out" >&2
    return 1
  fi
  echo "$result"
}

# measure_row CONNECTIONS BASE PATH PID [wrk args...]: one run with the server's peak RSS and
# dropped log lines around it; sets ROW_CELLS to
# "req/s | p50 | p99 | HTTP >= 400 | socket errors | peak RSS | log lines dropped".
measure_row() {
  local c=$1 base=$2 path=$3 pid=$4 before result rps p50 p99 http sock _n
  shift 4
  before=$(dropped_lines "$base")
  peak_reset "$pid"
  result=$(measure "$c" "$BENCH_TMP/report.lua" "$base$path" "$@")
  read -r rps p50 p99 http sock _n <<<"$result"
  # shellcheck disable=SC2034 # read by the scripts
  ROW_CELLS="$rps | $p50 | $p99 | $http | $sock | $(peak_mb "$pid") | $(dropped_since "$before" "$base")"
}

# Footnote for the peak RSS column.
peak_note() {
  if [ -n "$PEAK_FROM_START" ]; then
    echo "peak RSS: VmHWM since the process started (this kernel would not reset it per row)."
  else
    echo "peak RSS: the server's VmHWM during the row (reset through /proc/PID/clear_refs before it)."
  fi
}

redis_keys() { # PREFIX: how many keys exist under it
  timeout 10 redis-cli -u "$REDIS_URL_BENCH" --scan --pattern "$1*" 2>/dev/null | wc -l
}
redis_delete() { # PREFIX: deletes the keys under it
  timeout 20 redis-cli -u "$REDIS_URL_BENCH" --scan --pattern "$1*" 2>/dev/null |
    timeout 20 xargs -r -n 500 redis-cli -u "$REDIS_URL_BENCH" del >/dev/null 2>&1 || true
}

# Start-up on an already-migrated SQLite file: ms from process start to the first /health 200,
# five runs (each given 30 s).
ready_times() {
  DB_URL="sqlite://$BENCH_TMP/ready.db"
  autorisen_cli migrate >/dev/null 2>&1
  local times=() port
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    times+=("$(python3 - "$port" "$DB_URL" "$BENCH_TMP" "$BENCH_BIN" "$BENCH_SECRET" <<'PY'
import os, socket, subprocess, sys, time
port, url, tmp, binary, secret = sys.argv[1:6]
env = dict(PATH=os.environ["PATH"], HOME=os.environ.get("HOME", "/root"), AUTORISEN_ENV="test",
           SECRET_KEY=secret, DATABASE_URL=url, DATA_DIR=tmp, PORT=port, LOG_FORMAT="json",
           LOG_LEVEL="warn")
t0 = time.monotonic()
p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
result = "timeout"
while time.monotonic() - t0 < 30 and p.poll() is None:
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=0.2)
        s.settimeout(2)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if s.recv(64).startswith(b"HTTP/1.1 200"):
            result = str(round((time.monotonic() - t0) * 1000))
            break
    except OSError:
        time.sleep(0.002)
print(result)
p.terminate()
try:
    p.wait(timeout=15)
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
PY
)")
  done
  echo "${times[*]}"
}

# The RSS of a fresh SQLite server after a second of idling.
idle_rss() {
  start_server sqlite
  sleep 1
  rss_mb "$SERVER_PID"
  stop_server
}
