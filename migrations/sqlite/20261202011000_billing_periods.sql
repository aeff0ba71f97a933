-- Paid periods counted from an anchor, whatever order the payments arrive in: after n paid
-- months a subscription's period ends at its anchor plus n calendar months (anchored on the
-- 31st it ends on the last day of a shorter month, and on the 31st again after it). The order
-- that pays the running subscription is kept with it, and an order the provider cancelled
-- remembers it, so a cancellation delivered before the payment it follows still counts.
ALTER TABLE billing_subscriptions ADD COLUMN period_anchor BIGINT;
ALTER TABLE billing_subscriptions ADD COLUMN paid_months BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_subscriptions ADD COLUMN order_id TEXT;
ALTER TABLE billing_orders ADD COLUMN canceled_at BIGINT;
