//! Signing keys derived from `SECRET_KEY`, and the access and MFA-step JWTs.
//!
//! Each purpose has its own key, `HMAC-SHA256(SECRET_KEY, label)`, so that a token made for one
//! purpose can never be accepted for another (an MFA-step token is not an access token, and an
//! email link's hash is keyed apart from both).

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domains::users::Role;

/// The audience of access tokens.
pub const AUDIENCE: &str = "autorisen-api";
/// `typ` of access tokens.
pub const ACCESS_TYPE: &str = "access";
/// `typ` of MFA-step tokens.
pub const MFA_TYPE: &str = "mfa";

/// The claims of an access (or MFA-step) token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the public base URL.
    pub iss: String,
    /// Audience: [`AUDIENCE`].
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The user's role when issued.
    pub role: Role,
    /// The session id (empty for MFA-step tokens).
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// The token's purpose: [`ACCESS_TYPE`] or [`MFA_TYPE`].
    pub typ: String,
    /// The user's token epoch when issued; a bump revokes every older token.
    pub ver: i64,
}

/// One HS256 key pair.
struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Every key the identity domain uses.
pub struct Keys {
    issuer: String,
    /// What every token must satisfy, built once rather than on every verification.
    validation: Validation,
    access: Jwt,
    mfa: Jwt,
    email_links: [u8; 32],
    recovery_codes: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

/// `HMAC-SHA256(secret, label)`: a key for one purpose.
pub fn derive(secret: &[u8], label: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// `HMAC-SHA256(key, data)` as hex.
pub fn mac_hex(key: &[u8; 32], data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl Keys {
    /// Derives every key from `secret`; `issuer` is stamped in and required of tokens.
    pub fn new(secret: &str, issuer: &str) -> Self {
        let jwt = |label: &str| {
            let key = derive(secret.as_bytes(), label);
            Jwt {
                encoding: EncodingKey::from_secret(&key),
                decoding: DecodingKey::from_secret(&key),
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        Self {
            issuer: issuer.to_owned(),
            validation,
            access: jwt("autorisen access-token v1"),
            mfa: jwt("autorisen mfa-step-token v1"),
            email_links: derive(secret.as_bytes(), "autorisen email-link-token v1"),
            recovery_codes: derive(secret.as_bytes(), "autorisen recovery-code v1"),
        }
    }

    /// The issuer of tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` with the key of their `typ`.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let key = if claims.typ == MFA_TYPE {
            &self.mfa
        } else {
            &self.access
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(
            if claims.typ == MFA_TYPE {
                "mfa+jwt"
            } else {
                "at+jwt"
            }
            .into(),
        );
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// Verifies a token of type `typ`: HS256 only, signature, issuer, audience, expiry.
    pub fn verify(&self, token: &str, typ: &str) -> Option<Claims> {
        let key = if typ == MFA_TYPE {
            &self.mfa
        } else {
            &self.access
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation).ok()?;
        (data.claims.typ == typ).then_some(data.claims)
    }

    /// The stored form of an email-link token (reset, verification).
    pub fn email_link_hash(&self, token: &str) -> String {
        mac_hex(&self.email_links, token)
    }

    /// The stored form of a recovery code.
    pub fn recovery_code_hash(&self, code: &str) -> String {
        mac_hex(&self.recovery_codes, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(typ: &str, exp: i64) -> Claims {
        Claims {
            iss: "https://x.test".into(),
            aud: AUDIENCE.into(),
            sub: "u".into(),
            role: Role::Customer,
            sid: "s".into(),
            iat: 0,
            exp,
            jti: "j".into(),
            typ: typ.into(),
            ver: 0,
        }
    }

    #[test]
    fn an_mfa_step_token_is_not_an_access_token() {
        let keys = Keys::new("k".repeat(32).as_str(), "https://x.test");
        let far = chrono::Utc::now().timestamp() + 60;
        let mfa = keys.sign(&claims(MFA_TYPE, far)).unwrap();
        assert!(keys.verify(&mfa, ACCESS_TYPE).is_none());
        assert!(keys.verify(&mfa, MFA_TYPE).is_some());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let keys = Keys::new("k".repeat(32).as_str(), "https://x.test");
        let body = serde_json::to_string(&claims(ACCESS_TYPE, i64::MAX / 2)).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.", b64.encode(r#"{"alg":"none"}"#), b64.encode(body));
        assert!(keys.verify(&token, ACCESS_TYPE).is_none());
    }

    #[test]
    fn purposes_get_distinct_keys() {
        assert_ne!(derive(b"s", "a"), derive(b"s", "b"));
    }
}
