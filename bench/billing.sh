#!/usr/bin/env bash
# Billing benchmark (issue 9): valid PayFast notifications (ITNs) per second end to end, each
# confirmed with the local fake of PayFast's validation endpoint, and ten thousand deliveries of
# one signed Stripe `checkout.session.completed` having one effect. One server per row on a
# fresh database, with production logging and the per-IP limits lifted (all load comes from one
# address). The load and the fakes come from examples/billing_load.rs. After each row the
# database is read back: the invoices made must equal the notifications applied, and every
# ledger transaction must sum to zero. Prints markdown tables; fails (exit 1, `FAIL: …`) when a
# server does not start, an answer is not what a valid notification gets, or a check fails.
#   bench/billing.sh                                   # release build
#   PROFILE=debug COUNT=500 DUPLICATES=500 bench/billing.sh   # smoke run of the script
# Settings: DATABASES ("postgres sqlite"), ITN_CONNECTIONS ("16 64"), COUNT (10000 measured
# ITNs per row), WARMUP_COUNT (500), ORDERS (64 customers the ITNs are spread over),
# DUPLICATES (10000), DUPLICATE_CONNECTIONS (64).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BENCH_BIN=$TARGET_DIR/$PROFILE/autorisen
LOADGEN=$TARGET_DIR/$PROFILE/examples/billing_load
source bench/lib.sh
DATABASES=${DATABASES:-postgres sqlite}
ITN_CONNECTIONS=${ITN_CONNECTIONS:-16 64}
COUNT=${COUNT:-10000}
WARMUP_COUNT=${WARMUP_COUNT:-500}
ORDERS=${ORDERS:-64}
DUPLICATES=${DUPLICATES:-10000}
DUPLICATE_CONNECTIONS=${DUPLICATE_CONNECTIONS:-64}
ADMIN_EMAIL=bench.admin@example.com
ADMIN_PASSWORD=orbit-velvet-cactus-lantern-42

fail() { echo "FAIL: $*" >&2; exit 1; }

bench_prepare
case $PROFILE in
  debug) cargo build --quiet --bin autorisen --example billing_load ;;
  *) cargo build --quiet --profile "$PROFILE" --bin autorisen --example billing_load ;;
esac

# The merchant, passphrase and webhook secret are the ones examples/billing_load.rs signs with.
server_settings() {
  echo PAYFAST_MERCHANT_ID=10000100 PAYFAST_MERCHANT_KEY=46f0cd694581a \
    PAYFAST_PASSPHRASE=bench-passphrase PAYFAST_VALID_SOURCES=127.0.0.1/32 \
    "PAYFAST_VALIDATE_URL=http://127.0.0.1:$1/eng/query/validate" \
    STRIPE_SECRET_KEY=sk_test_bench STRIPE_WEBHOOK_SECRET=whsec_bench \
    "STRIPE_API_BASE=http://127.0.0.1:$1" \
    RATE_LIMIT_GENERAL=1000000000/60 RATE_LIMIT_AUTH=1000000000/60 \
    MAX_CONCURRENT_PER_IP=100000 MAX_CONNECTIONS_PER_IP=100000 \
    LOG_FORMAT=json LOG_LEVEL=info
}

# The ledger check as the run's admin: prints "transactions unbalanced".
ledger_check() {
  local token
  autorisen_cli AUTORISEN_ADMIN_PASSWORD="$ADMIN_PASSWORD" create-admin --email "$ADMIN_EMAIL" >/dev/null ||
    fail "could not create the run's admin (autorisen create-admin)"
  token=$(curl -fsS --max-time 30 -X POST "$SERVER_URL/api/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | jq -r '.access_token // empty')
  [ -n "$token" ] || fail "could not log in as the run's admin"
  curl -fsS --max-time 120 "$SERVER_URL/api/admin/ledger/check" -H "Authorization: Bearer $token" |
    jq -r '"\(.transactions) \(.unbalanced)"'
}

# run_load DB MODE ARGS...: a server on a fresh DB database with the fakes' port, the load
# generator's JSON in $BENCH_TMP/load.json, the peak RSS in PEAK.
run_load() {
  local db=$1 mode=$2 port
  shift 2
  port=$(free_port)
  # shellcheck disable=SC2046 # the settings are words
  start_server "$db" $(server_settings "$port") || fail "the server did not start on $db"
  peak_reset "$SERVER_PID"
  timeout -k 5 1800 "$LOADGEN" "$mode" --url "$SERVER_URL" --fake-port "$port" "$@" \
    >"$BENCH_TMP/load.json" 2>"$BENCH_TMP/load.err" ||
    { cat "$BENCH_TMP/load.err" >&2; tail -n 20 "$BENCH_TMP/server.log" >&2; fail "the load generator failed ($mode on $db)"; }
  PEAK=$(peak_mb "$SERVER_PID")
}

itn_row() {
  local db=$1 c=$2 applied others check
  run_load "$db" itn --count "$COUNT" --warmup "$WARMUP_COUNT" --orders "$ORDERS" --connections "$c"
  applied=$(jq '.answers.applied // 0' "$BENCH_TMP/load.json")
  others=$(jq -c '.answers | del(.applied)' "$BENCH_TMP/load.json")
  [ "$applied" = "$COUNT" ] || fail "$db, $c connections: $applied of $COUNT ITNs applied; other answers $others"
  check=$(ledger_check)
  read -r transactions unbalanced <<<"$check"
  [ "$unbalanced" = 0 ] || fail "$db: $unbalanced unbalanced ledger transactions"
  # Every applied ITN (warm-up included) is one invoice and one ledger transaction.
  [ "$transactions" = $((COUNT + WARMUP_COUNT)) ] ||
    fail "$db: $transactions ledger transactions for $((COUNT + WARMUP_COUNT)) applied ITNs"
  jq -r --arg db "$db" --arg c "$c" --arg peak "$PEAK" --arg tx "$transactions" '
    [ $db, $c, (.per_second | tostring), (.p50_ms | tostring), (.p99_ms | tostring),
      (.max_ms | tostring), (.requests | tostring), $tx, "0", $peak ]
    | "| " + join(" | ") + " |"' "$BENCH_TMP/load.json"
  stop_server
}

duplicate_row() {
  local db=$1 applied duplicate others check
  run_load "$db" stripe-duplicates --count "$DUPLICATES" --connections "$DUPLICATE_CONNECTIONS"
  applied=$(jq '.answers.applied // 0' "$BENCH_TMP/load.json")
  duplicate=$(jq '.answers.duplicate // 0' "$BENCH_TMP/load.json")
  others=$(jq -c '.answers | del(.applied) | del(.duplicate)' "$BENCH_TMP/load.json")
  [ "$applied" = 1 ] || fail "$db: $applied deliveries applied, not 1 (others: $others)"
  [ "$duplicate" = $((DUPLICATES - 1)) ] || fail "$db: $duplicate duplicates of $DUPLICATES (others: $others)"
  [ "$(jq '.invoices' "$BENCH_TMP/load.json")" = 1 ] || fail "$db: not one invoice: $(cat "$BENCH_TMP/load.json")"
  [ "$(jq '.credit_balance_cents == .pack_credit_cents' "$BENCH_TMP/load.json")" = true ] ||
    fail "$db: the credit balance is not one pack's: $(cat "$BENCH_TMP/load.json")"
  check=$(ledger_check)
  read -r transactions unbalanced <<<"$check"
  [ "$transactions" = 1 ] && [ "$unbalanced" = 0 ] ||
    fail "$db: ledger $transactions transactions, $unbalanced unbalanced (want 1 and 0)"
  jq -r --arg db "$db" --arg peak "$PEAK" --arg tx "$transactions" '
    [ $db, (.connections | tostring), (.requests | tostring), (.per_second | tostring),
      (.p50_ms | tostring), (.p99_ms | tostring), (.answers.applied | tostring),
      (.answers.duplicate | tostring), (.invoices | tostring), (.credit_balance_cents | tostring),
      $tx, $peak ]
    | "| " + join(" | ") + " |"' "$BENCH_TMP/load.json"
  stop_server
}

echo "Valid PayFast ITNs end to end ($PROFILE build, production logging): each is signed, from an"
echo "allowed source, confirmed by the local validate fake, and applied (a new invoice, ledger"
echo "transaction, subscription period and receipt email in one transaction). $WARMUP_COUNT warm-up"
echo "ITNs first (not recorded), then $COUNT measured, spread over $ORDERS customers' orders."
echo "Target (issue 9): at least 500/s with p99 at most 50 ms on PostgreSQL."
echo
echo "| database | connections | ITN/s | p50 (ms) | p99 (ms) | max (ms) | ITNs | ledger transactions | unbalanced | peak RSS (MB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for db in $DATABASES; do
  for c in $ITN_CONNECTIONS; do
    itn_row "$db" "$c"
  done
done
echo
echo "One signed Stripe checkout.session.completed delivered $DUPLICATES times from" \
  "$DUPLICATE_CONNECTIONS connections at once: one effect (one invoice, one pack of credits, one" \
  "ledger transaction)."
echo
echo "| database | connections | deliveries | per second | p50 (ms) | p99 (ms) | applied | duplicate | invoices | credit balance (cents) | ledger transactions | peak RSS (MB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for db in $DATABASES; do
  duplicate_row "$db"
done
echo
peak_note
