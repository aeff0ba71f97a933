//! The platform's own help, shipped in the binary and loaded into the knowledge base at start
//! (see [`super::knowledge::load_help`]), keyed by slug.

/// One shipped help article.
#[derive(Debug, Clone, Copy)]
pub struct HelpDoc {
    /// Its stable key; a document with this slug is this article.
    pub slug: &'static str,
    /// Its title.
    pub title: &'static str,
    /// Words it is about, searched with the title's weight.
    pub tags: &'static [&'static str],
    /// The markdown text.
    pub body: &'static str,
}

macro_rules! doc {
    ($slug:literal, $title:literal, [$($tag:literal),*]) => {
        HelpDoc {
            slug: $slug,
            title: $title,
            tags: &[$($tag),*],
            body: include_str!(concat!("help/", $slug, ".md")),
        }
    };
}

/// Every shipped article.
pub const HELP: &[HelpDoc] = &[
    doc!(
        "registering",
        "Creating an account",
        [
            "register",
            "sign up",
            "signup",
            "account",
            "email",
            "verify",
            "verification",
            "password",
            "login",
            "sign in",
            "locked"
        ]
    ),
    doc!(
        "roles",
        "Roles: customer, developer and admin",
        [
            "role",
            "roles",
            "customer",
            "developer",
            "admin",
            "administrator",
            "profile",
            "permissions"
        ]
    ),
    doc!(
        "mfa",
        "Two-step sign-in (MFA)",
        [
            "mfa",
            "2fa",
            "two-factor",
            "authenticator",
            "totp",
            "recovery codes",
            "security"
        ]
    ),
    doc!(
        "password-reset",
        "Resetting a forgotten password",
        [
            "password",
            "reset",
            "forgot",
            "forgotten",
            "change password",
            "sessions",
            "sign out"
        ]
    ),
    doc!(
        "plans",
        "Plans and prices",
        [
            "plan",
            "plans",
            "price",
            "prices",
            "pricing",
            "cost",
            "pro",
            "enterprise",
            "free",
            "limits",
            "subscription",
            "upgrade",
            "cancel"
        ]
    ),
    doc!(
        "payments",
        "Payments, invoices and refunds",
        [
            "payment", "payments", "pay", "payfast", "stripe", "card", "invoice", "invoices",
            "refund", "refunds", "receipt", "renewal", "failed"
        ]
    ),
    doc!(
        "credits",
        "Credits and credit packs",
        ["credit", "credits", "pack", "packs", "balance", "bonus", "top up"]
    ),
    doc!(
        "developers",
        "The developer programme and earnings",
        [
            "developer",
            "developers",
            "programme",
            "program",
            "earnings",
            "earn",
            "payout",
            "payouts",
            "marketplace",
            "publish",
            "review"
        ]
    ),
    doc!(
        "assistant",
        "Using the Cape AI assistant",
        [
            "assistant",
            "cape ai",
            "chat",
            "threads",
            "conversation",
            "messages",
            "ai"
        ]
    ),
];
