//! The real server on a PostgreSQL content DB (a real PostgreSQL 15 the tests start, see
//! `server/pg/tests/common`): `backstop demo seed` gives an empty database the reference
//! schema and its demo data, then a backup and a restore go through the HTTP API like on
//! SQLite, and a SQLite archive of the reference schema uploaded to it restores across
//! engines.

use serde_json::json;
use tests::invariants::upload_raw;
use tests::{TestApp, run};

use crate::pgcommon::PgCluster;

async fn count(conn: &mut sqlx::PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_backs_up_and_restores_a_postgres_content_db() -> anyhow::Result<()> {
    let db = PgCluster::shared().database("http_pg").await;
    let url = db.url();
    let mut app = TestApp::spawn_with(&[("BACKSTOP_CONTENT_DB", url.as_str())]).await?;

    // The demo seed is a CLI command that changes data: it runs while the server is stopped.
    app.stop();
    let (ok, out, err) = run(app.command().args(["demo", "seed", "--channels", "6"]));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("seeded 6 channels"), "{out}");
    let (ok, _, err) = run(app.command().args(["demo", "seed", "--channels", "6"]));
    assert!(!ok && err.contains("already holds data"), "{err}");
    app.start().await?;
    app.login_admin().await?;

    let mut conn = db.connect().await;
    assert_eq!(count(&mut conn, "channels").await, 6);
    let backup = app.backup(json!({})).await?;
    assert_eq!(backup["status"], "succeeded", "{backup}");
    let id = backup["id"].as_i64().unwrap();
    let (s, manifest) = app
        .get_json(&format!("/api/backups/jobs/{id}/manifest/"))
        .await?;
    assert_eq!(s, 200, "{manifest}");
    assert_eq!(manifest["database"]["engine"], "postgres", "{manifest}");
    assert_eq!(manifest["database"]["tables"], 12, "{manifest}");

    // The app changes its configuration; the restore brings the backup's back.
    sqlx::raw_sql("DELETE FROM channel_streams; DELETE FROM recordings; DELETE FROM channels WHERE id > 2; UPDATE m3u_accounts SET is_active = false")
        .execute(&mut conn)
        .await?;
    assert_eq!(count(&mut conn, "channels").await, 2);
    let restore = app.restore(id).await?;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert_eq!(count(&mut conn, "channels").await, 6);
    assert_eq!(count(&mut conn, "channel_streams").await, 12);
    let inactive: i64 = sqlx::query_scalar("SELECT count(*) FROM m3u_accounts WHERE NOT is_active")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(inactive, 0);

    // A SQLite archive of the reference schema, uploaded, restores across engines.
    let sqlite = TestApp::spawn().await?;
    sqlite.login_admin().await?;
    let from_sqlite = sqlite.backup(json!({})).await?;
    assert_eq!(from_sqlite["status"], "succeeded", "{from_sqlite}");
    let sqlite_channels: i64 = sqlx::query_scalar("SELECT count(*) FROM channels")
        .fetch_one(&sqlite.content_pool().await?)
        .await?;
    let (s, up) = upload_raw(&app, std::fs::read(sqlite.archive_of(&from_sqlite))?).await?;
    assert_eq!(s, 201, "{up}");
    let restore = app.restore(up["id"].as_i64().unwrap()).await?;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert_eq!(count(&mut conn, "channels").await, sqlite_channels);
    assert_ne!(
        sqlite_channels, 6,
        "the two data sets must differ for this to show anything"
    );

    // And a PostgreSQL archive of another app's schema is refused by a SQLite server, with
    // the reason, before anything changes.
    let other = PgCluster::shared().database("http_pg_other").await;
    let mut other_conn = other.connect().await;
    sqlx::raw_sql("CREATE TABLE gadgets (id bigint PRIMARY KEY, price numeric(10,2)); INSERT INTO gadgets VALUES (1, 9.99)")
        .execute(&mut other_conn)
        .await?;
    let other_url = other.url();
    let other_app = TestApp::spawn_with(&[("BACKSTOP_CONTENT_DB", other_url.as_str())]).await?;
    other_app.login_admin().await?;
    let foreign = other_app.backup(json!({})).await?;
    assert_eq!(foreign["status"], "succeeded", "{foreign}");
    let (s, body) = upload_raw(&sqlite, std::fs::read(other_app.archive_of(&foreign))?).await?;
    assert_eq!(s, 422, "{body}");
    let message = body.to_string();
    assert!(
        message.contains("PostgreSQL") && message.contains("numeric(10,2)"),
        "{message}"
    );
    Ok(())
}
