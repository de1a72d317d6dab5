//! Backups through the real server: the archive contract, recordings, cancel, crash
//! recovery, retention, routes and their errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tests::{TestApp, run, sha256_file, write_noise};

#[tokio::test]
async fn archive_is_readable_by_gnu_tar_python_and_sha256sum_in_design_order() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let path = app.archive_of(&job);
    let name = job["archive_name"].as_str().unwrap();
    assert!(
        name.starts_with("backstop-")
            && name.ends_with(".tar.gz")
            && name.len() == "backstop-20261125T030000Z.tar.gz".len(),
        "{name}"
    );
    assert_eq!(job["sha256"].as_str().unwrap(), sha256_file(&path));
    assert_eq!(
        job["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(&path)?.len()
    );

    // Order: manifest, database, data/..., plugins/..., checksums last.
    let (ok, list, err) = run(Command::new("tar").arg("tzf").arg(&path));
    assert!(ok, "{err}");
    let entries: Vec<&str> = list.lines().collect();
    assert_eq!(entries[0], "manifest.json");
    assert_eq!(entries[1], "database.json");
    assert_eq!(*entries.last().unwrap(), "checksums.sha256");
    let middle = &entries[2..entries.len() - 1];
    assert!(
        middle
            .iter()
            .all(|e| e.starts_with("data/") || e.starts_with("plugins/")),
        "{middle:?}"
    );
    assert!(middle.iter().any(|e| e.starts_with("data/logos/")));
    assert!(
        !middle.iter().any(|e| e.starts_with("data/recordings")),
        "recordings excluded by default"
    );

    // GNU tar extracts; sha256sum -c passes.
    let out = tempfile::tempdir()?;
    let (ok, _, err) = run(Command::new("tar")
        .arg("xzf")
        .arg(&path)
        .arg("-C")
        .arg(out.path()));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg("checksums.sha256")
        .current_dir(out.path()));
    assert!(ok, "sha256sum -c failed: {err}");

    // Python's tarfile with the `data` filter extracts it without a warning.
    let py = tempfile::tempdir()?;
    let script = "import sys, tarfile, warnings\nwarnings.simplefilter('error')\nwith tarfile.open(sys.argv[1]) as t:\n    t.extractall(sys.argv[2], filter='data')\nprint('ok')";
    let (ok, stdout, err) = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(py.path()));
    assert!(ok && stdout.trim() == "ok", "python tarfile: {err}");

    // The manifest tells the truth about what is inside.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json"))?)?;
    assert_eq!(manifest["format"], "backstop-backup");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["trigger"], "manual");
    assert_eq!(manifest["include_recordings"], false);
    assert_eq!(
        manifest["database"]["sha256"].as_str().unwrap(),
        sha256_file(&out.path().join("database.json"))
    );
    let logos = manifest["directories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "logos")
        .expect("logos listed")
        .clone();
    let on_disk = std::fs::read_dir(app.data.path().join("logos"))?.count() as u64;
    assert_eq!(logos["files"].as_u64().unwrap(), on_disk);
    assert_eq!(logos["archive_path"], "data/logos");
    let db: Value = serde_json::from_slice(&std::fs::read(out.path().join("database.json"))?)?;
    assert_eq!(db["format"], "backstop-database");
    let tables: Vec<&str> = db["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let pos = |n: &str| {
        tables
            .iter()
            .position(|t| *t == n)
            .unwrap_or_else(|| panic!("{n} missing from {tables:?}"))
    };
    assert!(
        pos("channel_groups") < pos("channels")
            && pos("channels") < pos("channel_streams")
            && pos("streams") < pos("channel_streams"),
        "parents first: {tables:?}"
    );
    assert!(!tables.contains(&"_sqlx_migrations"));

    // The manifest route returns the same manifest.
    let (s, m) = app
        .get_json(&format!("/api/backups/jobs/{}/manifest/", job["id"]))
        .await?;
    assert_eq!(s, 200);
    assert_eq!(m, manifest);
    Ok(())
}

#[tokio::test]
async fn recordings_are_in_the_archive_byte_for_byte_only_when_included() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let rec = app.data.path().join("recordings");
    std::fs::create_dir_all(rec.join("2026/11"))?;
    write_noise(&rec.join("2026/11/show.ts"), 3 << 20);
    let with = app.backup(json!({"include_recordings": true})).await?;
    assert_eq!(with["status"], "succeeded", "{with}");
    assert_eq!(with["include_recordings"], true);
    let out = tempfile::tempdir()?;
    let (ok, _, err) = run(Command::new("tar")
        .arg("xzf")
        .arg(app.archive_of(&with))
        .arg("-C")
        .arg(out.path()));
    assert!(ok, "{err}");
    for entry in walk(&rec) {
        let rel = entry.strip_prefix(&rec)?;
        let copy = out.path().join("data/recordings").join(rel);
        assert_eq!(sha256_file(&entry), sha256_file(&copy), "{}", rel.display());
    }
    let without = app.backup(json!({"include_recordings": false})).await?;
    let (_, list, _) = run(Command::new("tar").arg("tzf").arg(app.archive_of(&without)));
    assert!(!list.contains("data/recordings"), "{list}");
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[tokio::test]
async fn symlinks_in_a_data_directory_are_skipped_with_a_warning() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    std::os::unix::fs::symlink("/etc/passwd", app.data.path().join("logos/escape.svg"))?;
    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded");
    let warnings = job["warnings"].to_string();
    assert!(warnings.contains("escape.svg"), "{warnings}");
    let (_, list, _) = run(Command::new("tar").arg("tzf").arg(app.archive_of(&job)));
    assert!(!list.contains("escape.svg"));
    Ok(())
}

#[tokio::test]
async fn cancel_during_a_multi_gib_backup_is_prompt_and_leaves_no_file() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    write_noise(&app.data.path().join("recordings/huge.ts"), 2 << 30);
    let (s, job) = app
        .post_json("/api/backups/jobs/", json!({"include_recordings": true}))
        .await?;
    assert_eq!(s, 202);
    let id = job["id"].as_i64().unwrap();
    // Wait until it is archiving with bytes moving.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
        if j["status"] == "running" && j["progress"]["done_bytes"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(j["status"] == "running" || j["status"] == "pending", "{j}");
        assert!(Instant::now() < deadline, "backup never started moving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = app
        .post_json(&format!("/api/backups/jobs/{id}/cancel/"), json!({}))
        .await?;
    assert_eq!(s, 200);
    // No timing assertion here (shared, noisy machines): the job must end canceled part-way,
    // long before 2 GiB could have been archived.
    let j = app.wait_job(id, Duration::from_secs(60)).await?;
    assert_eq!(j["status"], "canceled", "{j}");
    let (done, total) = (
        j["progress"]["done_bytes"].as_u64().unwrap_or(0),
        j["progress"]["total_bytes"].as_u64().unwrap_or(0),
    );
    assert!(done < total, "stopped part-way: {j}");
    let leftovers: Vec<_> = std::fs::read_dir(app.data.path().join("backups"))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The next job runs normally.
    let next = app.backup(json!({"include_recordings": false})).await?;
    assert_eq!(next["status"], "succeeded");
    // A finished job cannot be canceled.
    let (s, body) = app
        .post_json(&format!("/api/backups/jobs/{id}/cancel/"), json!({}))
        .await?;
    assert_eq!(s, 409, "{body}");
    Ok(())
}

#[tokio::test]
async fn kill_9_during_a_backup_then_restart_fails_the_job_and_removes_the_partial()
-> anyhow::Result<()> {
    let mut app = TestApp::spawn().await?;
    app.login_admin().await?;
    write_noise(&app.data.path().join("recordings/big.ts"), 1 << 30);
    let (_, job) = app
        .post_json("/api/backups/jobs/", json!({"include_recordings": true}))
        .await?;
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial = std::fs::read_dir(app.data.path().join("backups"))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "no partial file appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.kill9();
    app.start().await?;
    app.login_admin().await?;
    let (_, j) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
    assert_eq!(j["status"], "failed");
    assert_eq!(j["error"], "interrupted by restart");
    assert_eq!(j["can_download"], false);
    let names: Vec<String> = std::fs::read_dir(app.data.path().join("backups"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let (_, list) = app.get_json("/api/backups/jobs/?status=succeeded").await?;
    assert_eq!(list["total"], 0);
    Ok(())
}

#[tokio::test]
async fn retention_keeps_the_newest_n_never_uploads_and_zero_keeps_all() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let r = app
        .req(Method::PUT, "/api/backups/settings/")
        .json(&json!({"retention_count": 2}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    // An upload first: it must survive every pruning.
    let first = app.backup(json!({})).await?;
    let bytes = std::fs::read(app.archive_of(&first))?;
    let r = app
        .req(Method::POST, "/api/backups/upload/")
        .header("content-type", "application/gzip")
        .body(bytes)
        .send()
        .await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    let mut ids = vec![first["id"].as_i64().unwrap()];
    for _ in 0..4 {
        ids.push(app.backup(json!({})).await?["id"].as_i64().unwrap());
    }
    let (_, list) = app.get_json("/api/backups/jobs/?kind=backup").await?;
    let left: Vec<(i64, String)> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_i64().unwrap(),
                j["trigger"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let made: Vec<i64> = left
        .iter()
        .filter(|(_, t)| t == "manual")
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        made,
        vec![ids[4], ids[3]],
        "the two newest manual backups remain: {left:?}"
    );
    assert_eq!(
        left.iter().filter(|(_, t)| t == "upload").count(),
        1,
        "the upload stays"
    );
    let files = std::fs::read_dir(app.data.path().join("backups"))?.count();
    assert_eq!(files, 3, "files deleted with their records");
    // 0 keeps all.
    let r = app
        .req(Method::PUT, "/api/backups/settings/")
        .json(&json!({"retention_count": 0}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        app.backup(json!({})).await?;
    }
    let (_, list) = app.get_json("/api/backups/jobs/?kind=backup").await?;
    assert_eq!(list["total"], 6);
    Ok(())
}

#[tokio::test]
async fn routes_answer_404_409_and_refuse_traversal() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    for path in [
        "/api/backups/jobs/999/",
        "/api/backups/jobs/abc/",
        "/api/backups/jobs/999/download/",
        "/api/backups/jobs/999/manifest/",
    ] {
        let (s, body) = app.get_json(path).await?;
        assert_eq!(s, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    for path in [
        "/api/backups/jobs/..%2F..%2Fetc%2Fpasswd/download/",
        "/api/backups/jobs/%2e%2e/download/",
        "/api/backups/jobs/-1/",
    ] {
        let r = app.req(Method::GET, path).send().await?;
        assert_eq!(r.status(), 404, "{path}");
    }
    // Delete while running: 409; then the job finishes and delete works.
    write_noise(&app.data.path().join("recordings/slow.ts"), 256 << 20);
    let (_, job) = app
        .post_json("/api/backups/jobs/", json!({"include_recordings": true}))
        .await?;
    let id = job["id"].as_i64().unwrap();
    let r = app
        .req(Method::DELETE, &format!("/api/backups/jobs/{id}/"))
        .send()
        .await?;
    assert_eq!(r.status(), 409);
    let done = app.wait_job(id, Duration::from_secs(120)).await?;
    assert_eq!(done["status"], "succeeded");
    let path = app.archive_of(&done);
    assert!(path.exists());
    let r = app
        .req(Method::DELETE, &format!("/api/backups/jobs/{id}/"))
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    assert!(!path.exists(), "the archive file goes with the record");
    let (s, _) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
    assert_eq!(s, 404);
    // Bad filters.
    let (s, body) = app.get_json("/api/backups/jobs/?status=bogus").await?;
    assert_eq!(s, 400, "{body}");
    let (s, _) = app.get_json("/api/backups/jobs/?limit=0").await?;
    assert_eq!(s, 400);
    let (s, _) = app.get_json("/api/backups/jobs/?limit=ten").await?;
    assert_eq!(s, 400);
    Ok(())
}

#[tokio::test]
async fn download_streams_with_length_head_and_range() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let job = app.backup(json!({})).await?;
    let id = job["id"].as_i64().unwrap();
    let path = app.archive_of(&job);
    let full = std::fs::read(&path)?;
    let r = app
        .req(Method::GET, &format!("/api/backups/jobs/{id}/download/"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    assert_eq!(
        r.headers()["content-length"].to_str()?,
        full.len().to_string()
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()?
            .starts_with("attachment; filename=\"backstop-")
    );
    assert_eq!(r.bytes().await?.as_ref(), full.as_slice());
    let r = app
        .req(Method::HEAD, &format!("/api/backups/jobs/{id}/download/"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str()?,
        full.len().to_string()
    );
    let r = app
        .req(Method::GET, &format!("/api/backups/jobs/{id}/download/"))
        .header("range", "bytes=10-19")
        .send()
        .await?;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await?.as_ref(), &full[10..20]);
    Ok(())
}

#[tokio::test]
async fn settings_validate_every_field_and_refuse_an_unwritable_path() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let (s, v) = app.get_json("/api/backups/settings/").await?;
    assert_eq!(s, 200);
    for k in [
        "path",
        "include_recordings",
        "retention_count",
        "schedule",
        "next_run_at",
    ] {
        assert!(v.get(k).is_some(), "{k} missing from {v}");
    }
    let blocker = app.data.path().join("a-file");
    std::fs::write(&blocker, b"x")?;
    let bad = json!({
        "path": blocker.join("sub").to_str().unwrap(),
        "retention_count": -1,
        "include_recordings": "yes",
        "schedule": {"enabled": true, "frequency": "monthly", "time": "25:00", "day_of_week": 7, "timezone": "Mars/Olympus"}
    });
    let r = app
        .req(Method::PUT, "/api/backups/settings/")
        .json(&bad)
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await?;
    let fields = body["error"]["fields"].as_object().unwrap();
    for f in [
        "path",
        "retention_count",
        "include_recordings",
        "schedule.frequency",
        "schedule.time",
        "schedule.day_of_week",
        "schedule.timezone",
    ] {
        assert!(fields.contains_key(f), "{f} not reported: {body}");
    }
    assert!(
        fields["path"]
            .as_str()
            .unwrap()
            .contains("cannot be created"),
        "{body}"
    );
    let (_, after) = app.get_json("/api/backups/settings/").await?;
    assert_eq!(after, v, "nothing saved");
    let good = json!({"path": "elsewhere", "retention_count": 5, "schedule": {"enabled": true, "frequency": "daily", "time": "03:30", "day_of_week": 1, "timezone": "Europe/London"}});
    let r = app
        .req(Method::PUT, "/api/backups/settings/")
        .json(&good)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let saved: Value = r.json().await?;
    assert_eq!(saved["retention_count"], 5);
    assert!(saved["next_run_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        app.data.path().join("elsewhere").is_dir(),
        "created at save time"
    );
    let job = app.backup(json!({})).await?;
    assert!(
        app.data
            .path()
            .join("elsewhere")
            .join(job["archive_name"].as_str().unwrap())
            .is_file()
    );
    Ok(())
}

#[tokio::test]
async fn events_stream_pushes_job_snapshots() -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let r = app.req(Method::GET, "/api/backups/events/").send().await?;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("text/event-stream")
    );
    let mut stream = r.bytes_stream();
    let (_, job) = app.post_json("/api/backups/jobs/", json!({})).await?;
    let id = job["id"].as_i64().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("\"status\":\"succeeded\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await?
            .expect("stream open")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
        assert!(Instant::now() < deadline);
    }
    assert!(seen.contains("event: job"));
    assert!(seen.contains(&format!("\"id\":{id}")));
    assert!(
        seen.contains("\"status\":\"pending\"") && seen.contains("\"status\":\"running\""),
        "{seen}"
    );
    Ok(())
}

#[test]
fn cli_backup_is_refused_while_a_server_holds_the_data_dir_and_works_without() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut app = rt.block_on(TestApp::spawn()).unwrap();
    let (ok, _, err) = run(app.command().args(["backup"]));
    assert!(!ok);
    assert!(err.contains("another Backstop process"), "{err}");
    app.stop();
    let (ok, out, err) = run(app.command().args(["backup"]));
    assert!(ok, "{err}");
    let name = out.trim();
    assert!(
        app.data.path().join("backups").join(name).is_file(),
        "{out}"
    );
    let (ok, out, _) = run(app.command().args(["list"]));
    assert!(ok);
    assert!(out.contains(name) && out.contains("succeeded"), "{out}");
    let (ok, report, err) = run(app
        .command()
        .arg("verify")
        .arg(app.data.path().join("backups").join(name)));
    assert!(ok, "{err}");
    assert!(report.contains("\"ok\": true"), "{report}");
    // `backstop restore FILE` puts a changed database back, and refuses next to a server.
    let archive = app.data.path().join("backups").join(name);
    let outside = app.data.path().join("copy.tar.gz");
    std::fs::copy(&archive, &outside).unwrap();
    let (ok, _, err) = run(Command::new("sqlite3")
        .arg(app.content_db())
        .arg("DELETE FROM channel_streams; DELETE FROM recordings;"));
    assert!(ok, "{err}");
    let (ok, out, err) = run(app.command().arg("restore").arg(&outside));
    assert!(ok, "{err}");
    assert!(out.starts_with("restored "), "{out}");
    let (_, count, _) = run(Command::new("sqlite3")
        .arg(app.content_db())
        .arg("SELECT COUNT(*) FROM channel_streams;"));
    assert_ne!(count.trim(), "0", "rows are back");
    rt.block_on(app.start()).unwrap();
    let (ok, _, err) = run(app.command().arg("restore").arg(&outside));
    assert!(!ok);
    assert!(err.contains("another Backstop process"), "{err}");
    let (ok, _, err) = run(app
        .command()
        .arg("verify")
        .arg(app.data.path().join("missing.tar.gz")));
    assert!(!ok);
    assert!(err.contains("is not a file"), "{err}");
}
