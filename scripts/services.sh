#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the tests use are running on 127.0.0.1 and reachable, and
# writes the URLs the tests use to target/services.env (scripts/test.sh exports them).
#  - Already up (a developer's machine, CI's machine): nothing is installed or started.
#  - Missing (a bare Debian): installs Debian's postgresql / redis-server (and their clients)
#    and starts them without systemd.
#  - PostgreSQL up but `postgres` cannot log in over TCP without a password (stock Debian: scram
#    on 127.0.0.1): creates the role autorisen_test (LOGIN CREATEDB, a random password) through
#    the unix socket as the postgres OS user, and the tests use it.
# TEST_DATABASE_URL / TEST_REDIS_URL, when set, are used as given (checked, nothing started).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ci-lib.sh

env_file=target/services.env
pg_port=5432
redis_port=6379
admin_url=${TEST_DATABASE_URL:-}
redis_url=${TEST_REDIS_URL:-}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
can_login() { PGCONNECT_TIMEOUT=5 psql -X -w -q "$1" -Atc 'SELECT 1' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -u "${redis_url:-redis://127.0.0.1:$redis_port}" ping 2>/dev/null)" = "PONG" ]; }
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && sudo -n -u postgres -- "$@")
  fi
}

# 1. Install what is missing, in one apt-get call.
pkgs=()
{ command -v psql && command -v pg_isready; } >/dev/null 2>&1 || pkgs+=(postgresql-client)
if [ -z "$admin_url" ] && ! port_open "$pg_port" &&
  ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  pkgs+=(postgresql)
fi
command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
if [ -z "$redis_url" ] && ! port_open "$redis_port" && ! command -v redis-server >/dev/null 2>&1; then
  pkgs+=(redis-server)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  ci_apt_install "PostgreSQL and Redis for the tests" "${pkgs[@]}"
fi

# 2. Start what is not running.
if [ -z "$admin_url" ] && ! pg_isready -q -h 127.0.0.1 -p "$pg_port" 2>/dev/null; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$ver" ] || [ ! -d "/etc/postgresql/$ver/main" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    echo "services: creating the PostgreSQL $ver cluster 'main'"
    LC_ALL=C.UTF-8 pg_createcluster --port "$pg_port" "$ver" main >/dev/null
  fi
  pg_port=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" { print $3 }')
  pg_port=${pg_port:-5432}
  echo "services: starting PostgreSQL $ver (port $pg_port)"
  # Tolerated: a postinst or an init system may have started it meanwhile; the wait below decides.
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
fi
if [ -z "$redis_url" ] && ! redis_up; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
redis_url=${redis_url:-redis://127.0.0.1:$redis_port}

pg_ready() {
  if [ -n "$admin_url" ]; then
    pg_isready -q -d "$admin_url" 2>/dev/null
  else
    pg_isready -q -h 127.0.0.1 -p "$pg_port" 2>/dev/null
  fi
}
up=
for _ in $(seq 1 60); do
  if pg_ready && redis_up; then
    up=1
    break
  fi
  sleep 0.5
done
if [ -z "$up" ]; then
  echo "services: PostgreSQL or Redis did not come up" >&2
  exit 1
fi

# 3. A login the tests can use (an admin URL on which CREATE DATABASE works).
if [ -z "$admin_url" ]; then
  default_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
  # The role made by an earlier run, if its password still works (the file is this script's own).
  previous=$(
    unset TEST_DATABASE_URL
    . "$env_file" 2>/dev/null || true
    printf %s "${TEST_DATABASE_URL:-}"
  )
  if can_login "$default_url"; then
    admin_url=$default_url
  elif [ -n "$previous" ] && can_login "$previous"; then
    admin_url=$previous
  else
    role=autorisen_test
    pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "services: postgres needs a password on 127.0.0.1; setting up the role $role for the tests"
    as_postgres psql -X -q -p "$pg_port" -d postgres -v ON_ERROR_STOP=1 -v role="$role" -v pw="$pw" <<'SQL'
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN CREATEDB PASSWORD :'pw';
SQL
    admin_url="postgres://$role:$pw@127.0.0.1:$pg_port/postgres"
    if ! can_login "$admin_url"; then
      echo "services: $role cannot log in on 127.0.0.1:$pg_port; check pg_hba.conf, or set TEST_DATABASE_URL" >&2
      exit 1
    fi
  fi
elif ! can_login "$admin_url"; then
  echo "services: cannot log in with TEST_DATABASE_URL" >&2
  exit 1
fi

# Databases left behind by interrupted test runs (those this login may drop).
psql -X -w "$admin_url" -Atc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'autorisen_t_%' AND pg_has_role(datdba, 'MEMBER')" |
  while read -r db; do psql -X -w -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done

mkdir -p target
(
  umask 077
  printf 'TEST_DATABASE_URL=%q\nTEST_REDIS_URL=%q\n' "$admin_url" "$redis_url" >"$env_file.tmp"
)
mv "$env_file.tmp" "$env_file"
echo "services: PostgreSQL and Redis are up"
