//! Dump and load against a real PostgreSQL 15 (see `common`), one database per test.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::PgCluster;
use content_pg::{Error, LoadStats, SESSION_SETTINGS, catalog};
use futures::StreamExt;
use sqlx::{Connection, PgConnection};

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{e}\nin: {sql}"));
}

async fn dump(conn: &mut PgConnection) -> (Vec<u8>, content_pg::DumpStats) {
    content_pg::dump(conn, 7, Vec::new()).await.expect("dump")
}

async fn load(conn: &mut PgConnection, doc: &[u8]) -> Result<LoadStats, Error> {
    let doc = doc.to_vec();
    content_pg::load(
        conn,
        move || Ok(Cursor::new(doc.clone())),
        || Ok::<(), Infallible>(()),
    )
    .await
}

/// `COPY t TO STDOUT` of every user table, under the canonical settings, keyed by name.
async fn copy_all(conn: &mut PgConnection) -> BTreeMap<String, Vec<u8>> {
    let cat = catalog::read(conn).await.expect("catalog");
    let mut tx = conn.begin().await.expect("begin");
    exec(&mut tx, SESSION_SETTINGS).await;
    let mut out = BTreeMap::new();
    for t in &cat.tables {
        let mut bytes = Vec::new();
        // COPY of a partitioned table itself is refused; through a SELECT it reads the
        // partitions. A plain table's COPY is its own rows only (not inheritance children).
        let sql = if t.partitioned {
            format!("COPY (SELECT * FROM {}) TO STDOUT", t.sql_name())
        } else {
            format!("COPY {} TO STDOUT", t.sql_name())
        };
        let mut s = tx.copy_out_raw(&sql).await.expect("copy out");
        while let Some(chunk) = s.next().await {
            bytes.extend_from_slice(&chunk.expect("chunk"));
        }
        drop(s);
        out.insert(t.display_name(), bytes);
    }
    tx.commit().await.expect("commit");
    out
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .expect("count")
}

/// The document as a JSON value (small test documents only), for editing.
fn edit(doc: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(doc).expect("valid json");
    f(&mut v);
    serde_json::to_vec(&v).expect("json")
}

const EVERY_TYPE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'Very "happy"');
CREATE SCHEMA "Other Schema";
CREATE TABLE "Order" (
    id bigint PRIMARY KEY,
    "select" text, "MixedCase" text,
    b boolean, i2 smallint, i4 integer, i8 bigint,
    num numeric, num_fixed numeric(40,20), f4 real, f8 double precision,
    t text, vc varchar(20), ch char(5), by bytea,
    js json, jsb jsonb,
    arr int[], arr2 text[], arr_lb int[], f8arr float8[],
    ts timestamptz, tsn timestamp, d date, tm time, tmtz timetz, iv interval,
    u uuid, m mood, m_arr mood[], r int4range, inet_col inet, mon_free numeric(5,2)
);
CREATE TABLE "Other Schema"."user" (
    id serial PRIMARY KEY,
    "Order" bigint REFERENCES "Order"(id),
    note text
);
"#;

const EVERY_VALUE: &str = r#"
INSERT INTO "Order" VALUES
 (1, 'from', 'Case', true, -32768, -2147483648, -9223372036854775808,
  '123456789012345678901234567890.123456789012345678901234567890', '-0.00000000000000000001',
  3.4028235e38, 1.7976931348623157e308,
  E'tab\there back\\slash new\nline cr\r bell\x07 \u00e9\u4e2d\U0001F600 \\N', 'varchar', 'ab',
  decode(repeat('00ff7f80', 4) || '5c0a09', 'hex'),
  '{"a": 1, "a": 2,   "b" : [1, 2.50]}', '{"z": 1, "a": [true, null], "n": 1.000}',
  '{1,NULL,3}', '{{"a b","c\"d"},{NULL,"e\\f"}}', '[0:1]={1,2}', '{NaN,Infinity,-Infinity,-0}',
  '2024-02-29 23:59:59.999999+05:30', '1999-12-31 23:59:59.5', '0044-03-15 BC', '24:00:00',
  '12:34:56.789+05:45', '1 year 2 mons -3 days 04:05:06.789',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'Very "happy"', '{sad,"Very \"happy\""}',
  '[1,10)', '192.168.0.1/24', 1.50),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL),
 (3, '', '', false, 32767, 2147483647, 9223372036854775807, 'NaN', 'NaN', 'NaN', '-0',
  '', '', '', '', '[]', '{}', '{}', '{}', '[-2:-1][3:3]={{1},{2}}', '{}',
  'infinity', '-infinity', 'infinity', '00:00:00', '00:00:00+00', '-178000000 years',
  '00000000-0000-0000-0000-000000000000', 'sad', '{}', 'empty', '::1', -999.99),
 (4, 'x', 'y', true, 0, 0, 0, '-0.0', '0', 'Infinity', '-Infinity', 'ü', 'ü', 'ü', '\x00',
  '"just a string"', 'null', '{NULL}', '{NULL,NULL}', '[5:5]={7}', '{0.1,1e-300}',
  '1970-01-01 00:00:00+00', '2000-01-01', '5874897-12-31', '23:59:59.999999', '23:59:59-15:59',
  '-1 days -00:00:00.000001', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'ok', '{NULL}', '(,)',
  'fe80::1/64', 0);
INSERT INTO "Other Schema"."user" ("Order", note) VALUES (1, 'a'), (NULL, NULL), (4, E'\\');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_byte_for_byte() {
    let cluster = PgCluster::shared();
    let src = cluster.database("types_src").await;
    let dst = cluster.database("types_dst").await;
    // Unusual session defaults on both sides: the dump and load must not depend on them.
    for (db, style) in [(&src, "SQL, DMY"), (&dst, "German")] {
        let mut su = db.superuser().await;
        exec(
            &mut su,
            &format!(
                "ALTER DATABASE {} SET DateStyle = '{style}'; ALTER DATABASE {} SET TimeZone = 'Asia/Kathmandu';
                 ALTER DATABASE {} SET IntervalStyle = 'iso_8601'; ALTER DATABASE {} SET extra_float_digits = -3;
                 ALTER DATABASE {} SET bytea_output = 'escape';",
                db.name, db.name, db.name, db.name, db.name
            ),
        )
        .await;
    }
    let mut s = src.connect().await;
    exec(&mut s, EVERY_TYPE).await;
    exec(&mut s, EVERY_VALUE).await;
    let mut d = dst.connect().await;
    exec(&mut d, EVERY_TYPE).await;

    let (doc, stats) = dump(&mut s).await;
    assert_eq!(stats.tables, 2);
    assert_eq!(stats.rows, 7);
    let v: serde_json::Value = serde_json::from_slice(&doc).expect("the dump is JSON");
    assert_eq!(v["engine"], "postgres");
    assert_eq!(v["schema_version"], 7);
    // Parents first, names and types as the catalog has them.
    assert_eq!(v["tables"][0]["name"], "Order");
    assert_eq!(v["tables"][1]["schema"], "Other Schema");
    let cols = &v["tables"][0]["columns"];
    assert_eq!(cols[8]["type"], "numeric(40,20)");
    assert_eq!(cols[29]["type"], "public.mood[]");
    let row1 = &v["tables"][0]["rows"][0];
    assert_eq!(row1[3], true);
    assert_eq!(row1[6], i64::MIN);
    assert_eq!(row1[15], r#"{"a": 1, "a": 2,   "b" : [1, 2.50]}"#);
    assert_eq!(row1[19], "[0:1]={1,2}");
    assert_eq!(row1[21], "2024-02-29 18:29:59.999999+00");
    assert!(row1[14]["$base64"].is_string());
    assert_eq!(v["tables"][0]["rows"][1][5], serde_json::Value::Null);
    assert_eq!(v["tables"][0]["rows"][2][7], "NaN");

    let loaded = load(&mut d, &doc).await.expect("load");
    assert_eq!((loaded.tables, loaded.rows), (2, 7));
    assert_eq!(loaded.engine, "postgres");
    assert!(loaded.recreated_foreign_keys.is_empty());
    let (a, b) = (copy_all(&mut s).await, copy_all(&mut d).await);
    assert_eq!(a.len(), 2);
    for (name, bytes) in &a {
        assert_eq!(
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&b[name]),
            "table {name}"
        );
        assert_eq!(bytes, &b[name], "table {name}");
    }
    // And the dump of the copy is the same document.
    let (doc2, _) = dump(&mut d).await;
    assert_eq!(
        String::from_utf8_lossy(&doc),
        String::from_utf8_lossy(&doc2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_is_one_snapshot_under_a_concurrent_writer() {
    let cluster = PgCluster::shared();
    let db = cluster.database("snapshot").await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE a (id serial PRIMARY KEY, pad text);
         CREATE TABLE b (id serial PRIMARY KEY, pad text);
         INSERT INTO a (pad) SELECT repeat('x', 50) FROM generate_series(1, 60000);
         INSERT INTO b (pad) SELECT repeat('y', 50) FROM generate_series(1, 60000);",
    )
    .await;
    // The writer adds one row to each table per transaction, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, commits) = (stop.clone(), commits.clone());
        let mut w = db.connect().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut tx = w.begin().await.expect("begin");
                for sql in [
                    "INSERT INTO a (pad) VALUES ('w')",
                    "INSERT INTO b (pad) VALUES ('w')",
                ] {
                    sqlx::query(sql).execute(&mut *tx).await.expect("insert");
                }
                tx.commit().await.expect("commit");
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while commits.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = commits.load(Ordering::Relaxed);
    let (doc, stats) = dump(&mut c).await;
    let during = commits.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(during > 0, "the writer must commit while the dump runs");
    let rows: Vec<u64> = stats.table_rows.iter().map(|t| t.2).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], rows[1], "a and b from one snapshot: {rows:?}");
    assert!(rows[0] >= 60_005);
    // The document agrees with the stats.
    let v: serde_json::Value = serde_json::from_slice(&doc).expect("json");
    assert_eq!(
        v["tables"][1]["rows"].as_array().map(Vec::len),
        Some(rows[1] as usize)
    );
    eprintln!("{during} transactions committed during the dump");

    // The document (several 1 MiB buffers) loads back into a fresh database, all rows.
    let copy = cluster.database("snapshot_dst").await;
    let mut d = copy.connect().await;
    exec(
        &mut d,
        "CREATE TABLE a (id serial PRIMARY KEY, pad text);
         CREATE TABLE b (id serial PRIMARY KEY, pad text);",
    )
    .await;
    let loaded = load(&mut d, &doc).await.expect("load");
    assert_eq!(loaded.rows, rows[0] + rows[1]);
    assert_eq!(count(&mut d, "b").await, rows[1] as i64);
}

/// A self-reference and a cycle between two tables.
fn fk_schema(deferrable: bool) -> String {
    let d = if deferrable {
        "DEFERRABLE INITIALLY DEFERRED"
    } else {
        ""
    };
    format!(
        "CREATE TABLE node (id int PRIMARY KEY, parent int REFERENCES node(id) {d});
         CREATE TABLE husband (id int PRIMARY KEY, wife int);
         CREATE TABLE wife (id int PRIMARY KEY, husband int REFERENCES husband(id) {d});
         ALTER TABLE husband ADD CONSTRAINT husband_wife_fkey FOREIGN KEY (wife) REFERENCES wife(id) {d};
         CREATE TABLE leaf (id int PRIMARY KEY, node int NOT NULL REFERENCES node(id) {d});"
    )
}

const FK_ROWS: &str = "
    INSERT INTO node VALUES (1, NULL), (2, 1), (3, 2);
    UPDATE node SET parent = 3 WHERE id = 1;
    INSERT INTO husband VALUES (1, NULL), (2, NULL);
    INSERT INTO wife VALUES (10, 1), (20, 2);
    UPDATE husband SET wife = id * 10;
    INSERT INTO leaf VALUES (1, 3), (2, 1);";

async fn fk_round_trip(tag: &str, deferrable: bool) {
    let cluster = PgCluster::shared();
    let src = cluster.database(&format!("{tag}_src")).await;
    let dst = cluster.database(&format!("{tag}_dst")).await;
    let mut s = src.connect().await;
    exec(&mut s, &fk_schema(deferrable)).await;
    exec(&mut s, FK_ROWS).await;
    let mut d = dst.connect().await;
    exec(&mut d, &fk_schema(deferrable)).await;
    // Something to replace: the load empties the tables first.
    exec(
        &mut d,
        "INSERT INTO node VALUES (99, 99); INSERT INTO leaf VALUES (99, 99);",
    )
    .await;

    let (doc, _) = dump(&mut s).await;
    let stats = load(&mut d, &doc).await.expect("load in the dump's order");
    // husband and wife reference each other: whichever comes first, its key points forward.
    if deferrable {
        assert!(stats.recreated_foreign_keys.is_empty());
    } else {
        assert_eq!(
            stats.recreated_foreign_keys,
            ["public.husband.husband_wife_fkey"]
        );
    }
    assert_eq!(copy_all(&mut s).await, copy_all(&mut d).await);

    // Children first: the reverse of the dump's order loads too.
    let reversed = edit(&doc, |v| {
        v["tables"].as_array_mut().expect("tables").reverse();
    });
    let stats = load(&mut d, &reversed).await.expect("load children first");
    assert_eq!(stats.rows, 9);
    assert_eq!(copy_all(&mut s).await, copy_all(&mut d).await);
    if !deferrable {
        // wife -> husband and leaf -> node now point forward.
        assert_eq!(stats.recreated_foreign_keys.len(), 2, "{stats:?}");
    }
    // The re-created keys are real and enforced again.
    let e = sqlx::query("INSERT INTO leaf VALUES (50, 12345)")
        .execute(&mut d)
        .await
        .expect_err("the key is back");
    assert!(e.to_string().contains("leaf_node_fkey"), "{e}");

    // A row pointing nowhere fails the whole load.
    let broken = edit(&doc, |v| {
        let leaf = v["tables"]
            .as_array_mut()
            .expect("tables")
            .iter_mut()
            .find(|t| t["name"] == "leaf")
            .expect("leaf");
        leaf["rows"][0][1] = 777.into();
    });
    let before = copy_all(&mut d).await;
    let e = load(&mut d, &broken).await.expect_err("dangling reference");
    assert!(matches!(e, Error::Archive { .. }), "{e:?}");
    assert!(e.to_string().contains("leaf_node_fkey"), "{e}");
    assert_eq!(before, copy_all(&mut d).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_load_in_any_order_when_deferrable() {
    fk_round_trip("fk_deferrable", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_load_in_any_order_when_not_deferrable() {
    fk_round_trip("fk_plain", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreating_a_key_needs_ownership_and_says_so_deferrable_keys_do_not() {
    let cluster = PgCluster::shared();
    cluster.role("fk_loader", "pw-loader").await;
    for deferrable in [false, true] {
        let db = cluster
            .database(&format!("fk_own_{}", u8::from(deferrable)))
            .await;
        let mut c = db.connect().await;
        exec(&mut c, &fk_schema(deferrable)).await;
        exec(&mut c, FK_ROWS).await;
        exec(
            &mut c,
            &format!(
                "GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA public TO fk_loader;
                 GRANT CONNECT ON DATABASE {} TO fk_loader;",
                db.name
            ),
        )
        .await;
        let (doc, _) = dump(&mut c).await;
        let mut l = content_pg::connect(&db.url_as("fk_loader", "pw-loader"))
            .await
            .expect("loader connects");
        let r = load(&mut l, &doc).await;
        if deferrable {
            r.expect("deferred keys need no ownership");
        } else {
            let e = r.expect_err("a cycle of plain keys needs ownership");
            let Error::MissingPrivilege {
                user,
                privilege,
                object,
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(user, "fk_loader");
            assert!(privilege.starts_with("ownership"), "{privilege}");
            assert!(privilege.contains("husband_wife_fkey"), "{privilege}");
            assert_eq!(object, "table public.husband");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_generated_and_serial_columns_load_and_inserts_continue() {
    let cluster = PgCluster::shared();
    let src = cluster.database("ident_src").await;
    let dst = cluster.database("ident_dst").await;
    let schema = "CREATE TABLE item (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            serial_no serial,
            byd int GENERATED BY DEFAULT AS IDENTITY (START WITH 100 INCREMENT BY -1 MINVALUE 1 MAXVALUE 100),
            price numeric NOT NULL,
            doubled numeric GENERATED ALWAYS AS (price * 2) STORED);
        CREATE SEQUENCE free_seq;
        CREATE TABLE note (n bigint DEFAULT nextval('free_seq'), body text);";
    let mut s = src.connect().await;
    exec(&mut s, schema).await;
    exec(
        &mut s,
        "INSERT INTO item (price) SELECT g FROM generate_series(1, 50) g;
         DELETE FROM item WHERE id < 40;
         INSERT INTO note (body) SELECT 'x' FROM generate_series(1, 7);",
    )
    .await;
    let mut d = dst.connect().await;
    exec(&mut d, schema).await;
    let (doc, _) = dump(&mut s).await;
    let v: serde_json::Value = serde_json::from_slice(&doc).expect("json");
    let cols = &v["tables"][0]["columns"];
    assert_eq!(cols[0]["identity"], "always");
    assert_eq!(cols[4]["generated"], true);
    load(&mut d, &doc).await.expect("load");
    assert_eq!(copy_all(&mut s).await, copy_all(&mut d).await);
    // The application inserts right after the restore, without key conflicts.
    let (id, serial_no, byd, doubled): (i64, i32, i32, String) = sqlx::query_as(
        "INSERT INTO item (price) VALUES (21) RETURNING id, serial_no, byd, doubled::text",
    )
    .fetch_one(&mut d)
    .await
    .expect("insert after load");
    assert_eq!((id, serial_no, byd), (51, 51, 50));
    assert_eq!(doubled, "42");
    let n: i64 = sqlx::query_scalar("INSERT INTO note (body) VALUES ('y') RETURNING n")
        .fetch_one(&mut d)
        .await
        .expect("insert note");
    assert_eq!(n, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_load_changes_nothing() {
    let cluster = PgCluster::shared();
    let db = cluster.database("rollback").await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE first (id int PRIMARY KEY, v text);
         CREATE TABLE last (id int PRIMARY KEY, first int REFERENCES first(id), n int);
         INSERT INTO first VALUES (1, 'one'), (2, 'two');
         INSERT INTO last VALUES (1, 1, 10);",
    )
    .await;
    let (doc, _) = dump(&mut c).await;
    exec(
        &mut c,
        "INSERT INTO first VALUES (3, 'three'); INSERT INTO last VALUES (2, 3, 20);",
    )
    .await;
    let before = copy_all(&mut c).await;

    // A bad value in the last row of the last table.
    let bad = edit(&doc, |v| v["tables"][1]["rows"][0][2] = "ten".into());
    let e = load(&mut c, &bad).await.expect_err("bad integer");
    assert!(matches!(e, Error::Archive { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("public.last") && msg.contains("\"ten\""),
        "{msg}"
    );
    assert_eq!(before, copy_all(&mut c).await);

    // A value that is not JSON the loader takes.
    let bad = edit(&doc, |v| {
        v["tables"][1]["rows"][0][2] = serde_json::json!([1])
    });
    let e = load(&mut c, &bad).await.expect_err("a list");
    assert!(
        e.to_string()
            .contains("column n of table public.last, row 1"),
        "{e}"
    );
    assert_eq!(before, copy_all(&mut c).await);

    // A truncated document.
    let e = load(&mut c, &doc[..doc.len() - 10])
        .await
        .expect_err("truncated");
    assert!(matches!(e, Error::Archive { .. }), "{e:?}");
    assert_eq!(before, copy_all(&mut c).await);

    // A table the database does not have.
    let bad = edit(&doc, |v| v["tables"][1]["name"] = "gone".into());
    let e = load(&mut c, &bad).await.expect_err("missing table");
    assert!(
        e.to_string()
            .contains("table public.gone is in the archive"),
        "{e}"
    );

    // before_commit's failure rolls back, after everything was loaded.
    let docv = doc.clone();
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let e = content_pg::load(
        &mut c,
        move || Ok(Cursor::new(docv.clone())),
        move || {
            ran2.store(true, Ordering::SeqCst);
            Err(std::io::Error::other("swap failed"))
        },
    )
    .await
    .expect_err("hook fails");
    assert!(ran.load(Ordering::SeqCst));
    assert!(matches!(e, Error::BeforeCommit(_)), "{e:?}");
    assert_eq!(before, copy_all(&mut c).await);

    // And the good document still loads on the same connection.
    load(&mut c, &doc).await.expect("load");
    assert_eq!(count(&mut c, "first").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_outside_the_archive_keep_their_rows() {
    let cluster = PgCluster::shared();
    let src = cluster.database("outside_src").await;
    let dst = cluster.database("outside_dst").await;
    let base = "CREATE TABLE parent (id int PRIMARY KEY);";
    let mut s = src.connect().await;
    exec(&mut s, base).await;
    exec(&mut s, "INSERT INTO parent VALUES (1), (2);").await;
    let (doc, _) = dump(&mut s).await;

    let mut d = dst.connect().await;
    exec(&mut d, base).await;
    exec(
        &mut d,
        "CREATE SCHEMA extra;
         CREATE TABLE extra.keep (v text);
         CREATE TABLE extra.child (id int, parent int REFERENCES parent(id) ON DELETE CASCADE);
         INSERT INTO parent VALUES (1), (5);
         INSERT INTO extra.keep VALUES ('mine');
         INSERT INTO extra.child VALUES (1, 1);",
    )
    .await;
    let before = copy_all(&mut d).await;
    let e = load(&mut d, &doc)
        .await
        .expect_err("the cascade would empty extra.child");
    let Error::OutsideTable {
        outside,
        constraint,
        table,
        action,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (
            outside.as_str(),
            constraint.as_str(),
            table.as_str(),
            *action
        ),
        (
            "extra.child",
            "child_parent_fkey",
            "public.parent",
            "delete"
        )
    );
    assert_eq!(before, copy_all(&mut d).await);

    // Without rows to cascade into, the load goes ahead and leaves extra.* alone.
    exec(&mut d, "DELETE FROM extra.child").await;
    load(&mut d, &doc).await.expect("load");
    assert_eq!(count(&mut d, "extra.keep").await, 1);
    assert_eq!(count(&mut d, "parent").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_name_what_failed() {
    let cluster = PgCluster::shared();
    let db = cluster.database("conn").await;
    let sock = db.socket_dir.display().to_string();

    let e = content_pg::connect(&db.url_as(&db.owner, "wrong"))
        .await
        .expect_err("wrong password");
    assert!(matches!(e, Error::Authentication { .. }), "{e:?}");
    assert!(e.to_string().contains("conn_owner"), "{e}");

    let e = content_pg::connect(&format!(
        "postgres://{}@localhost/conn?host={sock}",
        db.owner
    ))
    .await
    .expect_err("no password");
    assert!(e.to_string().contains("no password was given"), "{e}");

    let e = content_pg::connect(&format!(
        "postgres://{}:{}@localhost/nosuchdb?host={sock}",
        db.owner, db.password
    ))
    .await
    .expect_err("missing database");
    assert!(matches!(e, Error::MissingDatabase { .. }), "{e:?}");
    assert!(e.to_string().contains("nosuchdb"), "{e}");

    let e = content_pg::connect(&format!(
        "postgres://{}:{}@localhost/conn?host=/nonexistent/dir",
        db.owner, db.password
    ))
    .await
    .expect_err("no server");
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/dir"), "{e}");

    let e = content_pg::connect("postgres://u@h:99999/db")
        .await
        .expect_err("bad port");
    assert!(matches!(e, Error::BadUrl { .. }), "{e:?}");

    // Connected, but not allowed to read one table: the dump names it.
    cluster.role("half_reader", "pw-half").await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE visible (id int); CREATE TABLE \"Secret\" (id int);
         GRANT SELECT ON visible TO half_reader;",
    )
    .await;
    let mut r = content_pg::connect(&db.url_as("half_reader", "pw-half"))
        .await
        .expect("connects");
    let e = content_pg::check_dump_access(&mut r)
        .await
        .expect_err("checked at start");
    assert!(
        e.to_string()
            .contains("lacks the SELECT privilege on table public.\"Secret\""),
        "{e}"
    );
    let e = content_pg::dump(&mut r, 1, Vec::new())
        .await
        .expect_err("no SELECT on Secret");
    let Error::MissingPrivilege {
        user,
        privilege,
        object,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (user.as_str(), privilege.as_str(), object.as_str()),
        ("half_reader", "SELECT", "table public.\"Secret\"")
    );
    // And the load names the missing INSERT.
    let (doc, _) = dump(&mut c).await;
    let e = load(&mut r, &doc).await.expect_err("no INSERT");
    assert!(
        e.to_string()
            .contains("lacks the INSERT privilege on table public."),
        "{e}"
    );
    // Granted, it works.
    exec(&mut c, "GRANT SELECT ON \"Secret\" TO half_reader").await;
    content_pg::check_dump_access(&mut r)
        .await
        .expect("granted");
    content_pg::dump(&mut r, 1, Vec::new()).await.expect("dump");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_style_archive_loads_into_public() {
    let cluster = PgCluster::shared();
    let db = cluster.database("from_sqlite").await;
    let mut c = db.connect().await;
    exec(
        &mut c,
        "CREATE TABLE channels (id bigint PRIMARY KEY, name text, logo bytea, enabled boolean, weight double precision)",
    )
    .await;
    let doc = br#"{"format":"backstop-database","engine":"sqlite","schema_version":3,"tables":[
        {"name":"channels","columns":[{"name":"id","type":"INTEGER"},{"name":"name","type":"TEXT"},
         {"name":"logo","type":"BLOB"},{"name":"enabled","type":"BOOLEAN"},{"name":"weight","type":"REAL"}],
         "rows":[[1,"One",{"$base64":"AAE="},1,0.5],[2,null,null,0,{"$real":"inf"}]]}]}"#;
    let stats = load(&mut c, doc).await.expect("load");
    assert_eq!(
        (stats.engine.as_str(), stats.schema_version, stats.rows),
        ("sqlite", 3, 2)
    );
    let t = copy_all(&mut c).await;
    assert_eq!(
        String::from_utf8_lossy(&t["public.channels"]),
        "1\tOne\t\\\\x0001\tt\t0.5\n2\t\\N\t\\N\tf\tInfinity\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_and_inherited_tables_round_trip_without_double_rows() {
    let cluster = PgCluster::shared();
    let src = cluster.database("parts_src").await;
    let dst = cluster.database("parts_dst").await;
    let schema = "CREATE TABLE measure (id int, k int) PARTITION BY RANGE (k);
        CREATE TABLE measure_low PARTITION OF measure FOR VALUES FROM (0) TO (10);
        CREATE TABLE measure_high PARTITION OF measure FOR VALUES FROM (10) TO (100);
        CREATE TABLE base (id int);
        CREATE TABLE derived (extra text) INHERITS (base);";
    let mut s = src.connect().await;
    exec(&mut s, schema).await;
    exec(
        &mut s,
        "INSERT INTO measure VALUES (1, 5), (2, 50);
         INSERT INTO base VALUES (1); INSERT INTO derived VALUES (2, 'child');",
    )
    .await;
    let mut d = dst.connect().await;
    exec(&mut d, schema).await;
    exec(
        &mut d,
        "INSERT INTO derived VALUES (3, 'old'); INSERT INTO measure VALUES (9, 9);",
    )
    .await;
    let (doc, stats) = dump(&mut s).await;
    let names: Vec<&str> = stats.table_rows.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(names, ["base", "derived", "measure"]);
    assert_eq!(stats.rows, 4, "{stats:?}");
    load(&mut d, &doc).await.expect("load");
    assert_eq!(copy_all(&mut s).await, copy_all(&mut d).await);
    assert_eq!(count(&mut d, "measure_high").await, 1);
}

/// Run by [`the_password_file_is_used_when_the_url_has_none`] as a child process with its
/// own environment (a test cannot change its own environment safely); without that
/// environment it does nothing.
#[tokio::test]
async fn pgpass_child_process() {
    let Ok(url) = std::env::var("PGPASS_CHILD_URL") else {
        return;
    };
    match content_pg::connect(&url).await {
        Ok(_) => println!("child: connected"),
        Err(e) => println!("child: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_file_is_used_when_the_url_has_none() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = PgCluster::shared();
    let db = cluster.database("pgpass").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pgpass");
    // libpq's rule: for a socket outside the default directory, the host field is the
    // directory itself.
    std::fs::write(
        &file,
        format!(
            "# for the test\n{}:5432:pgpass:{}:{}\n",
            db.socket_dir.display(),
            db.owner,
            db.password
        ),
    )
    .expect("write pgpass");
    let url = format!(
        "postgres://{}@localhost/pgpass?host={}",
        db.owner,
        db.socket_dir.display()
    );
    let child = |mode: u32| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["pgpass_child_process", "--exact", "--nocapture"])
            .env("PGPASS_CHILD_URL", &url)
            .env("PGPASSFILE", &file)
            .env_remove("PGPASSWORD")
            .output()
            .expect("child runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = child(0o600);
    assert!(out.contains("child: connected"), "{out}");
    // A password file others can read is ignored, as libpq ignores it.
    let out = child(0o644);
    assert!(out.contains("no password was given"), "{out}");
}
