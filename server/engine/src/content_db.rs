//! The content DB behind one type, whichever engine it runs on (DESIGN section 2).
//!
//! - **SQLite** (`sqlite://PATH`, the embedded default): Backstop owns it, migrates it to the
//!   reference schema and seeds the demo data; dump and load are [`crate::archive::dump`] and
//!   [`crate::archive::load`].
//! - **PostgreSQL** (`postgres://...`): the application's own database. Backstop never
//!   migrates it; `backstop demo seed` gives an empty one the reference schema
//!   ([`PG_REFERENCE_SCHEMA`]) and the demo data. Dump and load are the `content-pg` crate (one `REPEATABLE READ
//!   READ ONLY` snapshot, `COPY` streams, one load transaction). At open it connects and
//!   checks that every user table can be dumped, so a bad URL, an unreachable server, a
//!   missing database or a missing privilege is an error at start that names it, not a
//!   failed backup later. An archive is checked table by table and column by column against
//!   the live catalog (`schema_version` is not compared: Backstop does not version a schema
//!   it does not own).
//!
//! The backup, the validation, the restore and the Data page call the methods here and do
//! not care which engine answers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::archive::load::BeforeCommit;
use crate::archive::{DumpStats, SchemaInfo};
use crate::content::TableSummary;
use crate::demo::SeedStats;
use crate::{Error, ErrorKind, Result};

/// The content DB.
#[derive(Clone)]
pub enum ContentDb {
    Sqlite(SqlitePool),
    Postgres(Arc<content_pg::Target>),
}

/// An engine error for a `content-pg` error, keeping its class and its words.
pub fn pg_error(e: content_pg::Error) -> Error {
    let kind = match e.kind() {
        content_pg::ErrorKind::Invalid => ErrorKind::Rejected,
        content_pg::ErrorKind::Denied => ErrorKind::Denied,
        content_pg::ErrorKind::Unavailable => ErrorKind::Unavailable,
        content_pg::ErrorKind::Internal => ErrorKind::Internal,
    };
    let message = e.to_string();
    Error::new(kind, message).with_source(e)
}

impl ContentDb {
    /// Opens a PostgreSQL content DB: parses the URL, connects, and checks that the role may
    /// read every user table (the error names the first table or schema it may not).
    pub async fn open_postgres(url: &str) -> Result<ContentDb> {
        let target = content_pg::Target::parse(url).map_err(|e| {
            Error::new(ErrorKind::Invalid, format!("BACKSTOP_CONTENT_DB: {e}")).with_source(e)
        })?;
        let mut conn = target.connect().await.map_err(pg_error)?;
        content_pg::check_dump_access(&mut conn)
            .await
            .map_err(pg_error)?;
        tracing::info!(database = %target.describe(), "content database: PostgreSQL");
        Ok(ContentDb::Postgres(Arc::new(target)))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self {
            ContentDb::Sqlite(_) => "sqlite",
            ContentDb::Postgres(_) => content_pg::ENGINE,
        }
    }

    /// The SQLite pool, when the content DB is SQLite.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            ContentDb::Sqlite(pool) => Some(pool),
            ContentDb::Postgres(_) => None,
        }
    }

    /// The schema version written to the manifest: the highest applied migration for
    /// SQLite, 0 for PostgreSQL (not versioned by Backstop).
    pub async fn schema_version(&self) -> Result<i64> {
        match self {
            ContentDb::Sqlite(pool) => crate::content::schema_version(pool).await,
            ContentDb::Postgres(_) => Ok(0),
        }
    }

    /// What an archive's `database.json` is checked against while it is validated.
    pub async fn schema(&self) -> Result<SchemaInfo> {
        match self {
            ContentDb::Sqlite(pool) => crate::archive::content_schema(pool).await,
            ContentDb::Postgres(target) => {
                let target = target.clone();
                let catalog = off_the_workers(move || async move {
                    let mut conn = target.connect().await.map_err(pg_error)?;
                    content_pg::read_catalog(&mut conn).await.map_err(pg_error)
                })
                .await?;
                Ok(SchemaInfo {
                    schema_version: 0,
                    tables: Vec::new(),
                    postgres: Some(crate::archive::schema::PgCatalog(Arc::new(catalog))),
                })
            }
        }
    }

    /// Writes `database.json` to `path` from one consistent snapshot, recording
    /// `schema_version` ([`ContentDb::schema_version`]).
    pub async fn dump(
        &self,
        path: &Path,
        schema_version: i64,
        cancel: &CancellationToken,
    ) -> Result<DumpStats> {
        match self {
            ContentDb::Sqlite(pool) => {
                crate::archive::dump::dump_database(pool, schema_version, path, cancel).await
            }
            ContentDb::Postgres(target) => {
                let (target, path, cancel) = (target.clone(), path.to_path_buf(), cancel.clone());
                off_the_workers(move || dump_postgres(target, schema_version, path, cancel)).await
            }
        }
    }

    /// Replaces the content of every table in the staged `database_json` in one
    /// transaction, running `before_commit` just before the commit (its error rolls the
    /// load back). Tables the archive does not have keep their rows.
    ///
    /// PostgreSQL: cancel is honoured until the load starts; once it runs it goes to its
    /// end (or its error), because the directories swap inside `before_commit`.
    pub async fn load(
        &self,
        database_json: &Path,
        schema: &SchemaInfo,
        cancel: &CancellationToken,
        before_commit: Option<BeforeCommit>,
    ) -> Result<()> {
        match self {
            ContentDb::Sqlite(pool) => crate::archive::load::load_database_then(
                pool,
                database_json,
                schema,
                cancel,
                before_commit,
            )
            .await
            .map(|_| ()),
            ContentDb::Postgres(target) => {
                if cancel.is_cancelled() {
                    return Err(Error::new(ErrorKind::Canceled, "canceled"));
                }
                let (target, path) = (target.clone(), database_json.to_path_buf());
                let stats = off_the_workers(move || async move {
                    let mut conn = target.connect().await.map_err(pg_error)?;
                    let finish = move || match before_commit {
                        Some(f) => f(),
                        None => Ok(()),
                    };
                    content_pg::load(&mut conn, move || File::open(&path), finish)
                        .await
                        .map_err(|e| match e {
                            // The swap's own error (already worded for the admin), not a
                            // database one.
                            content_pg::Error::BeforeCommit(inner) => {
                                match inner.downcast::<Error>() {
                                    Ok(engine_error) => *engine_error,
                                    Err(other) => Error::internal("the restore failed", other),
                                }
                            }
                            other => pg_error(other),
                        })
                })
                .await?;
                tracing::info!(
                    tables = stats.tables,
                    rows = stats.rows,
                    from = %stats.engine,
                    recreated_foreign_keys = ?stats.recreated_foreign_keys,
                    "content database loaded (PostgreSQL)"
                );
                Ok(())
            }
        }
    }

    /// Seeds the reference app's demo data ([`crate::demo`]) into an empty content DB and
    /// writes its logo and recording files under `data_dir`.
    ///
    /// PostgreSQL: an empty database (no user tables) first gets the reference schema
    /// ([`PG_REFERENCE_SCHEMA`], one transaction); a database with the reference tables, all
    /// empty, is seeded as it is; anything else is refused. The rows are the SQLite seed's,
    /// carried across engines by the same dump and load a restore uses, so the demo on
    /// PostgreSQL is the demo on SQLite.
    pub async fn seed_demo(&self, data_dir: &Path, channels: usize) -> Result<SeedStats> {
        match self {
            ContentDb::Sqlite(pool) => crate::demo::seed(pool, data_dir, channels).await,
            ContentDb::Postgres(target) => {
                let (target, data_dir) = (target.clone(), data_dir.to_path_buf());
                off_the_workers(move || seed_postgres(target, data_dir, channels)).await
            }
        }
    }

    /// Row counts of every content table, and with `sample: Some(n)` the first rows masked
    /// ([`crate::content::summarize`]; the same rule on both engines). PostgreSQL names
    /// tables `schema.table` and samples in primary-key order (a heap has no rowid).
    pub async fn summarize(&self, sample: Option<i64>) -> Result<Vec<TableSummary>> {
        match self {
            ContentDb::Sqlite(pool) => crate::content::summarize(pool, sample).await,
            ContentDb::Postgres(target) => {
                let target = target.clone();
                off_the_workers(move || summarize_postgres(target, sample)).await
            }
        }
    }
}

/// The reference schema on PostgreSQL: the tables of `migrations/content` with the types a
/// Django app gives them (the README's "Across engines" table).
pub const PG_REFERENCE_SCHEMA: &str =
    include_str!("../migrations/content-pg/0001_reference_schema.sql");

/// The reference schema's tables.
const REFERENCE_TABLES: &[&str] = &[
    "core_settings",
    "users",
    "channel_groups",
    "logos",
    "epg_sources",
    "m3u_accounts",
    "streams",
    "channels",
    "channel_streams",
    "plugins",
    "recording_rules",
    "recordings",
];

async fn seed_postgres(
    target: Arc<content_pg::Target>,
    data_dir: PathBuf,
    channels: usize,
) -> Result<SeedStats> {
    let mut conn = target.connect().await.map_err(pg_error)?;
    let catalog = content_pg::read_catalog(&mut conn)
        .await
        .map_err(pg_error)?;
    if catalog.tables.is_empty() {
        let mut tx = sqlx::Connection::begin(&mut conn).await?;
        sqlx::raw_sql(PG_REFERENCE_SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                Error::internal(
                    "cannot create the reference schema in the PostgreSQL database",
                    e,
                )
            })?;
        tx.commit().await?;
        tracing::info!(database = %target.describe(), "created the reference schema");
    } else {
        if let Some(other) = catalog
            .tables
            .iter()
            .find(|t| t.schema != "public" || !REFERENCE_TABLES.contains(&t.name.as_str()))
        {
            return Err(Error::conflict(format!(
                "the PostgreSQL database has table {}, which is not the reference schema's; demo data is only seeded into an empty database or one holding just the reference schema",
                other.display_name()
            )));
        }
        for table in &catalog.tables {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", table.sql_name());
            let has_rows: bool = sqlx::query_scalar(&sql).fetch_one(&mut conn).await?;
            if has_rows {
                return Err(Error::conflict(format!(
                    "the content database already holds data (table {}); demo data is only seeded into an empty database",
                    table.display_name()
                )));
            }
        }
    }

    // The SQLite seed in a scratch file, dumped and loaded across engines.
    let scratch = tempfile::Builder::new()
        .prefix(".demo-seed-")
        .tempdir_in(&data_dir)
        .map_err(|e| Error::internal("cannot create a scratch folder for the demo seed", e))?;
    let pool = crate::content::open_sqlite(
        &crate::content::sqlite_url(&scratch.path().join("demo.db")),
        "demo database",
    )
    .await?;
    crate::content::migrate(&pool).await?;
    let stats = crate::demo::seed(&pool, &data_dir, channels).await?;
    let json = scratch.path().join("database.json");
    let version = crate::content::schema_version(&pool).await?;
    crate::archive::dump::dump_database(&pool, version, &json, &CancellationToken::new()).await?;
    pool.close().await;
    content_pg::load(
        &mut conn,
        move || File::open(&json),
        || Ok::<(), std::convert::Infallible>(()),
    )
    .await
    .map_err(pg_error)?;
    Ok(stats)
}

async fn summarize_postgres(
    target: Arc<content_pg::Target>,
    sample: Option<i64>,
) -> Result<Vec<TableSummary>> {
    let mut conn = target.connect().await.map_err(pg_error)?;
    let catalog = content_pg::read_catalog(&mut conn)
        .await
        .map_err(pg_error)?;
    let mut out = Vec::new();
    for table in &catalog.tables {
        let sql = format!("SELECT count(*) FROM {}", table.sql_name());
        let rows: i64 = sqlx::query_scalar(&sql).fetch_one(&mut conn).await?;
        let (columns, sample_rows) = match sample {
            Some(n) if !table.columns.is_empty() => {
                let quoted: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| content_pg::catalog::quote_ident(&c.name))
                    .collect();
                // Every value as its text (bytea as its length), so any type renders.
                let values = table
                    .columns
                    .iter()
                    .zip(&quoted)
                    .map(|(c, q)| {
                        if c.type_name == "bytea" {
                            format!("'<' || length({q}) || ' bytes>'")
                        } else {
                            format!("{q}::text")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let order = if table.primary_key.is_empty() {
                    String::new()
                } else {
                    let keys: Vec<String> = table
                        .primary_key
                        .iter()
                        .map(|k| content_pg::catalog::quote_ident(k))
                        .collect();
                    format!(" ORDER BY {}", keys.join(", "))
                };
                let sql = format!(
                    "SELECT ARRAY[{values}]::text[] FROM {}{order} LIMIT $1",
                    table.sql_name()
                );
                let secret: Vec<bool> = table
                    .columns
                    .iter()
                    .map(|c| {
                        crate::content::is_secret_column(
                            &c.name,
                            table.primary_key.contains(&c.name),
                        )
                    })
                    .collect();
                let sampled: Vec<Vec<Option<String>>> = sqlx::query_scalar(&sql)
                    .bind(n)
                    .fetch_all(&mut conn)
                    .await?;
                let masked = sampled
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .zip(&secret)
                            .map(|(v, &s)| crate::content::mask_value(s, v))
                            .collect()
                    })
                    .collect();
                let names = table.columns.iter().map(|c| c.name.clone()).collect();
                (names, masked)
            }
            _ => (Vec::new(), Vec::new()),
        };
        out.push(TableSummary {
            name: table.display_name(),
            rows,
            columns,
            sample: sample_rows,
        });
    }
    Ok(out)
}

/// Runs a `content-pg` future to its end on a blocking thread of the current runtime.
///
/// rustc cannot prove that sqlx's `&mut PgConnection` executor futures are `Send` for every
/// lifetime once they sit inside the job runner's spawned task (the "implementation of
/// `Executor` is not general enough" error, rust-lang/rust#102211), so they are not awaited
/// on the async workers: `Handle::block_on` needs no `Send` future. It also keeps COPY's
/// encoding work off the workers.
async fn off_the_workers<F, Fut, T>(make: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(make()))
        .await
        .map_err(|e| Error::internal("the PostgreSQL task stopped", e))?
}

async fn dump_postgres(
    target: Arc<content_pg::Target>,
    schema_version: i64,
    path: PathBuf,
    cancel: CancellationToken,
) -> Result<DumpStats> {
    let file = File::create(&path)
        .map_err(|e| Error::internal(format!("cannot create {}", path.display()), e))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let mut conn = target.connect().await.map_err(pg_error)?;
    // Dropping the dump on cancel ends its read transaction with the connection.
    let dumped = tokio::select! {
        r = content_pg::dump(&mut conn, schema_version, out) => r,
        () = cancel.cancelled() => {
            return Err(Error::new(ErrorKind::Canceled, "canceled"));
        }
    };
    let (mut out, stats) = dumped.map_err(pg_error)?;
    out.flush()
        .map_err(|e| Error::internal(format!("cannot write {}", path.display()), e))?;
    Ok(DumpStats {
        engine: content_pg::ENGINE,
        tables: stats.tables,
        rows: stats.rows,
        bytes: stats.bytes,
        sha256: stats.sha256,
    })
}
