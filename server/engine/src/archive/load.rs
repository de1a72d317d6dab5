//! `database.json` -> content DB, in one transaction: every content table is emptied
//! (children first), the archive's rows are inserted (parents first), then
//! `pragma foreign_key_check` decides. Any failure or cancel rolls back, leaving the database
//! exactly as it was.
//!
//! The file is parsed on a blocking thread (the streaming reader in `dbjson`, which also
//! validates every row against the schema) and handed over in bounded batches, so memory holds
//! a few batches whatever the file size. Inserts are multi-row `INSERT ... VALUES (...), (...)`
//! statements: one round trip to SQLite per batch instead of per row.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use sqlx::{Row, SqlitePool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dbjson::{self, Sink, Value};
use super::schema::SchemaInfo;
use super::verify::SchemaCheck;
use super::{canceled, quote_ident};
use crate::{Error, Result};

/// What [`load_database`] inserted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadStats {
    /// Tables present in the archive.
    pub tables: u64,
    pub rows: u64,
}

/// SQLite's default cap on bound parameters per statement (since 3.32).
const MAX_PARAMS: usize = 32_766;
/// Rows per INSERT statement (fewer for wide tables, see [`MAX_PARAMS`]).
const MAX_BATCH: usize = 500;
/// Batches in flight between the parser and the inserter.
const QUEUE: usize = 4;
/// A batch is sent once its values hold this many bytes, whatever its row count: with rows
/// of up to [`super::MAX_ROW_BYTES`], 500-row batches alone would let the queue hold
/// gigabytes. Memory in flight stays below (QUEUE + 2) x (this + one row).
const MAX_BATCH_BYTES: usize = 8 << 20;

enum Msg {
    /// A table begins: its name and the archive's columns (names as in the schema).
    Table {
        name: String,
        columns: Vec<String>,
    },
    Rows(Vec<Vec<Value>>),
}

/// Work run after every row is in and checked, before the transaction commits (the restore's
/// directory swap). Its error rolls the transaction back. Runs on a blocking thread.
pub type BeforeCommit = Box<dyn FnOnce() -> Result<()> + Send + 'static>;

/// Replaces the content of every table in `schema` with the rows of `database_json`.
///
/// `schema` is the live content schema ([`super::content_schema`]); the file is expected to
/// have been validated already ([`super::verify_archive`]) but is checked again row by row.
/// Cancel returns an error of kind Canceled and rolls back.
pub async fn load_database(
    pool: &SqlitePool,
    database_json: &Path,
    schema: &SchemaInfo,
    cancel: &CancellationToken,
) -> Result<LoadStats> {
    load_database_then(pool, database_json, schema, cancel, None).await
}

/// [`load_database`], running `before_commit` once the rows are loaded and checked and
/// before the commit: the database and whatever `before_commit` changes succeed or fail
/// together (a failure of either rolls the transaction back; a failed commit after a
/// successful `before_commit` is the caller's to undo).
pub async fn load_database_then(
    pool: &SqlitePool,
    database_json: &Path,
    schema: &SchemaInfo,
    cancel: &CancellationToken,
    before_commit: Option<BeforeCommit>,
) -> Result<LoadStats> {
    let file = File::open(database_json).map_err(|e| {
        Error::internal(
            format!(
                "cannot open the staged database {}",
                database_json.display()
            ),
            e,
        )
    })?;
    let (tx_msgs, mut rx) = mpsc::channel::<Msg>(QUEUE);
    let parse_schema = schema.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let mut sink = LoadSink {
            check: SchemaCheck::new(&parse_schema),
            out: tx_msgs,
            batch: Vec::new(),
            batch_size: 1,
            batch_bytes: 0,
        };
        dbjson::read(BufReader::with_capacity(1 << 20, file), &mut sink)?;
        Ok::<u64, Error>(sink.check.rows)
    });

    let mut tx = pool.begin().await?;
    // Rows arrive parents first, but self-references and cycles can still point forward:
    // checking keys at commit (and with foreign_key_check below) handles every order.
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(&mut *tx)
        .await?;
    for table in schema.tables.iter().rev() {
        sqlx::query(&format!("DELETE FROM {}", quote_ident(&table.name)))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                Error::internal(
                    format!("cannot empty table {} before the restore", table.name),
                    e,
                )
            })?;
    }

    let mut tables = 0u64;
    let mut current: Option<(String, Vec<String>)> = None;
    let mut sql_cache: Option<(usize, String)> = None;
    while let Some(msg) = rx.recv().await {
        if cancel.is_cancelled() {
            drop(rx);
            let _ = tx.rollback().await;
            let _ = parser.await;
            return Err(canceled());
        }
        match msg {
            Msg::Table { name, columns } => {
                tables += 1;
                current = Some((name, columns));
                sql_cache = None;
            }
            Msg::Rows(rows) => {
                let Some((name, columns)) = &current else {
                    continue;
                };
                let n = rows.len();
                let sql = match &sql_cache {
                    Some((cached_n, sql)) if *cached_n == n => sql.clone(),
                    _ => {
                        let sql = insert_sql(name, columns, n);
                        sql_cache = Some((n, sql.clone()));
                        sql
                    }
                };
                let mut q = sqlx::query(&sql);
                for row in rows {
                    for v in row {
                        q = match v {
                            Value::Null | Value::Unsupported(_) => q.bind(None::<i64>),
                            Value::Bool(b) => q.bind(i64::from(b)),
                            Value::Int(i) => q.bind(i),
                            Value::Real(f) => q.bind(f),
                            Value::Text(s) => q.bind(s),
                            Value::Blob(b) => q.bind(b),
                        };
                    }
                }
                if let Err(e) = q.execute(&mut *tx).await {
                    drop(rx);
                    let _ = parser.await;
                    return Err(Error::rejected(format!(
                        "the archive's rows for table {name} cannot be inserted into this database"
                    ))
                    .with_source(e));
                }
            }
        }
    }
    let rows = parser
        .await
        .map_err(|e| Error::internal("the database.json reader stopped unexpectedly", e))??;
    if cancel.is_cancelled() {
        return Err(canceled());
    }

    if let Some(broken) = sqlx::query("PRAGMA foreign_key_check")
        .fetch_optional(&mut *tx)
        .await?
    {
        let table: String = broken.try_get(0).unwrap_or_default();
        let parent: String = broken.try_get(2).unwrap_or_default();
        let _ = tx.rollback().await;
        return Err(Error::rejected(format!(
            "the archive's data breaks a foreign key: a row of table {table} refers to a row of {parent} that is not there; nothing was changed"
        )));
    }
    if let Some(f) = before_commit {
        let done = tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::internal("the restore's swap task failed", e))
            .and_then(|r| r);
        if let Err(e) = done {
            let _ = tx.rollback().await;
            return Err(e);
        }
    }
    tx.commit().await?;
    Ok(LoadStats { tables, rows })
}

fn insert_sql(table: &str, columns: &[String], rows: usize) -> String {
    let cols = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(",");
    let one = format!("({})", vec!["?"; columns.len()].join(","));
    let values = vec![one.as_str(); rows].join(",");
    format!(
        "INSERT INTO {} ({cols}) VALUES {values}",
        quote_ident(table)
    )
}

/// Validates rows (via [`SchemaCheck`]) and sends them in batches to the inserter.
struct LoadSink<'a> {
    check: SchemaCheck<'a>,
    out: mpsc::Sender<Msg>,
    batch: Vec<Vec<Value>>,
    batch_size: usize,
    /// Bytes of text and blobs (plus 8 per value) in `batch`.
    batch_bytes: usize,
}

impl LoadSink<'_> {
    fn send(&mut self, msg: Msg) -> Result<()> {
        // A closed channel means the inserter stopped; its error is the one reported.
        self.out
            .blocking_send(msg)
            .map_err(|_| Error::internal("the restore stopped", Stopped))
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        self.batch_bytes = 0;
        self.send(Msg::Rows(rows))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the database writer stopped")]
struct Stopped;

impl Sink for LoadSink<'_> {
    fn header(&mut self, schema_version: i64) -> Result<()> {
        self.check.header(schema_version)
    }

    fn table(&mut self, name: &str, columns: &[(String, String)]) -> Result<()> {
        self.check.table(name, columns)?;
        let Some((table, idx)) = self.check.current() else {
            return Err(Error::internal("the table check lost its table", Stopped));
        };
        let columns: Vec<String> = idx.iter().map(|&i| table.columns[i].name.clone()).collect();
        self.batch_size = (MAX_PARAMS / columns.len().max(1)).clamp(1, MAX_BATCH);
        self.batch = Vec::with_capacity(self.batch_size);
        self.send(Msg::Table {
            name: name.to_owned(),
            columns,
        })
    }

    fn row(&mut self, row: &mut Vec<Value>) -> Result<()> {
        self.check.row(row)?;
        self.batch_bytes += row
            .iter()
            .map(|v| match v {
                Value::Text(s) => s.len() + 8,
                Value::Blob(b) => b.len() + 8,
                _ => 8,
            })
            .sum::<usize>();
        self.batch.push(std::mem::take(row));
        if self.batch.len() >= self.batch_size || self.batch_bytes >= MAX_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn end_table(&mut self) -> Result<()> {
        self.flush()
    }
}
