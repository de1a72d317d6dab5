//! The engine on a PostgreSQL content database (`BACKSTOP_CONTENT_DB=postgres://...`),
//! against a real PostgreSQL 15 started by the tests (see `server/pg/tests/common`): backup
//! and restore through the job runner, the errors at open, and the engine boundary (an
//! archive of an arbitrary schema restores into the engine it came from, and is refused by
//! the other with the table or type it lacks), and the reference schema on both engines (the
//! demo seed on PostgreSQL, SQLite -> PostgreSQL -> SQLite byte for byte).

#[path = "../../pg/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Db, PgCluster};
use engine::jobs::{Job, JobId, JobStatus, JobTrigger};
use engine::{Engine, EngineConfig};
use sqlx::PgConnection;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE "Group" (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "select" text NOT NULL,
    parent integer REFERENCES "Group"(id)
);
CREATE TABLE channel (
    id bigserial PRIMARY KEY,
    group_id integer NOT NULL REFERENCES "Group"(id),
    name text NOT NULL,
    logo bytea,
    price numeric,
    extra jsonb,
    tags text[],
    m mood,
    seen timestamptz,
    name_len integer GENERATED ALWAYS AS (length(name)) STORED
);
"#;

const ROWS: &str = r#"
INSERT INTO "Group" ("select", parent) VALUES ('root', NULL);
INSERT INTO "Group" ("select", parent) VALUES ('news', 1), ('sport', 1);
INSERT INTO channel (group_id, name, logo, price, extra, tags, m, seen) VALUES
  (2, 'BBC	One \ "quoted"', '\x00ff10', 12345678901234567890.123456789, '{"b": 1, "a": [true, null]}', '{a,"b c",NULL}', 'calm', '2026-01-02 03:04:05.123456+00'),
  (3, 'Sport 😀', NULL, 'NaN', NULL, '{}', 'busy', NULL),
  (2, 'Ünïcode', '\x', -0.000001, '"s"', NULL, NULL, 'infinity');
"#;

/// Every row of both tables as text, in key order: what a restore must bring back exactly.
async fn snapshot(conn: &mut PgConnection) -> (String, String) {
    let groups: Option<String> =
        sqlx::query_scalar(r#"SELECT string_agg(g::text, E'\n' ORDER BY id) FROM "Group" g"#)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let channels: Option<String> =
        sqlx::query_scalar("SELECT string_agg(c::text, E'\\n' ORDER BY id) FROM channel c")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    (groups.unwrap_or_default(), channels.unwrap_or_default())
}

async fn prepared(name: &str) -> Db {
    let db = PgCluster::shared().database(name).await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(ROWS).execute(&mut conn).await.unwrap();
    db
}

fn config(data: &Path, url: &str) -> EngineConfig {
    let mut config = EngineConfig::for_data_dir(data);
    config.content_db_url = url.to_owned();
    config.demo_channels = 4;
    config
}

async fn wait(engine: &Engine, id: JobId) -> Job {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = engine.get_job(id).await.expect("read the job");
        if !job.status.is_active() {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Queues a manual backup, waits for it to succeed, and returns it with its archive's path
/// (in `<data>/backups`).
async fn backup_through_the_runner(engine: &Engine, data: &Path) -> (Job, PathBuf) {
    let backup = engine
        .start_backup(JobTrigger::Manual, None, None)
        .await
        .unwrap();
    let backup = wait(engine, backup.id).await;
    assert_eq!(backup.status, JobStatus::Succeeded, "{backup:?}");
    let archive = data
        .join("backups")
        .join(backup.archive_name.as_deref().unwrap());
    (backup, archive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_content_db_is_backed_up_and_restored_by_the_job_runner() {
    let db = prepared("eng_roundtrip").await;
    let tmp = TempDir::new().unwrap();
    let engine = Engine::open(config(&tmp.path().join("data"), &db.url()))
        .await
        .expect("open on PostgreSQL");
    assert_eq!(engine.content().engine(), "postgres");
    let shutdown = CancellationToken::new();
    let runner = engine.spawn_runner(shutdown.clone());

    let mut conn = db.connect().await;
    let before = snapshot(&mut conn).await;
    let (backup, archive) = backup_through_the_runner(&engine, &tmp.path().join("data")).await;

    // The archive says where it came from, and validates against this database.
    let report = engine
        .verify_file(&archive, None, engine::archive::no_progress())
        .await
        .expect("the archive validates");
    assert_eq!(report.manifest.database.engine, "postgres");
    assert_eq!(report.manifest.database.rows, 6);

    // The app keeps changing things; the restore brings the snapshot back exactly.
    sqlx::raw_sql(
        r#"DELETE FROM channel WHERE id = 1;
           UPDATE "Group" SET "select" = 'changed' WHERE id = 2;
           INSERT INTO channel (group_id, name) VALUES (3, 'added after the backup');"#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_ne!(snapshot(&mut conn).await, before);
    let restore = engine.start_restore(backup.id, None).await.unwrap();
    let restore = wait(&engine, restore.id).await;
    assert_eq!(restore.status, JobStatus::Succeeded, "{restore:?}");
    assert_eq!(snapshot(&mut conn).await, before);

    // The sequences were set past the loaded ids: the app can insert right away.
    sqlx::raw_sql(
        r#"INSERT INTO "Group" ("select") VALUES ('after restore');
           INSERT INTO channel (group_id, name) VALUES (1, 'after restore');"#,
    )
    .execute(&mut conn)
    .await
    .expect("inserts after the restore get fresh ids");

    // The Data page counts the rows of every table (schema-qualified).
    let summary = engine.content().summarize(None).await.unwrap();
    let counts: Vec<(String, i64)> = summary.into_iter().map(|t| (t.name, t.rows)).collect();
    assert!(
        counts.contains(&("public.\"Group\"".to_owned(), 4)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&("public.channel".to_owned(), 4)),
        "{counts:?}"
    );

    shutdown.cancel();
    runner.await.unwrap();
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_names_what_is_wrong_with_the_postgres_content_db() {
    let db = prepared("eng_errors").await;
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let open = |url: String| {
        let data = data.clone();
        async move {
            match Engine::open(config(&data, &url)).await {
                Ok(_) => panic!("{url} opened"),
                Err(e) => e.to_string(),
            }
        }
    };

    let missing = open(db.url().replace("/eng_errors?", "/no_such_db?")).await;
    assert!(
        missing.contains("no_such_db") && missing.contains("does not exist"),
        "{missing}"
    );

    let wrong_password = open(db.url_as(&db.owner, "wrong")).await;
    assert!(wrong_password.contains(&db.owner), "{wrong_password}");

    let unreachable = open(db.url().replace(
        &db.socket_dir.display().to_string(),
        "/nonexistent-socket-dir",
    ))
    .await;
    assert!(unreachable.contains("cannot reach"), "{unreachable}");

    // A role that may connect but not read a table: the error names the table.
    PgCluster::shared().role("eng_reader", "pw-reader").await;
    let mut owner = db.connect().await;
    sqlx::raw_sql(r#"GRANT SELECT ON "Group" TO eng_reader;"#)
        .execute(&mut owner)
        .await
        .unwrap();
    let denied = open(db.url_as("eng_reader", "pw-reader")).await;
    assert!(denied.contains("channel"), "{denied}");

    let bad = open("postgres://[::1".to_owned()).await;
    assert!(bad.contains("BACKSTOP_CONTENT_DB"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_do_not_cross_into_a_schema_or_engine_they_do_not_fit() {
    let db = prepared("eng_cross").await;
    let tmp = TempDir::new().unwrap();

    // A SQLite engine with the reference schema and its demo data.
    let mut sqlite_config = EngineConfig::for_data_dir(tmp.path().join("sqlite"));
    sqlite_config.demo_channels = 4;
    let sqlite = Engine::open(sqlite_config).await.unwrap();
    let sqlite_archive = sqlite
        .run_backup_cli(false, engine::archive::no_progress())
        .await
        .expect("SQLite backup");

    let pg = Engine::open(config(&tmp.path().join("pg"), &db.url()))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let runner = pg.spawn_runner(shutdown.clone());
    let mut conn = db.connect().await;
    let before = snapshot(&mut conn).await;

    // The reference schema's tables are not in this PostgreSQL database: refused at
    // validation, with the table named, and nothing changed.
    let path = tmp
        .path()
        .join("sqlite/backups")
        .join(sqlite_archive.archive_name.as_deref().unwrap());
    let refused = pg
        .restore_file_cli(&path, None, engine::archive::no_progress())
        .await
        .expect_err("a SQLite reference-schema archive does not fit this schema");
    let refused = refused.to_string();
    assert!(refused.contains("not in this database"), "{refused}");
    assert_eq!(snapshot(&mut conn).await, before);

    // A PostgreSQL archive offered to the SQLite engine: refused with the reason.
    let (_, pg_archive) = backup_through_the_runner(&pg, &tmp.path().join("pg")).await;
    let refused = sqlite
        .verify_file(&pg_archive, None, engine::archive::no_progress())
        .await
        .expect_err("a PostgreSQL archive does not restore into SQLite");
    let refused = refused.to_string();
    assert!(
        refused.contains("made from a PostgreSQL database") && refused.contains("Group"),
        "{refused}"
    );

    shutdown.cancel();
    runner.await.unwrap();
    pg.close().await;
    sqlite.close().await;
}

/// `database.json` of a SQLite content DB, as a backup would write it: the bytes that say
/// whether two databases hold the same rows with the same storage classes.
async fn sqlite_dump(engine: &Engine, scratch: &Path) -> String {
    let pool = engine.content().sqlite().expect("a SQLite content DB");
    let path = scratch.join(format!("dump-{}.json", rand_suffix()));
    let version = engine.content().schema_version().await.unwrap();
    engine::archive::dump::dump_database(pool, version, &path, &CancellationToken::new())
        .await
        .unwrap();
    std::fs::read_to_string(&path).unwrap()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_schema_goes_from_sqlite_to_postgres_and_back_byte_for_byte() {
    let tmp = TempDir::new().unwrap();
    // The reference app on SQLite with its demo data (booleans as 0/1, REAL channel
    // numbers, RFC 3339 text timestamps, NULLs, JSON text).
    let mut sqlite_config = EngineConfig::for_data_dir(tmp.path().join("sqlite"));
    sqlite_config.demo_channels = 9;
    let sqlite = Engine::open(sqlite_config).await.unwrap();
    let original = sqlite_dump(&sqlite, tmp.path()).await;
    let from_sqlite = sqlite
        .run_backup_cli(false, engine::archive::no_progress())
        .await
        .expect("SQLite backup");
    let from_sqlite = tmp
        .path()
        .join("sqlite/backups")
        .join(from_sqlite.archive_name.as_deref().unwrap());

    // The same app on PostgreSQL: the reference schema with PostgreSQL's types.
    let db = PgCluster::shared().database("eng_reference").await;
    let mut conn = db.connect().await;
    sqlx::raw_sql("SET TimeZone = 'UTC'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(engine::content_db::PG_REFERENCE_SCHEMA)
        .execute(&mut conn)
        .await
        .unwrap();
    let pg = Engine::open(config(&tmp.path().join("pg"), &db.url()))
        .await
        .unwrap();
    pg.restore_file_cli(&from_sqlite, None, engine::archive::no_progress())
        .await
        .expect("a SQLite archive of the reference schema restores into PostgreSQL");

    // The values arrived as PostgreSQL types, not as text that looks like them.
    let (active, updated, number): (bool, String, f64) = sqlx::query_as(
        "SELECT a.is_active, a.updated_at::text, c.channel_number
         FROM m3u_accounts a, channels c WHERE a.id = 2 AND c.id = 9",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(active);
    assert!(updated.ends_with("+00"), "{updated}");
    assert_eq!(number, 9.0);
    let recording: String =
        sqlx::query_scalar("SELECT start_time::text FROM recordings WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(recording, "2026-11-20 18:00:00+00");
    // The identity sequences are past the loaded ids: the app can add a channel.
    let new_id: i64 = sqlx::query_scalar(
        "INSERT INTO channel_groups (name) VALUES ('added on PostgreSQL') RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(new_id > 7, "{new_id}");
    sqlx::query("DELETE FROM channel_groups WHERE id = $1")
        .bind(new_id)
        .execute(&mut conn)
        .await
        .unwrap();

    // Back: the PostgreSQL archive into a fresh SQLite reference app.
    let shutdown = CancellationToken::new();
    let runner = pg.spawn_runner(shutdown.clone());
    let (_, from_pg) = backup_through_the_runner(&pg, &tmp.path().join("pg")).await;
    shutdown.cancel();
    runner.await.unwrap();
    let mut fresh_config = EngineConfig::for_data_dir(tmp.path().join("fresh"));
    fresh_config.demo = false;
    let fresh = Engine::open(fresh_config).await.unwrap();
    fresh
        .restore_file_cli(&from_pg, None, engine::archive::no_progress())
        .await
        .expect("a PostgreSQL archive of the reference schema restores into SQLite");
    let round_trip = sqlite_dump(&fresh, tmp.path()).await;
    assert!(
        round_trip == original,
        "SQLite -> PostgreSQL -> SQLite changed the data:\n{original}\n---\n{round_trip}"
    );
    assert_eq!(
        files_under(&tmp.path().join("fresh/logos")),
        files_under(&tmp.path().join("sqlite/logos"))
    );

    pg.close().await;
    sqlite.close().await;
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seed_creates_the_reference_schema_in_an_empty_postgres_database() {
    let tmp = TempDir::new().unwrap();
    let db = PgCluster::shared().database("eng_seed").await;
    let pg = Engine::open(config(&tmp.path().join("data"), &db.url()))
        .await
        .unwrap();
    let stats = pg
        .content()
        .seed_demo(&tmp.path().join("data"), 5)
        .await
        .expect("seed an empty PostgreSQL database");
    assert_eq!((stats.channels, stats.streams), (5, 10));
    let counts: Vec<(String, i64)> = pg
        .content()
        .summarize(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.rows))
        .collect();
    assert!(
        counts.contains(&("public.channels".to_owned(), 5)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&("public.streams".to_owned(), 10)),
        "{counts:?}"
    );
    assert_eq!(counts.len(), 12, "{counts:?}");
    // The Data page's sample: first rows in key order, secrets masked as on SQLite.
    let sampled = pg.content().summarize(Some(3)).await.unwrap();
    let table = |n: &str| sampled.iter().find(|t| t.name == n).expect(n);
    let m3u = table("public.m3u_accounts");
    let pw = m3u.columns.iter().position(|c| c == "password").unwrap();
    assert_eq!(m3u.sample[0][pw], "NULL");
    assert_eq!(m3u.sample[1][pw], engine::content::MASK);
    let active = m3u.columns.iter().position(|c| c == "is_active").unwrap();
    assert_eq!(m3u.sample[0][active], "true");
    let channels = table("public.channels");
    assert_eq!(channels.sample.len(), 3);
    assert_eq!(channels.sample[0][0], "1");
    assert_eq!(channels.sample[2][0], "3");
    let text = serde_json::to_string(&sampled).unwrap();
    assert!(
        !text.contains("demo-password") && !text.contains("demo-key-"),
        "{text}"
    );
    assert!(tmp.path().join("data/logos/logo-00001.svg").is_file());
    // The scratch SQLite file is gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".demo-seed"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Seeded once: a second seed is refused and changes nothing.
    let again = pg
        .content()
        .seed_demo(&tmp.path().join("data"), 5)
        .await
        .expect_err("a database with data is not seeded");
    assert!(again.to_string().contains("already holds data"), "{again}");
    let mut conn = db.connect().await;
    let channels: i64 = sqlx::query_scalar("SELECT count(*) FROM channels")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(channels, 5);
    pg.close().await;

    // A database of another app is never given the reference schema.
    let other = prepared("eng_seed_other").await;
    let pg = Engine::open(config(&tmp.path().join("other"), &other.url()))
        .await
        .unwrap();
    let refused = pg
        .content()
        .seed_demo(&tmp.path().join("other"), 5)
        .await
        .expect_err("another app's database is not seeded");
    assert!(
        refused.to_string().contains("not the reference schema"),
        "{refused}"
    );
    let mut conn = other.connect().await;
    let reference: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.channels')::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(reference, None);
    pg.close().await;
}
