//! PostgreSQL content databases for Backstop: connect, dump to `database.json`, load from
//! it. Self-contained (it does not know the engine); the engine calls [`connect`] /
//! [`Target`], [`dump`] and [`load`].
//!
//! - [`connect`]: the URL, passwords the libpq way, errors that name what failed.
//! - [`catalog`]: the tables, columns, keys and sequences, from `pg_catalog`.
//! - [`dump`]: one `REPEATABLE READ READ ONLY` snapshot, `COPY ... TO STDOUT` streamed into
//!   the document.
//! - [`load`]: one transaction, `DELETE` + `COPY ... FROM STDIN`, foreign keys in any order,
//!   sequences set, a hook before commit.
//! - [`archive`]: the streaming reader of the document; `copytext`: COPY's text format.
//!
//! # Value encoding (lossless)
//!
//! Each column is written by its type (a domain by its base type):
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | NULL (any type) | `null` |
//! | `boolean` | `true` / `false` |
//! | `smallint`, `integer`, `bigint` | integer |
//! | `bytea` | `{"$base64":"..."}` |
//! | everything else | the type's text output, as a string |
//!
//! "Everything else" includes text and varchar, numeric (every digit, `NaN`), real and double
//! (`NaN`, `Infinity`, `-0`, shortest exact digits with `extra_float_digits = 3`), json (kept
//! as text, so duplicate keys and key order survive), jsonb, arrays (`{..}` text, with
//! dimensions such as `[0:1]={1,2}`), timestamptz (in UTC), date, time, interval, uuid, enum
//! labels, ranges, geometric and network types. The column's `format_type` goes into
//! `"type"`, so a reader knows how to interpret each string. Text output is input: the load
//! feeds the strings back through COPY, and PostgreSQL parses them with the same input
//! functions, under the same settings ([`SESSION_SETTINGS`]), so the round trip is exact.
//! One exception to keep in mind: `money` prints with the server's `lc_monetary`, so the
//! source and target should share it.

pub mod archive;
pub mod catalog;
pub mod connect;
mod copytext;
pub mod dump;
mod error;
pub mod load;

pub use archive::{Summary, SummaryTable, scan};
pub use connect::{Target, connect};
pub use dump::{DumpStats, check_dump_access, dump};
pub use error::{Error, ErrorKind, Result};
pub use load::{LoadStats, check_fits, load, read_catalog};

/// `format` of `database.json` (the same as the SQLite engine's).
pub const DATABASE_FORMAT: &str = "backstop-database";
/// `engine` of documents this crate writes.
pub const ENGINE: &str = "postgres";

/// Settings both the dump and the load run under (`SET LOCAL`, so a pooled connection is
/// left as it was): text output that is canonical and reads back to the same value whatever
/// the server's or role's defaults. ISO dates (`YMD` for input), intervals in the `postgres`
/// style, shortest exact floats, times in UTC, hex bytea, UTF-8, no statement timeout.
pub const SESSION_SETTINGS: &str = "SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; \
     SET LOCAL TimeZone = 'UTC'; SET LOCAL bytea_output = 'hex'; \
     SET LOCAL client_encoding = 'UTF8'; SET LOCAL statement_timeout = 0; \
     SET LOCAL lock_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0;";
