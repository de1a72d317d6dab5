//! Streaming reader of `database.json` for the load, in the same style as the engine's
//! SQLite reader (a serde visitor that hands each table header and each row on as soon as it
//! is parsed; memory holds one row, never the file), but writing each row straight into
//! COPY text instead of building values.
//!
//! Two uses: [`scan`] reads the header and the tables' names and columns and counts rows
//! (values skipped), which the load needs before it changes anything (which tables to empty,
//! in which order); [`read_rows`] then converts every row for `COPY ... FROM STDIN`.
//!
//! Order required, as the dump writes it: `format`, `engine`, `schema_version` before
//! `tables`; in each table `name` (and `schema`, if present) and `columns` before `rows`.
//! Unknown keys are skipped, so SQLite archives (no `schema`) read too.

use std::fmt;
use std::io::Read;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::copytext;
use crate::{DATABASE_FORMAT, Error, Result};

/// What [`scan`] found: everything but the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `"postgres"` or `"sqlite"` (the engine the archive was made on).
    pub engine: String,
    pub schema_version: i64,
    /// In the archive's order.
    pub tables: Vec<SummaryTable>,
}

/// One table of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryTable {
    /// Absent in SQLite archives (the load then uses `public`).
    pub schema: Option<String>,
    pub name: String,
    pub columns: Vec<String>,
    pub rows: u64,
}

/// How one archive column goes into COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Not loaded (a generated column): the value is read and dropped.
    Skip,
    /// Any column but bytea: strings, numbers, booleans.
    Text,
    /// A bytea column: `{"$base64": ..}` only.
    Bytea,
}

/// Receives converted rows from [`read_rows`].
pub(crate) trait RowSink {
    /// Table number `index` of the archive begins; returns its plan (one slot per archive
    /// column) and the names used in messages (display name, column names).
    fn table(&mut self, index: usize, name: &str) -> Result<(Vec<Slot>, String, Vec<String>)>;
    /// `buf` holds one or more complete COPY rows; the sink may take it.
    fn rows(&mut self, buf: &mut Vec<u8>) -> Result<()>;
    /// The current table is done.
    fn end_table(&mut self, rows: u64) -> Result<()>;
}

/// Rows are handed on when this much COPY text is buffered.
const FLUSH: usize = 1 << 20;

/// Reads the header and table layout of `reader`, counting rows without converting them.
pub fn scan(reader: impl Read) -> Result<Summary> {
    let mut summary = Summary {
        engine: String::new(),
        schema_version: 0,
        tables: Vec::new(),
    };
    let mut mode = Mode::Scan(&mut summary);
    parse(reader, &mut mode)?;
    Ok(summary)
}

/// Converts every row of `reader` for COPY, feeding `sink`.
pub(crate) fn read_rows(reader: impl Read, sink: &mut dyn RowSink) -> Result<()> {
    let mut mode = Mode::Rows(sink);
    parse(reader, &mut mode)
}

enum Mode<'a> {
    Scan(&'a mut Summary),
    Rows(&'a mut dyn RowSink),
}

struct State<'a, 'm> {
    mode: &'a mut Mode<'m>,
    /// An error of the sink, kept while serde unwinds with a placeholder.
    error: Option<Error>,
    tables: usize,
}

impl State<'_, '_> {
    fn call<T, E: de::Error>(&mut self, r: Result<T>) -> std::result::Result<T, E> {
        r.map_err(|e| {
            self.error = Some(e);
            E::custom("stopped by the consumer")
        })
    }
}

fn parse(reader: impl Read, mode: &mut Mode<'_>) -> Result<()> {
    let mut state = State {
        mode,
        error: None,
        tables: 0,
    };
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 20, reader));
    let parsed = DocSeed { state: &mut state }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(e) = state.error.take() {
        return Err(e);
    }
    parsed.map_err(|e| {
        if e.is_io() {
            Error::Io {
                context: "database.json could not be read to its end".into(),
                source: std::io::Error::other(e),
            }
        } else {
            Error::archive(format!("database.json is not a valid database dump: {e}"))
        }
    })
}

struct DocSeed<'a, 's, 'm> {
    state: &'a mut State<'s, 'm>,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a database dump object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let (mut format, mut engine, mut version, mut tables) = (false, None, None, false);
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
                "engine" => engine = Some(map.next_value::<String>()?),
                "schema_version" => version = Some(map.next_value::<i64>()?),
                "tables" => {
                    let (true, Some(engine), Some(v)) = (format, engine.take(), version) else {
                        return Err(de::Error::custom(
                            "format, engine and schema_version must come before tables",
                        ));
                    };
                    if let Mode::Scan(s) = self.state.mode {
                        s.engine = engine;
                        s.schema_version = v;
                    }
                    map.next_value_seed(TablesSeed { state: self.state })?;
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

struct TablesSeed<'a, 's, 'm> {
    state: &'a mut State<'s, 'm>,
}

impl<'de> DeserializeSeed<'de> for TablesSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TablesSeed<'_, '_, '_> {
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

struct TableSeed<'a, 's, 'm> {
    state: &'a mut State<'s, 'm>,
}

impl<'de> DeserializeSeed<'de> for TableSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

#[derive(serde::Deserialize)]
struct Column {
    name: String,
}

impl<'de> Visitor<'de> for TableSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut schema: Option<String> = None;
        let mut name: Option<String> = None;
        let mut columns: Option<Vec<String>> = None;
        let mut rows = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "schema" => schema = Some(map.next_value()?),
                "name" => name = Some(map.next_value()?),
                "columns" => {
                    let cols: Vec<Column> = map.next_value()?;
                    columns = Some(cols.into_iter().map(|c| c.name).collect());
                }
                "rows" => {
                    let (Some(name), Some(columns)) = (&name, &columns) else {
                        return Err(de::Error::custom(
                            "a table's name and columns must come before its rows",
                        ));
                    };
                    let index = self.state.tables;
                    self.state.tables += 1;
                    match &mut self.state.mode {
                        Mode::Scan(s) => {
                            let n = map.next_value_seed(CountRows)?;
                            s.tables.push(SummaryTable {
                                schema: schema.clone(),
                                name: name.clone(),
                                columns: columns.clone(),
                                rows: n,
                            });
                        }
                        Mode::Rows(sink) => {
                            let r = sink.table(index, name);
                            let (slots, table, column_names) = self.state.call(r)?;
                            if slots.len() != columns.len() {
                                return Err(de::Error::custom(format!(
                                    "table {table} changed while it was being loaded"
                                )));
                            }
                            let mut rows_seed = RowsSeed {
                                state: &mut *self.state,
                                ctx: Ctx {
                                    slots,
                                    table,
                                    columns: column_names,
                                },
                                buf: Vec::with_capacity(FLUSH + (64 << 10)),
                                rows: 0,
                            };
                            map.next_value_seed(&mut rows_seed)?;
                            let RowsSeed {
                                state,
                                mut buf,
                                rows,
                                ..
                            } = rows_seed;
                            if !buf.is_empty() {
                                let r = match &mut state.mode {
                                    Mode::Rows(sink) => sink.rows(&mut buf),
                                    Mode::Scan(_) => Ok(()),
                                };
                                state.call(r)?;
                            }
                            let r = match &mut state.mode {
                                Mode::Rows(sink) => sink.end_table(rows),
                                Mode::Scan(_) => Ok(()),
                            };
                            state.call(r)?;
                        }
                    }
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

/// Counts the rows of a table, skipping their values.
struct CountRows;

impl<'de> DeserializeSeed<'de> for CountRows {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CountRows {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<u64, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// The current table, for conversion and messages.
struct Ctx {
    slots: Vec<Slot>,
    table: String,
    columns: Vec<String>,
}

struct RowsSeed<'a, 's, 'm> {
    state: &'a mut State<'s, 'm>,
    ctx: Ctx,
    buf: Vec<u8>,
    rows: u64,
}

impl<'de> DeserializeSeed<'de> for &mut RowsSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &mut RowsSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        loop {
            let row = RowSeed {
                ctx: &self.ctx,
                buf: &mut self.buf,
                row: self.rows + 1,
            };
            if seq.next_element_seed(row)?.is_none() {
                return Ok(());
            }
            self.rows += 1;
            if self.buf.len() >= FLUSH {
                let r = match &mut self.state.mode {
                    Mode::Rows(sink) => sink.rows(&mut self.buf),
                    Mode::Scan(_) => Ok(()),
                };
                self.state.call(r)?;
                self.buf.clear();
            }
        }
    }
}

struct RowSeed<'a> {
    ctx: &'a Ctx,
    buf: &'a mut Vec<u8>,
    /// 1-based, for messages.
    row: u64,
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
        let start = self.buf.len();
        let mut i = 0;
        let mut written = 0;
        loop {
            let Some(&slot) = self.ctx.slots.get(i) else {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "row {} of table {} has more values than the table has columns",
                        self.row, self.ctx.table
                    )));
                }
                break;
            };
            if slot != Slot::Skip && written > 0 {
                self.buf.push(b'\t');
            }
            let value = ValueSeed {
                slot,
                buf: &mut *self.buf,
            };
            match seq.next_element_seed(value)? {
                None => {
                    return Err(de::Error::custom(format!(
                        "row {} of table {} has {i} values for {} columns",
                        self.row,
                        self.ctx.table,
                        self.ctx.slots.len()
                    )));
                }
                Some(Err(what)) => {
                    self.buf.truncate(start);
                    return Err(de::Error::custom(format!(
                        "column {} of table {}, row {}: {what} cannot be loaded",
                        self.ctx.columns[i], self.ctx.table, self.row
                    )));
                }
                Some(Ok(())) => {}
            }
            if slot != Slot::Skip {
                written += 1;
            }
            i += 1;
        }
        self.buf.push(b'\n');
        Ok(())
    }
}

/// Writes one JSON value as a COPY field (nothing for [`Slot::Skip`]); `Err(what)` for a
/// value the column cannot take, described for the message.
struct ValueSeed<'a> {
    slot: Slot,
    buf: &'a mut Vec<u8>,
}

type Fit = std::result::Result<(), &'static str>;

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Fit;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Fit, D::Error> {
        if self.slot == Slot::Skip {
            IgnoredAny::deserialize(d)?;
            return Ok(Ok(()));
        }
        d.deserialize_any(self)
    }
}

use serde::Deserialize as _;

impl ValueSeed<'_> {
    fn not_bytea(&self, what: &'static str) -> Option<Fit> {
        (self.slot == Slot::Bytea).then_some(Err(what))
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Fit;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column value")
    }
    fn visit_unit<E>(self) -> std::result::Result<Fit, E> {
        self.buf.extend_from_slice(b"\\N");
        Ok(Ok(()))
    }
    fn visit_none<E>(self) -> std::result::Result<Fit, E> {
        self.buf.extend_from_slice(b"\\N");
        Ok(Ok(()))
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Fit, E> {
        if let Some(e) = self.not_bytea("a boolean for a bytea column") {
            return Ok(e);
        }
        self.buf.push(if v { b't' } else { b'f' });
        Ok(Ok(()))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Fit, E> {
        if let Some(e) = self.not_bytea("a number for a bytea column") {
            return Ok(e);
        }
        let _ = serde_json::to_writer(&mut *self.buf, &v);
        Ok(Ok(()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Fit, E> {
        if let Some(e) = self.not_bytea("a number for a bytea column") {
            return Ok(e);
        }
        let _ = serde_json::to_writer(&mut *self.buf, &v);
        Ok(Ok(()))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Fit, E> {
        if let Some(e) = self.not_bytea("a number for a bytea column") {
            return Ok(e);
        }
        // Shortest round-trip form (ryu), which float8in reads back exactly.
        let _ = serde_json::to_writer(&mut *self.buf, &v);
        Ok(Ok(()))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Fit, E> {
        if let Some(e) = self.not_bytea("a string for a bytea column (bytea is {\"$base64\"})") {
            return Ok(e);
        }
        copytext::escape_into(self.buf, v);
        Ok(Ok(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Fit, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("a JSON list (arrays are written as PostgreSQL text)"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Fit, A::Error> {
        let mut out: Fit = Err("an object");
        let mut keys = 0;
        while let Some(key) = map.next_key::<String>()? {
            keys += 1;
            out = match key.as_str() {
                "$base64" => {
                    let s: String = map.next_value()?;
                    match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                        Err(_) => Err("invalid base64"),
                        Ok(_) if self.slot != Slot::Bytea => {
                            Err("binary data ($base64) for a column that is not bytea")
                        }
                        Ok(bytes) => {
                            copytext::bytea_into(self.buf, &bytes);
                            Ok(())
                        }
                    }
                }
                // SQLite archives write its infinities this way.
                "$real" => match (map.next_value::<String>()?.as_str(), self.slot) {
                    (_, Slot::Bytea) => Err("a number for a bytea column"),
                    ("inf", _) => {
                        self.buf.extend_from_slice(b"Infinity");
                        Ok(())
                    }
                    ("-inf", _) => {
                        self.buf.extend_from_slice(b"-Infinity");
                        Ok(())
                    }
                    _ => Err("an unknown $real value"),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Err("an object")
                }
            };
        }
        Ok(if keys == 1 { out } else { Err("an object") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect {
        slots: Vec<Slot>,
        out: Vec<u8>,
        ends: Vec<u64>,
    }

    impl RowSink for Collect {
        fn table(&mut self, _: usize, name: &str) -> Result<(Vec<Slot>, String, Vec<String>)> {
            let cols = (0..self.slots.len()).map(|i| format!("c{i}")).collect();
            Ok((self.slots.clone(), name.to_owned(), cols))
        }
        fn rows(&mut self, buf: &mut Vec<u8>) -> Result<()> {
            self.out.append(buf);
            Ok(())
        }
        fn end_table(&mut self, rows: u64) -> Result<()> {
            self.ends.push(rows);
            Ok(())
        }
    }

    const DOC: &str = r#"{"format":"backstop-database","engine":"postgres","schema_version":2,"tables":[
        {"schema":"s","name":"t","columns":[{"name":"a"},{"name":"b"},{"name":"g"},{"name":"c"}],"rows":[
        [1,"x\ty\\",7,{"$base64":"AP8="}],[null,true,8,null],[1.5,{"$real":"-inf"},[1],{"$base64":""}]]}]}"#;

    #[test]
    fn scan_counts_and_rows_convert() {
        let s = scan(DOC.as_bytes()).expect("scan");
        assert_eq!(s.engine, "postgres");
        assert_eq!(s.schema_version, 2);
        assert_eq!(s.tables[0].schema.as_deref(), Some("s"));
        assert_eq!(s.tables[0].columns, ["a", "b", "g", "c"]);
        assert_eq!(s.tables[0].rows, 3);
        let mut c = Collect {
            slots: vec![Slot::Text, Slot::Text, Slot::Skip, Slot::Bytea],
            out: vec![],
            ends: vec![],
        };
        read_rows(DOC.as_bytes(), &mut c).expect("rows");
        assert_eq!(
            String::from_utf8(c.out).expect("utf8"),
            "1\tx\\ty\\\\\t\\\\x00ff\n\\N\tt\t\\N\n1.5\t-Infinity\t\\\\x\n"
        );
        assert_eq!(c.ends, [3]);
    }

    #[test]
    fn values_a_column_cannot_take_are_named() {
        let mut c = Collect {
            slots: vec![Slot::Bytea, Slot::Text, Slot::Text, Slot::Text],
            out: vec![],
            ends: vec![],
        };
        let e = read_rows(DOC.as_bytes(), &mut c).expect_err("1 into bytea");
        assert!(
            e.to_string()
                .contains("column c0 of table t, row 1: a number for a bytea column"),
            "{e}"
        );
        let doc = DOC.replace(r#"{"$base64":""}]"#, r#"{"$base64":""},5]"#);
        let e = scan(doc.as_bytes()).map(|_| ()).and_then(|()| {
            let mut c = Collect {
                slots: vec![Slot::Text, Slot::Text, Slot::Skip, Slot::Bytea],
                out: vec![],
                ends: vec![],
            };
            read_rows(doc.as_bytes(), &mut c)
        });
        assert!(
            e.expect_err("long row")
                .to_string()
                .contains("more values than the table has columns")
        );
    }
}
