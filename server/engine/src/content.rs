//! The content DB: the application's configuration, the thing Backstop backs up.
//!
//! The default is an embedded SQLite file with the reference IPTV schema; its migrations are
//! compiled into the binary. `schema_version` is the highest applied migration.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::{Error, Result};

/// The reference schema's migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/content");

/// The content schema version this build understands (the newest embedded migration).
pub fn current_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Opens (creating if missing) a SQLite database with the settings Backstop relies on:
/// WAL so readers (the dump) never block the application, foreign keys enforced.
pub async fn open_sqlite(url: &str, what: &str) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| {
            Error::invalid(format!("{what} URL {url:?} is not a valid sqlite:// URL"))
                .with_source(e)
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|e| {
            Error::new(
                crate::ErrorKind::Unavailable,
                format!(
                    "cannot open the {what} at {url}: check that the folder exists and is writable"
                ),
            )
            .with_source(e)
        })
}

/// Applies the embedded content migrations.
pub async fn migrate(pool: &SqlitePool) -> Result<()> {
    MIGRATOR.run(pool).await.map_err(|e| {
        Error::internal(
            "the content database could not be migrated to this version's schema",
            e,
        )
    })
}

/// The schema version of the content DB (highest applied migration; 0 when none).
pub async fn schema_version(pool: &SqlitePool) -> Result<i64> {
    let exists: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if exists.is_none() {
        return Ok(0);
    }
    let v: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(pool)
            .await?;
    Ok(v.unwrap_or(0))
}

/// The content tables (internal tables excluded), sorted by name.
pub async fn table_names(pool: &SqlitePool) -> Result<Vec<String>> {
    let names = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(names)
}

/// A content table with its row count and a few sample rows, for the Data page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct TableSummary {
    pub name: String,
    pub rows: i64,
    pub columns: Vec<String>,
    /// Up to `sample` rows, every value rendered as text.
    pub sample: Vec<Vec<String>>,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Row counts and the first `sample` rows of every content table.
pub async fn summarize(pool: &SqlitePool, sample: i64) -> Result<Vec<TableSummary>> {
    let mut out = Vec::new();
    for name in table_names(pool).await? {
        let q = quote_ident(&name);
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {q}"))
            .fetch_one(pool)
            .await?;
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({q})"))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        // Render every column as text in SQL so the sample works for any schema.
        let select = columns
            .iter()
            .map(|c| {
                let c = quote_ident(c);
                format!("CASE WHEN typeof({c}) = 'blob' THEN '<' || length({c}) || ' bytes>' ELSE CAST({c} AS TEXT) END")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sample_rows = if columns.is_empty() {
            Vec::new()
        } else {
            sqlx::query(&format!("SELECT {select} FROM {q} ORDER BY rowid LIMIT ?"))
                .bind(sample)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    (0..columns.len())
                        .map(|i| {
                            r.get::<Option<String>, _>(i)
                                .unwrap_or_else(|| "NULL".into())
                        })
                        .collect()
                })
                .collect()
        };
        out.push(TableSummary {
            name,
            rows,
            columns,
            sample: sample_rows,
        });
    }
    Ok(out)
}

/// True when no content table holds a row (a fresh database).
pub async fn is_empty(pool: &SqlitePool) -> Result<bool> {
    for name in table_names(pool).await? {
        let any: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 FROM {} LIMIT 1", quote_ident(&name)))
                .fetch_optional(pool)
                .await?;
        if any.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}
