//! The rules of registration, login, refresh and logout. Owns the transactions.

use crate::http::validate as text;
use chrono::Utc;

use crate::{
    db::types::{new_id, now_micros},
    domains::{
        audit::{self, Event, Outcome, RequestMeta},
        users::{
            password, profile,
            service::{self as users, Credentials, NewUser},
            Email, Role, User, UserView,
        },
    },
    error::{AppError, FieldError},
    state::AppState,
};

use super::{
    hashing::Verified,
    keys::{Claims, ACCESS_TYPE, AUDIENCE, MFA_TYPE},
    links, lockout, opaque, sessions,
    types::{LoginResponse, MfaChallenge, RegisterRequest, TokenResponse},
};

/// The one answer to a wrong email or a wrong password, so that neither reveals the other.
pub fn bad_credentials() -> AppError {
    AppError::Unauthorized("The email or password is incorrect.".into())
}

/// How long an MFA-step token lasts.
pub const MFA_TOKEN_SECONDS: u64 = 300;

/// A new token pair for `user`, and the refresh token for the cookie.
pub fn token_response(
    state: &AppState,
    user: &User,
    sid: &str,
    refresh: String,
) -> Result<TokenResponse, AppError> {
    let ttl = state
        .config
        .domain::<super::settings::AuthSettings>()
        .access_token_ttl
        .as_secs();
    Ok(TokenResponse {
        user: UserView::from(user),
        access_token: sign(state, user, sid, ACCESS_TYPE, ttl)?,
        refresh_token: Some(refresh),
        token_type: "bearer",
        expires_in: ttl,
    })
}

fn sign(state: &AppState, user: &User, sid: &str, typ: &str, ttl: u64) -> Result<String, AppError> {
    let now = Utc::now().timestamp();
    let claims = Claims {
        iss: state.get::<super::Auth>().keys.issuer().to_owned(),
        aud: AUDIENCE.into(),
        sub: user.id.clone(),
        role: user.role,
        sid: sid.to_owned(),
        iat: now,
        exp: now + ttl as i64,
        jti: new_id(),
        typ: typ.into(),
        ver: user.token_epoch,
    };
    state
        .get::<super::Auth>()
        .keys
        .sign(&claims)
        .map_err(AppError::Internal)
}

/// Starts a session for `user` in `tx`; returns its id and first refresh token.
pub async fn start_session(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    user: &User,
    meta: &RequestMeta,
) -> Result<(String, String), AppError> {
    let ttl = state
        .config
        .domain::<super::settings::AuthSettings>()
        .refresh_token_ttl
        .as_micros() as i64;
    let absolute = super::settings::SESSION_ABSOLUTE_TTL.as_micros() as i64;
    Ok(sessions::create(conn, &user.id, meta, ttl, absolute).await?)
}

/// Validated registration input.
struct Registration {
    email: Email,
    first_name: String,
    last_name: String,
    role: Role,
    profile: serde_json::Value,
}

fn validate(req: &RegisterRequest) -> Result<Registration, AppError> {
    let mut errors = Vec::new();
    let email = Email::parse(&req.email)
        .map_err(|e| errors.push(FieldError::new("email", e)))
        .ok();
    let first_name = text::required(&req.first_name, 100)
        .map_err(|e| errors.push(FieldError::new("first_name", e)))
        .ok();
    let last_name = text::clean(&req.last_name, 100, false)
        .map_err(|e| errors.push(FieldError::new("last_name", e)))
        .ok();
    let role = Role::for_registration(req.role.as_deref().unwrap_or("customer"))
        .map_err(|e| errors.push(FieldError::new("role", e)))
        .ok();
    let mut inputs = vec![
        req.email.as_str(),
        req.first_name.as_str(),
        req.last_name.as_str(),
    ];
    inputs.retain(|s| !s.is_empty());
    if let Err(e) = password::check(&req.password, &inputs) {
        errors.push(FieldError::new("password", e));
    }
    let profile = match (role, &req.profile) {
        (Some(role), Some(patch)) => profile::merge(role, &profile::empty(role), patch, "profile.")
            .map_err(|e| errors.extend(e))
            .ok(),
        (Some(role), None) => Some(profile::empty(role)),
        (None, _) => None,
    };
    match (email, first_name, last_name, role, profile) {
        (Some(email), Some(first_name), Some(last_name), Some(role), Some(profile))
            if errors.is_empty() =>
        {
            Ok(Registration {
                email,
                first_name,
                last_name,
                role,
                profile,
            })
        }
        _ => Err(AppError::Validation(errors)),
    }
}

/// Creates a customer or developer account and logs it in; queues the verification email.
#[tracing::instrument(skip_all)]
pub async fn register(
    state: &AppState,
    meta: &RequestMeta,
    req: RegisterRequest,
) -> Result<TokenResponse, AppError> {
    super::budget::spend(state, &req.email).await?;
    let reg = validate(&req)?;
    let hash = state
        .get::<super::Auth>()
        .hasher
        .hash(&req.password)
        .await?;
    let new = NewUser {
        id: new_id(),
        email: reg.email.as_str().to_owned(),
        password_hash: hash,
        role: reg.role,
        first_name: reg.first_name,
        last_name: reg.last_name,
        profile: reg.profile,
        email_verified: false,
        created_at: now_micros(),
    };
    let mut tx = state.db.begin().await?;
    users::create(&mut *tx, &new)
        .await
        .map_err(|e| match crate::error::classify_error(e) {
            AppError::Conflict(_) => {
                AppError::Conflict("An account with this email already exists.".into())
            }
            other => other,
        })?;
    let user = users::user_by_id(&mut *tx, &new.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user vanished"))?;
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "register").with(serde_json::json!({"role": user.role})),
    )
    .await?;
    links::queue_verification(state, &mut tx, &user).await?;
    let (sid, refresh) = start_session(state, &mut tx, &user, meta).await?;
    tx.commit().await?;
    state.mail.wake();
    tracing::Span::current().record("user_id", user.id.as_str());
    token_response(state, &user, &sid, refresh)
}

/// Checks email and password under the lockout rules; answers tokens or an MFA challenge.
#[tracing::instrument(skip_all)]
pub async fn login(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
    password_: &str,
) -> Result<(LoginResponse, Option<String>), AppError> {
    crate::http::validate::filters(&[("email", Some(email))])?;
    super::budget::spend(state, email).await?;
    // One guess is claimed before anything is checked, for known and unknown emails alike.
    let subject = lockout::password_subject(email);
    let claim = match lockout::claim(state, &subject, lockout::PASSWORD).await {
        Ok(claim) => claim,
        Err(refused) => {
            audit_locked(state, meta, email).await?;
            return Err(refused);
        }
    };
    let creds = match Email::parse(email) {
        Ok(email) => login_reads(state, meta, &email).await?,
        Err(_) => None,
    };
    // The password is verified with no connection held (`login_reads` gave its back): the verify
    // may queue for a hashing slot (up to 10 s in a login flood, see `hashing`) and then runs
    // argon2id, and logins holding connections through that would drain the pool for every other
    // request. Each write below takes its own transaction.
    let verified = state
        .get::<super::Auth>()
        .hasher
        .verify(creds.as_ref().map(|c| c.password_hash.as_str()), password_)
        .await?;
    let Some(creds) = creds else {
        // The same writes, delay and answers as a wrong password of a real account.
        let mut tx = state.db.begin().await?;
        let event = Event {
            actor: None,
            action: "login",
            target: None,
            outcome: Outcome::Failure,
            details: serde_json::json!({"reason": "unknown_email"}),
        };
        audit::record(&mut tx, meta, event).await?;
        let delay =
            lockout::record_failure(&mut tx, meta, &subject, lockout::PASSWORD, claim, None)
                .await?;
        tx.commit().await?;
        tokio::time::sleep(delay).await;
        return Err(bad_credentials());
    };
    let user = creds.user;
    if verified == Verified::No {
        let mut tx = state.db.begin().await?;
        audit::record(&mut tx, meta, login_failed(&user.id, "wrong_password")).await?;
        let account = Some((user.id.as_str(), user.email.as_str()));
        let delay =
            lockout::record_failure(&mut tx, meta, &subject, lockout::PASSWORD, claim, account)
                .await?;
        tx.commit().await?;
        state.mail.wake();
        tokio::time::sleep(delay).await;
        return Err(bad_credentials());
    }
    if !user.is_active {
        let mut tx = state.db.begin().await?;
        audit::record(&mut tx, meta, login_failed(&user.id, "inactive")).await?;
        tx.commit().await?;
        return Err(bad_credentials());
    }
    let upgraded = match verified {
        Verified::YesRehash => Some(state.get::<super::Auth>().hasher.hash(password_).await?),
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    if let Some(hash) = &upgraded {
        users::set_password_hash(&mut *tx, &user.id, hash).await?;
        audit::record(
            &mut tx,
            meta,
            Event::own(&user.id, "password_hash_upgraded"),
        )
        .await?;
    }
    if user.mfa_enabled {
        audit::record(
            &mut tx,
            meta,
            Event::own(&user.id, "login_password_verified"),
        )
        .await?;
        // The MFA token names a challenge that is used once, and only while the password is
        // the one just checked.
        let hash = upgraded.as_deref().unwrap_or(&creds.password_hash);
        let challenge_id =
            super::challenges::open(&mut tx, &user.id, hash, MFA_TOKEN_SECONDS).await?;
        tx.commit().await?;
        let challenge = MfaChallenge {
            mfa_required: true,
            mfa_token: sign(state, &user, &challenge_id, MFA_TYPE, MFA_TOKEN_SECONDS)?,
            expires_in: MFA_TOKEN_SECONDS,
        };
        return Ok((LoginResponse::Mfa(challenge), None));
    }
    // With MFA on, the failure count is reset only once the code is right too (`mfa::verify`):
    // resetting it here would let a holder of the password retry codes forever.
    lockout::record_success(&mut tx, &subject, lockout::PASSWORD, &user.id).await?;
    let tokens = finish_login(state, &mut tx, &user, meta, "password").await?;
    tx.commit().await?;
    let refresh = tokens.refresh_token.clone();
    Ok((LoginResponse::Tokens(tokens), refresh))
}

/// The reads of a login before its password check, on ONE pooled connection: the account behind
/// `email` (user, hash, lock), then its hourly failure budget. The connection goes back to the
/// pool before anything is written or hashed. A locked account is audited and refused here.
async fn login_reads(
    state: &AppState,
    meta: &RequestMeta,
    email: &Email,
) -> Result<Option<Credentials>, AppError> {
    let mut conn = state.db.pool().acquire().await?;
    let Some(creds) = users::credentials_by_email(&mut *conn, email).await? else {
        return Ok(None);
    };
    let open = lockout::ensure_open(&mut conn, &creds.user.id, creds.locked_until).await;
    drop(conn);
    if let Err(e) = open {
        let mut tx = state.db.begin().await?;
        audit::record(&mut tx, meta, login_failed(&creds.user.id, "locked")).await?;
        tx.commit().await?;
        return Err(e);
    }
    Ok(Some(creds))
}

/// Audits a login refused by the lock: one row, for a real account or an unknown email alike.
async fn audit_locked(state: &AppState, meta: &RequestMeta, email: &str) -> Result<(), AppError> {
    let account = match Email::parse(email) {
        Ok(email) => users::user_by_email(state.db.pool(), email.as_str()).await?,
        Err(_) => None,
    };
    let mut tx = state.db.begin().await?;
    let event = match &account {
        Some(user) => login_failed(&user.id, "locked"),
        None => Event {
            actor: None,
            action: "login",
            target: None,
            outcome: Outcome::Failure,
            details: serde_json::json!({"reason": "locked"}),
        },
    };
    audit::record(&mut tx, meta, event).await?;
    tx.commit().await?;
    Ok(())
}

fn login_failed<'a>(user_id: &'a str, reason: &str) -> Event<'a> {
    Event {
        actor: None,
        action: "login",
        target: Some(user_id),
        outcome: Outcome::Failure,
        details: serde_json::json!({"reason": reason}),
    }
}

/// Records a successful login in `tx` and opens its session.
pub async fn finish_login(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user: &User,
    meta: &RequestMeta,
    method: &str,
) -> Result<TokenResponse, AppError> {
    users::touch_login(&mut *tx, &user.id).await?;
    let (sid, refresh) = start_session(state, tx, user, meta).await?;
    let event = Event::own(&user.id, "login")
        .with(serde_json::json!({"method": method, "session_id": sid}));
    audit::record(tx, meta, event).await?;
    tracing::Span::current().record("user_id", user.id.as_str());
    token_response(state, user, &sid, refresh)
}

/// Exchanges a refresh token for a new pair, detecting reuse of rotated tokens.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
) -> Result<TokenResponse, AppError> {
    let refused =
        || AppError::Unauthorized("The refresh token is invalid, expired or already used.".into());
    let hash = opaque::sha256_hex(token);
    let mut tx = state.db.begin().await?;
    let Some(p) = sessions::find_refresh(&mut tx, &hash).await? else {
        return Err(refused());
    };
    let now = now_micros();
    if let Some(rotated_at) = p.rotated_at {
        let grace = state
            .config
            .domain::<super::settings::AuthSettings>()
            .refresh_reuse_grace
            .as_micros() as i64;
        if now - rotated_at > grace && !p.revoked {
            // A rotated token came back: it was copied. End the whole session family.
            sessions::revoke(&mut tx, &p.session_id, &p.user.id, "refresh_token_reuse").await?;
            let event = Event {
                actor: None,
                action: "refresh_token_reused",
                target: Some(&p.user.id),
                outcome: Outcome::Failure,
                details: serde_json::json!({"session_id": p.session_id}),
            };
            audit::record(&mut tx, meta, event).await?;
            tx.commit().await?;
            tracing::warn!(session_id = %p.session_id, "refresh token reuse: session revoked");
        }
        return Err(refused());
    }
    if p.revoked || p.expires_at <= now || p.absolute_expires_at <= now || !p.user.is_active {
        return Err(refused());
    }
    if !sessions::mark_rotated(&mut tx, &hash).await? {
        return Err(refused());
    }
    let new_refresh = sessions::insert_refresh(&mut tx, &p.session_id).await?;
    let ttl = state
        .config
        .domain::<super::settings::AuthSettings>()
        .refresh_token_ttl
        .as_micros() as i64;
    sessions::extend(
        &mut tx,
        &p.session_id,
        (now + ttl).min(p.absolute_expires_at),
    )
    .await?;
    tx.commit().await?;
    tracing::Span::current().record("user_id", p.user.id.as_str());
    token_response(state, &p.user, &p.session_id, new_refresh)
}

/// Ends session `sid` (logout).
pub async fn logout(
    state: &AppState,
    meta: &RequestMeta,
    user: &User,
    sid: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    sessions::revoke(&mut tx, sid, &user.id, "logout").await?;
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "logout").with(serde_json::json!({"session_id": sid})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Ends every session of the user.
pub async fn logout_all(state: &AppState, meta: &RequestMeta, user: &User) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let n = sessions::revoke_all(&mut tx, &user.id, None, "logout_all").await?;
    audit::record(
        &mut tx,
        meta,
        Event::own(&user.id, "logout_all").with(serde_json::json!({"sessions": n})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
