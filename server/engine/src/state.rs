//! Backstop's own state DB: accounts, sessions, API tokens, settings, jobs, plugin grants.
//! Never archived and never touched by a restore, so a restore cannot erase its own job
//! record, lock the admin out, or move where backups go.

use sqlx::SqlitePool;

use crate::{Error, Result};

/// The state schema's migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/state");

/// Opens the state DB and applies its migrations.
pub async fn open(url: &str) -> Result<SqlitePool> {
    let pool = crate::content::open_sqlite(url, "state database").await?;
    restrict_to_owner(url);
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| Error::internal("the state database could not be migrated", e))?;
    Ok(pool)
}

/// The state DB holds password hashes, destination secrets and the encryption key: its files
/// are readable by their owner only (0600), whatever the umask.
fn restrict_to_owner(url: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p))
    else {
        return;
    };
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        if std::path::Path::new(&file).is_file()
            && let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %file, error = %e, "cannot make the state database private (0600)");
        }
    }
}

/// Reads one JSON setting.
pub async fn get_setting(pool: &SqlitePool, key: &str) -> Result<Option<serde_json::Value>> {
    let raw: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
        .bind(key)
        .fetch_optional(pool)
        .await?;
    match raw {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| Error::internal(format!("stored setting {key} is corrupt"), e)),
    }
}

/// Writes one JSON setting.
pub async fn put_setting(pool: &SqlitePool, key: &str, value: &serde_json::Value) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Current time as stored in the state DB (RFC 3339 UTC, millisecond precision).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
