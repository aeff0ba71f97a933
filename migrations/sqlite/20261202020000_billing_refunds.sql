-- Refunds. An invoice keeps what the provider needs to refund it (`provider_reference`: Stripe's
-- payment intent `pi_…`, or the subscription invoice `in_…` a subscription-mode Checkout Session
-- paid) and the cents held by refunds in flight (`refund_reserved_cents`: claimed before the
-- provider is called, released or confirmed after), so concurrent refunds cannot over-refund.
ALTER TABLE billing_invoices ADD COLUMN provider_reference TEXT;
ALTER TABLE billing_invoices ADD COLUMN refund_reserved_cents BIGINT NOT NULL DEFAULT 0;
CREATE INDEX billing_invoices_reference ON billing_invoices (provider, provider_reference);

-- One row per refund. origin: admin (through our API) | provider (made in the provider's
-- dashboard, learned from its event); status: pending (the provider is being asked) | succeeded |
-- failed (the provider refused or could not be reached: nothing was refunded). idempotency_key:
-- the admin's `Idempotency-Key`, unique per invoice; cleared when the refund fails, so that a
-- retry with it asks the provider again.
CREATE TABLE billing_refunds (
    id                 TEXT PRIMARY KEY NOT NULL,
    invoice_id         TEXT NOT NULL REFERENCES billing_invoices (id),
    user_id            TEXT NOT NULL REFERENCES users (id),
    provider           TEXT NOT NULL,
    origin             TEXT NOT NULL,
    status             TEXT NOT NULL,
    amount_cents       BIGINT NOT NULL,
    currency           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    actor_id           TEXT,
    provider_refund_id TEXT,
    idempotency_key    TEXT,
    created_at         BIGINT NOT NULL,
    completed_at       BIGINT
);
CREATE INDEX billing_refunds_invoice ON billing_refunds (invoice_id, created_at);
CREATE UNIQUE INDEX billing_refunds_idempotency ON billing_refunds (invoice_id, idempotency_key);
