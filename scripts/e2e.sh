#!/usr/bin/env bash
# End-to-end checks of the built binary that need tools outside cargo:
#  - /openapi.json validates as OpenAPI 3.1 (openapi-spec-validator, from PyPI);
#  - /docs/ renders the operations in headless Chromium (Debian's package), offline;
#  - the API answers exactly as /openapi.json says: schemathesis (PyPI) runs every check on every
#    operation, on SQLite and on PostgreSQL (scripts/e2e/schemathesis.toml, ..._hooks.py).
# Installs what is missing; leaves a screenshot in target/e2e/docs.png.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/ci-lib.sh

out=target/e2e
mkdir -p "$out"

# Tools from Debian that a bare machine lacks: Chromium, curl, Python with venv (Debian splits
# `python3 -m venv` into python3-venv).
pkgs=()
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium fonts-liberation)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
debian_python() { [ "$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null)" = /usr ]; }
if ! command -v python3 >/dev/null 2>&1 || { debian_python && ! dpkg -s python3-venv >/dev/null 2>&1; }; then
  pkgs+=(python3-venv)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  ci_apt_install "for the end-to-end checks" "${pkgs[@]}"
fi

# The Python tools, in a venv of their own; reinstalled when this list changes.
venv=target/e2e-venv
requirements=('openapi-spec-validator>=0.7,<0.9' 'schemathesis==4.32.5')
make_venv() {
  rm -rf "$venv"
  python3 -m venv "$venv" >"$out/venv.log" 2>&1 && "$venv/bin/python" -m pip --version >/dev/null 2>&1
}
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "${requirements[*]}" ] || [ ! -x "$venv/bin/pip" ]; then
  echo "e2e: installing ${requirements[*]} (PyPI) into $venv"
  if ! make_venv; then
    # A Python whose venv module lacks ensurepip (Debian without python3-venv).
    ci_apt_install "python3 -m venv" python3-venv
    make_venv || { cat "$out/venv.log" >&2; echo "e2e: could not create $venv" >&2; exit 1; }
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${requirements[@]}"
  printf '%s' "${requirements[*]}" >"$venv/.requirements"
fi

cargo build --locked --quiet --bin autorisen
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
AUTORISEN_ENV=test SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
  DATABASE_URL="sqlite://$tmp/e2e.db" DATA_DIR="$tmp" PORT=$port LOG_LEVEL=warn \
  target/debug/autorisen serve >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done

curl -fsS "http://127.0.0.1:$port/openapi.json" -o "$out/openapi.json"
"$venv/bin/openapi-spec-validator" "$out/openapi.json"
grep -q '"openapi":"3.1' "$out/openapi.json" || { echo "e2e: not OpenAPI 3.1" >&2; exit 1; }
echo "e2e: /openapi.json is valid OpenAPI 3.1"

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$tmp/chromium" --virtual-time-budget=15000)
chromium "${flags[@]}" --dump-dom "http://127.0.0.1:$port/docs/" >"$out/docs.html" 2>"$out/chromium.log"
chromium "${flags[@]}" --window-size=1280,900 --screenshot="$out/docs.png" \
  "http://127.0.0.1:$port/docs/" >/dev/null 2>>"$out/chromium.log" || true
for needle in 'class="swagger-ui' 'Autorisen API' 'data-path="/api/health"'; do
  if ! grep -q "$needle" "$out/docs.html"; then
    echo "e2e: /docs/ did not render ($needle missing); see $out/docs.html" >&2
    exit 1
  fi
done
echo "e2e: /docs/ renders the API operations in headless Chromium"

# The contract: schemathesis with every check on every operation, authenticated as an admin, with
# a fixed seed and a bounded number of examples per operation, on each database. The per-IP rate
# limits are lifted and automatic bans are off so that the run reaches the handlers from one
# address (429 and 403 stay documented on every guarded route), and PayFast is configured with
# its public sandbox merchant so that checkouts answer their forms (notifications from this
# address are refused: it is not one of PayFast's); everything else is the default configuration.
[ -f target/services.env ] && . target/services.env
SCHEMATHESIS_EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
contract() { # contract LABEL DATABASE_URL
  local label=$1 url=$2 dir="$tmp/$1" port pid token rc=0
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local env=(AUTORISEN_ENV=test SECRET_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    DATABASE_URL="$url" DATA_DIR="$dir" PORT="$port" LOG_LEVEL=warn
    RATE_LIMIT_GENERAL=1000000/60 RATE_LIMIT_AUTH=1000000/60 ABUSE_BAN_THRESHOLD=0
    PAYFAST_MERCHANT_ID=10000100 PAYFAST_MERCHANT_KEY=46f0cd694581a PAYFAST_PASSPHRASE=jt7NOE43FZPn)
  local admin_password revoker_password
  admin_password="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  revoker_password="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  env "${env[@]}" target/debug/autorisen migrate >"$out/contract-$label.log" 2>&1
  env "${env[@]}" AUTORISEN_ADMIN_PASSWORD="$admin_password" \
    target/debug/autorisen create-admin --email admin@e2e.example.test >>"$out/contract-$label.log" 2>&1
  env "${env[@]}" target/debug/autorisen serve >>"$out/contract-$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  token=$(curl -fsS "http://127.0.0.1:$port/api/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"admin@e2e.example.test\",\"password\":\"$admin_password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  local st=(env SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=scripts/e2e
    E2E_BASE_URL="http://127.0.0.1:$port" E2E_ADMIN_TOKEN="$token"
    E2E_REVOKER_EMAIL=revoker@e2e.example.test E2E_REVOKER_PASSWORD="$revoker_password"
    "$venv/bin/schemathesis" --no-color --config-file scripts/e2e/schemathesis.toml run
    "http://127.0.0.1:$port/openapi.json" --checks all --max-examples "$SCHEMATHESIS_EXAMPLES"
    --workers 1)
  # Every operation but one; then revoking sessions on its own, as an admin made only now.
  "${st[@]}" --exclude-path '/api/admin/users/{id}/revoke-sessions' \
    --report junit --report-junit-path "$out/contract-$label.xml" >"$out/contract-$label.txt" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    env "${env[@]}" AUTORISEN_ADMIN_PASSWORD="$revoker_password" \
      target/debug/autorisen create-admin --email revoker@e2e.example.test >>"$out/contract-$label.log" 2>&1
    "${st[@]}" --include-path '/api/admin/users/{id}/revoke-sessions' \
      >>"$out/contract-$label.txt" 2>&1 || rc=$?
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    cat "$out/contract-$label.txt" >&2
    echo "e2e: the API broke its OpenAPI contract on $label (above; log in $out/contract-$label.txt)" >&2
    exit 1
  fi
  local cases
  cases=$(grep -oE '[0-9]+ generated, [0-9]+ passed' "$out/contract-$label.txt" |
    awk '{g += $1; p += $3} END {print g " cases generated, " p " passed"}')
  echo "e2e: the API keeps its OpenAPI contract on $label (schemathesis, every check: $cases)"
}
contract sqlite "sqlite://$tmp/contract.db"
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  db="autorisen_e2e_$$"
  psql -X -q "$TEST_DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
  trap 'kill $server 2>/dev/null || true; psql -X -q "$TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
  contract postgres "${TEST_DATABASE_URL%/*}/$db?sslmode=disable"
else
  echo "e2e: TEST_DATABASE_URL is not set (scripts/services.sh writes it): the contract ran on SQLite only" >&2
  exit 1
fi
