//! The content DB: the application's configuration, the thing Backstop backs up.
//!
//! The default is an embedded SQLite file with the reference IPTV schema; its migrations are
//! compiled into the binary. `schema_version` is the highest applied migration.
//!
//! [`summarize`] is what the Data page may see of it: row counts for everyone, and for
//! admins the first rows with every secret-looking value masked here, on the server, so a
//! secret never reaches a browser (see [`is_secret_name`] for the rule).

use std::path::Path;
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

/// `sqlite://` URL for a file path.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
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

/// A content table for the Data page (the wire type).
pub use wire::content::TableSummary;

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Rows per table an admin sees on the Data page.
pub const ADMIN_SAMPLE_ROWS: i64 = 5;

/// What stands in for a masked secret.
pub const MASK: &str = "•••";

/// Fragments that make a column (or JSON member, or URL query parameter) name secret
/// wherever they occur in it, case-insensitively. `auth` also catches `author`: masking a
/// harmless value is the cheap mistake.
const SECRET_FRAGMENTS: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "auth",
];

/// Words that make a name secret when they are a whole word of it (words split at `_`,
/// `-`, `.`, spaces and lowerUpper case changes): `key`, `api_key`, `accessKey`, `pass`,
/// `pwd`, but not `monkey` or `keyword`.
const SECRET_WORDS: [&str; 3] = ["key", "pass", "pwd"];

/// The masking rule for names. A name is secret when it contains one of
/// [`SECRET_FRAGMENTS`] or has one of [`SECRET_WORDS`] as a word. The one exception is made
/// by the caller: a column named exactly `key` that is its table's primary key names the
/// row (a settings key, a plugin key), it does not hold a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    if SECRET_FRAGMENTS.iter().any(|f| lower.contains(f)) {
        return true;
    }
    words(name).any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// The lowercase words of an identifier (`apiKey` -> api, key; `m3u_password` -> m3u, password).
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
}

/// Is this column of this table secret? (The rule plus the primary-key `key` exception.)
pub(crate) fn is_secret_column(name: &str, primary_key: bool) -> bool {
    if primary_key && name.eq_ignore_ascii_case("key") {
        return false;
    }
    is_secret_name(name)
}

/// A value as the Data page may show it. A secret column's value is [`MASK`] (NULL stays
/// NULL, so "no password set" is still visible). Any other value is scrubbed of secrets it
/// carries inside: members with secret names in JSON text, the password of a URL's
/// `user:password@`, and URL query parameters with secret names. Secrets in free text or in
/// URL paths (`/live/user/pass/1.ts`) cannot be told apart and are shown.
pub fn mask_value(secret_column: bool, value: Option<String>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some(v) if secret_column && !v.is_empty() => MASK.to_owned(),
        Some(v) => scrub_text(&v),
    }
}

fn scrub_text(v: &str) -> String {
    let t = v.trim_start();
    if (t.starts_with('{') || t.starts_with('['))
        && let Ok(mut json) = serde_json::from_str::<serde_json::Value>(v)
    {
        if scrub_json(&mut json) {
            return json.to_string();
        }
        return v.to_owned();
    }
    if v.contains("://") {
        return scrub_url(v);
    }
    v.to_owned()
}

/// Masks secret-named members and URLs in string members; true when anything changed.
fn scrub_json(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    let mut changed = false;
    match v {
        Value::Object(map) => {
            for (k, member) in map.iter_mut() {
                if is_secret_name(k) && !member.is_null() {
                    *member = Value::String(MASK.to_owned());
                    changed = true;
                } else {
                    changed |= scrub_json(member);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= scrub_json(item);
            }
        }
        Value::String(s) if s.contains("://") => {
            let scrubbed = scrub_url(s);
            if scrubbed != *s {
                *s = scrubbed;
                changed = true;
            }
        }
        _ => {}
    }
    changed
}

/// Masks `user:password@` and secret-named query parameters of every URL in `text`.
fn scrub_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        out.push_str(&scrub_one_url(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `url` is what follows `scheme://`.
fn scrub_one_url(url: &str) -> String {
    let auth_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(auth_end);
    let mut out = String::new();
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let Some(q) = path.find('?') else {
        out.push_str(path);
        return out;
    };
    out.push_str(&path[..=q]);
    let query = &path[q + 1..];
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((name, value)) if is_secret_name(name) && !value.is_empty() => {
                format!("{name}={MASK}")
            }
            _ => p.to_owned(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out.push_str(fragment);
    out
}

/// Row counts of every content table, and with `sample: Some(n)` the column names and
/// first `n` rows of each, masked by [`mask_value`]. There is no unmasked variant.
pub async fn summarize(pool: &SqlitePool, sample: Option<i64>) -> Result<Vec<TableSummary>> {
    let mut out = Vec::new();
    for name in table_names(pool).await? {
        let q = quote_ident(&name);
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {q}"))
            .fetch_one(pool)
            .await?;
        let Some(sample) = sample else {
            out.push(TableSummary {
                name,
                rows,
                columns: Vec::new(),
                sample: Vec::new(),
            });
            continue;
        };
        let info = sqlx::query(&format!("PRAGMA table_info({q})"))
            .fetch_all(pool)
            .await?;
        let columns: Vec<String> = info.iter().map(|r| r.get::<String, _>("name")).collect();
        let secret: Vec<bool> = info
            .iter()
            .map(|r| is_secret_column(&r.get::<String, _>("name"), r.get::<i64, _>("pk") > 0))
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
                        .map(|i| mask_value(secret[i], r.get::<Option<String>, _>(i)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_the_written_rule() {
        for secret in [
            "password",
            "m3u_password",
            "passwd",
            "client_secret",
            "refresh_token",
            "api_key",
            "apikey",
            "apiKey",
            "ApiKey",
            "access_key",
            "key",
            "key_id",
            "credentials",
            "auth",
            "oauth_state",
            "Authorization",
            "pass",
            "db_pwd",
        ] {
            assert!(is_secret_name(secret), "{secret} should be secret");
        }
        for plain in [
            "name",
            "username",
            "server_url",
            "stream_hash",
            "monkey",
            "keyword",
            "tvg_id",
            "passage_count",
            "user_level",
        ] {
            assert!(!is_secret_name(plain), "{plain} should be shown");
        }
        // A primary key named `key` names its row; any other `key` column is a secret.
        assert!(!is_secret_column("key", true));
        assert!(is_secret_column("key", false));
        assert!(is_secret_column("api_key", true));
    }

    #[test]
    fn secret_columns_are_masked_and_null_stays_visible() {
        assert_eq!(mask_value(true, Some("demo-password".into())), MASK);
        assert_eq!(mask_value(true, None), "NULL");
        assert_eq!(mask_value(true, Some(String::new())), "");
        assert_eq!(mask_value(false, Some("Home IPTV".into())), "Home IPTV");
    }

    #[test]
    fn secrets_inside_json_and_urls_are_masked() {
        let masked = mask_value(
            false,
            Some(r#"{"threshold":0.8,"api_key":"abc","nested":{"token":"t","n":1}}"#.into()),
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&masked).unwrap(),
            serde_json::json!({"threshold": 0.8, "api_key": MASK, "nested": {"token": MASK, "n": 1}})
        );
        // JSON without secrets is shown byte for byte.
        assert_eq!(
            mask_value(false, Some(r#"{"b":1, "a":2}"#.into())),
            r#"{"b":1, "a":2}"#
        );
        assert_eq!(
            mask_value(
                false,
                Some("http://demo:hunter2@xtream.example.net:8080/get.php".into())
            ),
            format!("http://demo:{MASK}@xtream.example.net:8080/get.php")
        );
        assert_eq!(
            mask_value(
                false,
                Some("http://x.example/get.php?username=demo&password=hunter2&type=m3u#top".into())
            ),
            format!("http://x.example/get.php?username=demo&password={MASK}&type=m3u#top")
        );
        assert_eq!(
            mask_value(
                false,
                Some("see https://a.example/?token=t1 and https://b.example/".into())
            ),
            format!("see https://a.example/?token={MASK} and https://b.example/")
        );
        assert_eq!(
            mask_value(false, Some("https://iptv.example.net/playlist.m3u".into())),
            "https://iptv.example.net/playlist.m3u"
        );
    }
}
