//! Fuzz target for the streaming `database.json` reader (`archive::dbjson`), and the tests of
//! its size caps.
//!
//! - arbitrary bytes and near-valid documents (a valid dump with bytes flipped, cut, or a
//!   hostile snippet spliced in): the reader never panics, never hangs, holds bounded memory,
//!   and every refusal is a Rejected error with a message;
//! - valid documents round-trip through the dump's encoders and the reader, bit for bit;
//! - real content databases round-trip through `dump_database`, the reader and
//!   `load_database` (fewer cases: each one builds two SQLite files);
//! - the row cap: a row at the cap loads, one byte over is refused naming the table and row,
//!   and the database is left as it was.
//!
//! CI runs a bounded number of cases; `PROPTEST_CASES=N` runs more (see `fuzz.sh`).

mod fuzz_support;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use engine::ErrorKind;
use engine::archive::dbjson_fuzzing::{self as dbjson, Doc, MAX_ROW_BYTES, MAX_ROW_VALUES, Value};
use engine::archive::{self, SchemaInfo};
use proptest::prelude::*;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: fuzz_support::Counting = fuzz_support::Counting;

/// One case may take this long before the watchdog calls it a hang (debug build, loaded
/// machine: a case normally takes well under a millisecond).
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Bytes a case may hold beyond 16x its input: the parser's fixed buffers, a row and the
/// collected document (which the test itself keeps, about 10x the text for tiny values).
const HEAP_SLACK: usize = 1 << 20;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![
            any::<f64>().prop_filter("NaN is written as null", |f| !f.is_nan()),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(f64::MAX),
        ]
        .prop_map(Value::Real),
        ".{0,40}".prop_map(Value::Text),
        any::<String>().prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Blob),
    ]
}

fn doc() -> impl Strategy<Value = Doc> {
    let table = (
        any::<String>(),
        proptest::collection::vec((any::<String>(), "[A-Z ()0-9]{0,12}"), 0..5),
        1usize..5,
    )
        .prop_flat_map(|(name, columns, width)| {
            let rows = proptest::collection::vec(proptest::collection::vec(value(), width), 0..6);
            (Just(name), Just(columns), rows)
        });
    (any::<i64>(), proptest::collection::vec(table, 0..4)).prop_map(|(schema_version, tables)| {
        Doc {
            schema_version,
            tables,
        }
    })
}

/// Values compared bit for bit (a REAL that comes back one ULP off is a corrupted restore).
fn same(a: &Doc, b: &Doc) -> bool {
    let v = |x: &Value, y: &Value| match (x, y) {
        (Value::Real(p), Value::Real(q)) => p.to_bits() == q.to_bits(),
        _ => x == y,
    };
    a.schema_version == b.schema_version
        && a.tables.len() == b.tables.len()
        && a.tables.iter().zip(&b.tables).all(|(s, t)| {
            s.0 == t.0
                && s.1 == t.1
                && s.2.len() == t.2.len()
                && s.2
                    .iter()
                    .zip(&t.2)
                    .all(|(r, q)| r.len() == q.len() && r.iter().zip(q).all(|(x, y)| v(x, y)))
        })
}

/// Snippets a hostile or broken writer might produce, spliced into a valid document.
const SNIPPETS: &[&str] = &[
    "{\"$base64\":\"!!!\"}",
    "{\"$base64\":1}",
    "{\"$real\":\"nan\"}",
    "{\"$real\":\"inf\",\"x\":1}",
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "0.0000000000000000000000000000000000000000000000001e-400",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"\\x\"",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
    "true",
    "null",
    "]",
    "}",
    ",",
    ":",
    "\"tables\":[]",
    "\"rows\":[[1]]",
    "\"name\":\"t\"",
    "\"columns\":[{\"type\":1}]",
    "\u{feff}",
    "\u{0}",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Splice { at: usize, snippet: usize },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 0..SNIPPETS.len())
            .prop_map(|(at, snippet)| Mutation::Splice { at, snippet }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match *m {
        Mutation::Flip { at: i, xor } => {
            let i = at(i);
            bytes[i] ^= xor;
        }
        Mutation::Truncate { at: i } => bytes.truncate(at(i)),
        Mutation::Splice { at: i, snippet } => {
            let i = at(i);
            bytes.splice(i..i, SNIPPETS[snippet].bytes());
        }
        Mutation::Delete { at: i, len } => {
            let i = at(i);
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate { at: i, len } => {
            let i = at(i);
            let end = (i + len).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(i..i, copy);
        }
    }
}

/// Reads `bytes` under the watchdog and the allocation counter and checks what holds for
/// every input: an answer, in bounded memory, and a refusal is Rejected with a message.
fn read_checked(bytes: &[u8]) -> engine::Result<Doc> {
    let _watch = fuzz_support::watch(CASE_LIMIT, "fuzz_dbjson", bytes);
    let (out, peak) = fuzz_support::peak_heap(|| dbjson::read(bytes));
    assert!(
        peak <= 16 * bytes.len() + HEAP_SLACK,
        "reading {} bytes held {peak} bytes",
        bytes.len()
    );
    if let Err(e) = &out {
        assert_eq!(e.kind(), ErrorKind::Rejected, "{}", e.detailed());
        assert!(!e.message().is_empty());
    }
    out
}

proptest! {
    #![proptest_config(fuzz_support::config(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_checked(&bytes);
    }

    #[test]
    fn arbitrary_json_after_a_valid_header_never_panics(tail in "[\\[\\]{}\",:0-9a-z$.eE+\\- \\\\]{0,200}") {
        let text = format!("{{\"format\":\"backstop-database\",\"engine\":\"sqlite\",\"schema_version\":1,\"tables\":[{tail}");
        let _ = read_checked(text.as_bytes());
    }

    #[test]
    fn valid_documents_round_trip_bit_for_bit(d in doc()) {
        let bytes = dbjson::write(&d);
        let back = read_checked(&bytes).map_err(|e| TestCaseError::fail(e.detailed()))?;
        prop_assert!(same(&d, &back), "wrote {d:?}\nread  {back:?}");
    }

    #[test]
    fn near_valid_documents_never_panic(d in doc(), ms in proptest::collection::vec(mutation(), 1..4)) {
        let mut bytes = dbjson::write(&d);
        for m in &ms {
            mutate(&mut bytes, m);
        }
        let _ = read_checked(&bytes);
    }
}

// ---- Real databases: dump_database -> reader -> load_database ----

async fn open(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open sqlite")
}

/// A table with one column of each affinity (and one without a type).
const SCHEMA: &str =
    "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, a);";

async fn schema_db(path: &Path) -> SqlitePool {
    let pool = open(path).await;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.expect("schema");
    pool
}

/// Every row as SQL literals (`quote()` keeps the storage class; REALs are compared by their
/// bits through `hex(r)` would need a blob, so they go through Rust below instead).
async fn snapshot(pool: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT quote(id) || ',' || quote(i) || ',' || printf('%!.17g', r) || ',' || typeof(r) || ',' || quote(s) || ',' || quote(b) || ',' || quote(a) || ',' || typeof(a) FROM t ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("snapshot")
}

#[derive(Debug, Clone)]
struct Row {
    i: Option<i64>,
    r: Option<f64>,
    s: Option<String>,
    b: Option<Vec<u8>>,
    a: Value,
}

fn db_row() -> impl Strategy<Value = Row> {
    (
        proptest::option::of(any::<i64>()),
        // SQLite itself stores NaN as NULL and -0.0 as 0 (an integral REAL is stored as an
        // integer), before Backstop sees them.
        proptest::option::of(
            any::<f64>()
                .prop_filter("SQLite stores NaN as NULL", |f| !f.is_nan())
                .prop_map(|f| if f == 0.0 { 0.0 } else { f }),
        ),
        proptest::option::of(any::<String>()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        value(),
    )
        .prop_map(|(i, r, s, b, a)| Row { i, r, s, b, a })
}

async fn insert(pool: &SqlitePool, rows: &[Row]) {
    for (id, row) in rows.iter().enumerate() {
        let q = sqlx::query("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)")
            .bind(id as i64)
            .bind(row.i)
            .bind(row.r)
            .bind(row.s.clone())
            .bind(row.b.clone());
        let q = match &row.a {
            Value::Null | Value::Unsupported(_) => q.bind(None::<i64>),
            Value::Int(v) => q.bind(*v),
            Value::Bool(v) => q.bind(i64::from(*v)),
            Value::Real(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.clone()),
            Value::Blob(v) => q.bind(v.clone()),
        };
        q.execute(pool).await.expect("insert");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(fuzz_support::config_divided(48, 200))]

    #[test]
    fn content_databases_round_trip_through_dump_reader_and_load(rows in proptest::collection::vec(db_row(), 0..12)) {
        let rt = runtime();
        rt.block_on(async {
            let tmp = tempfile::tempdir().expect("tempdir");
            let src = schema_db(&tmp.path().join("src.db")).await;
            insert(&src, &rows).await;
            let dest = tmp.path().join("database.json");
            archive::dump_database(&src, 0, &dest, &CancellationToken::new()).await.expect("dump");
            let text = std::fs::read(&dest).expect("read dump");
            let doc = read_checked(&text).expect("the dump reads back");
            assert_eq!(doc.tables.len(), 1);
            assert_eq!(doc.tables[0].2.len(), rows.len());
            // The REAL column comes back bit for bit (snapshot's %.17g would hide a ULP).
            for (row, read) in rows.iter().zip(&doc.tables[0].2) {
                match (row.r, &read[2]) {
                    (None, Value::Null) => {}
                    (Some(f), Value::Real(g)) => assert_eq!(f.to_bits(), g.to_bits(), "{f} came back as {g}"),
                    (want, got) => panic!("REAL {want:?} came back as {got:?}"),
                }
            }
            let schema = archive::content_schema(&src).await.expect("schema");
            let fresh = schema_db(&tmp.path().join("fresh.db")).await;
            archive::load_database(&fresh, &dest, &schema, &CancellationToken::new()).await.expect("load");
            assert_eq!(snapshot(&fresh).await, snapshot(&src).await);
        });
    }
}

// ---- The size caps ----

/// A document with one table `t` of one TEXT column and one row holding a string of `n`
/// bytes; returns the text and the bytes the row spans (from after `"rows":[` to its `]`).
fn one_row_doc(n: usize) -> (Vec<u8>, u64) {
    let head = br#"{"format":"backstop-database","engine":"sqlite","schema_version":0,"tables":[{"name":"t","columns":[{"name":"s","type":"TEXT"}],"rows":["#;
    let mut out = head.to_vec();
    let row_start = out.len();
    out.extend_from_slice(b"\n[\"");
    out.resize(out.len() + n, b'x');
    out.extend_from_slice(b"\"]");
    let row_bytes = (out.len() - row_start) as u64;
    out.extend_from_slice(b"]}]}\n");
    (out, row_bytes)
}

#[test]
fn a_row_at_the_cap_reads_and_one_byte_over_is_refused_naming_table_and_row() {
    let (doc, row) = one_row_doc(1000);
    let ok = dbjson::read_capped(&doc[..], row, 4096).expect("a row of exactly the cap reads");
    assert_eq!(ok.tables[0].2[0], vec![Value::Text("x".repeat(1000))]);
    let err = dbjson::read_capped(&doc[..], row - 1, 4096).expect_err("one byte over");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(
        err.message(),
        format!(
            "table \"t\" row 1 in database.json is larger than {} bytes, the most one row may take; the archive is refused",
            row - 1
        )
    );
    // The second row of a table is counted from the separator after the first.
    let two =
        String::from_utf8(doc.clone())
            .expect("utf8")
            .replacen("\"]]}", "\"],\n[\"yy\"]]}", 1);
    let err = dbjson::read_capped(two.as_bytes(), 7, 4096).expect_err("row 1 is over 7");
    assert!(err.message().contains("row 1 "), "{}", err.message());
    let small = one_row_doc(1).0;
    let two = String::from_utf8(small)
        .expect("utf8")
        .replacen("\"]]}", "\"],\n[\"yyyy\"]]}", 1);
    // Row 1 is `\n["x"]` (6 bytes), row 2 `,\n["yyyy"]` (10 bytes).
    dbjson::read_capped(two.as_bytes(), 10, 4096).expect("rows of 6 and 10 bytes read under 10");
    let err = dbjson::read_capped(two.as_bytes(), 9, 4096).expect_err("row 2 is 10 bytes");
    assert!(
        err.message()
            .contains("table \"t\" row 2 in database.json is larger than 9 bytes"),
        "{}",
        err.message()
    );
}

#[test]
fn a_header_over_its_cap_is_refused_naming_the_table() {
    let long = "c".repeat(5000);
    let doc = format!(
        r#"{{"format":"backstop-database","engine":"sqlite","schema_version":1,"tables":[{{"name":"t","columns":[{{"name":"{long}","type":"TEXT"}}],"rows":[]}}]}}"#
    );
    dbjson::read_capped(doc.as_bytes(), 100, 8192).expect("under the header cap");
    let err = dbjson::read_capped(doc.as_bytes(), 100, 4096).expect_err("over");
    assert_eq!(
        err.message(),
        "the header of table \"t\" in database.json (its name and columns) is larger than 4096 bytes; the archive is refused"
    );
    let doc = format!(
        r#"{{"format":"backstop-database","engine":"sqlite","schema_version":1,"junk":"{long}","tables":[]}}"#
    );
    let err = dbjson::read_capped(doc.as_bytes(), 100, 4096).expect_err("over");
    assert!(
        err.message()
            .starts_with("database.json has a field outside its tables larger than 4096 bytes"),
        "{}",
        err.message()
    );
}

#[test]
fn a_row_with_more_values_than_sqlite_allows_is_refused() {
    let mut doc = br#"{"format":"backstop-database","engine":"sqlite","schema_version":1,"tables":[{"name":"t","columns":[],"rows":[["#.to_vec();
    let values = vec!["0"; MAX_ROW_VALUES];
    let at_max = [
        doc.clone(),
        values.join(",").into_bytes(),
        b"]]}]}".to_vec(),
    ]
    .concat();
    let d = dbjson::read(&at_max).expect("32767 values read");
    assert_eq!(d.tables[0].2[0].len(), MAX_ROW_VALUES);
    doc.extend_from_slice(values.join(",").as_bytes());
    doc.extend_from_slice(b",0]]}]}");
    let err = dbjson::read(&doc).expect_err("one value over");
    assert!(
        err.message()
            .contains("row 1 has more than 32767 values, the most SQLite allows"),
        "{}",
        err.message()
    );
}

/// An endless string in one cell: the reader stops after the cap, holding memory of the order
/// of the cap, not of the input (a real archive could hold gigabytes there).
#[test]
fn an_endless_value_is_refused_after_the_cap_without_being_read() {
    struct Endless {
        head: std::io::Cursor<Vec<u8>>,
        served: u64,
    }
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.head.read(buf)?;
            if n > 0 {
                self.served += n as u64;
                return Ok(n);
            }
            buf.fill(b'a');
            self.served += buf.len() as u64;
            Ok(buf.len())
        }
    }
    let head = br#"{"format":"backstop-database","engine":"sqlite","schema_version":1,"tables":[{"name":"t","columns":[{"name":"s","type":"TEXT"}],"rows":[[""#;
    let mut src = Endless {
        head: std::io::Cursor::new(head.to_vec()),
        served: 0,
    };
    let cap = 8 << 20;
    let (err, peak) = fuzz_support::peak_heap(|| {
        dbjson::read_capped(std::io::BufReader::new(&mut src), cap, 4096).expect_err("refused")
    });
    assert!(
        err.message()
            .starts_with("table \"t\" row 1 in database.json is larger than 8 MiB"),
        "{}",
        err.message()
    );
    assert!(
        src.served < cap + (1 << 20),
        "read {} bytes for a cap of {cap}",
        src.served
    );
    assert!(
        peak < 3 * cap as usize,
        "held {peak} bytes for a cap of {cap}"
    );
}

/// The production cap, both sides, through `load_database` on a real database: a row just
/// under 64 MiB loads; one just over is refused with its table and row, changing nothing.
#[test]
fn load_takes_a_row_just_under_64_mib_and_refuses_one_over_changing_nothing() {
    runtime().block_on(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pool = open(&tmp.path().join("app.db")).await;
        sqlx::raw_sql("CREATE TABLE t (s TEXT); INSERT INTO t VALUES ('before');")
            .execute(&pool)
            .await
            .expect("schema");
        let schema: SchemaInfo = archive::content_schema(&pool).await.expect("schema");
        let path = tmp.path().join("database.json");
        let framing = one_row_doc(0).1;

        let (doc, row) = one_row_doc((MAX_ROW_BYTES - framing) as usize);
        assert_eq!(row, MAX_ROW_BYTES);
        std::fs::write(&path, &doc).expect("write");
        drop(doc);
        archive::load_database(&pool, &path, &schema, &CancellationToken::new())
            .await
            .expect("a row of exactly 64 MiB loads");
        let len: i64 = sqlx::query_scalar("SELECT length(s) FROM t").fetch_one(&pool).await.expect("len");
        assert_eq!(len as u64, MAX_ROW_BYTES - framing);

        sqlx::raw_sql("DELETE FROM t; INSERT INTO t VALUES ('before');").execute(&pool).await.expect("reset");
        let (doc, row) = one_row_doc((MAX_ROW_BYTES - framing + 1) as usize);
        assert_eq!(row, MAX_ROW_BYTES + 1);
        std::fs::write(&path, &doc).expect("write");
        drop(doc);
        let err = archive::load_database(&pool, &path, &schema, &CancellationToken::new())
            .await
            .expect_err("one byte over 64 MiB is refused");
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert_eq!(
            err.message(),
            "table \"t\" row 1 in database.json is larger than 64 MiB, the most one row may take; the archive is refused"
        );
        let rows: Vec<String> = sqlx::query_scalar("SELECT s FROM t").fetch_all(&pool).await.expect("rows");
        assert_eq!(rows, ["before"], "a refused load changes nothing");
    });
}
