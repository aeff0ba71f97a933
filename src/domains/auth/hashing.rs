//! Password hashing: argon2id (m=19456 KiB, t=2, p=1) off the async threads, with a bounded
//! number of hashes at once so a flood of logins queues instead of starving other requests.
//! Imported bcrypt hashes verify too, and are reported as needing an upgrade.
//!
//! Each hashing slot owns one reusable 19 MiB work area: allocating it per hash would leave the
//! allocator holding hundreds of MB under a login flood (freed blocks stay in per-thread arenas).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use argon2::{
    password_hash::{Output, ParamsString, SaltString},
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordVerifier, Version,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::AppError;

/// How long a request waits for a hashing slot before the service says it is busy.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// The memory cost in KiB (= argon2 blocks).
const M_COST: u32 = 19_456;
/// The time cost.
const T_COST: u32 = 2;

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
    work_areas: Arc<Mutex<Vec<Vec<Block>>>>,
    dummy: Arc<OnceCell<String>>,
}

fn params() -> Params {
    Params::new(M_COST, T_COST, 1, None).expect("OWASP argon2id parameters are valid")
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            work_areas: Arc::default(),
            dummy: Arc::default(),
        }
    }

    /// Runs `f` on the blocking pool with a slot and its work area.
    ///
    /// The slot and the work area belong to the blocking task, not to the request: a request
    /// cancelled mid-hash (the client went away) cannot free its slot while argon2 keeps
    /// running, which would let the number of live 19 MiB hashes grow past the bound.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let permit = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| AppError::Unavailable("password hashing queue is full".into()))?
            .map_err(|e| AppError::Internal(e.into()))?;
        let areas = self.work_areas.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            let area = areas.lock().map(|mut v| v.pop()).ok().flatten();
            let mut area = area.unwrap_or_else(|| vec![Block::default(); M_COST as usize]);
            let result = f(&mut area);
            if let Ok(mut pool) = areas.lock() {
                pool.push(area);
            }
            result
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        self.run(move |area| hash_blocking(area, &password))
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
        let verified = self
            .run(move |area| verify_blocking(area, &hash, &password))
            .await?;
        Ok(if real { verified } else { Verified::No })
    }

    async fn dummy_hash(&self) -> Result<String, AppError> {
        self.dummy
            .get_or_try_init(|| self.hash("dummy password for unknown accounts"))
            .await
            .cloned()
    }
}

fn hash_blocking(area: &mut [Block], password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt
        .decode_b64(&mut raw_salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let params = params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            raw_salt,
            &mut out,
            &mut area[..params.block_count()],
        )
        .map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?),
    };
    Ok(phc.to_string())
}

/// Recomputes an argon2id hash in `area`; false on any mismatch or malformed input.
fn argon2id_matches(
    area: &mut [Block],
    parsed: &PasswordHash<'_>,
    params: &Params,
    password: &str,
) -> bool {
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut raw_salt = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            raw_salt,
            &mut out,
            &mut area[..params.block_count()],
        )
        .ok()
        .and_then(|()| Output::new(&out).ok())
        .is_some_and(|computed| computed == expected) // Output's equality is constant-time.
}

fn verify_blocking(area: &mut [Block], hash: &str, password: &str) -> Verified {
    if hash.starts_with("$2") {
        return match bcrypt::verify(password, hash) {
            Ok(true) => Verified::YesRehash,
            _ => Verified::No,
        };
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Verified::No;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Verified::No;
    };
    let standard = parsed.algorithm == argon2::ARGON2ID_IDENT
        && parsed.version == Some(Version::V0x13.into())
        && params.m_cost() == M_COST
        && params.t_cost() == T_COST
        && params.p_cost() == 1;
    if standard {
        return if argon2id_matches(area, &parsed, &params, password) {
            Verified::Yes
        } else {
            Verified::No
        };
    }
    // Any other argon2 variant or cost: verify the general way, then ask for an upgrade.
    let other = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    if other {
        Verified::YesRehash
    } else {
        Verified::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_hash_keeps_its_slot_until_the_work_finishes() {
        let h = Hasher::new(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let running = h.clone();
        let request = tokio::spawn(async move {
            running
                .run(move |_| {
                    started_tx.send(()).unwrap();
                    finish_rx.recv().ok();
                })
                .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        assert_eq!(
            h.slots.available_permits(),
            0,
            "the work still runs, so its slot is still taken"
        );
        finish_tx.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h.slots.available_permits() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot was never freed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

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
    async fn a_hash_made_by_the_argon2_crate_verifies_and_weaker_costs_ask_for_an_upgrade() {
        use argon2::PasswordHasher as _;
        let h = Hasher::new(1);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"pw-standard", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            h.verify(Some(&standard), "pw-standard").await.unwrap(),
            Verified::Yes
        );
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-weak", &salt)
        .unwrap()
        .to_string();
        assert_eq!(
            h.verify(Some(&weak), "pw-weak").await.unwrap(),
            Verified::YesRehash
        );
        assert_eq!(h.verify(Some(&weak), "nope").await.unwrap(), Verified::No);
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
