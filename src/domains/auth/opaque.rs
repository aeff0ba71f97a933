//! Opaque random tokens (refresh tokens, email links): 256 bits, stored only as hashes.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A new random token: 32 bytes from the OS generator, base64url without padding.
pub fn new_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The stored form of a high-entropy token: SHA-256 as hex (a slow hash adds nothing at 256 bits).
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
