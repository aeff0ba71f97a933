#!/usr/bin/env bash
# The whole test suite, as CI runs it: services, format, lints, tests on SQLite and PostgreSQL,
# then the end-to-end checks of the built binary (OpenAPI 3.1 validity, /docs in Chromium).
# On a bare Debian (Rust toolchain only) it installs what it needs first: see docs/ci.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ci-lib.sh

started=$SECONDS
step_start=$SECONDS
steps=()
step() {
  if [ -n "${step_name:-}" ]; then steps+=("$(printf '%5ss  %s' $((SECONDS - step_start)) "$step_name")"); fi
  step_name=$1
  step_start=$SECONDS
  [ -z "$step_name" ] || echo "== $step_name"
}

step "build tools and services"
# A bare machine may lack a C compiler and linker (ring, SQLite and mimalloc build C code) and
# the CA certificates cargo needs to download crates.
pkgs=()
command -v cc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
[ -s /etc/ssl/certs/ca-certificates.crt ] || pkgs+=(ca-certificates)
if [ ${#pkgs[@]} -gt 0 ]; then
  ci_apt_install "to build the crate" "${pkgs[@]}"
fi
scripts/services.sh
# The URLs services.sh resolved (a dedicated role where postgres needs a password).
set -a
. target/services.env
set +a

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
step "tests (every integration test on SQLite and PostgreSQL)"
mkdir -p target/ci
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast 2>&1 | tee target/ci/tests.log
else
  cargo test --locked --no-fail-fast 2>&1 | tee target/ci/tests.log
fi
# The closing line CI reads: the test counts, repeated after the end-to-end checks.
summary=$(grep -Eo '[0-9]+ tests? run: [0-9]+ passed(, [0-9]+ failed)?' target/ci/tests.log | tail -1 || true)
step "end-to-end checks"
scripts/e2e.sh
step ""
echo "== timings"
printf '%s\n' "${steps[@]}"
printf '%5ss  total\n' $((SECONDS - started))
if [ -n "$summary" ]; then
  passed=$(sed -E 's/.*run: ([0-9]+) passed.*/\1/' <<<"$summary")
  failed=$(grep -Eo '[0-9]+ failed' <<<"$summary" | grep -Eo '[0-9]+' || echo 0)
  echo "tests: $passed passed, $failed failed"
fi
