#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the tests use are running on 127.0.0.1, starting them if not.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
fi
if ! redis_up; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
for _ in $(seq 1 60); do
  if pg_up && redis_up; then
    # Databases left behind by interrupted test runs.
    psql -h 127.0.0.1 -U postgres -d postgres -Atc \
      "SELECT datname FROM pg_database WHERE datname LIKE 'autorisen_t_%'" |
      while read -r db; do psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
    echo "services: PostgreSQL and Redis are up"
    exit 0
  fi
  sleep 0.5
done
echo "services: PostgreSQL or Redis did not come up" >&2
exit 1
