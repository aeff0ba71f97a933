-- Billing: the catalogue (seeded here, so prices change without a release), orders, provider
-- notifications (each applied once), subscriptions, invoices with a per-year counter, and the
-- double-entry ledger. Money is integer cents with its currency; times are Unix microseconds.
CREATE TABLE billing_plans (
    code          TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    currency      TEXT NOT NULL,
    monthly_cents BIGINT NOT NULL,
    yearly_cents  BIGINT NOT NULL,
    limits        TEXT NOT NULL,
    features      TEXT NOT NULL,
    position      BIGINT NOT NULL
);
INSERT INTO billing_plans (code, name, currency, monthly_cents, yearly_cents, limits, features, position) VALUES
 ('free', 'Free', 'ZAR', 0, 0,
  '{"assistant_messages":50,"agent_runs":50,"agents":3}',
  '["Cape AI assistant","Marketplace access","Community support"]', 1),
 ('pro', 'Pro', 'ZAR', 52900, 499000,
  '{"assistant_messages":2000,"agent_runs":2000,"agents":50}',
  '["Cape AI assistant","Marketplace access","Priority support","Usage analytics"]', 2),
 ('enterprise', 'Enterprise', 'ZAR', 179900, 1719000,
  '{"assistant_messages":8000,"agent_runs":8000,"agents":500}',
  '["Cape AI assistant","Marketplace access","Dedicated support","Usage analytics","Team management"]', 3);

CREATE TABLE billing_credit_packs (
    code         TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    currency     TEXT NOT NULL,
    price_cents  BIGINT NOT NULL,
    credit_cents BIGINT NOT NULL,
    position     BIGINT NOT NULL
);
INSERT INTO billing_credit_packs (code, name, currency, price_cents, credit_cents, position) VALUES
 ('small', 'Small credit pack', 'ZAR', 10000, 10000, 1),
 ('medium', 'Medium credit pack', 'ZAR', 50000, 52500, 2),
 ('large', 'Large credit pack', 'ZAR', 100000, 110000, 3);

-- An order keeps the price it was made at. kind: subscription | credits; status: pending | paid;
-- redirect_url: the provider's payment page, once made (Stripe's Checkout Session).
CREATE TABLE billing_orders (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id),
    kind            TEXT NOT NULL,
    product         TEXT NOT NULL,
    cycle           TEXT,
    provider        TEXT NOT NULL,
    amount_cents    BIGINT NOT NULL,
    credit_cents    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    description     TEXT NOT NULL,
    status          TEXT NOT NULL,
    idempotency_key TEXT,
    redirect_url    TEXT,
    created_at      BIGINT NOT NULL,
    paid_at         BIGINT
);
CREATE UNIQUE INDEX billing_orders_idempotency ON billing_orders (user_id, idempotency_key);
CREATE INDEX billing_orders_user ON billing_orders (user_id, created_at);

-- Every provider notification that had an effect, once: the key is the provider's own id.
CREATE TABLE billing_notifications (
    provider    TEXT NOT NULL,
    external_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, external_id, event)
);

-- One row per account whose plan ever changed; an account without one is on free, active.
CREATE TABLE billing_subscriptions (
    user_id              TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    plan                 TEXT NOT NULL,
    cycle                TEXT,
    status               TEXT NOT NULL,
    current_period_start BIGINT,
    current_period_end   BIGINT,
    cancel_at_period_end BOOLEAN NOT NULL,
    provider             TEXT,
    provider_token       TEXT,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE billing_invoice_counters (
    year BIGINT PRIMARY KEY NOT NULL,
    last BIGINT NOT NULL
);

CREATE TABLE billing_invoices (
    id                  TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT NOT NULL REFERENCES users (id),
    order_id            TEXT NOT NULL REFERENCES billing_orders (id),
    number              TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    amount_cents        BIGINT NOT NULL,
    refunded_cents      BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    description         TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_payment_id TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    paid_at             BIGINT,
    UNIQUE (provider, provider_payment_id)
);
CREATE INDEX billing_invoices_user ON billing_invoices (user_id, created_at);

-- Double entry: the entries of one transaction sum to zero. account: provider_clearing,
-- platform_revenue, customer_credits (per user), promotional_credits.
CREATE TABLE ledger_transactions (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    reference   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE ledger_entries (
    id             TEXT PRIMARY KEY NOT NULL,
    transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
    account        TEXT NOT NULL,
    user_id        TEXT,
    amount_cents   BIGINT NOT NULL,
    currency       TEXT NOT NULL
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account, user_id);
