//! The billing property test (issue 9): seeded random lifecycles (subscribe, renew, cancel,
//! resume, switch to free, buy credits, admin refunds in full or part, duplicated and
//! out-of-order PayFast and Stripe notifications) run through HTTP, and credit spent through
//! `billing::credits` (no route spends credit yet), on a clock that jumps across month and year
//! ends in Johannesburg and in UTC. Each is checked against a reference model written here
//! without the service's code: the subscription (plan, status, cancel flag, period to the
//! microsecond, on an independent calendar), every invoice (amount, refunded cents, status,
//! paid time), the invoice count and the credit balance; then every ledger transaction balanced
//! (one per payment, refund and spend) and every year's invoice numbers without gaps.
//!
//! Accounts come in twins that live the same lifecycles with the notifications delivered in
//! different random orders (duplicates included): their end states must be the same. At the end
//! every notification of a quarter of the accounts is delivered again in yet another order and
//! must change nothing.
//!
//! `BILLING_LIFECYCLES` (5,000 per database: 10,000 in each test run) and `BILLING_SEED`
//! (20261202) reproduce a run; a failure names the seed, the epoch and the account.

use std::collections::{HashMap, HashSet};

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

use autorisen::domains::billing::credits::{self, SpendError};

use crate::{
    auth_helpers::{authed, register_customer, Session},
    billing::itn,
    billing_stripe::signature,
    helpers::{Backend, TestApp},
    on_both_backends,
};

on_both_backends!(random_lifecycles_end_as_a_reference_model_says_in_any_delivery_order);

const PASSPHRASE_VARS: [(&str, &str); 3] = [
    ("PAYFAST_MERCHANT_ID", crate::billing::MERCHANT_ID),
    ("PAYFAST_MERCHANT_KEY", "46f0cd694581a"),
    ("PAYFAST_PASSPHRASE", crate::billing::PASSPHRASE),
];
const WEBHOOK_SECRET: &str = "whsec_lifecycles";
/// Twins per run: twice this many accounts act at once.
const PAIRS: usize = 25;
const GRACE_DAYS: i64 = 7;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Johannesburg is UTC+02:00 all year.
const SAST: i64 = 2 * 3_600_000_000;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// An independent calendar: civil dates from day numbers (Howard Hinnant's algorithms).

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    next - days_from_civil(y, m, 1)
}

/// `micros` plus `months` calendar months on Johannesburg's wall clock.
fn add_months(micros: i64, months: i64) -> i64 {
    let local = micros + SAST;
    let (day, time) = (
        local.div_euclid(MICROS_PER_DAY),
        local.rem_euclid(MICROS_PER_DAY),
    );
    let (y, m, d) = civil_from_days(day);
    let total = y * 12 + (m - 1) + months;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd) * MICROS_PER_DAY + time - SAST
}

fn micros_of(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
        .map(|t| t.timestamp_micros())
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

// ---------------------------------------------------------------------------------------------
// The model.

const PLANS: [(&str, i64, i64); 2] = [("pro", 52_900, 499_000), ("enterprise", 179_900, 1_719_000)];
const PACKS: [(&str, i64, i64); 3] = [
    ("small", 10_000, 10_000),
    ("medium", 50_000, 52_500),
    ("large", 100_000, 110_000),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    PayFast,
    Stripe,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Self::PayFast => "payfast",
            Self::Stripe => "stripe",
        }
    }
}

#[derive(Debug, Clone)]
enum Product {
    Plan { code: &'static str, months: i64 },
    Pack { credit: i64 },
}

#[derive(Debug, Clone)]
struct Order {
    id: String,
    provider: Provider,
    product: Product,
    amount: i64,
    paid: bool,
    canceled: bool,
}

#[derive(Debug, Clone)]
struct Sub {
    plan: &'static str,
    months: i64,
    canceled: bool,
    cancel_flag: bool,
    /// The payment id whose invoice's `paid_at` is the anchor.
    anchor_payment: String,
    paid_months: i64,
    order: usize,
}

/// A notification, by what it says; its wire form is made when it is delivered.
#[derive(Debug, Clone)]
enum Note {
    PayFast {
        order: usize,
        payment: String,
        status: &'static str,
    },
    StripeSession {
        order: usize,
        session: String,
    },
    StripeInvoice {
        order: usize,
        invoice: String,
        first: bool,
    },
    StripeDeleted {
        order: usize,
    },
}

impl Note {
    /// The key the service claims (`provider`, external id, event), or none for a note that
    /// is ignored without being claimed.
    fn key(&self, orders: &[Order]) -> Option<(String, &'static str)> {
        match self {
            Self::PayFast {
                payment, status, ..
            } => Some((format!("payfast:{payment}"), status)),
            Self::StripeSession { session, .. } => Some((format!("stripe:{session}"), "COMPLETE")),
            Self::StripeInvoice { first: true, .. } => None,
            Self::StripeInvoice { invoice, .. } => Some((format!("stripe:{invoice}"), "COMPLETE")),
            Self::StripeDeleted { order } => Some((
                format!("stripe:{}", stripe_subscription(&orders[*order].id)),
                "CANCELLED",
            )),
        }
    }

    fn order(&self) -> usize {
        match self {
            Self::PayFast { order, .. }
            | Self::StripeSession { order, .. }
            | Self::StripeInvoice { order, .. }
            | Self::StripeDeleted { order } => *order,
        }
    }

    fn payment_id(&self, orders: &[Order]) -> String {
        match self {
            Self::PayFast { payment, .. } => payment.clone(),
            Self::StripeSession { session, .. } => session.clone(),
            Self::StripeInvoice { invoice, .. } => invoice.clone(),
            Self::StripeDeleted { order } => stripe_subscription(&orders[*order].id),
        }
    }

    fn is_cancel(&self) -> bool {
        matches!(
            self,
            Self::PayFast {
                status: "CANCELLED",
                ..
            } | Self::StripeDeleted { .. }
        )
    }
}

fn stripe_subscription(order_id: &str) -> String {
    format!("sub_{}", order_id.replace('-', ""))
}

/// What the model expects a delivery to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Result(&'static str),
    Refused,
}

/// One account as the model sees it.
#[derive(Debug, Default)]
struct Account {
    orders: Vec<Order>,
    sub: Option<Sub>,
    credits: i64,
    invoices: i64,
    /// Claimed notification keys.
    seen: HashSet<(String, &'static str)>,
    /// Every note delivered, for the final replay.
    delivered: Vec<Note>,
    /// Each applied payment's `paid_at`, by payment id (a subscription's anchor is one).
    anchors: HashMap<String, i64>,
    /// Each applied payment's order, by payment id.
    paid_orders: HashMap<String, usize>,
    /// Refunded cents, by payment id.
    refunded: HashMap<String, i64>,
    /// Refunds made.
    refunds: i64,
    /// Spends of credit made.
    spends: i64,
}

impl Account {
    fn end(&self, anchor: i64) -> Option<i64> {
        self.sub.as_ref().map(|s| add_months(anchor, s.paid_months))
    }

    /// What a delivery of `note` at `now` does, applied to the model.
    fn deliver(&mut self, note: &Note, now: i64, anchors: &HashMap<String, i64>) -> Answer {
        let key = note.key(&self.orders);
        let Some(key) = key else {
            return Answer::Result("ignored");
        };
        if self.seen.contains(&key) {
            return Answer::Result("duplicate");
        }
        let o = note.order();
        if note.is_cancel() {
            self.seen.insert(key);
            self.orders[o].canceled = true;
            let applies = self
                .sub
                .as_ref()
                .is_some_and(|s| s.order == o && !s.canceled && s.paid_months > 0);
            let plan_matches = match (&self.sub, &self.orders[o].product) {
                (Some(s), Product::Plan { code, .. }) => s.plan == *code,
                _ => false,
            };
            if applies && plan_matches {
                let s = self.sub.as_mut().expect("checked");
                s.canceled = true;
                s.cancel_flag = true;
                return Answer::Result("applied");
            }
            return Answer::Result("ignored");
        }
        let order = self.orders[o].clone();
        if let Product::Pack { credit } = order.product {
            if order.paid {
                return Answer::Refused;
            }
            self.seen.insert(key);
            self.orders[o].paid = true;
            self.credits += credit;
            self.invoices += 1;
            return Answer::Result("applied");
        }
        let Product::Plan { code, months } = order.product else {
            unreachable!()
        };
        self.seen.insert(key);
        self.invoices += 1;
        let renewal = order.paid;
        self.orders[o].paid = true;
        let payment = note.payment_id(&self.orders);
        let grace = GRACE_DAYS * MICROS_PER_DAY;
        let current_end = self
            .sub
            .as_ref()
            .map(|s| self.end(anchors[&s.anchor_payment]).expect("a sub"));
        let continued = self.sub.as_ref().is_some_and(|s| {
            s.plan == code
                && s.paid_months > 0
                && ((renewal && s.order == o) || current_end.is_some_and(|e| e + grace > now))
        });
        let canceled = order.canceled;
        self.sub = Some(match self.sub.take() {
            Some(s) if continued && renewal && s.order == o => Sub {
                months,
                canceled: s.canceled || canceled,
                cancel_flag: s.cancel_flag || canceled,
                paid_months: s.paid_months + months,
                ..s
            },
            Some(s) if continued => Sub {
                months,
                canceled,
                cancel_flag: canceled,
                paid_months: s.paid_months + months,
                order: o,
                ..s
            },
            _ => Sub {
                plan: code,
                months,
                canceled,
                cancel_flag: canceled,
                anchor_payment: payment,
                paid_months: months,
                order: o,
            },
        });
        Answer::Result("applied")
    }

    /// `GET /api/billing/subscription` as the model reads it at `now`.
    fn view(&self, now: i64, anchors: &HashMap<String, i64>) -> Value {
        let free = json!({"plan": "free", "status": "active", "cancel_at_period_end": false});
        let Some(s) = &self.sub else { return free };
        let anchor = anchors[&s.anchor_payment];
        let end = add_months(anchor, s.paid_months);
        let ended = end <= now;
        let grace_over = end + GRACE_DAYS * MICROS_PER_DAY <= now;
        if ended && (s.cancel_flag || grace_over) {
            return free;
        }
        let status = if ended {
            "past_due"
        } else if s.canceled {
            "canceled"
        } else {
            "active"
        };
        json!({
            "plan": s.plan, "status": status, "cancel_at_period_end": s.cancel_flag,
            "cycle": if s.months == 12 { "yearly" } else { "monthly" },
            "start": add_months(anchor, s.paid_months - s.months), "end": end,
        })
    }

    /// What a user's change of the cancel flag answers, applied to the model. Ending a PayFast
    /// subscription cancels it at PayFast (it cannot be resumed); a Stripe one is set to end
    /// with its period there, which a resume undoes.
    fn change(&mut self, action: Action, now: i64, anchors: &HashMap<String, i64>) -> u16 {
        let view = self.view(now, anchors);
        if view["plan"] == "free" {
            return if action == Action::SwitchToFree {
                200
            } else {
                409
            };
        }
        let ending = action != Action::Resume;
        let s = self.sub.as_mut().expect("a paid plan");
        if ending && s.cancel_flag && view["status"] != "past_due" {
            return 200;
        }
        if view["status"] != "active" {
            return 409;
        }
        if s.cancel_flag == ending {
            return 200;
        }
        s.cancel_flag = ending;
        if self.orders[s.order].provider == Provider::PayFast {
            s.canceled = true;
            self.orders[s.order].canceled = true;
        }
        200
    }

    /// What an admin's refund of `amount` of `payment`'s invoice answers, applied to the model:
    /// a credit pack gives back its credit in proportion (refused beyond the unspent balance),
    /// a full refund of a plan ends it at once.
    fn refund(&mut self, payment: &str, amount: i64) -> u16 {
        let order = &self.orders[self.paid_orders[payment]];
        let before = self.refunded.get(payment).copied().unwrap_or(0);
        match order.product {
            Product::Pack { credit } => {
                let owed = |refunded: i64| credit * refunded / order.amount;
                let taken = owed(before + amount) - owed(before);
                if taken > self.credits {
                    return 409;
                }
                self.credits -= taken;
            }
            Product::Plan { code, .. } => {
                if before + amount == order.amount
                    && self.sub.as_ref().is_some_and(|s| s.plan == code)
                {
                    self.sub = None;
                }
            }
        }
        self.refunded.insert(payment.to_owned(), before + amount);
        self.refunds += 1;
        201
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Cancel,
    Resume,
    SwitchToFree,
}

impl Action {
    fn request(self) -> (&'static str, Option<Value>) {
        match self {
            Self::Cancel => ("/api/billing/subscription/cancel", None),
            Self::Resume => ("/api/billing/subscription/resume", None),
            Self::SwitchToFree => ("/api/billing/subscription", Some(json!({"plan": "free"}))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A lifecycle: what twins both live, before each shuffles its deliveries.

/// An admin refund after a lifecycle's deliveries: of the n-th payment applied (modulo), in
/// full or of a part drawn from the seed.
#[derive(Debug, Clone, Copy)]
struct RefundSpec {
    nth: usize,
    full: bool,
    seed: u64,
}

#[derive(Debug, Clone)]
enum Spec {
    Plan {
        plan: usize,
        yearly: bool,
        provider: Provider,
        renewals: usize,
        provider_cancel: bool,
        first_invoice_noise: bool,
        actions: Vec<Action>,
        refund: Option<RefundSpec>,
        spend: Option<u64>,
    },
    Pack {
        pack: usize,
        provider: Provider,
        paid_twice: bool,
        refund: Option<RefundSpec>,
        spend: Option<u64>,
    },
}

impl Spec {
    fn refund(&self) -> Option<RefundSpec> {
        match self {
            Self::Plan { refund, .. } | Self::Pack { refund, .. } => *refund,
        }
    }

    /// A spend of credit after the refund (the seed draws the amount, sometimes over the
    /// balance).
    fn spend(&self) -> Option<u64> {
        match self {
            Self::Plan { spend, .. } | Self::Pack { spend, .. } => *spend,
        }
    }
}

fn refund_spec(rng: &mut StdRng) -> Option<RefundSpec> {
    rng.gen_bool(0.3).then(|| RefundSpec {
        nth: rng.gen_range(0..4),
        full: rng.gen_bool(0.5),
        seed: rng.gen(),
    })
}

fn spec(rng: &mut StdRng) -> Spec {
    let provider = if rng.gen_bool(0.5) {
        Provider::PayFast
    } else {
        Provider::Stripe
    };
    if rng.gen_bool(0.25) {
        return Spec::Pack {
            pack: rng.gen_range(0..PACKS.len()),
            provider,
            paid_twice: provider == Provider::PayFast && rng.gen_bool(0.2),
            refund: refund_spec(rng),
            spend: rng.gen_bool(0.4).then(|| rng.gen()),
        };
    }
    let actions = match rng.gen_range(0..10) {
        0..=4 => vec![],
        5 => vec![Action::Cancel],
        6 => vec![Action::Cancel, Action::Resume],
        7 => vec![Action::Resume],
        8 => vec![Action::SwitchToFree],
        _ => vec![Action::SwitchToFree, Action::Resume],
    };
    Spec::Plan {
        plan: rng.gen_range(0..PLANS.len()),
        yearly: rng.gen_bool(0.2),
        provider,
        renewals: rng.gen_range(0..=2),
        provider_cancel: rng.gen_bool(0.25),
        first_invoice_noise: provider == Provider::Stripe && rng.gen_bool(0.3),
        actions,
        refund: refund_spec(rng),
        spend: rng.gen_bool(0.2).then(|| rng.gen()),
    }
}

/// The clock's next instant after `now`: often the last hours of a month, as Johannesburg and
/// UTC see them, sometimes a day or two on, sometimes past a period and its grace.
fn next_instant(rng: &mut StdRng, now: i64) -> i64 {
    let hour = 3_600_000_000;
    let local_day = (now + SAST).div_euclid(MICROS_PER_DAY);
    let (y, m, _) = civil_from_days(local_day);
    let month_end = |y: i64, m: i64| days_from_civil(y, m, days_in_month(y, m));
    let mut last = month_end(y, m);
    if last * MICROS_PER_DAY - SAST <= now + hour {
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        last = month_end(ny, nm);
    }
    let minute = rng.gen_range(0..60) * 60_000_000 + rng.gen_range(0..60_000_000);
    let next = match rng.gen_range(0..10) {
        // 21:00-21:59 UTC on the last day: 23:00 in Johannesburg, the month still running.
        0..=2 => last * MICROS_PER_DAY + 21 * hour + minute,
        // 22:00-23:59 UTC on the last day: already the 1st in Johannesburg, not yet in UTC.
        3..=5 => last * MICROS_PER_DAY + rng.gen_range(22..24) * hour + minute,
        // 00:00-01:59 UTC on the 1st.
        6 => (last + 1) * MICROS_PER_DAY + rng.gen_range(0..2) * hour + minute,
        // A day or two on.
        7 | 8 => now + rng.gen_range(1..48) * hour + minute,
        // Past a monthly period and its grace.
        _ => now + rng.gen_range(38..70) * MICROS_PER_DAY + minute,
    };
    next.max(now + hour)
}

// ---------------------------------------------------------------------------------------------
// Driving the service.

struct Run {
    app: TestApp,
    seed: u64,
    /// 503s answered and asked again (a loaded machine's pool or timeout, never a rule).
    retries: std::sync::atomic::AtomicUsize,
}

impl Run {
    /// Sends `req`, asking again after a 503 as a client (or a provider retrying a
    /// notification) would: every request here is safe to repeat (checkouts and refunds carry
    /// an `Idempotency-Key`, notifications are claimed once, the rest are reads or set a flag).
    async fn send(&self, req: reqwest::RequestBuilder) -> reqwest::Response {
        for _ in 0..30 {
            let res = req.try_clone().expect("a plain body").send().await.unwrap();
            if res.status() != 503 {
                return res;
            }
            self.retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("seed {}: 503 thirty times for {req:?}", self.seed);
    }

    /// `GET path` as `s`, which must answer 200.
    async fn get(&self, path: &str, s: &Session) -> Value {
        let res = self
            .send(authed(&self.app, Method::GET, path, &s.access))
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or_default();
        assert_eq!(status, 200, "seed {}: GET {path}: {body}", self.seed);
        body
    }

    fn now(&self) -> i64 {
        self.app.state.clock.now_micros()
    }

    async fn checkout(&self, s: &Session, body: Value) -> (String, i64) {
        let key = uuid::Uuid::new_v4().to_string();
        let req = authed(&self.app, Method::POST, "/api/billing/checkout", &s.access)
            .header("Idempotency-Key", key)
            .json(&body);
        let res = self.send(req).await;
        assert_eq!(res.status(), 201, "seed {}: checkout {body}", self.seed);
        let order: Value = res.json().await.unwrap();
        (
            order["order_id"].as_str().unwrap().to_owned(),
            order["amount_cents"].as_i64().unwrap(),
        )
    }

    /// Delivers `note` as its provider would and answers what the service said.
    async fn deliver(&self, account: &Account, note: &Note) -> Answer {
        let order = &account.orders[note.order()];
        let stripe = |event: Value| async move {
            let body = event.to_string();
            let t = self.now() / 1_000_000;
            let req = self
                .app
                .client
                .post(self.app.url("/api/payments/stripe/webhook"))
                .header("content-type", "application/json")
                .header("stripe-signature", signature(&body, t, WEBHOOK_SECRET))
                .body(body);
            self.send(req).await
        };
        let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let sub_id = stripe_subscription(&order.id);
        let res = match note {
            Note::PayFast {
                payment, status, ..
            } => {
                let amount = format!("{}.{:02}", order.amount / 100, order.amount % 100);
                let req = self
                    .app
                    .client
                    .post(self.app.url("/api/payments/payfast/itn"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(itn(&order.id, payment, &amount, status));
                self.send(req).await
            }
            Note::StripeSession { session, .. } => {
                let mode = match order.product {
                    Product::Plan { .. } => json!(sub_id),
                    Product::Pack { .. } => Value::Null,
                };
                stripe(json!({
                    "id": event_id, "object": "event", "type": "checkout.session.completed",
                    "data": {"object": {
                        "id": session, "object": "checkout.session",
                        "client_reference_id": order.id, "metadata": {"order_id": order.id},
                        "amount_total": order.amount, "currency": "zar",
                        "payment_status": "paid", "subscription": mode,
                        "payment_intent": format!("pi_{session}"),
                    }},
                }))
                .await
            }
            Note::StripeInvoice { invoice, first, .. } => {
                stripe(json!({
                    "id": event_id, "object": "event", "type": "invoice.paid",
                    "data": {"object": {
                        "id": invoice, "object": "invoice", "amount_paid": order.amount,
                        "payment_intent": format!("pi_{invoice}"),
                        "currency": "zar", "status": "paid",
                        "billing_reason": if *first { "subscription_create" } else { "subscription_cycle" },
                        "parent": {"type": "subscription_details", "subscription_details": {
                            "metadata": {"order_id": order.id}, "subscription": sub_id,
                        }},
                    }},
                }))
                .await
            }
            Note::StripeDeleted { .. } => {
                stripe(json!({
                    "id": event_id, "object": "event", "type": "customer.subscription.deleted",
                    "data": {"object": {
                        "id": sub_id, "object": "subscription", "status": "canceled",
                        "metadata": {"order_id": order.id},
                    }},
                }))
                .await
            }
        };
        let status = res.status();
        let body: Value = res.json().await.unwrap_or_default();
        match (status.as_u16(), body["result"].as_str()) {
            (200, Some("applied")) => Answer::Result("applied"),
            (200, Some("duplicate")) => Answer::Result("duplicate"),
            (200, Some("ignored")) => Answer::Result("ignored"),
            (400, _) => Answer::Refused,
            _ => panic!("seed {}: {note:?} answered {status} {body}", self.seed),
        }
    }

    /// The account's invoice total and its newest hundred invoices, by provider payment id.
    async fn invoices(&self, s: &Session) -> (i64, HashMap<String, Value>) {
        let page = self.get("/api/billing/invoices?per_page=100", s).await;
        let items = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["provider_payment_id"].as_str().unwrap().to_owned(),
                    i.clone(),
                )
            })
            .collect();
        (page["total"].as_i64().unwrap(), items)
    }

    /// The account's subscription, invoices and credits must be what the model says.
    async fn check(&self, who: &str, s: &Session, a: &Account, anchors: &HashMap<String, i64>) {
        let now = self.now();
        let got = self.get("/api/billing/subscription", s).await;
        let want = a.view(now, anchors);
        let seed = self.seed;
        for field in ["plan", "status", "cancel_at_period_end"] {
            assert_eq!(
                got[field], want[field],
                "seed {seed}, {who}: {field}: {got} vs {want}"
            );
        }
        if want["plan"] != "free" {
            assert_eq!(
                got["cycle"], want["cycle"],
                "seed {seed}, {who}: {got} vs {want}"
            );
            assert_eq!(
                micros_of(&got["current_period_end"]),
                want["end"].as_i64().unwrap(),
                "seed {seed}, {who}: period end: {got} vs {want}"
            );
            assert_eq!(
                micros_of(&got["current_period_start"]),
                want["start"].as_i64().unwrap(),
                "seed {seed}, {who}: period start: {got} vs {want}"
            );
        }
        let credits = self.get("/api/billing/credits", s).await;
        assert_eq!(
            credits["balance_cents"].as_i64(),
            Some(a.credits),
            "seed {seed}, {who}: credits {credits}"
        );
    }

    /// One lifecycle of one account: checkout, the notifications in `order` (indexes into
    /// `notes`), then the user's actions; checked against the model at the end.
    async fn live(&self, who: &str, s: &Session, a: &mut Account, spec: &Spec, rng_seed: u64) {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let notes = match spec {
            Spec::Pack {
                pack,
                provider,
                paid_twice,
                ..
            } => {
                let (code, price, credit) = PACKS[*pack];
                let (id, amount) = self
                    .checkout(
                        s,
                        json!({"kind": "credits", "pack": code, "provider": provider.name()}),
                    )
                    .await;
                assert_eq!(amount, price, "seed {}: {code} priced {amount}", self.seed);
                a.orders.push(Order {
                    id,
                    product: Product::Pack { credit },
                    amount,
                    paid: false,
                    canceled: false,
                    provider: *provider,
                });
                let o = a.orders.len() - 1;
                let unique = || uuid::Uuid::new_v4().simple().to_string();
                let mut notes = vec![match provider {
                    Provider::PayFast => Note::PayFast {
                        order: o,
                        payment: unique(),
                        status: "COMPLETE",
                    },
                    Provider::Stripe => Note::StripeSession {
                        order: o,
                        session: format!("cs_{}", unique()),
                    },
                }];
                if *paid_twice {
                    notes.push(Note::PayFast {
                        order: o,
                        payment: unique(),
                        status: "COMPLETE",
                    });
                }
                notes
            }
            Spec::Plan {
                plan,
                yearly,
                provider,
                renewals,
                provider_cancel,
                first_invoice_noise,
                ..
            } => {
                let (code, monthly, yearly_price) = PLANS[*plan];
                let cycle = if *yearly { "yearly" } else { "monthly" };
                let (id, amount) = self
                    .checkout(
                        s,
                        json!({"kind": "subscription", "plan": code, "cycle": cycle,
                            "provider": provider.name()}),
                    )
                    .await;
                let price = if *yearly { yearly_price } else { monthly };
                assert_eq!(
                    amount, price,
                    "seed {}: {code} {cycle} priced {amount}",
                    self.seed
                );
                a.orders.push(Order {
                    id,
                    product: Product::Plan {
                        code,
                        months: if *yearly { 12 } else { 1 },
                    },
                    amount,
                    paid: false,
                    canceled: false,
                    provider: *provider,
                });
                let o = a.orders.len() - 1;
                let unique = || uuid::Uuid::new_v4().simple().to_string();
                let mut notes = Vec::new();
                match provider {
                    Provider::PayFast => {
                        for _ in 0..=*renewals {
                            notes.push(Note::PayFast {
                                order: o,
                                payment: unique(),
                                status: "COMPLETE",
                            });
                        }
                        if *provider_cancel {
                            notes.push(Note::PayFast {
                                order: o,
                                payment: unique(),
                                status: "CANCELLED",
                            });
                        }
                    }
                    Provider::Stripe => {
                        notes.push(Note::StripeSession {
                            order: o,
                            session: format!("cs_{}", unique()),
                        });
                        for _ in 0..*renewals {
                            notes.push(Note::StripeInvoice {
                                order: o,
                                invoice: format!("in_{}", unique()),
                                first: false,
                            });
                        }
                        if *first_invoice_noise {
                            notes.push(Note::StripeInvoice {
                                order: o,
                                invoice: format!("in_{}", unique()),
                                first: true,
                            });
                        }
                        if *provider_cancel {
                            notes.push(Note::StripeDeleted { order: o });
                        }
                    }
                }
                notes
            }
        };
        // Out of order, with duplicates.
        let mut deliveries: Vec<Note> = notes.clone();
        for _ in 0..rng.gen_range(0..=2) {
            deliveries.push(notes[rng.gen_range(0..notes.len())].clone());
        }
        deliveries.shuffle(&mut rng);
        let mut applied = Vec::new();
        for note in &deliveries {
            let now = self.now();
            let got = self.deliver(a, note).await;
            if got == Answer::Result("applied") && !note.is_cancel() {
                // The clock stands still for the epoch: the invoice is paid now, and a
                // subscription this payment starts is anchored now (checked at the end).
                a.anchors.insert(note.payment_id(&a.orders), now);
                a.paid_orders
                    .insert(note.payment_id(&a.orders), note.order());
                applied.push(note.payment_id(&a.orders));
            }
            let anchors = std::mem::take(&mut a.anchors);
            let want = a.deliver(note, now, &anchors);
            a.anchors = anchors;
            assert_eq!(got, want, "seed {}, {who}: {note:?}", self.seed);
            a.delivered.push(note.clone());
        }
        if let Spec::Plan { actions, .. } = spec {
            for action in actions {
                let (path, body) = action.request();
                let mut req = authed(&self.app, Method::POST, path, &s.access);
                if let Some(body) = body {
                    req = req.json(&body);
                }
                let status = self.send(req).await.status().as_u16();
                let anchors = std::mem::take(&mut a.anchors);
                let want = a.change(*action, self.now(), &anchors);
                a.anchors = anchors;
                assert_eq!(status, want, "seed {}, {who}: {action:?}", self.seed);
            }
        }
        if let (Some(r), false) = (spec.refund(), applied.is_empty()) {
            let payment = &applied[r.nth % applied.len()];
            let (_, invoices) = self.invoices(s).await;
            let invoice = &invoices[payment];
            let left = invoice["amount_cents"].as_i64().unwrap()
                - invoice["refunded_cents"].as_i64().unwrap();
            let amount = if r.full || left == 1 {
                left
            } else {
                StdRng::seed_from_u64(r.seed).gen_range(1..left)
            };
            let admin = self.app.admin_token().await;
            let path = format!(
                "/api/admin/invoices/{}/refund",
                invoice["id"].as_str().unwrap()
            );
            let req = authed(&self.app, Method::POST, &path, &admin)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"amount_cents": amount, "reason": "Property test"}));
            let res = self.send(req).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or_default();
            let want = a.refund(payment, amount);
            assert_eq!(
                status, want,
                "seed {}, {who}: refund {amount} of {invoice}: {body}",
                self.seed
            );
        }
        if let Some(seed) = spec.spend() {
            let amount = StdRng::seed_from_u64(seed).gen_range(1..=a.credits + 2000);
            let reference = uuid::Uuid::new_v4().to_string();
            let got = credits::spend(&self.app.state, &s.user_id, amount, "A run", &reference)
                .await
                .map_err(|e| match e {
                    SpendError::Insufficient { balance, .. } => balance,
                    other => panic!("seed {}, {who}: spending {amount}: {other}", self.seed),
                });
            let want = if amount <= a.credits {
                a.credits -= amount;
                a.spends += 1;
                Ok(a.credits)
            } else {
                Err(a.credits)
            };
            assert_eq!(got, want, "seed {}, {who}: spending {amount}", self.seed);
        }
        self.check(who, s, a, &a.anchors).await;
        let (total, invoices) = self.invoices(s).await;
        assert_eq!(total, a.invoices, "seed {}, {who}: invoices", self.seed);
        for (payment, invoice) in invoices {
            let seed = self.seed;
            assert_eq!(
                a.anchors.get(&payment),
                Some(&micros_of(&invoice["paid_at"])),
                "seed {seed}, {who}: the invoice of {payment} was paid at another time"
            );
            let refunded = a.refunded.get(&payment).copied().unwrap_or(0);
            let amount = a.orders[a.paid_orders[&payment]].amount;
            let status = match refunded {
                0 => "paid",
                r if r == amount => "refunded",
                _ => "partially_refunded",
            };
            assert_eq!(
                (
                    invoice["amount_cents"].as_i64(),
                    invoice["refunded_cents"].as_i64(),
                    invoice["status"].as_str()
                ),
                (Some(amount), Some(refunded), Some(status)),
                "seed {seed}, {who}: {invoice}"
            );
        }
    }
}

async fn random_lifecycles_end_as_a_reference_model_says_in_any_delivery_order(backend: Backend) {
    let seed = setting("BILLING_SEED", 20_261_202);
    let lifecycles = setting("BILLING_LIFECYCLES", 5_000) as usize;
    let mut vars = PASSPHRASE_VARS.to_vec();
    let (payfast, stripe) = fakes().await;
    let validate = format!("{payfast}/eng/query/validate");
    vars.extend([
        ("PAYFAST_VALIDATE_URL", validate.as_str()),
        ("PAYFAST_API_URL", payfast.as_str()),
        ("PAYFAST_VALID_SOURCES", "127.0.0.1/32"),
        ("STRIPE_SECRET_KEY", "sk_test_lifecycles"),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_API_BASE", stripe.as_str()),
        ("PUBLIC_BASE_URL", "https://capecontrol.example"),
        ("BILLING_GRACE_DAYS", "7"),
        // Every account acts from this one address.
        ("RATE_LIMIT_GENERAL", "1000000000/60"),
        ("RATE_LIMIT_AUTH", "1000000000/60"),
        ("MAX_CONCURRENT_PER_IP", "100000"),
        // A long run outlives the default 15-minute access tokens.
        ("ACCESS_TOKEN_TTL_SECONDS", "3600"),
    ]);
    let run = Run {
        app: TestApp::spawn_with(backend, &vars).await,
        seed,
        retries: Default::default(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sessions = Vec::new();
    for _ in 0..PAIRS * 2 {
        sessions.push(register_customer(&run.app).await);
    }
    let mut accounts: Vec<Account> = (0..PAIRS * 2).map(|_| Account::default()).collect();
    // 21:30 UTC on 31 December 2027: 23:30 in Johannesburg, the year's last half hour there.
    let mut now =
        days_from_civil(2027, 12, 31) * MICROS_PER_DAY + 21 * 3_600_000_000 + 1_800_000_000;
    let epochs = lifecycles.div_ceil(PAIRS * 2);
    let started = std::time::Instant::now();
    for epoch in 0..epochs {
        // Frozen for the epoch: the model and the service read the same instant.
        run.app
            .state
            .clock
            .freeze(chrono::DateTime::from_timestamp_micros(now).expect("a time in range"));
        let specs: Vec<(Spec, u64, u64)> = (0..PAIRS)
            .map(|_| (spec(&mut rng), rng.gen(), rng.gen()))
            .collect();
        let lives = accounts.iter_mut().enumerate().map(|(i, a)| {
            let (spec, first, second) = &specs[i / 2];
            let order_seed = if i % 2 == 0 { *first } else { *second };
            let who = format!("epoch {epoch}, account {i}");
            let run = &run;
            let s = &sessions[i];
            async move { run.live(&who, s, a, spec, order_seed).await }
        });
        futures::future::join_all(lives).await;
        // Twins end alike: same plan, status, flag, months paid, invoices and credits.
        for pair in 0..PAIRS {
            let (a, b) = (&accounts[2 * pair], &accounts[2 * pair + 1]);
            let shape = |x: &Account| {
                (
                    x.sub
                        .as_ref()
                        .map(|s| (s.plan, s.months, s.canceled, s.cancel_flag, s.paid_months)),
                    x.invoices,
                    x.credits,
                    x.refunds,
                    x.spends,
                )
            };
            assert_eq!(
                shape(a),
                shape(b),
                "seed {seed}, epoch {epoch}: twins {pair}"
            );
            // The clock stood still for the epoch, so even the periods are the same.
            let path = "/api/billing/subscription";
            let (ga, gb) = tokio::join!(
                run.get(path, &sessions[2 * pair]),
                run.get(path, &sessions[2 * pair + 1])
            );
            assert_eq!(ga, gb, "seed {seed}, epoch {epoch}: twins {pair}");
        }
        now = next_instant(&mut rng, now);
    }
    // Every notification of a quarter of the accounts again, in yet another order: nothing
    // changes (each answers duplicate or ignored, or is refused again).
    run.app
        .state
        .clock
        .freeze(chrono::DateTime::from_timestamp_micros(now).expect("a time in range"));
    let replays = accounts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 0)
        .map(|(i, a)| {
            let mut notes = a.delivered.clone();
            notes.shuffle(&mut StdRng::seed_from_u64(seed ^ i as u64));
            let run = &run;
            let s = &sessions[i];
            async move {
                let before = run.get("/api/billing/subscription", s).await;
                for note in &notes {
                    let got = run.deliver(a, note).await;
                    assert!(
                        matches!(
                            got,
                            Answer::Result("duplicate" | "ignored") | Answer::Refused
                        ),
                        "seed {seed}, account {i}: replayed {note:?} answered {got:?}"
                    );
                }
                let after = run.get("/api/billing/subscription", s).await;
                assert_eq!(
                    before, after,
                    "seed {seed}, account {i}: the replay changed it"
                );
                let (total, _) = run.invoices(s).await;
                assert_eq!(
                    total, a.invoices,
                    "seed {seed}, account {i}: the replay invoiced"
                );
            }
        });
    futures::future::join_all(replays).await;
    // Every ledger transaction balances, one per invoice; invoice numbers run 1..n per year.
    let payments: i64 = accounts
        .iter()
        .map(|a| a.invoices + a.refunds + a.spends)
        .sum();
    let admin_check = run.app.admin_get("/api/admin/ledger/check").await;
    assert_eq!(
        admin_check,
        json!({"transactions": payments, "unbalanced": 0}),
        "seed {seed}"
    );
    let numbers: Vec<String> = sqlx::query("SELECT number FROM billing_invoices")
        .fetch_all(run.app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("number"))
        .collect();
    let mut by_year: HashMap<String, Vec<u64>> = HashMap::new();
    for n in &numbers {
        let (year, seq) = n["CC-".len()..].split_once('-').expect("CC-YYYY-NNNNNN");
        by_year
            .entry(year.to_owned())
            .or_default()
            .push(seq.parse().unwrap());
    }
    assert!(
        by_year.len() >= 2,
        "seed {seed}: the run crossed no year end: {by_year:?}"
    );
    let deliveries: usize = accounts.iter().map(|a| a.delivered.len()).sum();
    let refunds: i64 = accounts.iter().map(|a| a.refunds).sum();
    let spends: i64 = accounts.iter().map(|a| a.spends).sum();
    let mut years: Vec<&String> = by_year.keys().collect();
    years.sort();
    eprintln!(
        "seed {seed}: {} lifecycles in {epochs} epochs, {deliveries} deliveries, {payments} ledger \
         transactions ({refunds} refunds, {spends} spends), invoice years {years:?}, {} retried 503s, {:?}",
        epochs * PAIRS * 2,
        run.retries.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
    for (year, mut seqs) in by_year {
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "seed {seed}: invoice numbers of {year}");
    }
}

/// The local PayFast validation endpoint (always `VALID`) and its API (refunds and
/// subscription cancels succeed), and Stripe's Checkout Sessions, refunds and subscriptions.
async fn fakes() -> (String, String) {
    let ok = || async {
        axum::Json(json!({"code": 200, "status": "success", "data": {"response": true}}))
    };
    let router = axum::Router::new()
        .route(
            "/eng/query/validate",
            axum::routing::post(|| async { "VALID" }),
        )
        .route("/refunds/{id}", axum::routing::post(ok))
        .route("/subscriptions/{token}/cancel", axum::routing::put(ok))
        .route(
            "/v1/checkout/sessions",
            axum::routing::post(|headers: axum::http::HeaderMap| async move {
                let key = headers["idempotency-key"]
                    .to_str()
                    .unwrap()
                    .replace('-', "");
                axum::Json(json!({
                    "id": format!("cs_test_{key}"), "object": "checkout.session",
                    "url": format!("https://checkout.stripe.test/c/pay/cs_test_{key}"),
                }))
            }),
        )
        .route(
            "/v1/refunds",
            axum::routing::post(|| async {
                let id = format!("re_{}", uuid::Uuid::new_v4().simple());
                axum::Json(json!({"id": id, "object": "refund", "status": "succeeded"}))
            }),
        )
        .route(
            "/v1/subscriptions/{id}",
            axum::routing::post(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    axum::Json(json!({"id": id, "object": "subscription"}))
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), format!("http://{addr}"))
}
