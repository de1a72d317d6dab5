//! Content DB -> `database.json` (DESIGN section 3), generic over any SQLite schema.
//!
//! One read transaction covers the schema query and every table, so the file is one consistent
//! snapshot (in WAL mode the application keeps writing meanwhile). Rows are streamed: the async
//! side formats rows into 1 MiB buffers and hands each full buffer to a blocking thread that
//! hashes and writes it, so memory stays flat whatever the row count and the two halves run on
//! both cores at once.
//!
//! Value encoding: INTEGER -> JSON integer, REAL -> JSON number with a fraction or exponent
//! (so it reads back as REAL), TEXT -> string, NULL -> null, BLOB -> `{"$base64":"..."}`.
//! JSON has no infinities; SQLite can store them, so they are written as
//! `{"$real":"inf"}` / `{"$real":"-inf"}` (SQLite stores NaN as NULL).
//!
//! Rows are read by stepping SQLite's C API directly (measured 0.26-0.46x `sqlite3 .dump`),
//! the one reason this module allows `unsafe_code`; every block says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::Write;
use std::path::Path;

use std::os::raw::c_int;

use base64::Engine as _;
use libsqlite3_sys as ffi;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::schema::{SchemaInfo, read_schema};
use super::{DATABASE_FORMAT, canceled, quote_ident};
use crate::{Error, Result};

/// What [`dump_database`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DumpStats {
    /// `"sqlite"` or `"postgres"`: the engine the dump was read from (the manifest's
    /// `database.engine`).
    pub engine: &'static str,
    pub tables: u64,
    pub rows: u64,
    /// Size of `database.json`.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of `database.json`.
    pub sha256: String,
}

/// Size of the buffers handed to the writer thread: large enough that a write is one cheap
/// syscall, small enough that the few in flight cost nothing.
const CHUNK: usize = 1 << 20;
/// Buffers queued for the writer; bounds memory to about `(QUEUE + 2) * CHUNK`.
const QUEUE: usize = 4;

/// Writes the content DB behind `pool` to `dest` as `database.json`.
///
/// On error or cancel (`Error` of kind Canceled), `dest` is removed.
pub async fn dump_database(
    pool: &SqlitePool,
    schema_version: i64,
    dest: &Path,
    cancel: &CancellationToken,
) -> Result<DumpStats> {
    let result = dump_inner(pool, schema_version, dest, cancel).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

async fn dump_inner(
    pool: &SqlitePool,
    schema_version: i64,
    dest: &Path,
    cancel: &CancellationToken,
) -> Result<DumpStats> {
    // `begin` issues a deferred BEGIN: the snapshot is taken by the schema query, the first
    // read, and every table below is read from that same snapshot.
    let mut tx = pool.begin().await?;
    let schema: SchemaInfo = read_schema(&mut tx).await?;
    let (rows, bytes, sha256) = {
        let mut handle = tx.lock_handle().await?;
        let db = RawDb(handle.as_raw_handle().as_ptr());
        // The guard is held for the whole blocking section and no `.await` happens inside it,
        // so nothing else can touch the connection meanwhile and the future stays `Send`.
        run_blocking(|| write_dump(db, &schema, schema_version, dest, cancel))?
    };
    // Read-only: commit is simply the explicit end of the snapshot.
    tx.commit().await?;
    Ok(DumpStats {
        engine: "sqlite",
        tables: schema.tables.len() as u64,
        rows,
        bytes,
        sha256,
    })
}

/// Runs blocking work from async code: `block_in_place` on a multi-thread runtime, so the other
/// tasks of this worker move elsewhere; inline on a current-thread runtime (tests, CLI), where
/// there is no other worker to protect.
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The raw connection handle, valid while the `LockedSqliteHandle` it came from lives.
#[derive(Clone, Copy)]
struct RawDb(*mut ffi::sqlite3);

/// Creates `dest` and writes the whole document: this thread reads rows and formats them, a
/// scoped writer thread hashes and writes full buffers.
fn write_dump(
    db: RawDb,
    schema: &SchemaInfo,
    schema_version: i64,
    dest: &Path,
    cancel: &CancellationToken,
) -> Result<(u64, u64, String)> {
    let file = File::create(dest).map_err(|e| {
        Error::internal(
            format!("cannot create the database dump at {}", dest.display()),
            e,
        )
    })?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_chunks(file, full_rx, empty_tx, dest));
        let mut out = Out {
            buf: new_buf(),
            full: full_tx,
            empty: empty_rx,
        };
        let produced = produce(db, schema, schema_version, cancel, &mut out);
        // Closing the channel lets the writer finish.
        drop(out);
        let written = writer
            .join()
            .map_err(|_| Error::internal("the database dump writer stopped", WriterGone))?;
        // A failed write closes the channel, which surfaces here as a production error: the
        // writer's error is the real cause, so it wins.
        let (bytes, sha256) = written?;
        let rows = produced?;
        Ok((rows, bytes, sha256))
    })
}

fn new_buf() -> Vec<u8> {
    Vec::with_capacity(CHUNK + 64 * 1024)
}

/// The writer thread: hashes and writes every buffer, returns emptied buffers for reuse.
fn write_chunks(
    mut file: File,
    full: std::sync::mpsc::Receiver<Vec<u8>>,
    empty: std::sync::mpsc::Sender<Vec<u8>>,
    dest: &Path,
) -> Result<(u64, String)> {
    let failed = |e| {
        Error::internal(
            format!("cannot write the database dump at {}", dest.display()),
            e,
        )
    };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Ok(mut buf) = full.recv() {
        hasher.update(&buf);
        file.write_all(&buf).map_err(failed)?;
        bytes += buf.len() as u64;
        buf.clear();
        let _ = empty.send(buf);
    }
    file.flush().map_err(failed)?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

struct Out {
    buf: Vec<u8>,
    full: std::sync::mpsc::SyncSender<Vec<u8>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Out {
    fn flush(&mut self) -> Result<()> {
        let next = self.empty.try_recv().unwrap_or_else(|_| new_buf());
        let full = std::mem::replace(&mut self.buf, next);
        self.full
            .send(full)
            .map_err(|_| Error::internal("the database dump writer stopped", WriterGone))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("writer thread ended early")]
struct WriterGone;

/// Formats the document into `out`; returns the number of rows.
fn produce(
    db: RawDb,
    schema: &SchemaInfo,
    schema_version: i64,
    cancel: &CancellationToken,
    out: &mut Out,
) -> Result<u64> {
    out.buf.extend_from_slice(b"{\"format\":\"");
    out.buf.extend_from_slice(DATABASE_FORMAT.as_bytes());
    out.buf
        .extend_from_slice(b"\",\"engine\":\"sqlite\",\"schema_version\":");
    write_i64(&mut out.buf, schema_version);
    out.buf.extend_from_slice(b",\"tables\":[");

    let mut total_rows = 0u64;
    for (ti, table) in schema.tables.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(canceled());
        }
        if ti > 0 {
            out.buf.push(b',');
        }
        out.buf.extend_from_slice(b"\n{\"name\":");
        write_str(&mut out.buf, &table.name);
        out.buf.extend_from_slice(b",\"columns\":[");
        for (ci, col) in table.columns.iter().enumerate() {
            if ci > 0 {
                out.buf.push(b',');
            }
            out.buf.extend_from_slice(b"{\"name\":");
            write_str(&mut out.buf, &col.name);
            out.buf.extend_from_slice(b",\"type\":");
            write_str(&mut out.buf, &col.declared_type);
            out.buf.push(b'}');
        }
        out.buf.extend_from_slice(b"],\"rows\":[");

        let select = table
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("SELECT {select} FROM {}", quote_ident(&table.name));
        let cannot_read = |e: String| {
            Error::internal(
                format!("cannot read table {} of the content database", table.name),
                SqliteMsg(e),
            )
        };
        let stmt = Stmt::prepare(db, &sql).map_err(cannot_read)?;
        let ncols = table.columns.len() as c_int;
        let mut n = 0u64;
        while stmt.step().map_err(cannot_read)? {
            if n > 0 {
                out.buf.push(b',');
            }
            out.buf.extend_from_slice(b"\n[");
            for i in 0..ncols {
                if i > 0 {
                    out.buf.push(b',');
                }
                stmt.write_column(i, &mut out.buf);
            }
            out.buf.push(b']');
            n += 1;
            if out.buf.len() >= CHUNK {
                // A 1 MiB buffer is a few thousand rows: checking here keeps cancel prompt.
                if cancel.is_cancelled() {
                    return Err(canceled());
                }
                out.flush()?;
            }
        }
        total_rows += n;
        out.buf.extend_from_slice(b"]}");
    }
    out.buf.extend_from_slice(b"\n]}\n");
    out.flush()?;
    Ok(total_rows)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SqliteMsg(String);

/// A prepared statement on the raw handle, finalized on drop.
///
/// Why raw FFI here and nowhere else: sqlx copies every value (`sqlite3_value_dup` plus an
/// `Arc`) and sends every row through a channel, which made the dump 2.7x slower than
/// `sqlite3 .dump`; stepping the statement directly and formatting straight from SQLite's
/// buffers is faster than `.dump` and allocates nothing per value.
struct Stmt {
    db: RawDb,
    stmt: *mut ffi::sqlite3_stmt,
}

impl Stmt {
    fn prepare(db: RawDb, sql: &str) -> std::result::Result<Stmt, String> {
        let mut stmt = std::ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| "statement too long".to_owned())?;
        // SAFETY: `db.0` is a live connection handle (held locked by the caller); `sql` is a
        // valid buffer of `len` bytes; `stmt` receives a statement we finalize in `Drop`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db.0,
                sql.as_ptr().cast(),
                len,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            return Err(errmsg(db));
        }
        Ok(Stmt { db, stmt })
    }

    /// Advances to the next row; false when done.
    fn step(&self) -> std::result::Result<bool, String> {
        // SAFETY: `self.stmt` is a valid prepared statement until drop.
        match unsafe { ffi::sqlite3_step(self.stmt) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(errmsg(self.db)),
        }
    }

    /// Appends column `i` of the current row as JSON.
    fn write_column(&self, i: c_int, buf: &mut Vec<u8>) {
        // SAFETY: called only after `step` returned a row and `i` < column count. The text and
        // blob pointers are valid until the next step/finalize and are copied out before that;
        // `sqlite3_column_bytes` is called after the pointer fetch as SQLite requires.
        unsafe {
            match ffi::sqlite3_column_type(self.stmt, i) {
                ffi::SQLITE_INTEGER => write_i64(buf, ffi::sqlite3_column_int64(self.stmt, i)),
                ffi::SQLITE_FLOAT => write_f64(buf, ffi::sqlite3_column_double(self.stmt, i)),
                ffi::SQLITE_TEXT => {
                    let p = ffi::sqlite3_column_text(self.stmt, i);
                    let n = ffi::sqlite3_column_bytes(self.stmt, i);
                    let bytes = raw_slice(p, n);
                    match std::str::from_utf8(bytes) {
                        Ok(s) => write_str(buf, s),
                        // SQLite does not enforce UTF-8; keep what can be kept rather than fail.
                        Err(_) => write_str(buf, &String::from_utf8_lossy(bytes)),
                    }
                }
                ffi::SQLITE_BLOB => {
                    let p = ffi::sqlite3_column_blob(self.stmt, i);
                    let n = ffi::sqlite3_column_bytes(self.stmt, i);
                    write_blob(buf, raw_slice(p.cast(), n));
                }
                _ => buf.extend_from_slice(b"null"),
            }
        }
    }
}

/// # Safety
/// `p` must be null or point to `n` readable bytes that outlive the returned slice's use.
unsafe fn raw_slice<'a>(p: *const u8, n: c_int) -> &'a [u8] {
    if p.is_null() || n <= 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(p, n as usize) }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: finalizing a statement we prepared, exactly once.
        unsafe {
            ffi::sqlite3_finalize(self.stmt);
        }
    }
}

fn errmsg(db: RawDb) -> String {
    // SAFETY: `sqlite3_errmsg` returns a NUL-terminated string owned by the connection, copied
    // out immediately.
    unsafe {
        let p = ffi::sqlite3_errmsg(db.0);
        if p.is_null() {
            return "unknown SQLite error".into();
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

pub(crate) fn write_blob(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(b"{\"$base64\":\"");
    let start = buf.len();
    buf.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut buf[start..])
        .expect("the buffer was sized for the padded encoding");
    buf.truncate(start + n);
    buf.extend_from_slice(b"\"}");
}

pub(crate) fn write_i64(buf: &mut Vec<u8>, v: i64) {
    // serde_json formats integers with itoa; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &v);
}

pub(crate) fn write_f64(buf: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *buf, &v);
    } else if v > 0.0 {
        buf.extend_from_slice(b"{\"$real\":\"inf\"}");
    } else if v < 0.0 {
        buf.extend_from_slice(b"{\"$real\":\"-inf\"}");
    } else {
        buf.extend_from_slice(b"null");
    }
}

/// JSON string with serde_json's table-driven escaper (no allocation).
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *buf, s);
}
