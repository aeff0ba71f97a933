-- The provider's subscription token (PayFast's `token`, Stripe's `sub_…`) an order was first paid
-- with; a later payment of the order must name the same one.
ALTER TABLE billing_orders ADD COLUMN provider_token TEXT;
