//! Accounts: users and roles, password hashing, API tokens, web sessions and the
//! sign-in throttle.
//!
//! Password hashing (argon2id) is deliberately slow, so it always runs on the
//! blocking thread pool, never on the async worker threads.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::{Secret, random_base62, sha256_hex};
use crate::store::{Store, StoreError, api_token, session, user};
use crate::validate::{self, Invalid};

mod throttle;

pub use throttle::LoginThrottle;

/// Display names and token names: 1 to 64 characters.
pub const MAX_NAME_CHARS: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Token format: `cf_` followed by 40 base62 characters (≈ 238 bits).
const TOKEN_PREFIX: &str = "cf_";
const TOKEN_RANDOM_CHARS: usize = 40;
/// A token's last-used time is written at most this often, to keep hot API paths read-only.
const TOKEN_TOUCH_INTERVAL_SECS: i64 = 60;

/// What went wrong with an account operation.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("a user with this email address already exists")]
    EmailTaken,
    #[error("wrong email address or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins; try again in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: i64 },
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
}

/// Password hashes (argon2id, about 19 MiB each) computed at once; see
/// [`set_hash_concurrency`].
static HASH_PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
/// Hashes at once when [`set_hash_concurrency`] was never called.
const DEFAULT_HASH_CONCURRENCY: usize = 4;
/// How long a sign-in waits for a turn to hash before it is told to try again.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sets how many password hashes may be computed at once (`auth.max_concurrent_hashes`),
/// so that a burst of sign-ins cannot exhaust memory. Takes effect once, at start.
pub fn set_hash_concurrency(permits: usize) {
    let _ = HASH_PERMITS.set(tokio::sync::Semaphore::new(permits.max(1)));
}

/// Runs `work` (a hash) on the blocking pool once a hashing permit is free.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AccountError> {
    let permits =
        HASH_PERMITS.get_or_init(|| tokio::sync::Semaphore::new(DEFAULT_HASH_CONCURRENCY));
    hashing_with(permits, HASH_WAIT, work).await
}

/// Runs `work` once one of `permits` is free, waiting at most `wait` for it.
async fn hashing_with<T: Send + 'static>(
    permits: &tokio::sync::Semaphore,
    wait: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AccountError> {
    let _permit = tokio::time::timeout(wait, permits.acquire())
        .await
        .map_err(|_| AccountError::Busy)?
        .map_err(|_| AccountError::Busy)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AccountError::Hashing(e.to_string()))
}

impl From<StoreError> for AccountError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => AccountError::EmailTaken,
            other => AccountError::Store(other),
        }
    }
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May manage users and the organization policy.
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn from_db(value: &str) -> Role {
        if value == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

/// A user account as the rest of the server, the API and the CLI see it (never with
/// its password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for Account {
    fn from(u: user::Model) -> Self {
        Self {
            id: u.id,
            role: Role::from_db(&u.role),
            email: u.email,
            display_name: u.display_name,
            created_at: u.created_at,
        }
    }
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// An API token as its owner sees it: never the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_token::Model> for TokenInfo {
    fn from(t: api_token::Model) -> Self {
        Self {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Input for a new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub password: Secret,
    pub role: Role,
}

/// Validates and creates a user.
pub async fn create_user(
    store: &Store,
    input: NewUser,
    now: DateTime<Utc>,
) -> Result<Account, AccountError> {
    let email = validate::email(&input.email)?;
    let display_name = validate::text("display_name", &input.display_name, 1, MAX_NAME_CHARS)?;
    let chars = input.password.expose().chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(Invalid::new(
            "password",
            format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        )
        .into());
    }
    if store.user_by_email(&email).await?.is_some() {
        return Err(AccountError::EmailTaken);
    }
    let hash = hash_password(input.password).await?;
    let user = store
        .insert_user(&email, &display_name, input.role.as_str(), &hash, now)
        .await?;
    Ok(user.into())
}

/// Hashes a password with argon2id on the blocking pool.
pub async fn hash_password(password: Secret) -> Result<String, AccountError> {
    hashing(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Hashing(e.to_string()))
    })
    .await?
}

/// Checks a password against a stored hash on the blocking pool.
async fn verify_password(hash: String, password: Secret) -> Result<bool, AccountError> {
    hashing(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
}

/// A hash of a random password, verified against when the email is unknown so that
/// a failed sign-in takes the same time whether or not the account exists.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Checks an email and password, tried from `address`, and returns the account.
/// Attempts are throttled as [`LoginThrottle`] says: refused for an address that
/// guessed too often, slowed down (never refused) for an account guessed at from
/// everywhere.
pub async fn authenticate(
    store: &Store,
    throttle: &LoginThrottle,
    email: &str,
    password: Secret,
    address: Option<std::net::IpAddr>,
    now: DateTime<Utc>,
) -> Result<Account, AccountError> {
    let email = email.trim().to_lowercase();
    let delay = throttle.check(&email, address, now)?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let user = store.user_by_email(&email).await?;
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => match DUMMY_HASH.get() {
            Some(h) => h.clone(),
            None => {
                let h = hash_password(Secret::new(random_base62(24))).await?;
                DUMMY_HASH.get_or_init(|| h).clone()
            }
        },
    };
    let ok = verify_password(hash, password).await?;
    match user {
        Some(user) if ok => {
            throttle.reset(&email, address);
            Ok(user.into())
        }
        _ => {
            throttle.record_failure(&email, address, now);
            Err(AccountError::InvalidCredentials)
        }
    }
}

/// A freshly issued API token: the secret is shown to the user once.
#[derive(Debug)]
pub struct IssuedToken {
    pub secret: Secret,
    pub record: api_token::Model,
}

/// Issues an API token for `user_id`.
pub async fn issue_token(
    store: &Store,
    user_id: i64,
    name: &str,
    now: DateTime<Utc>,
) -> Result<IssuedToken, AccountError> {
    let name = validate::text("name", name, 1, MAX_NAME_CHARS)?;
    let secret = format!("{TOKEN_PREFIX}{}", random_base62(TOKEN_RANDOM_CHARS));
    let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let record = store
        .insert_token(user_id, &name, &sha256_hex(&secret), &prefix, now)
        .await?;
    Ok(IssuedToken {
        secret: Secret::new(secret),
        record,
    })
}

/// Resolves a bearer token to its account, recording when it was last used.
pub async fn authenticate_token(
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Account>, AccountError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() != TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS {
        return Ok(None);
    }
    let Some((record, user)) = store.token_with_user(&sha256_hex(token)).await? else {
        return Ok(None);
    };
    let stale = record
        .last_used_at
        .is_none_or(|t| now - t >= Duration::seconds(TOKEN_TOUCH_INTERVAL_SECS));
    if stale {
        store.touch_token(record.id, now).await?;
    }
    Ok(Some(user.into()))
}

/// A web session: the cookie value goes to the browser, only its hash is stored.
#[derive(Debug)]
pub struct StartedSession {
    pub cookie_value: Secret,
    pub record: session::Model,
}

/// Starts a web session for `user_id` lasting `ttl`.
pub async fn start_session(
    store: &Store,
    user_id: i64,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<StartedSession, AccountError> {
    let value = random_base62(43);
    let csrf = random_base62(32);
    let record = store
        .insert_session(&sha256_hex(&value), user_id, &csrf, now, now + ttl)
        .await?;
    Ok(StartedSession {
        cookie_value: Secret::new(value),
        record,
    })
}

/// The session behind a cookie value, and its account, if still valid.
pub async fn session_account(
    store: &Store,
    cookie_value: &str,
    now: DateTime<Utc>,
) -> Result<Option<(session::Model, Account)>, AccountError> {
    if cookie_value.len() != 43 || !cookie_value.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    Ok(store
        .session_with_user(&sha256_hex(cookie_value), now)
        .await?
        .map(|(s, u)| (s, u.into())))
}

/// How a long-lived connection signed in, kept to check later that it still holds.
#[derive(Clone)]
pub enum SignIn {
    /// A web session's cookie value.
    Session(String),
    /// An API token.
    Token(String),
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignIn::Session(_) => "SignIn::Session(..)",
            SignIn::Token(_) => "SignIn::Token(..)",
        })
    }
}

impl SignIn {
    /// Whether `ended` is this sign-in.
    pub fn is(&self, ended: &crate::store::SignInEnded) -> bool {
        use crate::store::SignInEnded;
        match (self, ended) {
            (SignIn::Session(value), SignInEnded::Session { id_hash }) => {
                crate::secret::constant_time_eq(&sha256_hex(value), id_hash)
            }
            (SignIn::Token(token), SignInEnded::Token { token_hash }) => {
                crate::secret::constant_time_eq(&sha256_hex(token), token_hash)
            }
            _ => false,
        }
    }
}

/// Whether `sign_in` still signs in `user_id`: the session was not ended and has not
/// expired, the token was not revoked.
pub async fn still_signed_in(
    store: &Store,
    sign_in: &SignIn,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<bool, AccountError> {
    Ok(match sign_in {
        SignIn::Session(value) => session_account(store, value, now)
            .await?
            .is_some_and(|(_, account)| account.id == user_id),
        SignIn::Token(token) => authenticate_token(store, token, now)
            .await?
            .is_some_and(|account| account.id == user_id),
    })
}

/// Ends a session.
pub async fn end_session(store: &Store, cookie_value: &str) -> Result<(), AccountError> {
    store.delete_session(&sha256_hex(cookie_value)).await?;
    Ok(())
}

#[cfg(test)]
mod hashing_tests {
    use super::*;

    #[tokio::test]
    async fn hashes_wait_their_turn_and_give_up_when_none_comes() {
        let permits = tokio::sync::Semaphore::new(1);
        assert_eq!(
            hashing_with(&permits, std::time::Duration::from_millis(50), || 7)
                .await
                .unwrap(),
            7
        );
        let held = permits.acquire().await.unwrap();
        let busy = hashing_with(&permits, std::time::Duration::from_millis(50), || 7).await;
        assert!(matches!(busy, Err(AccountError::Busy)), "{busy:?}");
        drop(held);
        assert!(
            hashing_with(&permits, std::time::Duration::from_millis(50), || 7)
                .await
                .is_ok()
        );
    }
}
