//! Streaming reader of `database.json`, shared by validation and the load: the document is
//! walked with a serde visitor that hands each table header and each row to a [`Sink`] as soon
//! as it is parsed, so memory holds one row, never the file.
//!
//! The reader requires the order the dump writes: `format`, `engine` and `schema_version`
//! before `tables`, and in each table `name` and `columns` before `rows`.

use std::fmt;
use std::io::Read;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::DATABASE_FORMAT;
use crate::{Error, Result};

/// One SQLite value as read from `database.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
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
            Value::Unsupported(what) => what,
        }
    }
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
    let mut state = State { sink, error: None };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = DocSeed { state: &mut state }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(e) = state.error.take() {
        return Err(e);
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

struct State<'s> {
    sink: &'s mut dyn Sink,
    /// The sink's error, kept aside while serde unwinds with a placeholder.
    error: Option<Error>,
}

impl State<'_> {
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
                    if v != "sqlite" {
                        return Err(de::Error::custom(format!(
                            "engine {v:?} is not supported (only sqlite)"
                        )));
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
        let mut name: Option<String> = None;
        let mut columns: Option<Vec<(String, String)>> = None;
        let mut rows = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value()?),
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
                    let r = self.state.sink.table(name, columns);
                    self.state.call(r)?;
                    map.next_value_seed(RowsSeed {
                        state: &mut *self.state,
                        row: Vec::new(),
                    })?;
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
        while seq
            .next_element_seed(RowSeed { row: &mut self.row })?
            .is_some()
        {
            let r = self.state.sink.row(&mut self.row);
            self.state.call(r)?;
        }
        Ok(())
    }
}

struct RowSeed<'a> {
    row: &'a mut Vec<Value>,
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
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Value, E> {
        Ok(Value::Unsupported("a boolean"))
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
}
