//! Password hashing: argon2id (m=19456 KiB, t=2, p=1) off the async threads, with a bounded
//! number of hashes at once so a flood of logins queues instead of starving other requests.
//! Imported bcrypt hashes verify too, and are reported as needing an upgrade.

use std::{sync::Arc, time::Duration};

use argon2::{
    password_hash::SaltString, Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _,
    PasswordVerifier, Version,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::AppError;

/// How long a request waits for a hashing slot before the service says it is busy.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or no such account).
    No,
    /// Right password, hash current.
    Yes,
    /// Right password, but the hash is bcrypt or weaker argon2: store a new hash.
    YesRehash,
}

/// Hashes and verifies passwords with bounded concurrency. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    dummy: Arc<OnceCell<String>>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::default(),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| AppError::Unavailable("password hashing queue is full".into()))?
            .map_err(|e| AppError::Internal(e.into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| AppError::Internal(e.into()))
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        self.run(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))
        })
        .await?
        .map_err(AppError::Internal)
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is no account, so
    /// that an unknown email costs the same time as a wrong password.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<Verified, AppError> {
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let password = password.to_owned();
        let verified = self.run(move || verify_blocking(&hash, &password)).await?;
        Ok(if real { verified } else { Verified::No })
    }

    async fn dummy_hash(&self) -> Result<String, AppError> {
        self.dummy
            .get_or_try_init(|| self.hash("dummy password for unknown accounts"))
            .await
            .cloned()
    }
}

fn verify_blocking(hash: &str, password: &str) -> Verified {
    if hash.starts_with("$2") {
        return match bcrypt::verify(password, hash) {
            Ok(true) => Verified::YesRehash,
            _ => Verified::No,
        };
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Verified::No;
    };
    if argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verified::No;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| p.m_cost() >= 19_456 && p.t_cost() >= 2);
    if current {
        Verified::Yes
    } else {
        Verified::YesRehash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let h = Hasher::new(1);
        let hash = h.hash("correct horse battery staple").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            h.verify(Some(&hash), "correct horse battery staple")
                .await
                .unwrap(),
            Verified::Yes
        );
        assert_eq!(h.verify(Some(&hash), "wrong").await.unwrap(), Verified::No);
        assert_eq!(h.verify(None, "anything").await.unwrap(), Verified::No);
    }

    #[tokio::test]
    async fn a_bcrypt_hash_verifies_and_asks_for_an_upgrade() {
        let h = Hasher::new(1);
        let hash = bcrypt::hash("legacy password 1", 4).unwrap();
        assert_eq!(
            h.verify(Some(&hash), "legacy password 1").await.unwrap(),
            Verified::YesRehash
        );
        assert_eq!(
            h.verify(Some(&hash), "legacy password 2").await.unwrap(),
            Verified::No
        );
    }
}
