#!/usr/bin/env bash
# The whole test suite, as CI runs it: services, format, lints, tests on SQLite and PostgreSQL,
# then the end-to-end checks of the built binary (OpenAPI 3.1 validity, /docs in Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== tests (every integration test on SQLite and PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
echo "== end-to-end checks"
scripts/e2e.sh
