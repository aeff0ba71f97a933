//! The SQL of billing: catalogue, orders, notifications, subscriptions and invoices. The ledger's
//! SQL is in `ledger.rs`.

use sqlx::{any::AnyRow, Any, AnyConnection, Executor, Row};

/// A plan as stored.
#[derive(Debug, Clone)]
pub struct PlanRow {
    /// `free`, `pro`, `enterprise`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Monthly price.
    pub monthly_cents: i64,
    /// Yearly price.
    pub yearly_cents: i64,
    /// Limits, as JSON.
    pub limits: String,
    /// Features, as a JSON array.
    pub features: String,
}

/// A credit pack as stored.
#[derive(Debug, Clone)]
pub struct PackRow {
    /// `small`, `medium`, `large`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Price.
    pub price_cents: i64,
    /// Credit it adds.
    pub credit_cents: i64,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// Its id.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// `subscription` or `credits`.
    pub kind: String,
    /// The plan or pack code.
    pub product: String,
    /// `monthly`/`yearly` for subscriptions.
    pub cycle: Option<String>,
    /// `payfast` or `stripe`.
    pub provider: String,
    /// The price it was made at.
    pub amount_cents: i64,
    /// Credit cents it adds (credit packs).
    pub credit_cents: i64,
    /// What is bought, in words.
    pub description: String,
    /// `pending` or `paid`.
    pub status: String,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// The provider's payment page, once made (Stripe).
    pub redirect_url: Option<String>,
    /// The provider's subscription token it was first paid with (subscriptions).
    pub provider_token: Option<String>,
    /// When it was made (µs).
    pub created_at: i64,
    /// When the provider said its subscription was cancelled (µs), if it did.
    pub canceled_at: Option<i64>,
}

/// A subscription as stored.
#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    /// Whose.
    pub user_id: String,
    /// The plan code.
    pub plan: String,
    /// The cycle.
    pub cycle: Option<String>,
    /// `active`, `pending`, `past_due`, `canceled`.
    pub status: String,
    /// Period start (µs).
    pub current_period_start: Option<i64>,
    /// Period end (µs).
    pub current_period_end: Option<i64>,
    /// Ends at the period's end.
    pub cancel_at_period_end: bool,
    /// The provider.
    pub provider: Option<String>,
    /// The provider's subscription token.
    pub provider_token: Option<String>,
    /// Where the paid months are counted from (µs).
    pub period_anchor: Option<i64>,
    /// Months paid since the anchor: the period ends at the anchor plus these.
    pub paid_months: i64,
    /// The order whose payments keep it running.
    pub order_id: Option<String>,
}

/// An invoice as stored.
#[derive(Debug, Clone)]
pub struct InvoiceRow {
    /// Its id.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// The order it bills.
    pub order_id: String,
    /// `CC-2026-000001`.
    pub number: String,
    /// Status.
    pub status: String,
    /// Total.
    pub amount_cents: i64,
    /// Refunded so far.
    pub refunded_cents: i64,
    /// The one line's words.
    pub description: String,
    /// The provider.
    pub provider: String,
    /// The provider's payment id.
    pub provider_payment_id: String,
    /// What the provider refunds through: Stripe's payment intent, or a subscription invoice.
    pub provider_reference: Option<String>,
    /// Cents held by refunds in flight (claimed, the provider not yet answered).
    pub refund_reserved_cents: i64,
    /// Made at (µs).
    pub created_at: i64,
    /// Paid at (µs).
    pub paid_at: Option<i64>,
}

fn plan(row: &AnyRow) -> Result<PlanRow, sqlx::Error> {
    Ok(PlanRow {
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        monthly_cents: row.try_get("monthly_cents")?,
        yearly_cents: row.try_get("yearly_cents")?,
        limits: row.try_get("limits")?,
        features: row.try_get("features")?,
    })
}

const PLAN_COLUMNS: &str = "code, name, monthly_cents, yearly_cents, limits, features";

/// Every plan, in catalogue order.
pub async fn plans<'c>(db: impl Executor<'c, Database = Any>) -> Result<Vec<PlanRow>, sqlx::Error> {
    let sql = format!("SELECT {PLAN_COLUMNS} FROM billing_plans ORDER BY position");
    sqlx::query(&sql)
        .fetch_all(db)
        .await?
        .iter()
        .map(plan)
        .collect()
}

/// One plan.
pub async fn plan_by_code<'c>(
    db: impl Executor<'c, Database = Any>,
    code: &str,
) -> Result<Option<PlanRow>, sqlx::Error> {
    let sql = format!("SELECT {PLAN_COLUMNS} FROM billing_plans WHERE code = $1");
    sqlx::query(&sql)
        .bind(code.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(plan)
        .transpose()
}

fn pack(row: &AnyRow) -> Result<PackRow, sqlx::Error> {
    Ok(PackRow {
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        price_cents: row.try_get("price_cents")?,
        credit_cents: row.try_get("credit_cents")?,
    })
}

const PACK_COLUMNS: &str = "code, name, price_cents, credit_cents";

/// Every credit pack, in catalogue order.
pub async fn packs<'c>(db: impl Executor<'c, Database = Any>) -> Result<Vec<PackRow>, sqlx::Error> {
    let sql = format!("SELECT {PACK_COLUMNS} FROM billing_credit_packs ORDER BY position");
    sqlx::query(&sql)
        .fetch_all(db)
        .await?
        .iter()
        .map(pack)
        .collect()
}

/// One credit pack.
pub async fn pack_by_code<'c>(
    db: impl Executor<'c, Database = Any>,
    code: &str,
) -> Result<Option<PackRow>, sqlx::Error> {
    let sql = format!("SELECT {PACK_COLUMNS} FROM billing_credit_packs WHERE code = $1");
    sqlx::query(&sql)
        .bind(code.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(pack)
        .transpose()
}

const ORDER_COLUMNS: &str = "id, user_id, kind, product, cycle, provider, amount_cents, \
                             credit_cents, description, status, idempotency_key, redirect_url, \
                             provider_token, created_at, canceled_at";

fn order(row: &AnyRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        product: row.try_get("product")?,
        cycle: row.try_get("cycle")?,
        provider: row.try_get("provider")?,
        amount_cents: row.try_get("amount_cents")?,
        credit_cents: row.try_get("credit_cents")?,
        description: row.try_get("description")?,
        status: row.try_get("status")?,
        idempotency_key: row.try_get("idempotency_key")?,
        redirect_url: row.try_get("redirect_url")?,
        provider_token: row.try_get("provider_token")?,
        created_at: row.try_get("created_at")?,
        canceled_at: row.try_get("canceled_at")?,
    })
}

/// Stores a new order; a reused idempotency key of the same user is a unique violation, and
/// then nothing is stored (`ON CONFLICT DO NOTHING`: `false`).
pub async fn insert_order<'c>(
    db: impl Executor<'c, Database = Any>,
    o: &OrderRow,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO billing_orders (id, user_id, kind, product, cycle, provider, amount_cents, \
         credit_cents, currency, description, status, idempotency_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ZAR', $9, $10, $11, $12) \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING",
    )
    .bind(o.id.clone())
    .bind(o.user_id.clone())
    .bind(o.kind.clone())
    .bind(o.product.clone())
    .bind(o.cycle.clone())
    .bind(o.provider.clone())
    .bind(o.amount_cents)
    .bind(o.credit_cents)
    .bind(o.description.clone())
    .bind(o.status.clone())
    .bind(o.idempotency_key.clone())
    .bind(o.created_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The order with `id`.
pub async fn order_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<OrderRow>, sqlx::Error> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM billing_orders WHERE id = $1");
    sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(order)
        .transpose()
}

/// The order `user` made with idempotency `key`.
pub async fn order_by_key<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &str,
    key: &str,
) -> Result<Option<OrderRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM billing_orders WHERE user_id = $1 AND idempotency_key = $2"
    );
    sqlx::query(&sql)
        .bind(user.to_owned())
        .bind(key.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(order)
        .transpose()
}

/// Keeps the provider's payment page of an order.
pub async fn set_redirect<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    url: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_orders SET redirect_url = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(url.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Marks an order paid (the first payment of it).
pub async fn mark_order_paid(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_orders SET status = 'paid', paid_at = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the provider's subscription token an order was first paid with (never replaced).
pub async fn keep_order_token(
    conn: &mut AnyConnection,
    id: &str,
    token: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_orders SET provider_token = $2 WHERE id = $1 AND provider_token IS NULL",
    )
    .bind(id.to_owned())
    .bind(token.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a provider's notification `(external_id, event)` was applied.
pub async fn notification_seen(
    conn: &mut AnyConnection,
    provider: &str,
    external_id: &str,
    event: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT 1 AS seen FROM billing_notifications \
         WHERE provider = $1 AND external_id = $2 AND event = $3",
    )
    .bind(provider.to_owned())
    .bind(external_id.to_owned())
    .bind(event.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Records that a provider's notification `(external_id, event)` is being applied; `false` when
/// it already was. Concurrent claims of one id wait for the first to commit, then find it.
pub async fn claim_notification(
    conn: &mut AnyConnection,
    provider: &str,
    external_id: &str,
    event: &str,
    order_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO billing_notifications (provider, external_id, event, order_id, received_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, external_id, event) DO NOTHING",
    )
    .bind(provider.to_owned())
    .bind(external_id.to_owned())
    .bind(event.to_owned())
    .bind(order_id.to_owned())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

const SUBSCRIPTION_COLUMNS: &str = "user_id, plan, cycle, status, current_period_start, \
     current_period_end, CAST(cancel_at_period_end AS INTEGER) AS cancel_at_period_end, \
     provider, provider_token, period_anchor, paid_months, order_id";

/// The stored subscription of `user`, if their plan ever changed.
pub async fn subscription<'c>(
    db: impl Executor<'c, Database = Any>,
    user: &str,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    let sql =
        format!("SELECT {SUBSCRIPTION_COLUMNS} FROM billing_subscriptions WHERE user_id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(user.to_owned())
        .fetch_optional(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(SubscriptionRow {
        user_id: row.try_get("user_id")?,
        plan: row.try_get("plan")?,
        cycle: row.try_get("cycle")?,
        status: row.try_get("status")?,
        current_period_start: row.try_get("current_period_start")?,
        current_period_end: row.try_get("current_period_end")?,
        cancel_at_period_end: row.try_get::<i64, _>("cancel_at_period_end")? != 0,
        provider: row.try_get("provider")?,
        provider_token: row.try_get("provider_token")?,
        period_anchor: row.try_get("period_anchor")?,
        paid_months: row.try_get("paid_months")?,
        order_id: row.try_get("order_id")?,
    }))
}

/// Writes `s` as the subscription of its user.
pub async fn save_subscription(
    conn: &mut AnyConnection,
    s: &SubscriptionRow,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO billing_subscriptions (user_id, plan, cycle, status, current_period_start, \
         current_period_end, cancel_at_period_end, provider, provider_token, updated_at, \
         period_anchor, paid_months, order_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (user_id) DO UPDATE SET plan = excluded.plan, cycle = excluded.cycle, \
         status = excluded.status, current_period_start = excluded.current_period_start, \
         current_period_end = excluded.current_period_end, \
         cancel_at_period_end = excluded.cancel_at_period_end, provider = excluded.provider, \
         provider_token = excluded.provider_token, updated_at = excluded.updated_at, \
         period_anchor = excluded.period_anchor, paid_months = excluded.paid_months, \
         order_id = excluded.order_id",
    )
    .bind(s.user_id.clone())
    .bind(s.plan.clone())
    .bind(s.cycle.clone())
    .bind(s.status.clone())
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(s.provider.clone())
    .bind(s.provider_token.clone())
    .bind(now)
    .bind(s.period_anchor)
    .bind(s.paid_months)
    .bind(s.order_id.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// The next invoice number of `year`, from its counter row, in the caller's transaction: the
/// row stays locked until it commits, so numbers have no gaps and no duplicates.
pub async fn next_invoice_number(conn: &mut AnyConnection, year: i32) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO billing_invoice_counters (year, last) VALUES ($1, 1) \
         ON CONFLICT (year) DO UPDATE SET last = billing_invoice_counters.last + 1 \
         RETURNING last",
    )
    .bind(i64::from(year))
    .fetch_one(conn)
    .await?;
    row.try_get("last")
}

/// Takes the account's subscription row for the rest of the transaction (creating it as `free`,
/// which reads the same as no row), so read-modify-writes of one account's subscription run one
/// after the other on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises writers.
pub async fn lock_subscription(
    conn: &mut AnyConnection,
    user: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO billing_subscriptions (user_id, plan, status, cancel_at_period_end, \
         updated_at) VALUES ($1, 'free', 'active', FALSE, $2) \
         ON CONFLICT (user_id) DO UPDATE SET updated_at = billing_subscriptions.updated_at",
    )
    .bind(user.to_owned())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Remembers that the provider cancelled order `id`'s subscription (the first time only).
pub async fn mark_order_canceled(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_orders SET canceled_at = $2 WHERE id = $1 AND canceled_at IS NULL")
        .bind(id.to_owned())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a paid invoice.
pub async fn insert_invoice(conn: &mut AnyConnection, i: &InvoiceRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO billing_invoices (id, user_id, order_id, number, status, amount_cents, \
         refunded_cents, currency, description, provider, provider_payment_id, created_at, paid_at, \
         provider_reference, refund_reserved_cents) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'ZAR', $8, $9, $10, $11, $12, $13, 0)",
    )
    .bind(i.id.clone())
    .bind(i.user_id.clone())
    .bind(i.order_id.clone())
    .bind(i.number.clone())
    .bind(i.status.clone())
    .bind(i.amount_cents)
    .bind(i.refunded_cents)
    .bind(i.description.clone())
    .bind(i.provider.clone())
    .bind(i.provider_payment_id.clone())
    .bind(i.created_at)
    .bind(i.paid_at)
    .bind(i.provider_reference.clone())
    .execute(conn)
    .await?;
    Ok(())
}

const INVOICE_COLUMNS: &str = "id, user_id, order_id, number, status, amount_cents, \
     refunded_cents, description, provider, provider_payment_id, created_at, paid_at, \
     provider_reference, refund_reserved_cents";

fn invoice(row: &AnyRow) -> Result<InvoiceRow, sqlx::Error> {
    Ok(InvoiceRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        order_id: row.try_get("order_id")?,
        number: row.try_get("number")?,
        status: row.try_get("status")?,
        amount_cents: row.try_get("amount_cents")?,
        refunded_cents: row.try_get("refunded_cents")?,
        description: row.try_get("description")?,
        provider: row.try_get("provider")?,
        provider_payment_id: row.try_get("provider_payment_id")?,
        created_at: row.try_get("created_at")?,
        paid_at: row.try_get("paid_at")?,
        provider_reference: row.try_get("provider_reference")?,
        refund_reserved_cents: row.try_get("refund_reserved_cents")?,
    })
}

/// One page of `user`'s invoices, newest first, and how many they have.
pub async fn invoices<'c, E>(
    db: E,
    user: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<InvoiceRow>, i64), sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let sql = format!(
        "SELECT {INVOICE_COLUMNS} FROM billing_invoices WHERE user_id = $1 \
         ORDER BY created_at DESC, number DESC LIMIT $2 OFFSET $3"
    );
    let rows = sqlx::query(&sql)
        .bind(user.to_owned())
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM billing_invoices WHERE user_id = $1")
        .bind(user.to_owned())
        .fetch_one(db)
        .await?
        .try_get("n")?;
    Ok((rows.iter().map(invoice).collect::<Result<_, _>>()?, total))
}

/// The invoice with `id`.
pub async fn invoice_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    let sql = format!("SELECT {INVOICE_COLUMNS} FROM billing_invoices WHERE id = $1");
    sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(invoice)
        .transpose()
}

/// The invoice with `id`, its row locked until the caller's transaction ends (a write that
/// changes nothing: PostgreSQL locks the row, SQLite's transactions already hold the database).
pub async fn lock_invoice(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE billing_invoices SET refund_reserved_cents = refund_reserved_cents \
         WHERE id = $1 RETURNING {INVOICE_COLUMNS}"
    );
    sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(invoice)
        .transpose()
}

/// The id of the `provider`'s invoice whose payment reference is one of `refs`.
pub async fn invoice_by_reference<'c, E>(
    db: E,
    provider: &str,
    refs: &[&str],
) -> Result<Option<String>, sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    for r in refs.iter().filter(|r| !r.is_empty()) {
        let row = sqlx::query(
            "SELECT id FROM billing_invoices WHERE provider = $1 AND provider_reference = $2 \
             ORDER BY created_at LIMIT 1",
        )
        .bind(provider.to_owned())
        .bind((*r).to_owned())
        .fetch_optional(db)
        .await?;
        if let Some(row) = row {
            return Ok(Some(row.try_get("id")?));
        }
    }
    Ok(None)
}

/// Replaces an invoice's payment reference (a subscription invoice `in_…` resolved to the
/// payment intent that paid it).
pub async fn set_reference<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    reference: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_invoices SET provider_reference = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(reference.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Writes an invoice's refund state: status, refunded and reserved cents.
pub async fn set_invoice_refunds(
    conn: &mut AnyConnection,
    i: &InvoiceRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_invoices SET status = $2, refunded_cents = $3, refund_reserved_cents = $4 \
         WHERE id = $1",
    )
    .bind(i.id.clone())
    .bind(i.status.clone())
    .bind(i.refunded_cents)
    .bind(i.refund_reserved_cents)
    .execute(conn)
    .await?;
    Ok(())
}
