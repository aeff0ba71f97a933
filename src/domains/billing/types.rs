//! Billing requests, responses and the values they are made of. Money is integer cents with its
//! currency, always `ZAR` today.

use chrono::{DateTime, Utc};
use serde::{ser::SerializeMap, Deserialize, Serialize, Serializer};
use utoipa::{PartialSchema, ToSchema};

/// The one currency the catalogue is priced in.
pub const ZAR: &str = "ZAR";

/// An ISO 4217 currency code; `ZAR` is the only one used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Currency {
    /// South African rand.
    #[serde(rename = "ZAR")]
    Zar,
}

/// A plan's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanCode {
    /// Free: no payment.
    Free,
    /// Pro.
    Pro,
    /// Enterprise.
    Enterprise,
}

impl PlanCode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }

    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "free" => Some(Self::Free),
            "pro" => Some(Self::Pro),
            "enterprise" => Some(Self::Enterprise),
            _ => None,
        }
    }
}

/// A plan that is paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaidPlan {
    /// Pro.
    Pro,
    /// Enterprise.
    Enterprise,
}

impl PaidPlan {
    /// The plan's code.
    pub fn code(self) -> PlanCode {
        match self {
            Self::Pro => PlanCode::Pro,
            Self::Enterprise => PlanCode::Enterprise,
        }
    }
}

/// How often a subscription is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cycle {
    /// Every calendar month.
    Monthly,
    /// Every twelve months.
    Yearly,
}

impl Cycle {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
        }
    }

    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "monthly" => Some(Self::Monthly),
            "yearly" => Some(Self::Yearly),
            _ => None,
        }
    }

    /// Calendar months in one period.
    pub fn months(self) -> u32 {
        match self {
            Self::Monthly => 1,
            Self::Yearly => 12,
        }
    }
}

/// A payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// PayFast (South Africa).
    Payfast,
    /// Stripe.
    Stripe,
}

impl Provider {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payfast => "payfast",
            Self::Stripe => "stripe",
        }
    }

    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "payfast" => Some(Self::Payfast),
            "stripe" => Some(Self::Stripe),
            _ => None,
        }
    }
}

/// A credit pack's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PackCode {
    /// R100 for 10000 credit cents.
    Small,
    /// R500 for 52500 credit cents.
    Medium,
    /// R1000 for 110000 credit cents.
    Large,
}

impl PackCode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }
}

/// A plan's monthly limits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanLimits {
    /// Assistant messages per month.
    pub assistant_messages: u64,
    /// Agent runs per month.
    pub agent_runs: u64,
    /// Agents a developer may publish.
    pub agents: u64,
}

/// A plan of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanView {
    /// Its code.
    pub code: PlanCode,
    /// Its display name.
    pub name: String,
    /// The currency of its prices.
    pub currency: Currency,
    /// The monthly price in cents.
    pub monthly_cents: i64,
    /// The yearly price in cents.
    pub yearly_cents: i64,
    /// Monthly limits.
    pub limits: PlanLimits,
    /// What it includes, in words.
    pub features: Vec<String>,
}

/// A credit pack of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditPackView {
    /// Its code.
    pub code: PackCode,
    /// Its display name.
    pub name: String,
    /// The currency of its price and credits.
    pub currency: Currency,
    /// What it costs, in cents.
    pub price_cents: i64,
    /// The credit it adds, in cents.
    pub credit_cents: i64,
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Paid up (or free).
    Active,
    /// Waiting for a first payment.
    Pending,
    /// The period ended unpaid.
    PastDue,
    /// Canceled; the paid period runs to its end.
    Canceled,
}

impl SubscriptionStatus {
    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "pending" => Some(Self::Pending),
            "past_due" => Some(Self::PastDue),
            "canceled" => Some(Self::Canceled),
            _ => None,
        }
    }
}

/// The caller's subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// The plan in effect.
    pub plan: PlanCode,
    /// How often it is paid (`null` on free).
    pub cycle: Option<Cycle>,
    /// Where it stands.
    pub status: SubscriptionStatus,
    /// When the paid period began (`null` on free).
    pub current_period_start: Option<DateTime<Utc>>,
    /// When the paid period ends (`null` on free).
    pub current_period_end: Option<DateTime<Utc>>,
    /// Whether it ends (back to free) when the paid period does.
    pub cancel_at_period_end: bool,
    /// Who takes the payments (`null` on free).
    pub provider: Option<Provider>,
}

/// The only plan one can switch to without a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FreePlan {
    /// Free.
    Free,
}

/// `POST /api/billing/subscription`: paid plans are bought through a checkout.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlan {
    /// `free`: takes effect at the end of the paid period.
    pub plan: FreePlan,
}

/// `POST /api/billing/checkout`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CheckoutRequest {
    /// A plan, paid every cycle.
    Subscription {
        /// The plan.
        plan: PaidPlan,
        /// How often it is paid.
        cycle: Cycle,
        /// Who takes the payment.
        provider: Provider,
    },
    /// A credit pack, paid once.
    Credits {
        /// The pack.
        pack: PackCode,
        /// Who takes the payment.
        provider: Provider,
    },
}

impl CheckoutRequest {
    /// Who takes the payment.
    pub fn provider(&self) -> Provider {
        match self {
            Self::Subscription { provider, .. } | Self::Credits { provider, .. } => *provider,
        }
    }
}

impl PartialSchema for CheckoutRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let providers = serde_json::json!({ "type": "string", "enum": ["payfast", "stripe"] });
        serde_json::from_value(serde_json::json!({
            "description": "What to buy, and through whom: a subscription to a paid plan, or a \
                            credit pack. Amounts come from the catalogue, never from the client.",
            "oneOf": [
                {
                    "type": "object",
                    "properties": {
                        "kind": { "type": "string", "enum": ["subscription"] },
                        "plan": { "type": "string", "enum": ["pro", "enterprise"] },
                        "cycle": { "type": "string", "enum": ["monthly", "yearly"] },
                        "provider": providers,
                    },
                    "required": ["kind", "plan", "cycle", "provider"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "properties": {
                        "kind": { "type": "string", "enum": ["credits"] },
                        "pack": { "type": "string", "enum": ["small", "medium", "large"] },
                        "provider": providers,
                    },
                    "required": ["kind", "pack", "provider"],
                    "additionalProperties": false,
                },
            ],
        }))
        .expect("the checkout schema is a valid schema")
    }
}

impl ToSchema for CheckoutRequest {}

/// Form fields to post, in the order given (a JSON object of strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(&'static str, String)>);

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl PartialSchema for Fields {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "object",
            "description": "Form fields, name to value, to post as they are",
            "additionalProperties": { "type": "string" },
        }))
        .expect("the fields schema is a valid schema")
    }
}

impl ToSchema for Fields {}

/// How the browser reaches the provider's payment page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum RedirectMethod {
    /// Post `fields` as a form to `url`.
    #[serde(rename = "POST")]
    Post,
    /// Go to `url`.
    #[serde(rename = "GET")]
    Get,
}

/// Where to send the customer to pay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Redirect {
    /// `POST` a form (PayFast) or `GET` a page (Stripe).
    pub method: RedirectMethod,
    /// The provider's page.
    pub url: String,
    /// The form fields, signed (for `POST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Fields>,
}

/// A new order and how to pay it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutResponse {
    /// The order's id (PayFast's `m_payment_id`).
    pub order_id: String,
    /// Who takes the payment.
    pub provider: Provider,
    /// What the order costs, in cents, from the catalogue.
    pub amount_cents: i64,
    /// The currency.
    pub currency: Currency,
    /// Where to send the customer.
    pub redirect: Redirect,
}

/// The production client's product codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductCode {
    /// Pro, monthly.
    ProMonthly,
    /// Pro, yearly.
    ProYearly,
    /// Enterprise, monthly.
    EnterpriseMonthly,
    /// Enterprise, yearly.
    EnterpriseYearly,
}

impl ProductCode {
    /// The checkout it stands for, through PayFast.
    pub fn checkout(self) -> CheckoutRequest {
        let (plan, cycle) = match self {
            Self::ProMonthly => (PaidPlan::Pro, Cycle::Monthly),
            Self::ProYearly => (PaidPlan::Pro, Cycle::Yearly),
            Self::EnterpriseMonthly => (PaidPlan::Enterprise, Cycle::Monthly),
            Self::EnterpriseYearly => (PaidPlan::Enterprise, Cycle::Yearly),
        };
        CheckoutRequest::Subscription {
            plan,
            cycle,
            provider: Provider::Payfast,
        }
    }
}

/// `POST /api/payments/payfast/checkout` (the production client's form).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatCheckoutRequest {
    /// What to subscribe to.
    pub product_code: ProductCode,
}

/// The PayFast form for the production client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompatCheckoutResponse {
    /// PayFast's process URL.
    pub process_url: String,
    /// The signed fields to post there.
    pub fields: Fields,
}

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Not paid yet.
    Open,
    /// Paid.
    Paid,
    /// Cancelled before payment.
    Void,
    /// Paid, then refunded in full.
    Refunded,
    /// Paid, then refunded in part.
    PartiallyRefunded,
}

impl InvoiceStatus {
    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "open" => Some(Self::Open),
            "paid" => Some(Self::Paid),
            "void" => Some(Self::Void),
            "refunded" => Some(Self::Refunded),
            "partially_refunded" => Some(Self::PartiallyRefunded),
            _ => None,
        }
    }
}

/// One line of an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceLine {
    /// What was bought.
    pub description: String,
    /// Its amount in cents.
    pub amount_cents: i64,
}

/// An invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceView {
    /// Its id.
    pub id: String,
    /// `CC-<year>-<six digits>`, sequential per year.
    pub number: String,
    /// Where it stands.
    pub status: InvoiceStatus,
    /// The total in cents.
    pub amount_cents: i64,
    /// How much of it was refunded, in cents.
    pub refunded_cents: i64,
    /// The currency.
    pub currency: Currency,
    /// What was bought.
    pub lines: Vec<InvoiceLine>,
    /// Who took the payment.
    pub provider: Provider,
    /// The provider's id of the payment.
    pub provider_payment_id: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was paid.
    pub paid_at: Option<DateTime<Utc>>,
}

/// One movement of the caller's credit balance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditMovement {
    /// The ledger transaction.
    pub id: String,
    /// What moved it (`credit_purchase`).
    pub kind: String,
    /// In words.
    pub description: String,
    /// Credit cents added (positive) or spent (negative).
    pub amount_cents: i64,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The caller's credit balance, read from the ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditsView {
    /// Credit cents available.
    pub balance_cents: i64,
    /// The currency.
    pub currency: Currency,
    /// The latest 100 movements, newest first.
    pub transactions: Vec<CreditMovement>,
}

/// The result of checking that every ledger transaction balances.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LedgerCheck {
    /// Transactions in the ledger.
    pub transactions: i64,
    /// Transactions whose entries do not sum to zero (always 0 unless something is wrong).
    pub unbalanced: i64,
}

/// What a verified provider notification (PayFast ITN, Stripe event) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItnResult {
    /// It had its effect now.
    Applied,
    /// It had its effect before: nothing changed.
    Duplicate,
    /// A status with no effect here (`PENDING`, `FAILED`, or a cancel of nothing).
    Ignored,
}

/// The answer to a provider's notification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItnAnswer {
    /// What the notification did.
    pub result: ItnResult,
}

/// A monthly counter of a plan's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// Messages to the assistant.
    AssistantMessages,
    /// Runs of marketplace agents.
    AgentRuns,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Self; 2] = [Self::AssistantMessages, Self::AgentRuns];

    /// The stored name (and the key in `billing_plans.limits`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AssistantMessages => "assistant_messages",
            Self::AgentRuns => "agent_runs",
        }
    }

    /// This counter's limit among a plan's limits.
    pub fn limit_in(self, limits: &PlanLimits) -> u64 {
        match self {
            Self::AssistantMessages => limits.assistant_messages,
            Self::AgentRuns => limits.agent_runs,
        }
    }
}

/// One counter this month.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CounterUsage {
    /// Used this month.
    pub used: i64,
    /// The plan's limit for a month.
    pub limit: i64,
    /// When the month ends and `used` starts again from zero.
    pub resets_at: DateTime<Utc>,
}

/// Each counter of the caller's plan this month.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageCounters {
    /// Assistant messages.
    pub assistant_messages: CounterUsage,
    /// Agent runs.
    pub agent_runs: CounterUsage,
}

/// `GET /api/billing/usage`: the caller's plan and what they used of its monthly limits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageView {
    /// The plan whose limits apply (the subscription's, as `GET /api/billing/subscription`
    /// answers it).
    pub plan: PlanCode,
    /// When this month began (the first of the month, 00:00 in Johannesburg).
    pub period_start: DateTime<Utc>,
    /// When the next month begins.
    pub resets_at: DateTime<Utc>,
    /// Each counter.
    pub counters: UsageCounters,
}

/// Why a refund is made: one line with a visible character.
pub const REFUND_REASON: crate::http::validate::Text =
    crate::http::validate::Text::new(crate::http::validate::Kind::NonBlank, 1, 200);

/// The most one refund may be, in cents (R1 000 000 000: above any invoice).
pub const MAX_REFUND_CENTS: i64 = 100_000_000_000;

crate::text_schema! {
    refund_reason_schema => REFUND_REASON, false;
}

/// `POST /api/admin/invoices/{id}/refund`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// How much to refund, in cents; all that is left when absent. At most what was paid and
    /// not yet refunded (422 beyond it).
    #[schema(minimum = 1, maximum = 100_000_000_000_i64)]
    #[serde(
        default,
        deserialize_with = "crate::http::validate::optional_whole_number"
    )]
    pub amount_cents: Option<i64>,
    /// Why (1 to 200 characters, one line, not blank); recorded, audited and sent to the
    /// provider.
    #[schema(schema_with = refund_reason_schema)]
    pub reason: String,
}

/// A refund that was made.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundView {
    /// Its id (also Stripe's idempotency key and `metadata[refund_id]`).
    pub id: String,
    /// How much was refunded now, in cents.
    pub amount_cents: i64,
    /// The currency.
    pub currency: Currency,
    /// Why.
    pub reason: String,
    /// The provider's id of the refund (Stripe's `re_…`; PayFast gives none).
    pub provider_refund_id: Option<String>,
    /// The invoice as it stands after the refund.
    pub invoice: InvoiceView,
}
