//! Streaming reader of `database.json`, shared by validation and the load: the document is
//! walked with a serde visitor that hands each table header and each row to a [`Sink`] as soon
//! as it is parsed, so memory holds one row, never the file.
//!
//! The reader requires the order the dump writes: `format`, `engine` and `schema_version`
//! before `tables`, and in each table `name` and `columns` before `rows`.
//!
//! Memory is bounded whatever the document holds: serde_json buffers a whole string (or a
//! whole row's values) before the visitor sees it, so the reader counts the bytes it takes
//! from the file between two marks (the start of each row, of each table header, of the
//! document) and stops the read once a stretch passes its cap ([`MAX_ROW_BYTES`],
//! [`MAX_HEADER_BYTES`]); a row may also hold at most [`MAX_ROW_VALUES`] values.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::rc::Rc;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::DATABASE_FORMAT;
use crate::{Error, Result};

/// The most bytes of `database.json` one row may span: its JSON text from the separator
/// after the previous row to its closing `]`. A longer row (say a 2 GiB string in one cell)
/// is refused with its table and row number as soon as the read passes the cap, before it
/// is in memory. Parsing a row holds about three times its text at worst (serde_json's
/// string buffer, the decoded value, base64's copy), so a reader stays under ~200 MiB. 64
/// MiB is far above what the application stores in one row (logos of a few hundred KiB)
/// and matches the largest blob many SQLite tools handle comfortably.
pub const MAX_ROW_BYTES: u64 = 64 << 20;

/// The most bytes of a table's header (its name, columns and any other field before
/// `rows`) and of the top-level fields outside `tables`. A header is names only: 32767
/// columns (SQLite's hard maximum) with 100-byte names are ~3.5 MiB, and its parsed form
/// takes about five times its text.
pub const MAX_HEADER_BYTES: u64 = 4 << 20;

/// The most values one row may hold: SQLite's hard maximum number of columns. Without it a
/// row of 64 MiB of `0,` would become 32M parsed values (1 GiB).
pub const MAX_ROW_VALUES: usize = 32_767;

/// One SQLite value as read from `database.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// A JSON boolean: written by PostgreSQL dumps for `boolean` columns, turned into 0/1 for
    /// SQLite by [`FromPg`]; anywhere else the sink refuses it.
    Bool(bool),
    /// Something no dump writes (array, other object, boolean, out-of-range number); the
    /// sink reports it with the table and column it was found in.
    Unsupported(&'static str),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
            Value::Bool(_) => "a boolean",
            Value::Unsupported(what) => what,
        }
    }
}

/// How a value of a PostgreSQL archive becomes a SQLite one (the README's "Across engines"
/// table). PostgreSQL dumps write integers as JSON numbers, `boolean` as JSON booleans,
/// `bytea` as `{"$base64"}` and everything else as its text output (DateStyle ISO, TimeZone
/// UTC, shortest exact floats: `server/pg/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FromPg {
    /// Integers, text types, json/jsonb (their text), uuid, date, bytea: as they are.
    Keep,
    /// `true`/`false` -> 1/0, as SQLite stores booleans.
    Bool,
    /// The text output of `double precision`/`real` -> a REAL with the same bits. NaN is
    /// refused: SQLite stores it as NULL.
    Float,
    /// `2026-11-20 18:00:00.12+00` -> `2026-11-20T18:00:00.120Z` (RFC 3339 UTC, the form the
    /// reference app writes: milliseconds, or microseconds when the value has them), so a
    /// SQLite archive of the reference schema that went through PostgreSQL comes back byte
    /// for byte. `infinity` and dates BC are refused.
    Timestamptz,
}

impl FromPg {
    /// The conversion for a column of PostgreSQL type `ty` (`format_type`'s words), or None
    /// for a type Backstop does not map (numeric, arrays, intervals, enums, ranges ...: their
    /// meaning would be lost in SQLite's storage classes).
    pub(crate) fn for_type(ty: &str) -> Option<FromPg> {
        let base = ty.split('(').next().unwrap_or(ty).trim();
        Some(match base {
            "smallint" | "integer" | "bigint" | "text" | "character varying" | "character"
            | "json" | "jsonb" | "uuid" | "date" | "bytea" => FromPg::Keep,
            "boolean" => FromPg::Bool,
            "double precision" | "real" => FromPg::Float,
            "timestamp with time zone" => FromPg::Timestamptz,
            _ => return None,
        })
    }

    fn apply(self, v: &mut Value) -> std::result::Result<(), String> {
        match (self, &*v) {
            (_, Value::Null) | (FromPg::Keep, _) => Ok(()),
            (FromPg::Bool, Value::Bool(b)) => {
                *v = Value::Int(i64::from(*b));
                Ok(())
            }
            (FromPg::Float, Value::Int(_) | Value::Real(_)) => Ok(()),
            (FromPg::Float, Value::Text(s)) => match s.parse::<f64>() {
                Ok(f) if f.is_nan() => Err("NaN".to_owned()),
                Ok(f) => {
                    *v = Value::Real(f);
                    Ok(())
                }
                Err(_) => Err(format!("{s:?}, which is not a number")),
            },
            (FromPg::Timestamptz, Value::Text(s)) => match pg_timestamptz_to_rfc3339(s) {
                Some(t) => {
                    *v = Value::Text(t);
                    Ok(())
                }
                None => Err(format!("{s:?}, which is not a timestamp SQLite can hold")),
            },
            (_, other) => Err(other.kind().to_owned()),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+00` (timestamptz output under TimeZone UTC) as RFC 3339
/// UTC: `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `.uuuuuuZ` when the value has microseconds.
pub(crate) fn pg_timestamptz_to_rfc3339(s: &str) -> Option<String> {
    let local = s.strip_suffix("+00")?;
    let (date, time) = local.split_once(' ')?;
    let (whole, frac) = time.split_once('.').unwrap_or((time, ""));
    // chrono checks the calendar and clock (4-digit years; no BC, no infinity).
    chrono::NaiveDateTime::parse_from_str(&format!("{date} {whole}"), "%Y-%m-%d %H:%M:%S").ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) || date.len() != 10 {
        return None;
    }
    let width = if frac.trim_end_matches('0').len() <= 3 {
        3
    } else {
        6
    };
    let mut digits = frac.to_owned();
    digits.truncate(width);
    while digits.len() < width {
        digits.push('0');
    }
    Some(format!("{date}T{whole}.{digits}Z"))
}

/// Applies the column conversions of a PostgreSQL archive to one row; the error says which
/// column holds what.
fn from_postgres(
    convert: &[(String, FromPg)],
    row: &mut [Value],
) -> std::result::Result<(), String> {
    for ((col, conv), v) in convert.iter().zip(row.iter_mut()) {
        conv.apply(v)
            .map_err(|what| format!("holds {what} in column {col:?}"))?;
    }
    Ok(())
}

/// Receives the document as it is parsed.
pub(crate) trait Sink {
    /// The top-level fields, called once before the first table.
    fn header(&mut self, schema_version: i64) -> Result<()>;
    /// A table begins: its name and (column name, declared type) pairs.
    fn table(&mut self, name: &str, columns: &[(String, String)]) -> Result<()>;
    /// One row of the current table. The sink may take the values out of `row`.
    fn row(&mut self, row: &mut Vec<Value>) -> Result<()>;
    /// The current table's rows are done.
    fn end_table(&mut self) -> Result<()>;
}

/// Parses `reader` as `database.json`, feeding `sink`. Malformed documents are rejected with
/// a message saying where; errors from the sink are returned as they are.
pub(crate) fn read(reader: impl Read, sink: &mut dyn Sink) -> Result<()> {
    read_capped(reader, sink, MAX_ROW_BYTES, MAX_HEADER_BYTES)
}

/// [`read`] with other caps (the tests use small ones).
pub(crate) fn read_capped(
    reader: impl Read,
    sink: &mut dyn Sink,
    row_cap: u64,
    header_cap: u64,
) -> Result<()> {
    let budget = Rc::new(Budget {
        used: Cell::new(0),
        cap: Cell::new(header_cap),
        tripped: Cell::new(false),
    });
    let reader = Capped {
        inner: reader,
        budget: Rc::clone(&budget),
    };
    let mut state = State {
        sink,
        error: None,
        budget,
        row_cap,
        header_cap,
        place: Place::Document,
        table_name: None,
        tables: 0,
        from_postgres: false,
        convert: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = DocSeed { state: &mut state }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(e) = state.error.take() {
        return Err(e);
    }
    if state.budget.tripped.get() {
        return Err(state.too_large());
    }
    parsed.map_err(|e| {
        if e.is_io() {
            // The reader stack reports its own, more specific, errors through its guard.
            Error::rejected("database.json could not be read to its end").with_source(e)
        } else {
            Error::rejected(format!("database.json is not a valid database dump: {e}"))
        }
    })
}

/// Bytes taken from the file since the last mark, against the cap of the current stretch.
struct Budget {
    used: Cell<u64>,
    cap: Cell<u64>,
    /// The read was stopped by the cap (the io error serde_json reports is this).
    tripped: Cell<bool>,
}

impl Budget {
    fn mark(&self, cap: u64) {
        self.used.set(0);
        self.cap.set(cap);
    }
}

/// Counts and caps what the parser reads (see [`Budget`]). It sits above the caller's
/// buffered reader because serde_json reads byte by byte: the count is exact.
struct Capped<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (used, cap) = (self.budget.used.get(), self.budget.cap.get());
        if used >= cap {
            self.budget.tripped.set(true);
            return Err(io::Error::other("database.json: over the size cap"));
        }
        let room = usize::try_from(cap - used).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        let n = self.inner.read(&mut buf[..len])?;
        self.budget.used.set(used + n as u64);
        Ok(n)
    }
}

/// Where the parser is, for the message when a stretch is over its cap.
#[derive(Clone, Copy)]
enum Place {
    Document,
    TableHeader,
    /// 1-based row number within the current table.
    Row(u64),
}

struct State<'s> {
    sink: &'s mut dyn Sink,
    /// The sink's error, kept aside while serde unwinds with a placeholder.
    error: Option<Error>,
    budget: Rc<Budget>,
    row_cap: u64,
    header_cap: u64,
    place: Place,
    /// The current table's name once read, and how many tables have begun.
    table_name: Option<String>,
    tables: u64,
    /// The document was dumped from PostgreSQL: its values go through [`FromPg`].
    from_postgres: bool,
    /// Per column of the current table, when `from_postgres`.
    convert: Vec<(String, FromPg)>,
}

impl State<'_> {
    fn enter(&mut self, place: Place) {
        self.place = place;
        self.budget.mark(match place {
            Place::Row(_) => self.row_cap,
            Place::Document | Place::TableHeader => self.header_cap,
        });
    }

    /// The refusal for a stretch over its cap (or a row with too many values).
    fn too_large(&self) -> Error {
        let table = match &self.table_name {
            Some(name) => format!("table {name:?}"),
            None => format!("table number {}", self.tables),
        };
        Error::rejected(match self.place {
            Place::Row(n) => format!(
                "{table} row {n} in database.json is larger than {}, the most one row may take; the archive is refused",
                show_bytes(self.row_cap)
            ),
            Place::TableHeader => format!(
                "the header of {table} in database.json (its name and columns) is larger than {}; the archive is refused",
                show_bytes(self.header_cap)
            ),
            Place::Document => format!(
                "database.json has a field outside its tables larger than {}; the archive is refused",
                show_bytes(self.header_cap)
            ),
        })
    }

    fn call<E: de::Error>(&mut self, r: Result<()>) -> std::result::Result<(), E> {
        r.map_err(|e| {
            self.error = Some(e);
            E::custom("stopped by the consumer")
        })
    }
}

struct DocSeed<'a, 's> {
    state: &'a mut State<'s>,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a database dump object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let (mut format, mut engine, mut version, mut tables) = (false, false, None, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    let v: String = map.next_value()?;
                    if v != DATABASE_FORMAT {
                        return Err(de::Error::custom(format!(
                            "format is {v:?}, expected {DATABASE_FORMAT:?}"
                        )));
                    }
                    format = true;
                }
                "engine" => {
                    let v: String = map.next_value()?;
                    match v.as_str() {
                        "sqlite" => {}
                        // Read across engines through the type mapping (`FromPg`).
                        "postgres" => self.state.from_postgres = true,
                        _ => {
                            return Err(de::Error::custom(format!(
                                "engine {v:?} is not supported (sqlite or postgres)"
                            )));
                        }
                    }
                    engine = true;
                }
                "schema_version" => version = Some(map.next_value::<i64>()?),
                "tables" => {
                    let (true, true, Some(v)) = (format, engine, version) else {
                        return Err(de::Error::custom(
                            "format, engine and schema_version must come before tables",
                        ));
                    };
                    let r = self.state.sink.header(v);
                    self.state.call(r)?;
                    map.next_value_seed(TablesSeed {
                        state: &mut *self.state,
                    })?;
                    self.state.enter(Place::Document);
                    tables = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !tables {
            return Err(de::Error::custom("the tables field is missing"));
        }
        Ok(())
    }
}

struct TablesSeed<'a, 's> {
    state: &'a mut State<'s>,
}

impl<'de> DeserializeSeed<'de> for TablesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TablesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of tables")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq
            .next_element_seed(TableSeed {
                state: &mut *self.state,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct TableSeed<'a, 's> {
    state: &'a mut State<'s>,
}

impl<'de> DeserializeSeed<'de> for TableSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

#[derive(serde::Deserialize)]
struct Column {
    name: String,
    #[serde(rename = "type", default)]
    declared_type: String,
}

impl<'de> Visitor<'de> for TableSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        self.state.tables += 1;
        self.state.table_name = None;
        self.state.enter(Place::TableHeader);
        let mut name: Option<String> = None;
        let mut columns: Option<Vec<(String, String)>> = None;
        let mut rows = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "schema" if self.state.from_postgres => {
                    let schema: String = map.next_value()?;
                    if schema != "public" {
                        return Err(de::Error::custom(format!(
                            "the archive was made from a PostgreSQL database and holds schema {schema:?}; SQLite has only the tables of schema \"public\", so this archive restores into PostgreSQL only"
                        )));
                    }
                }
                "name" => {
                    let n: String = map.next_value()?;
                    self.state.table_name = Some(n.clone());
                    name = Some(n);
                }
                "columns" => {
                    let cols: Vec<Column> = map.next_value()?;
                    columns = Some(
                        cols.into_iter()
                            .map(|c| (c.name, c.declared_type))
                            .collect(),
                    );
                }
                "rows" => {
                    let (Some(name), Some(columns)) = (&name, &columns) else {
                        return Err(de::Error::custom(
                            "a table's name and columns must come before its rows",
                        ));
                    };
                    if self.state.from_postgres {
                        self.state.convert = columns
                            .iter()
                            .map(|(col, ty)| {
                                FromPg::for_type(ty).map(|c| (col.clone(), c)).ok_or((col, ty))
                            })
                            .collect::<std::result::Result<_, _>>()
                            .map_err(|(col, ty)| {
                                de::Error::custom(format!(
                                    "the archive was made from a PostgreSQL database: column {col:?} of table {name:?} has type {ty}, which Backstop does not map to SQLite (the README lists the types it maps); restore this archive into PostgreSQL"
                                ))
                            })?;
                    }
                    let r = self.state.sink.table(name, columns).map_err(|e| {
                        if self.state.from_postgres && e.kind() == crate::ErrorKind::Rejected {
                            Error::rejected(format!(
                                "{e} (the archive was made from a PostgreSQL database: it restores into SQLite only when it holds the reference schema's tables and columns)"
                            ))
                        } else {
                            e
                        }
                    });
                    self.state.call(r)?;
                    map.next_value_seed(RowsSeed {
                        state: &mut *self.state,
                        row: Vec::new(),
                    })?;
                    self.state.enter(Place::TableHeader);
                    let r = self.state.sink.end_table();
                    self.state.call(r)?;
                    rows = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !rows {
            return Err(de::Error::custom(format!(
                "table {} has no rows field",
                name.as_deref().unwrap_or("(unnamed)")
            )));
        }
        Ok(())
    }
}

struct RowsSeed<'a, 's> {
    state: &'a mut State<'s>,
    row: Vec<Value>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut n = 0;
        loop {
            n += 1;
            self.state.enter(Place::Row(n));
            if seq
                .next_element_seed(RowSeed {
                    row: &mut self.row,
                    n,
                })?
                .is_none()
            {
                break;
            }
            if self.state.from_postgres {
                let r = from_postgres(&self.state.convert, &mut self.row).map_err(|e| {
                    let table = self.state.table_name.as_deref().unwrap_or("(unnamed)");
                    Error::rejected(format!(
                        "table {table:?} row {n} in database.json {e}; SQLite cannot hold it, so this archive restores into PostgreSQL only"
                    ))
                });
                self.state.call(r)?;
            }
            let r = self.state.sink.row(&mut self.row);
            self.state.call(r)?;
        }
        Ok(())
    }
}

struct RowSeed<'a> {
    row: &'a mut Vec<Value>,
    /// The row's number in its table, for the error.
    n: u64,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row (a list of values)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        self.row.clear();
        while let Some(v) = seq.next_element::<Value>()? {
            if self.row.len() == MAX_ROW_VALUES {
                return Err(de::Error::custom(format!(
                    "row {} has more than {MAX_ROW_VALUES} values, the most SQLite allows",
                    self.n
                )));
            }
            self.row.push(v);
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an SQLite value")
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Unsupported("an integer too large for SQLite")))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::Real(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::Text(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Unsupported("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = None;
        let mut keys = 0;
        while let Some(key) = map.next_key::<String>()? {
            keys += 1;
            out = Some(match key.as_str() {
                "$base64" => {
                    let s: String = map.next_value()?;
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_bytes())
                        .map(Value::Blob)
                        .unwrap_or(Value::Unsupported("invalid base64"))
                }
                "$real" => match map.next_value::<String>()?.as_str() {
                    "inf" => Value::Real(f64::INFINITY),
                    "-inf" => Value::Real(f64::NEG_INFINITY),
                    _ => Value::Unsupported("an unknown $real value"),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Value::Unsupported("an object")
                }
            });
        }
        Ok(match (keys, out) {
            (1, Some(v)) => v,
            _ => Value::Unsupported("an object"),
        })
    }
}

/// `64 MiB` for whole MiB, else `1000 bytes`.
fn show_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// Entry points for the property-based fuzz targets (`tests/fuzz_dbjson.rs`), not an API:
/// the reader with a collecting sink, and a writer using the dump's own value encoders.
#[doc(hidden)]
pub mod fuzzing {
    use super::Sink;
    pub use super::Value;
    use crate::Result;

    pub use super::{MAX_HEADER_BYTES, MAX_ROW_BYTES, MAX_ROW_VALUES};

    /// A parsed document: the schema version and (name, columns, rows) per table.
    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Doc {
        pub schema_version: i64,
        pub tables: Vec<Table>,
    }

    /// One table: name, (column name, declared type) pairs, rows.
    pub type Table = (String, Vec<(String, String)>, Vec<Vec<Value>>);

    impl Sink for Doc {
        fn header(&mut self, schema_version: i64) -> Result<()> {
            self.schema_version = schema_version;
            Ok(())
        }
        fn table(&mut self, name: &str, columns: &[(String, String)]) -> Result<()> {
            self.tables
                .push((name.into(), columns.to_vec(), Vec::new()));
            Ok(())
        }
        fn row(&mut self, row: &mut Vec<Value>) -> Result<()> {
            if let Some(t) = self.tables.last_mut() {
                t.2.push(std::mem::take(row));
            }
            Ok(())
        }
        fn end_table(&mut self) -> Result<()> {
            Ok(())
        }
    }

    /// Parses with the production caps.
    pub fn read(bytes: &[u8]) -> Result<Doc> {
        let mut doc = Doc::default();
        super::read(bytes, &mut doc)?;
        Ok(doc)
    }

    /// Parses with other caps.
    pub fn read_capped(reader: impl std::io::Read, row_cap: u64, header_cap: u64) -> Result<Doc> {
        let mut doc = Doc::default();
        super::read_capped(reader, &mut doc, row_cap, header_cap)?;
        Ok(doc)
    }

    /// Writes `doc` in the layout of the dump, with the dump's value encoders.
    pub fn write(doc: &Doc) -> Vec<u8> {
        use crate::archive::dump::{write_blob, write_f64, write_i64, write_str};
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"format\":\"");
        out.extend_from_slice(crate::archive::DATABASE_FORMAT.as_bytes());
        out.extend_from_slice(b"\",\"engine\":\"sqlite\",\"schema_version\":");
        write_i64(&mut out, doc.schema_version);
        out.extend_from_slice(b",\"tables\":[");
        for (ti, (name, columns, rows)) in doc.tables.iter().enumerate() {
            if ti > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"\n{\"name\":");
            write_str(&mut out, name);
            out.extend_from_slice(b",\"columns\":[");
            for (ci, (col, ty)) in columns.iter().enumerate() {
                if ci > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"name\":");
                write_str(&mut out, col);
                out.extend_from_slice(b",\"type\":");
                write_str(&mut out, ty);
                out.push(b'}');
            }
            out.extend_from_slice(b"],\"rows\":[");
            for (ri, row) in rows.iter().enumerate() {
                if ri > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"\n[");
                for (vi, v) in row.iter().enumerate() {
                    if vi > 0 {
                        out.push(b',');
                    }
                    match v {
                        Value::Null | Value::Unsupported(_) => out.extend_from_slice(b"null"),
                        Value::Int(i) => write_i64(&mut out, *i),
                        Value::Bool(b) => {
                            out.extend_from_slice(if *b { b"true" } else { b"false" })
                        }
                        Value::Real(f) => write_f64(&mut out, *f),
                        Value::Text(s) => write_str(&mut out, s),
                        Value::Blob(b) => write_blob(&mut out, b),
                    }
                }
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"\n]}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, columns, rows) of one table.
    type Table = (String, Vec<(String, String)>, Vec<Vec<Value>>);

    #[derive(Default)]
    struct Collect {
        version: i64,
        tables: Vec<Table>,
    }

    impl Sink for Collect {
        fn header(&mut self, schema_version: i64) -> Result<()> {
            self.version = schema_version;
            Ok(())
        }
        fn table(&mut self, name: &str, columns: &[(String, String)]) -> Result<()> {
            self.tables.push((name.into(), columns.to_vec(), vec![]));
            Ok(())
        }
        fn row(&mut self, row: &mut Vec<Value>) -> Result<()> {
            self.tables
                .last_mut()
                .expect("table started")
                .2
                .push(std::mem::take(row));
            Ok(())
        }
        fn end_table(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reads_every_value_kind() {
        let doc = r#"{"format":"backstop-database","engine":"sqlite","schema_version":3,"tables":[
            {"name":"t","columns":[{"name":"a","type":"INTEGER"},{"name":"b","type":""}],"rows":[
            [1,"x"],[-2,{"$base64":"AAE="}],[1.5,null],[{"$real":"-inf"},[1]]]}]}"#;
        let mut c = Collect::default();
        read(doc.as_bytes(), &mut c).expect("valid");
        assert_eq!(c.version, 3);
        let rows = &c.tables[0].2;
        assert_eq!(rows[0], vec![Value::Int(1), Value::Text("x".into())]);
        assert_eq!(rows[1], vec![Value::Int(-2), Value::Blob(vec![0, 1])]);
        assert_eq!(rows[2], vec![Value::Real(1.5), Value::Null]);
        assert_eq!(
            rows[3],
            vec![Value::Real(f64::NEG_INFINITY), Value::Unsupported("a list")]
        );
    }

    #[test]
    fn rejects_a_foreign_format_and_truncation() {
        let mut c = Collect::default();
        let e = read(&br#"{"format":"other","tables":[]}"#[..], &mut c).expect_err("foreign");
        assert!(
            e.message().contains("format is \"other\""),
            "{}",
            e.message()
        );
        let e = read(&br#"{"format":"backstop-database","engine":"sqlite","schema_version":1,"tables":[{"name":"t""#[..], &mut c)
            .expect_err("truncated");
        assert_eq!(e.kind(), crate::ErrorKind::Rejected);
    }

    const PG_HEAD: &str =
        r#"{"format":"backstop-database","engine":"postgres","schema_version":0,"tables":["#;

    fn read_pg(tables: &str) -> Result<Collect> {
        let mut c = Collect::default();
        read(format!("{PG_HEAD}{tables}]}}").as_bytes(), &mut c).map(|()| c)
    }

    #[test]
    fn a_postgres_dump_reads_as_sqlite_values_through_the_type_mapping() {
        let c = read_pg(
            r#"{"schema":"public","name":"t","columns":[
                {"name":"b","type":"boolean"},{"name":"f","type":"double precision"},
                {"name":"r","type":"real"},{"name":"ts","type":"timestamp with time zone"},
                {"name":"v","type":"character varying(20)"},{"name":"j","type":"jsonb"},
                {"name":"i","type":"bigint"},{"name":"x","type":"bytea"}],
              "primary_key":["i"],"rows":[
                [true,"9","-0.5","2026-11-20 18:00:00+00","a\tb","{\"k\": 1}",7,{"$base64":"AAE="}],
                [false,"Infinity","1e-45","2026-01-02 03:04:05.12+00",null,null,null,null],
                [null,"-Infinity",null,"2026-01-02 03:04:05.1234+00","","[]",-1,null]]}"#,
        )
        .expect("the mapped types read");
        let (name, columns, rows) = &c.tables[0];
        assert_eq!(name, "t");
        assert_eq!(columns[3], ("ts".into(), "timestamp with time zone".into()));
        assert_eq!(
            rows[0],
            vec![
                Value::Int(1),
                Value::Real(9.0),
                Value::Real(-0.5),
                Value::Text("2026-11-20T18:00:00.000Z".into()),
                Value::Text("a\tb".into()),
                Value::Text("{\"k\": 1}".into()),
                Value::Int(7),
                Value::Blob(vec![0, 1]),
            ]
        );
        assert_eq!(rows[1][0], Value::Int(0));
        assert_eq!(rows[1][1], Value::Real(f64::INFINITY));
        assert_eq!(rows[1][2], Value::Real(1e-45));
        assert_eq!(rows[1][3], Value::Text("2026-01-02T03:04:05.120Z".into()));
        assert_eq!(rows[2][0], Value::Null);
        assert_eq!(rows[2][1], Value::Real(f64::NEG_INFINITY));
        assert_eq!(
            rows[2][3],
            Value::Text("2026-01-02T03:04:05.123400Z".into())
        );
    }

    #[test]
    fn a_postgres_dump_that_sqlite_cannot_hold_is_refused_with_its_reason() {
        let refused = |tables: &str| {
            read_pg(tables)
                .map(|_| ())
                .expect_err("refused")
                .message()
                .to_owned()
        };
        let e = refused(
            r#"{"schema":"public","name":"t","columns":[{"name":"n","type":"numeric(10,2)"}],"rows":[]}"#,
        );
        assert!(e.contains("\"n\"") && e.contains("numeric(10,2)"), "{e}");
        let e = refused(
            r#"{"schema":"public","name":"t","columns":[{"name":"a","type":"integer[]"}],"rows":[]}"#,
        );
        assert!(e.contains("integer[]"), "{e}");
        let e = refused(
            r#"{"schema":"app","name":"t","columns":[{"name":"a","type":"integer"}],"rows":[]}"#,
        );
        assert!(e.contains("\"app\""), "{e}");
        let e = refused(
            r#"{"schema":"public","name":"t","columns":[{"name":"f","type":"double precision"}],"rows":[["1"],["NaN"]]}"#,
        );
        assert!(
            e.contains("row 2") && e.contains("NaN") && e.contains("\"f\""),
            "{e}"
        );
        for ts in [
            "infinity",
            "0044-03-15 12:00:00+00 BC",
            "2026-01-02 03:04:05+02",
        ] {
            let e = refused(&format!(
                r#"{{"schema":"public","name":"t","columns":[{{"name":"ts","type":"timestamp with time zone"}}],"rows":[["{ts}"]]}}"#
            ));
            assert!(e.contains(ts) && e.contains("row 1"), "{e}");
        }
        // A boolean where the mapping expects something else stays refused by the sink's
        // checks; a boolean in a SQLite archive is still "a boolean".
        let mut c = Collect::default();
        read(
            &br#"{"format":"backstop-database","engine":"sqlite","schema_version":1,"tables":[{"name":"t","columns":[{"name":"a"}],"rows":[[true]]}]}"#[..],
            &mut c,
        )
        .unwrap();
        assert_eq!(c.tables[0].2[0][0].kind(), "a boolean");
    }

    #[test]
    fn timestamps_keep_their_instant_to_the_microsecond() {
        for (pg, rfc) in [
            ("2026-11-20 18:00:00+00", "2026-11-20T18:00:00.000Z"),
            ("2026-11-20 18:00:00.5+00", "2026-11-20T18:00:00.500Z"),
            ("2026-11-20 18:00:00.123+00", "2026-11-20T18:00:00.123Z"),
            (
                "2026-11-20 18:00:00.000001+00",
                "2026-11-20T18:00:00.000001Z",
            ),
            ("2026-11-20 18:00:00.1234+00", "2026-11-20T18:00:00.123400Z"),
        ] {
            assert_eq!(pg_timestamptz_to_rfc3339(pg).as_deref(), Some(rfc), "{pg}");
            // And the RFC 3339 form reads back as the same instant.
            let back = chrono::DateTime::parse_from_rfc3339(rfc).unwrap();
            let orig = chrono::DateTime::parse_from_str(pg, "%Y-%m-%d %H:%M:%S%.f%#z").unwrap();
            assert_eq!(back, orig, "{pg}");
        }
        for bad in [
            "2026-13-01 00:00:00+00",
            "2026-11-20T18:00:00+00",
            "12026-01-01 00:00:00+00",
            "2026-11-20 18:00:00.1234567+00",
        ] {
            assert_eq!(pg_timestamptz_to_rfc3339(bad), None, "{bad}");
        }
    }
}
