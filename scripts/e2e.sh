#!/usr/bin/env bash
# End-to-end checks of the built binary that need tools outside cargo:
#  - /openapi.json validates as OpenAPI 3.1 (openapi-spec-validator, from PyPI);
#  - /docs/ renders the operations in headless Chromium (Debian's package), offline.
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
requirements=('openapi-spec-validator>=0.7,<0.9')
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
