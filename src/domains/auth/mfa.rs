//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step) and single-use recovery codes.
//!
//! A TOTP code is accepted once: the last accepted time step is stored and only a later step
//! passes, atomically, so two instances cannot both accept the same code. Wrong codes count
//! toward the account lockout like wrong passwords.

use rand::Rng;
use sqlx::AnyConnection;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::{
    db::types::{new_id, now_micros},
    domains::{
        audit::{self, Event, RequestMeta},
        users::{service as users, User},
    },
    error::AppError,
    state::AppState,
};

use super::{
    challenges,
    hashing::Verified,
    keys::MFA_TYPE,
    lockout, opaque, service,
    types::{MfaSetup, RecoveryCodes, TokenResponse},
};

const ISSUER: &str = "CapeControl";
const STEP: u64 = 30;
const RECOVERY_CODES: usize = 10;

fn totp(secret_b32: &str, email: &str) -> Result<TOTP, AppError> {
    let bytes = Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("bad TOTP secret: {e:?}"))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        bytes,
        Some(ISSUER.into()),
        email.to_owned(),
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("bad TOTP parameters: {e}")))
}

/// The time step `code` belongs to (current ±1), if it is right for `secret`.
fn matching_step(totp: &TOTP, code: &str) -> Option<i64> {
    let now = chrono::Utc::now().timestamp() as u64;
    [now.saturating_sub(STEP), now, now + STEP]
        .into_iter()
        .find_map(|t| {
            let expected = totp.generate(t);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes())).then_some((t / STEP) as i64)
        })
}

/// Accepts a TOTP code once: true when it is right and its step is later than the last used.
async fn accept_totp(
    conn: &mut AnyConnection,
    user: &User,
    secret: &str,
    code: &str,
) -> Result<bool, AppError> {
    let Some(step) = matching_step(&totp(secret, &user.email)?, code.trim()) else {
        return Ok(false);
    };
    Ok(users::claim_mfa_step(conn, &user.id, step).await?)
}

fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Uses up a recovery code; true when it was valid and unused.
async fn accept_recovery(
    state: &AppState,
    conn: &mut AnyConnection,
    user: &User,
    code: &str,
) -> Result<bool, AppError> {
    let hash = state
        .get::<super::Auth>()
        .keys
        .recovery_code_hash(&normalise_recovery(code));
    let done = sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL")
        .bind(now_micros())
        .bind(user.id.clone())
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Checks a TOTP or recovery code under the lockout rules; a wrong code is recorded and refused.
async fn check_code(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    secret: &str,
    code: &str,
) -> Result<(), AppError> {
    let subject = lockout::code_subject(&user.id);
    let claim = lockout::claim(state, &subject, lockout::CODE).await?;
    let mut tx = state.db.begin().await?;
    let locked_until = users::mfa_state(&mut *tx, &user.id).await?.locked_until;
    lockout::ensure_open(&mut tx, &user.id, locked_until).await?;
    let ok = if code.trim().len() == 6 && code.trim().bytes().all(|b| b.is_ascii_digit()) {
        accept_totp(&mut tx, user, secret, code).await?
    } else {
        accept_recovery(state, &mut tx, user, code).await?
    };
    if ok {
        lockout::record_success(&mut tx, &subject, lockout::CODE, &user.id).await?;
        // The password step of the login is settled too.
        let password = lockout::password_subject(&user.email);
        lockout::record_success(&mut tx, &password, lockout::PASSWORD, &user.id).await?;
        tx.commit().await?;
        return Ok(());
    }
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "mfa_code_failed").failed(),
    )
    .await?;
    let account = Some((user.id.as_str(), user.email.as_str()));
    let delay =
        lockout::record_failure(&mut tx, meta, &subject, lockout::CODE, claim, account).await?;
    tx.commit().await?;
    state.mail.wake();
    tokio::time::sleep(delay).await;
    Err(AppError::Unauthorized(
        "The code is incorrect or was already used.".into(),
    ))
}

/// Starts MFA enrolment: a new secret, pending until a code from it is confirmed.
pub async fn setup(state: &AppState, user: &User) -> Result<MfaSetup, AppError> {
    if user.mfa_enabled {
        return Err(AppError::Conflict(
            "MFA is already enabled; disable it first.".into(),
        ));
    }
    let Secret::Encoded(secret) = Secret::generate_secret().to_encoded() else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "TOTP secret was not encoded"
        )));
    };
    let uri = totp(&secret, &user.email)?.get_url();
    users::set_mfa_pending_secret(state.db.pool(), &user.id, &secret).await?;
    Ok(MfaSetup {
        secret,
        otpauth_uri: uri,
    })
}

/// Turns MFA on with a code from the pending secret; answers ten recovery codes, shown once.
pub async fn enable(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    password: &str,
    code: &str,
) -> Result<RecoveryCodes, AppError> {
    if user.mfa_enabled {
        return Err(AppError::Conflict("MFA is already enabled.".into()));
    }
    let mut conn = state.db.pool().acquire().await?;
    let pending = users::mfa_state(&mut *conn, &user.id)
        .await?
        .pending
        .ok_or_else(|| AppError::Conflict("Call /api/auth/mfa/setup first.".into()))?;
    drop(conn);
    // Whoever holds only a stolen access token must not be able to add a factor of their own.
    confirm_password(state, meta, user, password, "mfa_enabled").await?;
    check_code(state, meta, user, &pending, code).await?;
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let mut tx = state.db.begin().await?;
    // Conditional, so that of two concurrent enables only one takes the pending secret: the
    // other must not leave MFA on without a secret.
    if !users::enable_mfa(&mut *tx, &user.id, &pending).await? {
        return Err(AppError::Conflict(
            "MFA was enabled by another request.".into(),
        ));
    }
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.id.clone())
        .execute(&mut *tx)
        .await?;
    for code in &codes {
        sqlx::query("INSERT INTO recovery_codes (id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(user.id.clone())
            .bind(state.get::<super::Auth>().keys.recovery_code_hash(&normalise_recovery(code)))
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
    }
    audit::record(&mut tx, meta, Event::own(&user.id, "mfa_enabled")).await?;
    tx.commit().await?;
    Ok(RecoveryCodes {
        recovery_codes: codes,
    })
}

/// `xxxxx-xxxxx` from an alphabet without look-alikes: about 50 bits.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let mut s: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    s.insert(5, '-');
    s
}

/// Re-authentication before a change of factors (ASVS 6.x): checks `password`, counting a wrong
/// one towards the lockout like a failed login, and audits it under `action`.
async fn confirm_password(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    password: &str,
    action: &str,
) -> Result<(), AppError> {
    let creds = users::credentials_by_id(state.db.pool(), &user.id)
        .await?
        .ok_or_else(service::bad_credentials)?;
    let subject = lockout::password_subject(&user.email);
    let claim = lockout::claim(state, &subject, lockout::PASSWORD).await?;
    if state
        .get::<super::Auth>()
        .hasher
        .verify(Some(&creds.password_hash), password)
        .await?
        != Verified::No
    {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    let account = Some((user.id.as_str(), user.email.as_str()));
    let delay =
        lockout::record_failure(&mut tx, meta, &subject, lockout::PASSWORD, claim, account).await?;
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, action)
            .failed()
            .with(serde_json::json!({"reason": "wrong_password"})),
    )
    .await?;
    tx.commit().await?;
    state.mail.wake();
    tokio::time::sleep(delay).await;
    // Signed in, but the step-up proof failed: 403, so clients keep the session.
    Err(AppError::Forbidden("The password is incorrect.".into()))
}

/// Turns MFA off after checking the password and a code.
pub async fn disable(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    password: &str,
    code: &str,
) -> Result<(), AppError> {
    let mut conn = state.db.pool().acquire().await?;
    let mfa = users::mfa_state(&mut *conn, &user.id).await?;
    drop(conn);
    let secret = mfa
        .secret
        .filter(|_| user.mfa_enabled)
        .ok_or_else(|| AppError::Conflict("MFA is not enabled.".into()))?;
    confirm_password(state, meta, user, password, "mfa_disabled").await?;
    check_code(state, meta, user, &secret, code).await?;
    let mut tx = state.db.begin().await?;
    users::disable_mfa(&mut *tx, &user.id).await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.id.clone())
        .execute(&mut *tx)
        .await?;
    audit::record(&mut tx, meta, Event::own(&user.id, "mfa_disabled")).await?;
    tx.commit().await?;
    Ok(())
}

/// The second login step: the MFA token from the password step and a code.
pub async fn verify(
    state: &AppState,
    meta: &RequestMeta,
    mfa_token: &str,
    code: &str,
) -> Result<TokenResponse, AppError> {
    let refused =
        || AppError::Unauthorized("The MFA token is invalid or expired; log in again.".into());
    let claims = state
        .get::<super::Auth>()
        .keys
        .verify(mfa_token, MFA_TYPE)
        .ok_or_else(refused)?;
    // Codes guessed from many addresses still meet one budget per account.
    super::budget::spend(state, &format!("mfa:{}", claims.sub)).await?;
    // The user and its secret are read on one pooled connection, released before the code check
    // opens its transaction.
    let mut conn = state.db.pool().acquire().await?;
    let user = users::user_by_id(&mut *conn, &claims.sub)
        .await?
        .ok_or_else(refused)?;
    if !user.is_active || !user.mfa_enabled || user.token_epoch != claims.ver {
        return Err(refused());
    }
    let secret = users::mfa_state(&mut *conn, &user.id)
        .await?
        .secret
        .ok_or_else(refused)?;
    let fingerprint = match users::credentials_by_id(&mut *conn, &user.id).await? {
        Some(creds) => opaque::sha256_hex(&creds.password_hash),
        None => return Err(refused()),
    };
    if !challenges::is_open(&mut conn, &claims.sid, &user.id, &fingerprint).await? {
        return Err(refused());
    }
    drop(conn);
    check_code(state, meta, &user, &secret, code).await?;
    let mut tx = state.db.begin().await?;
    // Used once: of two requests with the same token, one wins here.
    if !challenges::use_once(&mut tx, &claims.sid, &user.id, &fingerprint).await? {
        return Err(refused());
    }
    let tokens = service::finish_login(state, &mut tx, &user, meta, "password+mfa").await?;
    tx.commit().await?;
    Ok(tokens)
}
