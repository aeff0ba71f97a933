//! The messages of the billing domain, in the platform's branded layout.

use crate::mail::{layout::notice, Message, Rendered};

/// What the billing domain sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// A receipt for a paid invoice.
    Receipt {
        /// `CC-2026-000001`.
        number: String,
        /// What was bought.
        description: String,
        /// What was paid, in cents (ZAR).
        amount_cents: i64,
    },
    /// A yearly plan renews in three days.
    RenewalReminder {
        /// The plan's display name (`Pro`).
        plan: String,
        /// The renewal's date, in words (`5 December 2027`).
        renews_on: String,
        /// What will be charged, in cents (ZAR).
        amount_cents: i64,
        /// The account's billing page.
        billing_url: String,
    },
    /// A refund of (part of) a paid invoice.
    Refund {
        /// The invoice refunded.
        number: String,
        /// What was refunded now, in cents (ZAR).
        amount_cents: i64,
        /// Whether the whole invoice is refunded by now.
        full: bool,
    },
}

fn in_rand(cents: i64) -> String {
    format!("R{}.{:02}", cents / 100, cents % 100)
}

impl Message for Template {
    fn name(&self) -> &'static str {
        match self {
            Self::Receipt { .. } => "billing_receipt",
            Self::RenewalReminder { .. } => "billing_renewal_reminder",
            Self::Refund { .. } => "billing_refund",
        }
    }

    fn render(&self) -> Rendered {
        match self {
            Self::Receipt {
                number,
                description,
                amount_cents,
            } => notice(
                &format!("Your CapeControl receipt {number}"),
                &[
                    "Thank you: we received your payment.",
                    &format!(
                        "Invoice {number}: {description}, {}.",
                        in_rand(*amount_cents)
                    ),
                    "You can see every invoice in your account's billing page.",
                ],
            ),
            Self::RenewalReminder {
                plan,
                renews_on,
                amount_cents,
                billing_url,
            } => notice(
                &format!("Your CapeControl {plan} plan renews on {renews_on}"),
                &[
                    &format!(
                        "Your yearly CapeControl {plan} plan renews on {renews_on}, and {} \
                         will be charged then.",
                        in_rand(*amount_cents)
                    ),
                    &format!(
                        "Nothing to do if you want to keep it. To cancel before then, go to \
                         {billing_url}."
                    ),
                ],
            ),
            Self::Refund {
                number,
                amount_cents,
                full,
            } => notice(
                &format!("Your CapeControl refund for invoice {number}"),
                &[
                    &format!(
                        "We refunded {} of invoice {number}{}.",
                        in_rand(*amount_cents),
                        if *full { " (the whole invoice)" } else { "" }
                    ),
                    "It goes back to the card or account you paid with; your bank may take a \
                     few days to show it.",
                ],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_names_the_invoice_and_the_amount_in_rand() {
        let r = Template::Receipt {
            number: "CC-2026-000007".into(),
            description: "CapeControl Pro (monthly)".into(),
            amount_cents: 52900,
        }
        .render();
        assert!(r.subject.contains("CC-2026-000007"));
        assert!(r.text.contains("R529.00"), "{}", r.text);
    }

    #[test]
    fn a_renewal_reminder_names_the_plan_the_date_and_the_amount() {
        let r = Template::RenewalReminder {
            plan: "Pro".into(),
            renews_on: "5 December 2027".into(),
            amount_cents: 499000,
            billing_url: "https://capecontrol.example/billing".into(),
        }
        .render();
        assert_eq!(
            r.subject,
            "Your CapeControl Pro plan renews on 5 December 2027"
        );
        assert!(r.text.contains("R4990.00"), "{}", r.text);
        assert!(
            r.text.contains("https://capecontrol.example/billing"),
            "{}",
            r.text
        );
    }

    #[test]
    fn a_refund_names_the_invoice_and_the_amount_refunded() {
        let r = Template::Refund {
            number: "CC-2026-000007".into(),
            amount_cents: 12345,
            full: false,
        }
        .render();
        assert!(r.subject.contains("CC-2026-000007"));
        assert!(r.text.contains("R123.45"), "{}", r.text);
    }
}
