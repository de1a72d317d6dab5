//! Accounts, passwords and API tokens, in the state DB.
//!
//! Passwords are argon2id hashes, computed on the blocking pool (a hash takes tens of
//! milliseconds of CPU by design and must not stall the async workers). API tokens are 256
//! random bits shown once; only their SHA-256 is stored (a fast hash is enough for a
//! high-entropy secret), plus an 8-character prefix to tell them apart in lists.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::{Error, ErrorKind, Result};

/// An account's role. Only admins manage backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(Error::invalid(format!(
                "unknown role {other:?}; use admin or viewer"
            ))),
        }
    }
}

/// A signed-in identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

/// An API token as listed (never the secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// Minimum password length accepted for new passwords.
pub const MIN_PASSWORD_LEN: usize = 8;

fn validate_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            Error::invalid("a username is 1-64 characters of letters, digits and - _ . @")
                .with_field("username", "1-64 characters of letters, digits and - _ . @"),
        )
    }
}

fn validate_password(pw: &str) -> Result<()> {
    if pw.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters long"
        ))
        .with_field(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if pw.len() > 1024 {
        return Err(Error::invalid("the password is longer than 1024 bytes"));
    }
    Ok(())
}

/// Hashes a password with argon2id on the blocking pool.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|e| Error::internal("password hashing task failed", e))?
}

async fn verify_hash(password: String, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("stored password hash is corrupt: {e}"),
            )
        })?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| Error::internal("password check task failed", e))?
}

/// A hash of a random password, used to spend the same time when the user does not exist
/// (so response time does not reveal which usernames exist).
async fn dummy_verify(password: String) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = match DUMMY.get() {
        Some(h) => h.clone(),
        None => match hash_password("backstop-dummy-password".into()).await {
            Ok(h) => DUMMY.get_or_init(|| h).clone(),
            Err(_) => return,
        },
    };
    let _ = verify_hash(password, hash).await;
}

/// Creates an account.
pub async fn create_user(
    pool: &SqlitePool,
    username: &str,
    password: &str,
    role: Role,
) -> Result<Account> {
    validate_username(username)?;
    validate_password(password)?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    if exists.is_some() {
        return Err(Error::conflict(format!(
            "a user named {username:?} already exists"
        )));
    }
    let hash = hash_password(password.to_owned()).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(crate::state::now_rfc3339())
    .fetch_one(pool)
    .await?;
    Ok(Account {
        id,
        username: username.to_owned(),
        role,
    })
}

/// Sets a new password for an existing account.
pub async fn reset_password(pool: &SqlitePool, username: &str, password: &str) -> Result<()> {
    validate_password(password)?;
    let hash = hash_password(password.to_owned()).await?;
    let done = sqlx::query("UPDATE accounts SET password_hash = ? WHERE username = ?")
        .bind(hash)
        .bind(username)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found(format!("no user named {username:?}")));
    }
    Ok(())
}

/// Checks a username and password. Wrong user and wrong password give the same error.
pub async fn login(pool: &SqlitePool, username: &str, password: &str) -> Result<Account> {
    let row: Option<(i64, String, String)> =
        sqlx::query_as("SELECT id, password_hash, role FROM accounts WHERE username = ?")
            .bind(username)
            .fetch_optional(pool)
            .await?;
    let wrong = || Error::unauthenticated("wrong username or password");
    let Some((id, hash, role)) = row else {
        dummy_verify(password.to_owned()).await;
        return Err(wrong());
    };
    if !verify_hash(password.to_owned(), hash).await? {
        return Err(wrong());
    }
    Ok(Account {
        id,
        username: username.to_owned(),
        role: Role::parse(&role)?,
    })
}

/// Looks an account up by id (sessions store only the id).
pub async fn account(pool: &SqlitePool, id: i64) -> Result<Option<Account>> {
    let row: Option<(i64, String, String)> =
        sqlx::query_as("SELECT id, username, role FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(|(id, username, role)| {
        Ok(Account {
            id,
            username,
            role: Role::parse(&role)?,
        })
    })
    .transpose()
}

/// Number of admin accounts.
pub async fn admin_count(pool: &SqlitePool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE role = 'admin'")
            .fetch_one(pool)
            .await?,
    )
}

/// A random URL-safe secret of `bytes` random bytes.
pub fn random_secret(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Creates the first admin when no admin exists. Returns the generated password when one
/// was generated (to be printed once), `None` when a password was given or an admin exists.
pub async fn ensure_admin(
    pool: &SqlitePool,
    username: &str,
    password: Option<&str>,
) -> Result<Option<String>> {
    if admin_count(pool).await? > 0 {
        return Ok(None);
    }
    match password {
        Some(pw) => {
            create_user(pool, username, pw, Role::Admin).await?;
            Ok(None)
        }
        None => {
            let pw = random_secret(15);
            create_user(pool, username, &pw, Role::Admin).await?;
            Ok(Some(pw))
        }
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates an API token for `account`; returns (id, secret). The secret is never stored.
pub async fn create_token(
    pool: &SqlitePool,
    account: &Account,
    name: &str,
) -> Result<(i64, String)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("a token name is 1-100 characters")
            .with_field("name", "1-100 characters"));
    }
    let token = format!("bst_{}", random_secret(32));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (account_id, name, token_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(account.id)
    .bind(name)
    .bind(token_hash(&token))
    .bind(&token[..12])
    .bind(crate::state::now_rfc3339())
    .fetch_one(pool)
    .await?;
    Ok((id, token))
}

/// The account a bearer token belongs to, or `None`.
pub async fn verify_token(pool: &SqlitePool, token: &str) -> Result<Option<Account>> {
    let row: Option<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT t.id, a.id, a.username, a.role FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    let Some((tid, id, username, role)) = row else {
        return Ok(None);
    };
    sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
        .bind(crate::state::now_rfc3339())
        .bind(tid)
        .execute(pool)
        .await?;
    Ok(Some(Account {
        id,
        username,
        role: Role::parse(&role)?,
    }))
}

/// The account's tokens.
pub async fn list_tokens(pool: &SqlitePool, account: &Account) -> Result<Vec<TokenInfo>> {
    let rows: Vec<(i64, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, name, prefix, created_at, last_used_at FROM api_tokens WHERE account_id = ? ORDER BY id",
    )
    .bind(account.id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, prefix, created_at, last_used_at)| TokenInfo {
            id,
            name,
            prefix,
            created_at,
            last_used_at,
        })
        .collect())
}

/// Deletes one of the account's tokens.
pub async fn delete_token(pool: &SqlitePool, account: &Account, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM api_tokens WHERE id = ? AND account_id = ?")
        .bind(id)
        .bind(account.id)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found(format!("no token {id}")));
    }
    Ok(())
}

/// The session key under which the signed-in account id is stored.
pub const SESSION_ACCOUNT_KEY: &str = "account_id";

/// Login rate limiting: after [`LoginLimiter::MAX_FAILURES`] failed attempts for one
/// (client, username) pair within [`LoginLimiter::WINDOW`], further attempts are refused
/// until the window passes. In memory: a restart forgets, which is acceptable for a
/// single-admin tool and keeps the state DB free of attacker-controlled rows.
#[derive(Default)]
pub struct LoginLimiter {
    failures: std::sync::Mutex<std::collections::HashMap<String, Vec<std::time::Instant>>>,
}

impl LoginLimiter {
    pub const MAX_FAILURES: usize = 5;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

    fn key(client: &str, username: &str) -> String {
        format!("{client}\u{0}{}", username.to_lowercase())
    }

    /// Refuses when the pair has too many recent failures; returns seconds to wait.
    pub fn check(&self, client: &str, username: &str) -> std::result::Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let list = map.entry(Self::key(client, username)).or_default();
        list.retain(|t| now.duration_since(*t) < Self::WINDOW);
        if list.len() >= Self::MAX_FAILURES {
            let oldest = list[0];
            let wait = Self::WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    pub fn record_failure(&self, client: &str, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            // Bound memory under a spray of usernames: forget the oldest state wholesale.
            map.clear();
        }
        map.entry(Self::key(client, username))
            .or_default()
            .push(std::time::Instant::now());
    }

    pub fn record_success(&self, client: &str, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::key(client, username));
    }
}

/// Login with rate limiting: the one implementation used by REST and the UI.
pub async fn login_limited(
    pool: &SqlitePool,
    limiter: &LoginLimiter,
    client: &str,
    username: &str,
    password: &str,
) -> Result<Account> {
    if let Err(wait) = limiter.check(client, username) {
        return Err(Error::new(
            ErrorKind::RateLimited,
            format!("too many failed sign-in attempts; try again in {wait} seconds"),
        ));
    }
    match login(pool, username, password).await {
        Ok(a) => {
            limiter.record_success(client, username);
            Ok(a)
        }
        Err(e) if e.kind() == ErrorKind::Unauthenticated => {
            limiter.record_failure(client, username);
            Err(e)
        }
        Err(e) => Err(e),
    }
}
