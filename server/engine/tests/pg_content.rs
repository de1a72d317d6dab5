//! The engine on a PostgreSQL content database (`BACKSTOP_CONTENT_DB=postgres://...`),
//! against a real PostgreSQL 15 started by the tests (see `server/pg/tests/common`): backup
//! and restore through the job runner, the errors at open, and the engine boundary (an
//! archive restores into the engine it came from; the reference schema made on SQLite does
//! not fit an arbitrary PostgreSQL schema and is refused with the table it lacks).

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
        .verify_file(&archive, engine::archive::no_progress())
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
        .restore_file_cli(&path, engine::archive::no_progress())
        .await
        .expect_err("a SQLite reference-schema archive does not fit this schema");
    let refused = refused.to_string();
    assert!(refused.contains("not in this database"), "{refused}");
    assert_eq!(snapshot(&mut conn).await, before);

    // A PostgreSQL archive offered to the SQLite engine: refused with the reason.
    let (_, pg_archive) = backup_through_the_runner(&pg, &tmp.path().join("pg")).await;
    let refused = sqlite
        .verify_file(&pg_archive, engine::archive::no_progress())
        .await
        .expect_err("a PostgreSQL archive does not restore into SQLite");
    assert!(
        refused
            .to_string()
            .contains("made from a PostgreSQL database"),
        "{refused}"
    );

    shutdown.cancel();
    runner.await.unwrap();
    pg.close().await;
    sqlite.close().await;
}
