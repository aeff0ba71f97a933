//! The password policy (ASVS 6.2): 12 to 128 characters, no composition rules, and refused when
//! zxcvbn rates it below 3 given the user's own details and the platform's names.

use serde::Serialize;
use utoipa::ToSchema;

/// The shortest password accepted.
pub const MIN_CHARS: usize = 12;
/// The longest password accepted (bounds hashing cost).
pub const MAX_CHARS: usize = 128;
/// The lowest acceptable zxcvbn score (0..=4).
pub const MIN_SCORE: u8 = 3;

/// Words that make a password guessable on this platform whoever the user is.
const PLATFORM_WORDS: &[&str] = &["capecontrol", "autorisen", "cape", "control"];

/// How strong a candidate password is, and why it falls short.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Assessment {
    /// Whether the password is acceptable.
    pub valid: bool,
    /// The zxcvbn score, 0 (guessable) to 4 (very strong).
    pub score: u8,
    /// What is wrong, in words a user can act on (empty when valid).
    pub problems: Vec<String>,
}

/// Rates `password` against the policy; `user_inputs` are the user's email, names and the like.
pub fn assess(password: &str, user_inputs: &[&str]) -> Assessment {
    let chars = password.chars().count();
    let mut problems = Vec::new();
    if chars < MIN_CHARS {
        problems.push(format!(
            "must be at least {MIN_CHARS} characters (got {chars})"
        ));
    }
    if chars > MAX_CHARS {
        problems.push(format!(
            "must be at most {MAX_CHARS} characters (got {chars})"
        ));
        return Assessment {
            valid: false,
            score: 0,
            problems,
        };
    }
    let mut inputs: Vec<&str> = PLATFORM_WORDS.to_vec();
    inputs.extend(user_inputs.iter().filter(|s| !s.is_empty()));
    // The local part of an email is a likely password ingredient on its own.
    let locals: Vec<&str> = user_inputs
        .iter()
        .filter_map(|s| s.split_once('@').map(|(l, _)| l))
        .collect();
    inputs.extend(locals);
    let entropy = zxcvbn::zxcvbn(password, &inputs);
    let score = u8::from(entropy.score());
    if score < MIN_SCORE {
        let mut why = String::from("is too easy to guess");
        if let Some(feedback) = entropy.feedback() {
            if let Some(warning) = feedback.warning() {
                why.push_str(&format!(": {warning}"));
            }
            let hints: Vec<String> = feedback
                .suggestions()
                .iter()
                .map(|s| s.to_string())
                .collect();
            if !hints.is_empty() {
                why.push_str(&format!(" ({})", hints.join(" ")));
            }
        }
        problems.push(why);
    }
    Assessment {
        valid: problems.is_empty(),
        score,
        problems,
    }
}

/// Checks `password`, returning every problem joined into one message for a 422.
pub fn check(password: &str, user_inputs: &[&str]) -> Result<(), String> {
    let a = assess(password, user_inputs);
    if a.valid {
        Ok(())
    } else {
        Err(a.problems.join("; "))
    }
}

/// The JSON Schema of a new password: 12 to 128 characters of any kind, `format: password`. That
/// it must not be guessable (zxcvbn score 3 or more, given the user's own details) is beyond
/// JSON Schema: a guessable one is refused with 422.
pub fn schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{schema::SchemaFormat, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("password".into())))
        .min_length(Some(MIN_CHARS))
        .max_length(Some(MAX_CHARS))
        .description(Some(format!(
            "{MIN_CHARS} to {MAX_CHARS} characters, not guessable: a zxcvbn score of at least \
             {MIN_SCORE} given the account's email and names (a guessable one is refused with 422)"
        )))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_personal_passwords_are_refused() {
        assert!(check("short", &[]).is_err());
        assert!(check("password1234", &[]).is_err());
        assert!(check("capecontrol2024", &[]).is_err());
        assert!(check("janedoe19851985", &["janedoe@example.com", "Jane", "Doe"]).is_err());
    }

    #[test]
    fn a_long_random_passphrase_is_accepted() {
        assert!(check("orbit-velvet-cactus-lantern", &["jane@example.com"]).is_ok());
    }

    #[test]
    fn a_password_over_128_characters_is_refused() {
        assert!(check(&"x7Q!".repeat(40), &[])
            .unwrap_err()
            .contains("at most 128"));
    }
}
