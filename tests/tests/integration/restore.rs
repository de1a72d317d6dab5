//! Restore through the real server: uploads, validation (the hostile corpus), the restore
//! itself, all-or-nothing on failure and cancel, and old archives.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tests::hostile::{self, Member};
use tests::invariants::upload_raw;
use tests::{TestApp, run, sha256_file, write_noise};

/// Everything a restore may change, in comparable form: the content DB's logical dump and
/// every file under logos/ and recordings/ with its hash.
#[derive(Debug, PartialEq)]
struct Snapshot {
    db: String,
    files: BTreeMap<String, String>,
}

fn snapshot(app: &TestApp) -> Snapshot {
    let (ok, dump, err) = run(Command::new("sqlite3").arg(app.content_db()).arg(".dump"));
    assert!(ok, "sqlite3 .dump: {err}");
    let mut files = BTreeMap::new();
    for dir in ["logos", "recordings"] {
        collect(&app.data.path().join(dir), &format!("{dir}/"), &mut files);
    }
    Snapshot { db: dump, files }
}

fn collect(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if p.is_dir() {
            out.insert(format!("{name}/"), String::new());
            collect(&p, &format!("{name}/"), out);
        } else {
            out.insert(name, sha256_file(&p));
        }
    }
}

fn backups_dir_listing(app: &TestApp) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(app.data.path().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Changes rows (insert, update, delete) and logo files (add, edit, delete).
async fn change_everything(app: &TestApp) -> anyhow::Result<()> {
    let pool = app.content_pool().await?;
    sqlx::query("INSERT INTO channel_groups (name) VALUES ('Added after the backup')")
        .execute(&pool)
        .await?;
    sqlx::query("UPDATE channels SET name = 'Renamed' WHERE id = 1")
        .execute(&pool)
        .await?;
    sqlx::query("DELETE FROM channel_streams WHERE channel_id = 2")
        .execute(&pool)
        .await?;
    sqlx::query("DELETE FROM recordings").execute(&pool).await?;
    pool.close().await;
    let logos = app.data.path().join("logos");
    std::fs::write(logos.join("new-logo.svg"), b"<svg/>")?;
    std::fs::write(logos.join("logo-00002.svg"), b"<svg>edited</svg>")?;
    std::fs::remove_file(logos.join("logo-00003.svg"))?;
    Ok(())
}

#[tokio::test]
async fn restore_puts_back_database_and_logos_and_leaves_recordings_untouched() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let before = snapshot(&app);
    let backup = app.backup(json!({"include_recordings": false})).await?;
    change_everything(&app).await?;
    // A recording made after the backup: an archive without recordings must leave it alone.
    std::fs::write(
        app.data.path().join("recordings/after-the-backup.ts"),
        b"new recording",
    )?;
    let changed = snapshot(&app);
    assert_ne!(changed, before);

    let job = app.restore(backup["id"].as_i64().unwrap()).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["kind"], "restore");
    let after = snapshot(&app);
    assert_eq!(after.db, before.db, "database back to the backup's content");
    let logos = |s: &Snapshot| {
        s.files
            .iter()
            .filter(|(k, _)| k.starts_with("logos/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(logos(&after), logos(&before), "logos back byte for byte");
    let recs = |s: &Snapshot| {
        s.files
            .iter()
            .filter(|(k, _)| k.starts_with("recordings/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        recs(&after),
        recs(&changed),
        "recordings untouched by an archive without them"
    );

    // A safety backup of the changed state was taken first, and it holds the changes.
    let (_, list) = app.get_json("/api/backups/jobs/?kind=backup").await?;
    let safety = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["trigger"] == "pre-restore")
        .expect("safety backup")
        .clone();
    assert_eq!(safety["status"], "succeeded");
    let out = tempfile::tempdir()?;
    assert!(
        run(Command::new("tar")
            .arg("xzf")
            .arg(app.archive_of(&safety))
            .arg("-C")
            .arg(out.path()))
        .0
    );
    assert!(
        out.path().join("data/logos/new-logo.svg").is_file(),
        "the safety backup captured the state before the restore"
    );
    // No staging left behind.
    let leftovers: Vec<_> = std::fs::read_dir(app.data.path())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[tokio::test]
async fn recordings_in_an_archive_are_restored_byte_for_byte() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let before = snapshot(&app);
    let backup = app.backup(json!({"include_recordings": true})).await?;
    std::fs::remove_file(app.data.path().join("recordings/recording-001.ts"))?;
    std::fs::write(
        app.data.path().join("recordings/recording-002.ts"),
        b"overwritten",
    )?;
    let job = app.restore(backup["id"].as_i64().unwrap()).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(snapshot(&app), before);
    Ok(())
}

#[tokio::test]
async fn upload_stores_under_a_server_name_keeps_the_client_name_and_restores() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let before = snapshot(&app);
    let backup = app.backup(json!({})).await?;
    let bytes = std::fs::read(app.archive_of(&backup))?;
    change_everything(&app).await?;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone()).file_name("../../my backup.tar.gz"),
    );
    let r = app
        .req(Method::POST, "/api/backups/upload/")
        .multipart(form)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let up: Value = r.json().await?;
    assert_eq!(up["trigger"], "upload");
    assert_eq!(up["status"], "succeeded");
    assert_eq!(
        up["original_filename"], "my backup.tar.gz",
        "shown, never a path"
    );
    let name = up["archive_name"].as_str().unwrap();
    assert!(name.starts_with("backstop-") && !name.contains('/'));
    assert_eq!(std::fs::read(app.archive_of(&up))?, bytes);
    let job = app.restore(up["id"].as_i64().unwrap()).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(snapshot(&app).db, before.db);
    Ok(())
}

#[tokio::test]
async fn upload_limits_and_bad_bodies_are_refused_and_leave_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(&[("BACKSTOP_UPLOAD_LIMIT_MB", "1")]).await?;
    app.login_admin().await?;
    // A declared length over the limit is refused before the body is read. (Raw HTTP: a
    // client that insists on sending the whole body first may see the connection closed.)
    let (_, tok) = app
        .post_json("/api/auth/tokens", json!({"name": "upload test"}))
        .await?;
    let head = format!(
        "POST /api/backups/upload/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.base.trim_start_matches("http://"),
        tok["token"].as_str().unwrap(),
        3u64 << 20
    );
    let mut conn = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(&[7u8; 4096]).await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1 MiB"),
        "{answer}"
    );
    // No declared length (chunked): the limit is enforced while streaming; the partial file
    // is removed.
    let head = format!(
        "POST /api/backups/upload/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.base.trim_start_matches("http://"),
        tok["token"].as_str().unwrap(),
    );
    let mut conn = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await?;
    conn.write_all(head.as_bytes()).await?;
    let chunk = [9u8; 64 << 10];
    for _ in 0..48 {
        // 3 MiB in 64 KiB chunks; the server may stop reading once over the limit.
        let sent = async {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            conn.write_all(&chunk).await?;
            conn.write_all(b"\r\n").await
        };
        if sent.await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1 MiB"),
        "{answer}"
    );
    let (s, body) = upload_raw(&app, Vec::new()).await?;
    assert_eq!(s, 400, "{body}");
    let r = app
        .req(Method::POST, "/api/backups/upload/")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let form = reqwest::multipart::Form::new()
        .part("other", reqwest::multipart::Part::bytes(vec![1, 2, 3]));
    let r = app
        .req(Method::POST, "/api/backups/upload/")
        .multipart(form)
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert!(
        backups_dir_listing(&app).is_empty(),
        "{:?}",
        backups_dir_listing(&app)
    );
    let (_, list) = app.get_json("/api/backups/jobs/").await?;
    assert_eq!(list["total"], 0);
    Ok(())
}

#[tokio::test]
async fn every_hostile_archive_is_refused_with_its_reason_and_changes_nothing() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let valid = app.backup(json!({"include_recordings": true})).await?;
    let members: Vec<Member> = hostile::read_members(&app.archive_of(&valid));
    // The generator itself is sound: the untouched members rebuild into an accepted archive.
    let (s, body) = upload_raw(&app, hostile::gzip(&hostile::tar_bytes(&members))).await?;
    assert_eq!(s, 201, "a rebuilt valid archive must be accepted: {body}");
    let before = snapshot(&app);
    let listing = backups_dir_listing(&app);
    let (_, jobs_before) = app.get_json("/api/backups/jobs/").await?;
    let cases = hostile::corpus(&members);
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let (s, body) = upload_raw(&app, case.bytes.clone()).await?;
        let msg = body["error"]["message"].as_str().unwrap_or("").to_owned();
        if s != 422 || !msg.contains(case.expect) {
            failures.push(format!(
                "{}: {s} {msg:?} (expected 422 containing {:?})",
                case.name, case.expect
            ));
        }
        // `backstop verify` refuses it too, with the same reason.
        let file = app.data.path().join("case.tar.gz");
        std::fs::write(&file, &case.bytes)?;
        let (ok, _, err) = run(app.command().arg("verify").arg(&file));
        if ok || !err.contains(case.expect) {
            failures.push(format!("{} (cli verify): ok={ok} {err:?}", case.name));
        }
        std::fs::remove_file(&file)?;
    }
    assert!(
        failures.is_empty(),
        "cases not refused as expected:\n{}",
        failures.join("\n")
    );
    assert_eq!(snapshot(&app), before, "nothing outside staging changed");
    assert_eq!(backups_dir_listing(&app), listing, "no file left behind");
    let (_, jobs_after) = app.get_json("/api/backups/jobs/").await?;
    assert_eq!(jobs_after["total"], jobs_before["total"], "nothing listed");
    Ok(())
}

#[tokio::test]
async fn a_broken_foreign_key_fails_the_restore_and_changes_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let valid = app.backup(json!({})).await?;
    let mut members = hostile::read_members(&app.archive_of(&valid));
    // channels.channel_group_id -> a group that does not exist.
    {
        let db = members
            .iter_mut()
            .find(|m| m.name() == "database.json")
            .unwrap();
        let mut v: Value = serde_json::from_slice(&db.data)?;
        let t = v["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["name"] == "channels")
            .unwrap();
        let col = t["columns"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["name"] == "channel_group_id")
            .unwrap();
        t["rows"][0][col] = json!(424242);
        db.data = serde_json::to_vec(&v)?;
        let sha = tests::sha256_hex(&db.data);
        let m = members
            .iter_mut()
            .find(|m| m.name() == "manifest.json")
            .unwrap();
        let mut mv: Value = serde_json::from_slice(&m.data)?;
        mv["database"]["sha256"] = json!(sha);
        m.data = serde_json::to_vec(&mv)?;
    }
    hostile::refresh_checksums(&mut members);
    change_everything(&app).await?;
    let changed = snapshot(&app);
    let bytes = hostile::gzip(&hostile::tar_bytes(&members));
    let (s, up) = upload_raw(&app, bytes).await?;
    let reason = if s == 201 {
        let job = app.restore(up["id"].as_i64().unwrap()).await?;
        assert_eq!(job["status"], "failed", "{job}");
        job["error"].as_str().unwrap().to_owned()
    } else {
        assert_eq!(s, 422, "{up}");
        up["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(
        reason.contains("foreign key") && reason.contains("channels"),
        "{reason}"
    );
    assert_eq!(
        snapshot(&app),
        changed,
        "a failed restore leaves everything as it was"
    );
    Ok(())
}

#[tokio::test]
async fn cancel_before_the_swap_leaves_everything_as_it_was() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    // Big recordings make the restore's safety backup long enough to cancel in.
    let big = app.data.path().join("recordings/big.ts");
    write_noise(&big, 768 << 20);
    let backup = app.backup(json!({"include_recordings": false})).await?;
    change_everything(&app).await?;
    let changed = snapshot(&app);
    let (_, job) = app
        .post_json(
            &format!("/api/backups/jobs/{}/restore/", backup["id"]),
            json!({}),
        )
        .await?;
    let id = job["id"].as_i64().unwrap();
    // Wait until the restore runs, then cancel it.
    for _ in 0..400 {
        let (_, j) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
        if j["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, body) = app
        .post_json(&format!("/api/backups/jobs/{id}/cancel/"), json!({}))
        .await?;
    assert_eq!(s, 200, "{body}");
    let j = app.wait_job(id, Duration::from_secs(30)).await?;
    assert_eq!(j["status"], "canceled", "{j}");
    assert_eq!(snapshot(&app), changed);
    Ok(())
}

#[tokio::test]
async fn verify_route_reports_a_good_archive() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let b = app.backup(json!({})).await?;
    let (s, report) = app
        .post_json(&format!("/api/backups/jobs/{}/verify/", b["id"]), json!({}))
        .await?;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["sha256"], b["sha256"]);
    // A damaged file on disk is reported, not hidden.
    let path = app.archive_of(&b);
    let mut bytes = std::fs::read(&path)?;
    let n = bytes.len();
    bytes.truncate(n - 40);
    std::fs::write(&path, bytes)?;
    let (s, report) = app
        .post_json(&format!("/api/backups/jobs/{}/verify/", b["id"]), json!({}))
        .await?;
    assert_eq!(s, 422, "{report}");
    Ok(())
}

/// An archive made by Backstop 0.1 (format 1, content schema 1), committed under
/// tests/fixtures/. Every later version must keep restoring it.
#[tokio::test]
async fn the_committed_v1_archive_still_restores() -> anyhow::Result<()> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/backstop-v1-demo.tar.gz");
    let app = TestApp::spawn_with(&[("BACKSTOP_DEMO", "0")]).await?;
    app.login_admin().await?;
    let (s, up) = upload_raw(&app, std::fs::read(&fixture)?).await?;
    assert_eq!(s, 201, "{up}");
    let job = app.restore(up["id"].as_i64().unwrap()).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let pool = app.content_pool().await?;
    let channels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels")
        .fetch_one(&pool)
        .await?;
    assert_eq!(channels, 12, "the fixture holds 12 demo channels");
    let name: String = sqlx::query_scalar("SELECT name FROM channel_groups WHERE id = 1")
        .fetch_one(&pool)
        .await?;
    assert_eq!(name, "News");
    assert!(app.data.path().join("logos/logo-00001.svg").is_file());
    Ok(())
}

/// Folders directly in the data dir (staging or parked leftovers would show here).
fn data_dir_folders(app: &TestApp) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(app.data.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_crash_in_the_middle_of_the_swap_is_completed_at_the_next_start() -> anyhow::Result<()> {
    // Debug builds honour a fault injection: the process aborts after one directory move
    // (logos swapped, recordings not yet), while the database load is not yet committed
    // (the swap runs inside the load's transaction, before its commit).
    let mut app = TestApp::spawn_with(&[("BACKSTOP_FAULT_SWAP_CRASH_AFTER", "1")]).await?;
    app.login_admin().await?;
    let folders = data_dir_folders(&app);
    let backup = app.backup(json!({"include_recordings": true})).await?;
    let archived = snapshot(&app);
    change_everything(&app).await?;
    std::fs::write(
        app.data.path().join("recordings/recording-002.ts"),
        b"overwritten",
    )?;
    let changed = snapshot(&app);
    assert_ne!(changed, archived);

    let (s, job) = app
        .post_json(
            &format!("/api/backups/jobs/{}/restore/", backup["id"]),
            json!({}),
        )
        .await?;
    assert_eq!(s, 202, "{job}");
    let restore_id = job["id"].as_i64().unwrap();
    // The server dies mid-swap.
    let mut child = app.child.take().expect("running");
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(!status.success(), "the fault injection aborted the server");
    let half = snapshot(&app);
    assert_eq!(
        half.db, changed.db,
        "the load commits only after the swap, so the crash left the database as it was"
    );
    assert_ne!(
        half.files, archived.files,
        "the crash left the swap half done"
    );

    // Restart without the fault: the swap is rolled forward, the job says so.
    app.extra_env.clear();
    app.start().await?;
    app.login_admin().await?;
    assert_eq!(
        snapshot(&app),
        archived,
        "database and every directory match the archive"
    );
    let (_, job) = app
        .get_json(&format!("/api/backups/jobs/{restore_id}/"))
        .await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        job["warnings"]
            .to_string()
            .contains("the restore was completed at the next start"),
        "{job}"
    );
    assert_eq!(
        data_dir_folders(&app),
        folders,
        "no staging or parked folders left"
    );
    Ok(())
}
