//! Accounts, passwords and API tokens, in the state DB.
//!
//! Passwords are argon2id hashes, computed on the blocking pool (a hash takes tens of
//! milliseconds of CPU by design and must not stall the async workers). API tokens are 256
//! random bits shown once; only their SHA-256 is stored (a fast hash is enough for a
//! high-entropy secret), plus an 8-character prefix to tell them apart in lists.
//!
//! Every argon2 hash passes through one process-wide [`HashGate`] (two at a time), and a
//! sign-in is counted by the [`LoginLimiter`] before its password is hashed: see
//! [`limiter`] for the budgets and why they have the numbers they have.

pub mod limiter;

pub use limiter::{HashGate, LoginLimiter, LoginLimits, Throttled};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::{Error, ErrorKind, Result};

pub use wire::account::{Account, Role, TokenInfo};

/// The role spelled `s` (`admin` or `viewer`), or an error a person can act on.
pub fn parse_role(s: &str) -> Result<Role> {
    s.parse::<Role>()
        .map_err(|e| Error::invalid(format!("{e}")).with_source(e))
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

/// Hashes a password with argon2id on the blocking pool (account management: waits for a
/// [`HashGate`] permit as long as it takes).
pub async fn hash_password(password: String) -> Result<String> {
    let permit = HashGate::global().permit_unbounded().await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
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

/// Checks a password against a stored hash on the blocking pool, within the sign-in wait of
/// the [`HashGate`] (busy: `Unavailable` with a `Retry-After`).
async fn verify_hash(password: String, hash: String) -> Result<bool> {
    let permit = HashGate::global().permit().await?;
    tokio::task::spawn_blocking(move || {
        // Held until the hash really ends, even if the request has gone away.
        let _permit = permit;
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
/// (so response time does not reveal which usernames exist). Busy answers are passed on, as
/// they are for a real account.
async fn dummy_verify(password: String) -> Result<()> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let hash = DUMMY
        .get_or_try_init(|| hash_password(random_secret(16)))
        .await?
        .clone();
    verify_hash(password, hash).await.map(|_| ())
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

/// Sets a new password for an existing account and ends every session the account had
/// (signed in anywhere, the open event stream included). Its API tokens stay: they are
/// separate credentials, listed and revoked on their own.
pub async fn reset_password(pool: &SqlitePool, username: &str, password: &str) -> Result<()> {
    validate_password(password)?;
    let hash = hash_password(password.to_owned()).await?;
    let done = sqlx::query(
        "UPDATE accounts SET password_hash = ?, session_epoch = session_epoch + 1 WHERE username = ?",
    )
        .bind(hash)
        .bind(username)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found(format!("no user named {username:?}")));
    }
    Ok(())
}

/// The sign-in row of `username`: (id, password hash, role).
async fn sign_in_row(pool: &SqlitePool, username: &str) -> Result<Option<(i64, String, String)>> {
    Ok(
        sqlx::query_as("SELECT id, password_hash, role FROM accounts WHERE username = ?")
            .bind(username)
            .fetch_optional(pool)
            .await?,
    )
}

/// Checks a password against the row [`sign_in_row`] found. Wrong user and wrong password
/// give the same error, after the same argon2 work. Unthrottled: only [`login_limited`]
/// calls it, after reserving the attempt.
async fn check_password(
    row: Option<(i64, String, String)>,
    username: &str,
    password: &str,
) -> Result<Account> {
    let wrong = || Error::unauthenticated("wrong username or password");
    // No account has a longer password (see validate_password); do not hash megabytes.
    if password.len() > 1024 {
        return Err(wrong());
    }
    let Some((id, hash, role)) = row else {
        dummy_verify(password.to_owned()).await?;
        return Err(wrong());
    };
    if !verify_hash(password.to_owned(), hash).await? {
        return Err(wrong());
    }
    Ok(Account {
        id,
        username: username.to_owned(),
        role: parse_role(&role)?,
    })
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

/// The account a bearer token belongs to and the token's id, or `None`; reads only (for
/// re-checking a long-lived request's credential without a write each time).
pub async fn token_account(pool: &SqlitePool, token: &str) -> Result<Option<(i64, Account)>> {
    let row: Option<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT t.id, a.id, a.username, a.role FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    row.map(|(tid, id, username, role)| {
        Ok((
            tid,
            Account {
                id,
                username,
                role: parse_role(&role)?,
            },
        ))
    })
    .transpose()
}

/// The account a bearer token belongs to, or `None`; records the use.
pub async fn verify_token(pool: &SqlitePool, token: &str) -> Result<Option<Account>> {
    let Some((tid, account)) = token_account(pool, token).await? else {
        return Ok(None);
    };
    sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
        .bind(crate::state::now_rfc3339())
        .bind(tid)
        .execute(pool)
        .await?;
    Ok(Some(account))
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
/// Session key of the account's sign-in epoch when the session began (see [`session_account`]).
pub const SESSION_EPOCH_KEY: &str = "account_epoch";

/// The account's sign-in epoch, stored in a session when it starts. A password reset moves
/// it on, which ends every session begun before the reset.
pub async fn session_epoch(pool: &SqlitePool, account_id: i64) -> Result<i64> {
    let epoch: Option<i64> = sqlx::query_scalar("SELECT session_epoch FROM accounts WHERE id = ?")
        .bind(account_id)
        .fetch_optional(pool)
        .await?;
    epoch.ok_or_else(|| Error::not_found(format!("no account with id {account_id}")))
}

/// The account a session stands for: `None` when the account is gone or its password was
/// reset since the session began. `epoch` is what the session stored; sessions from before
/// epochs existed count as 0, so they last until the first reset.
pub async fn session_account(
    pool: &SqlitePool,
    account_id: i64,
    epoch: Option<i64>,
) -> Result<Option<Account>> {
    let row: Option<(i64, String, String)> = sqlx::query_as(
        "SELECT id, username, role FROM accounts WHERE id = ? AND session_epoch = ?",
    )
    .bind(account_id)
    .bind(epoch.unwrap_or(0))
    .fetch_optional(pool)
    .await?;
    row.map(|(id, username, role)| {
        Ok(Account {
            id,
            username,
            role: parse_role(&role)?,
        })
    })
    .transpose()
}

/// The wait a rate-limited or busy sign-in error carries, for the `Retry-After` header.
pub fn retry_after(e: &Error) -> Option<std::time::Duration> {
    std::error::Error::source(e)?
        .downcast_ref::<Throttled>()
        .map(|t| t.retry_after)
}

/// "42 seconds" or "10 minutes" (rounded up), for refusal messages.
fn human_wait(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 120 {
        format!("{} second{}", secs.max(1), if secs == 1 { "" } else { "s" })
    } else {
        format!("{} minutes", secs.div_ceil(60))
    }
}

fn refused_error(r: limiter::Refused) -> Error {
    let whose = match r.by {
        limiter::Refusal::Pair => "",
        limiter::Refusal::Address => " from this address",
        limiter::Refusal::Username => " for this account",
    };
    Error::new(
        ErrorKind::RateLimited,
        format!(
            "too many failed sign-in attempts{whose}; try again in {}",
            human_wait(r.retry_after)
        ),
    )
    .with_source(Throttled {
        retry_after: r.retry_after,
    })
}

/// A fingerprint of the account's current password hash (the limiter's "epoch"): a new
/// password starts fresh budgets. Unknown users all share one.
fn password_epoch(row: Option<&(i64, String, String)>) -> String {
    match row {
        Some((_, hash, _)) => hex::encode(&Sha256::digest(hash.as_bytes())[..8]),
        None => "none".to_owned(),
    }
}

/// Sign-in with throttling: the one implementation used by REST and the UI. The attempt is
/// reserved in every budget before the password is hashed (so parallel guesses cannot
/// outrun the count), then settled by its outcome; see [`limiter`].
pub async fn login_limited(
    pool: &SqlitePool,
    limiter: &LoginLimiter,
    client: &str,
    username: &str,
    password: &str,
) -> Result<Account> {
    let row = sign_in_row(pool, username).await?;
    let epoch = password_epoch(row.as_ref());
    let reservation = limiter
        .reserve(client, username, &epoch, std::time::Instant::now())
        .map_err(refused_error)?;
    let result = check_password(row, username, password).await;
    let outcome = match &result {
        Ok(_) => limiter::Outcome::Success,
        Err(e) if e.kind() == ErrorKind::Unauthenticated => limiter::Outcome::Failure,
        Err(_) => limiter::Outcome::NotChecked,
    };
    limiter.settle(reservation, outcome, std::time::Instant::now());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waits_read_as_seconds_then_minutes_rounded_up() {
        assert_eq!(human_wait(Duration::from_millis(200)), "1 second");
        assert_eq!(human_wait(Duration::from_secs(42)), "42 seconds");
        assert_eq!(human_wait(Duration::from_secs(119)), "119 seconds");
        assert_eq!(human_wait(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_wait(Duration::from_secs(601)), "11 minutes");
    }

    #[test]
    fn refusals_carry_their_wait_for_retry_after() {
        let e = refused_error(limiter::Refused {
            by: limiter::Refusal::Address,
            retry_after: Duration::from_secs(120),
        });
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(
            e.message(),
            "too many failed sign-in attempts from this address; try again in 2 minutes"
        );
        assert_eq!(retry_after(&e), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&Error::invalid("x")), None);
    }
}
