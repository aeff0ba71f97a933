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
}

impl Message for Template {
    fn name(&self) -> &'static str {
        match self {
            Self::Receipt { .. } => "billing_receipt",
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
                        "Invoice {number}: {description}, R{}.{:02}.",
                        amount_cents / 100,
                        amount_cents % 100
                    ),
                    "You can see every invoice in your account's billing page.",
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
}
