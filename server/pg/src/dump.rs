//! The database -> `database.json`, streamed.
//!
//! One `REPEATABLE READ READ ONLY` transaction: its snapshot is taken by the first query (the
//! catalog read) and every table's `COPY (SELECT ...) TO STDOUT` reads from it, so the
//! document is one consistent state however the application keeps writing. Each COPY row is
//! turned into a JSON array as it arrives ([`crate::copytext`]) into 1 MiB buffers; a
//! blocking thread hashes and writes full buffers, so memory is a few buffers whatever the
//! row count and formatting overlaps with writing.
//!
//! No table locks are taken (pg_dump takes ACCESS SHARE on each): a table dropped or altered
//! by a concurrent migration between the catalog read and its COPY fails the dump, which is
//! reported and can be retried; it never produces a mixed document.

use std::io::Write;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::mpsc;

use crate::catalog::{self, Catalog, Kind, Table};
use crate::copytext::{self, FieldError};
use crate::{DATABASE_FORMAT, ENGINE, Error, Result, SESSION_SETTINGS};

/// What [`dump`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpStats {
    pub tables: u64,
    pub rows: u64,
    /// Size of the document.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the document.
    pub sha256: String,
    /// Rows per table, in the order written: (`schema`, `name`, rows).
    pub table_rows: Vec<(String, String, u64)>,
}

/// Buffer size handed to the writer thread: one cheap write each.
const CHUNK: usize = 1 << 20;
/// Buffers in flight; memory is about `(QUEUE + 2) * CHUNK`.
const QUEUE: usize = 4;

/// Writes every user table of the database behind `conn` to `out` as `database.json`
/// (`engine` `"postgres"`), returning `out` and what was written.
///
/// Needs USAGE on each user schema and SELECT on each user table (checked first; the error
/// names the table), and, for a table with row-level security, ownership or BYPASSRLS (rows
/// hidden by a policy would make the backup silently incomplete, so the dump refuses
/// instead, as pg_dump does).
///
/// The document: `{"format":"backstop-database","engine":"postgres","schema_version":N,
/// "tables":[{"schema":..,"name":..,"columns":[{"name":..,"type":..}, ..],
/// "primary_key":[..],"foreign_keys":[..],"rows":[[..],..]}, ..]}`; see the crate docs
/// for the value encoding.
pub async fn dump<W: Write + Send + 'static>(
    conn: &mut PgConnection,
    schema_version: i64,
    out: W,
) -> Result<(W, DumpStats)> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::db("cannot start the dump's transaction", e))?;
    // search_path = '' makes format_type qualify every type outside pg_catalog.
    sqlx::raw_sql(&format!(
        "{SESSION_SETTINGS} SET LOCAL search_path = ''; SET LOCAL row_security = off;"
    ))
    .execute(&mut *tx)
    .await
    .map_err(|e| Error::db("cannot set the dump's session settings", e))?;
    let catalog = catalog::read(&mut tx).await?;
    check_privileges(&mut tx, &catalog).await?;

    let (full_tx, full_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_chunks(out, full_rx));
    let produced = produce(&mut tx, &catalog, schema_version, full_tx).await;
    let written = writer.await.map_err(|e| Error::Io {
        context: "the database dump writer stopped".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    // A failed write closes the channel, which the producer sees as an error of its own: the
    // writer's error is the real cause, so it wins.
    let (out, bytes, sha256) = written?;
    let table_rows = produced?;
    // Read-only: the commit just ends the snapshot.
    tx.commit()
        .await
        .map_err(|e| Error::db("cannot end the dump's transaction", e))?;
    Ok((
        out,
        DumpStats {
            tables: table_rows.len() as u64,
            rows: table_rows.iter().map(|t| t.2).sum(),
            bytes,
            sha256,
            table_rows,
        },
    ))
}

/// Checks, without reading any row, that [`dump`] would be allowed to read every user table:
/// for a clear error when the content database is configured (at start), not at the first
/// backup.
pub async fn check_dump_access(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| Error::db("cannot start a read-only transaction", e))?;
    let catalog = catalog::read(&mut tx).await?;
    check_privileges(&mut tx, &catalog).await?;
    tx.commit()
        .await
        .map_err(|e| Error::db("cannot end a read-only transaction", e))
}

/// Refuses, naming the table, when the role cannot read all of a table.
async fn check_privileges(conn: &mut PgConnection, catalog: &Catalog) -> Result<()> {
    let oids: Vec<i64> = catalog.tables.iter().map(|t| t.oid).collect();
    let rows = sqlx::query(
        "SELECT c.oid::int8,
                pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE'),
                pg_catalog.has_table_privilege(c.oid, 'SELECT')
                  OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                   AND NOT pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')),
                c.relrowsecurity
                  AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE'))
                  AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
                           WHERE r.rolname = current_user),
                current_user::text
         FROM pg_catalog.pg_class c WHERE c.oid::int8 = ANY($1) ORDER BY c.oid",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| Error::db("cannot check the dump's privileges", e))?;
    for r in rows {
        let Some(t) = catalog.by_oid(r.get(0)) else {
            continue;
        };
        let user: String = r.get(4);
        let (privilege, object) = if !r.get::<bool, _>(1) {
            ("USAGE", format!("schema {}", t.schema))
        } else if !r.get::<bool, _>(2) {
            ("SELECT", format!("table {}", t.display_name()))
        } else if r.get::<bool, _>(3) {
            (
                "BYPASSRLS (or ownership, row-level security would hide rows)",
                format!("table {}", t.display_name()),
            )
        } else {
            continue;
        };
        return Err(Error::MissingPrivilege {
            user,
            privilege: privilege.into(),
            object,
        });
    }
    Ok(())
}

/// The writer thread: hashes and writes every buffer.
fn write_chunks<W: Write>(
    mut out: W,
    mut full: mpsc::Receiver<Vec<u8>>,
) -> Result<(W, u64, String)> {
    let failed = |source| Error::Io {
        context: "cannot write the database dump".into(),
        source,
    };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(buf) = full.blocking_recv() {
        hasher.update(&buf);
        out.write_all(&buf).map_err(failed)?;
        bytes += buf.len() as u64;
    }
    out.flush().map_err(failed)?;
    Ok((out, bytes, hex::encode(hasher.finalize())))
}

struct Out {
    buf: Vec<u8>,
    full: mpsc::Sender<Vec<u8>>,
}

impl Out {
    async fn flush(&mut self) -> Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + (64 << 10)));
        self.full.send(full).await.map_err(|_| Error::Io {
            context: "the database dump writer stopped".into(),
            source: std::io::Error::other("writer gone"),
        })
    }
}

/// Formats the whole document; returns rows per table.
async fn produce(
    conn: &mut PgConnection,
    catalog: &Catalog,
    schema_version: i64,
    full: mpsc::Sender<Vec<u8>>,
) -> Result<Vec<(String, String, u64)>> {
    let mut out = Out {
        buf: Vec::with_capacity(CHUNK + (64 << 10)),
        full,
    };
    let b = &mut out.buf;
    b.extend_from_slice(b"{\"format\":");
    json(b, DATABASE_FORMAT);
    b.extend_from_slice(b",\"engine\":");
    json(b, ENGINE);
    b.extend_from_slice(b",\"schema_version\":");
    let _ = serde_json::to_writer(&mut *b, &schema_version);
    b.extend_from_slice(b",\"tables\":[");

    let mut counts = Vec::with_capacity(catalog.tables.len());
    let mut scratch = Vec::new();
    for (ti, table) in catalog.tables.iter().enumerate() {
        if ti > 0 {
            out.buf.push(b',');
        }
        table_header(&mut out.buf, table, catalog);
        let kinds: Vec<Kind> = table.columns.iter().map(|c| c.kind).collect();
        let select = table
            .columns
            .iter()
            .map(|c| catalog::quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "COPY (SELECT {select} FROM {}{}) TO STDOUT",
            table.only(),
            table.sql_name()
        );
        let reading = || format!("cannot read table {}", table.display_name());
        let mut rows = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        {
            let mut stream = conn
                .copy_out_raw(&sql)
                .await
                .map_err(|e| Error::db(reading(), e))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Error::db(reading(), e))?;
                // PostgreSQL sends one row per message, but the protocol does not promise
                // it: split on newlines and carry a partial row to the next message.
                let mut data: &[u8] = &chunk;
                while let Some(nl) = data.iter().position(|&c| c == b'\n') {
                    let line: &[u8] = if carry.is_empty() {
                        &data[..nl]
                    } else {
                        carry.extend_from_slice(&data[..nl]);
                        &carry
                    };
                    if rows > 0 {
                        out.buf.push(b',');
                    }
                    out.buf.extend_from_slice(b"\n");
                    copytext::row_to_json(line, &kinds, &mut out.buf, &mut scratch)
                        .map_err(|e| field_error(table, e))?;
                    carry.clear();
                    rows += 1;
                    data = &data[nl + 1..];
                }
                carry.extend_from_slice(data);
                if out.buf.len() >= CHUNK {
                    out.flush().await?;
                }
            }
        }
        if !carry.is_empty() {
            return Err(Error::Database {
                context: format!("{}: COPY ended inside a row", reading()),
                source: sqlx::Error::Protocol("incomplete COPY row".into()),
            });
        }
        out.buf.extend_from_slice(b"]}");
        counts.push((table.schema.clone(), table.name.clone(), rows));
    }
    out.buf.extend_from_slice(b"\n]}\n");
    out.flush().await?;
    Ok(counts)
}

fn field_error(table: &Table, e: FieldError) -> Error {
    let column = |i: usize| {
        table
            .columns
            .get(i)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    let message = match e {
        FieldError::FieldCount { expected, found } => format!(
            "COPY of table {} gave {found} fields for {expected} columns",
            table.display_name()
        ),
        FieldError::NotUtf8 { column: i } => format!(
            "column {} of table {} holds text that is not UTF-8 (is the database's encoding SQL_ASCII?)",
            column(i),
            table.display_name()
        ),
        FieldError::Unexpected { column: i } => format!(
            "column {} of table {} printed a value its type does not print",
            column(i),
            table.display_name()
        ),
    };
    Error::Database {
        context: message,
        source: sqlx::Error::Protocol("unexpected COPY data".into()),
    }
}

fn json(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

fn json_list(buf: &mut Vec<u8>, items: &[String]) {
    let _ = serde_json::to_writer(&mut *buf, items);
}

/// `\n{"schema":..,"name":..,"columns":[..],"primary_key":[..],"foreign_keys":[..],"rows":[`
fn table_header(b: &mut Vec<u8>, t: &Table, catalog: &Catalog) {
    b.extend_from_slice(b"\n{\"schema\":");
    json(b, &t.schema);
    b.extend_from_slice(b",\"name\":");
    json(b, &t.name);
    b.extend_from_slice(b",\"columns\":[");
    for (i, c) in t.columns.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(b"{\"name\":");
        json(b, &c.name);
        b.extend_from_slice(b",\"type\":");
        json(b, &c.type_name);
        if c.generated {
            b.extend_from_slice(b",\"generated\":true");
        }
        if let Some(id) = c.identity {
            b.extend_from_slice(b",\"identity\":");
            json(b, id);
        }
        b.push(b'}');
    }
    b.extend_from_slice(b"],\"primary_key\":");
    json_list(b, &t.primary_key);
    b.extend_from_slice(b",\"foreign_keys\":[");
    for (i, fk) in t.foreign_keys.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(b"{\"name\":");
        json(b, &fk.name);
        b.extend_from_slice(b",\"columns\":");
        json_list(b, &fk.columns);
        b.extend_from_slice(b",\"references\":{\"schema\":");
        let (schema, table) = match catalog.by_oid(fk.ref_oid) {
            Some(p) => (p.schema.as_str(), p.name.as_str()),
            None => (fk.ref_schema.as_str(), fk.ref_table.as_str()),
        };
        json(b, schema);
        b.extend_from_slice(b",\"table\":");
        json(b, table);
        b.extend_from_slice(b",\"columns\":");
        json_list(b, &fk.ref_columns);
        b.extend_from_slice(b"},\"deferrable\":");
        b.extend_from_slice(if fk.deferrable { b"true" } else { b"false" });
        b.push(b'}');
    }
    b.extend_from_slice(b"],\"rows\":[");
}
