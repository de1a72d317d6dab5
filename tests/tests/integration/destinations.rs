//! Destinations (DESIGN section 10) against a real single-node Garage: copies after every
//! backup, checked and listed from their sidecars; wrong credentials, a missing bucket, the
//! store killed mid-upload, the server killed mid-copy; retention per destination that never
//! touches a foreign object; retry; import on a fresh install (disaster recovery).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use tests::garage::{Garage, add_destination, import_copy};
use tests::{TestApp, sha256_file, write_noise};

async fn keys(store: &impl ObjectStore) -> Result<Vec<String>> {
    use futures_util::TryStreamExt;
    let mut out: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    out.sort();
    Ok(out)
}

fn copies(job: &Value) -> &Vec<Value> {
    job["copies"].as_array().expect("copies array")
}

#[tokio::test]
async fn a_backup_is_copied_checked_and_listed_and_the_secret_never_comes_back() -> Result<()> {
    let (garage, app) = Garage::start_with_app().await?;
    let id = add_destination(&app, garage.destination_body("garage", "homelab/backstop/")).await?;

    // The secret is write only, in every read.
    let (_, one) = app
        .get_json(&format!("/api/backups/destinations/{id}/"))
        .await?;
    let (_, all) = app.get_json("/api/backups/destinations/").await?;
    for d in [&one, &all["destinations"][0]] {
        assert_eq!(d["s3"]["secret_access_key"], Value::Null, "{d}");
        assert_eq!(d["s3"]["secret_set"], true, "{d}");
        assert_eq!(d["s3"]["prefix"], "homelab/backstop", "{d}");
    }
    assert!(!one.to_string().contains(garage.secret_access_key()));
    assert!(!all.to_string().contains(garage.secret_access_key()));

    let (s, t) = app
        .post_json(&format!("/api/backups/destinations/{id}/test/"), json!({}))
        .await?;
    assert_eq!((s, &t["ok"]), (200, &json!(true)), "{t}");

    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let name = job["archive_name"].as_str().unwrap();
    let c = &copies(&job)[0];
    assert_eq!(c["status"], "succeeded", "{job}");
    assert_eq!(c["destination"], "garage");
    assert_eq!(c["sha256"], job["sha256"]);
    assert_eq!(c["size_bytes"], job["size_bytes"]);
    assert_eq!(job["warnings"], json!([]), "{job}");

    // What the store holds: the archive and its sidecar, under the prefix, and the same
    // bytes as the local file.
    let store = garage.raw_store()?;
    assert_eq!(
        keys(&store).await?,
        vec![
            format!("homelab/backstop/{name}"),
            format!("homelab/backstop/{name}.json")
        ]
    );
    let held = store
        .get(&ObjectPath::from(format!("homelab/backstop/{name}")))
        .await?
        .bytes()
        .await?;
    assert_eq!(tests::sha256_hex(&held), sha256_file(&app.archive_of(&job)));
    let sidecar: Value = serde_json::from_slice(
        &store
            .get(&ObjectPath::from(format!("homelab/backstop/{name}.json")))
            .await?
            .bytes()
            .await?,
    )?;
    assert_eq!(sidecar["sha256"], job["sha256"]);
    assert_eq!(sidecar["encrypted"], false);
    assert_eq!(sidecar["format"], "backstop-copy-v1");

    let (s, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["archives"][0]["name"], name);
    assert_eq!(list["archives"][0]["sha256"], job["sha256"]);
    assert_eq!(list["archives"].as_array().unwrap().len(), 1);

    let (_, d) = app
        .get_json(&format!("/api/backups/destinations/{id}/"))
        .await?;
    assert_eq!(d["last_status"], "succeeded", "{d}");
    assert!(d["last_success_at"].is_string(), "{d}");
    Ok(())
}

#[tokio::test]
async fn bad_credentials_and_a_missing_bucket_are_named_and_never_fail_the_backup() -> Result<()> {
    let (garage, app) = Garage::start_with_app().await?;
    let mut wrong = garage.destination_body("wrong-secret", "");
    wrong["s3"]["secret_access_key"] = json!("0".repeat(64));
    let wrong = add_destination(&app, wrong).await?;
    let mut missing = garage.destination_body("no-bucket", "");
    missing["s3"]["bucket"] = json!("no-such-bucket");
    let missing = add_destination(&app, missing).await?;
    let mut refused = garage.destination_body("refused", "");
    refused["s3"]["endpoint"] = json!("http://127.0.0.1:9");
    let refused = add_destination(&app, refused).await?;
    let good = add_destination(&app, garage.destination_body("good", "")).await?;

    for (id, expect) in [
        (wrong, "credentials"),
        (missing, "bucket: no-such-bucket does not exist"),
        (refused, "refused the connection"),
    ] {
        let (s, t) = app
            .post_json(&format!("/api/backups/destinations/{id}/test/"), json!({}))
            .await?;
        assert_eq!(s, 200);
        assert_eq!(t["ok"], false, "{t}");
        assert!(
            t["message"].as_str().unwrap().contains(expect),
            "{expect}: {t}"
        );
    }

    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let by_name = |n: &str| {
        copies(&job)
            .iter()
            .find(|c| c["destination"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no copy to {n}: {job}"))
    };
    assert_eq!(by_name("good")["status"], "succeeded", "{job}");
    for n in ["wrong-secret", "no-bucket", "refused"] {
        let c = by_name(n);
        assert_eq!(c["status"], "failed", "{c}");
        assert!(c["error"].as_str().unwrap().contains("failed:"), "{c}");
        let warned = job["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str()
                .unwrap()
                .starts_with(&format!("copy to {n} failed"))
        });
        assert!(warned, "no warning naming {n}: {job}");
    }
    let (_, d) = app
        .get_json(&format!("/api/backups/destinations/{wrong}/"))
        .await?;
    assert_eq!(d["last_status"], "failed");
    assert!(
        d["last_error"].as_str().unwrap().contains("credentials"),
        "{d}"
    );
    let (_, d) = app
        .get_json(&format!("/api/backups/destinations/{good}/"))
        .await?;
    assert_eq!(d["last_status"], "succeeded");
    Ok(())
}

#[tokio::test]
async fn invalid_destinations_are_refused_field_by_field_and_nothing_is_stored() -> Result<()> {
    let (garage, app) = Garage::start_with_app().await?;
    let mut b = garage.destination_body("", "../up");
    b["s3"]["bucket"] = json!("Bad_Bucket");
    b["s3"]["endpoint"] = json!("ftp://x");
    b["s3"]["access_key_id"] = json!("");
    b["retention_count"] = json!(5000);
    let (s, e) = app.post_json("/api/backups/destinations/", b).await?;
    assert_eq!(s, 400, "{e}");
    let fields = &e["error"]["fields"];
    for f in [
        "name",
        "bucket",
        "endpoint",
        "prefix",
        "access_key_id",
        "retention_count",
    ] {
        assert!(fields[f].is_string(), "no message for {f}: {e}");
    }
    let mut no_secret = garage.destination_body("x", "");
    no_secret["s3"]
        .as_object_mut()
        .unwrap()
        .remove("secret_access_key");
    let (s, e) = app
        .post_json("/api/backups/destinations/", no_secret)
        .await?;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["fields"]["secret_access_key"].is_string(), "{e}");
    let (_, all) = app.get_json("/api/backups/destinations/").await?;
    assert_eq!(all["destinations"], json!([]));

    // A second one with the same name is a conflict; an update without a secret keeps it.
    let id = add_destination(&app, garage.destination_body("nas", "")).await?;
    let (s, _) = app
        .post_json(
            "/api/backups/destinations/",
            garage.destination_body("nas", ""),
        )
        .await?;
    assert_eq!(s, 409);
    let mut update = garage.destination_body("nas renamed", "p");
    update["s3"]["secret_access_key"] = Value::Null;
    let r = app
        .req(
            reqwest::Method::PUT,
            &format!("/api/backups/destinations/{id}/"),
        )
        .json(&update)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let (_, t) = app
        .post_json(&format!("/api/backups/destinations/{id}/test/"), json!({}))
        .await?;
    assert_eq!(t["ok"], true, "the kept secret still works: {t}");
    let (s, _) = app.get_json("/api/backups/destinations/99/").await?;
    assert_eq!(s, 404);
    let (s, _) = app.get_json("/api/backups/destinations/x/").await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn retention_keeps_the_newest_copies_and_never_touches_objects_backstop_did_not_write()
-> Result<()> {
    let garage = Garage::start().await?;
    let store = garage.raw_store()?;
    // Objects of someone else's, beside where the copies go: one that even looks like an
    // archive with a sidecar that is not ours.
    for (k, v) in [
        ("backstop-20200101T000000Z.tar.gz", "not ours"),
        ("backstop-20200101T000000Z.tar.gz.json", r#"{"name":"x"}"#),
        ("notes.txt", "hello"),
    ] {
        store
            .put(
                &ObjectPath::from(k),
                PutPayload::from(v.as_bytes().to_vec()),
            )
            .await?;
    }
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let mut b = garage.destination_body("garage", "");
    b["retention_count"] = json!(2);
    let id = add_destination(&app, b).await?;
    let mut names = Vec::new();
    for _ in 0..4 {
        let job = app.backup(json!({})).await?;
        assert_eq!(copies(&job)[0]["status"], "succeeded", "{job}");
        names.push(job["archive_name"].as_str().unwrap().to_owned());
    }
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    let listed: Vec<&str> = list["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![names[3].as_str(), names[2].as_str()], "{list}");
    let mut expected = vec![
        "backstop-20200101T000000Z.tar.gz".to_owned(),
        "backstop-20200101T000000Z.tar.gz.json".to_owned(),
        "notes.txt".to_owned(),
    ];
    for n in &names[2..] {
        expected.push(n.clone());
        expected.push(format!("{n}.json"));
    }
    expected.sort();
    assert_eq!(keys(&store).await?, expected);
    // Local retention is separate (0 = keep all): the four local backups are all there.
    let (_, page) = app.get_json("/api/backups/jobs/?kind=backup").await?;
    assert_eq!(page["total"], 4);
    Ok(())
}

/// Adds a destination on `garage`, starts a backup of 400 MiB of noise (incompressible, so
/// the upload takes a while even on loopback) and waits until its copy step has sent some
/// bytes; (destination id, job id).
async fn backup_caught_mid_copy(app: &TestApp, garage: &Garage) -> Result<(i64, i64)> {
    write_noise(&app.data.path().join("logos/noise.bin"), 400 << 20);
    let id = add_destination(app, garage.destination_body("garage", "")).await?;
    let (s, job) = app.post_json("/api/backups/jobs/", json!({})).await?;
    if s != 202 {
        bail!("starting a backup answered {s}: {job}");
    }
    let jid = job["id"].as_i64().context("job id")?;
    wait_for_copy(app, jid).await?;
    Ok((id, jid))
}

/// Waits until the job is in its copy step with some bytes sent.
async fn wait_for_copy(app: &TestApp, id: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, job) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
        if job["progress"]["step"] == "copy" && job["progress"]["done_bytes"].as_u64() > Some(0) {
            return Ok(());
        }
        if job["status"] != "running" && job["status"] != "pending" {
            bail!("the job ended before its copy step was seen: {job}");
        }
        if Instant::now() > deadline {
            bail!("no copy step within 120 s: {job}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts what a copy that failed leaves behind: the backup succeeded, its local archive is
/// complete (the job's SHA-256) and its copy is failed; the copy's error.
#[track_caller]
fn copy_failed_and_backup_kept<'a>(app: &TestApp, job: &'a Value) -> &'a str {
    assert_eq!(
        job["status"], "succeeded",
        "a complete backup is kept: {job}"
    );
    assert_eq!(
        sha256_file(&app.archive_of(job)),
        job["sha256"].as_str().unwrap()
    );
    let c = &copies(job)[0];
    assert_eq!(c["status"], "failed", "{job}");
    c["error"].as_str().unwrap_or_default()
}

/// `POST .../jobs/{jid}/copies/{destination}/retry/`: (status, body).
pub(crate) async fn retry(app: &TestApp, jid: i64, destination: i64) -> Result<(u16, Value)> {
    app.post_json(
        &format!("/api/backups/jobs/{jid}/copies/{destination}/retry/"),
        json!({}),
    )
    .await
}

/// Polls job `jid` until its first copy has ended (succeeded or failed) after a retry; the
/// job then.
pub(crate) async fn wait_for_retry(app: &TestApp, jid: i64) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, job) = app.get_json(&format!("/api/backups/jobs/{jid}/")).await?;
        let st = &copies(&job)[0]["status"];
        if st == "succeeded" || st == "failed" {
            return Ok(job);
        }
        if Instant::now() > deadline {
            bail!("the retry did not end: {job}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_store_killed_mid_upload_fails_the_copy_not_the_backup_and_retry_sends_it() -> Result<()>
{
    let mut garage = Garage::start().await?;
    let app = TestApp::spawn_with(&[("BACKSTOP_COPY_RETRY_SECS", "1")]).await?;
    app.login_admin().await?;
    let (id, jid) = backup_caught_mid_copy(&app, &garage).await?;
    garage.kill();
    let job = app.wait_job(jid, Duration::from_secs(300)).await?;
    let error = copy_failed_and_backup_kept(&app, &job);
    assert!(error.contains("failed"), "{job}");

    garage.start_again().await?;
    // Nothing incomplete is listed: the sidecar was never written.
    let (s, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!((s, &list["archives"]), (200, &json!([])), "{list}");
    let (s, r) = retry(&app, jid, id).await?;
    assert_eq!(s, 202, "{r}");
    let job = wait_for_retry(&app, jid).await?;
    assert_eq!(copies(&job)[0]["status"], "succeeded", "{job}");
    assert_eq!(copies(&job)[0]["sha256"], job["sha256"]);
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!(list["archives"][0]["name"], job["archive_name"], "{list}");
    // A copy that is not failed cannot be retried into a second concurrent upload, and a
    // restore job is not a backup with an archive.
    let (s, _) = retry(&app, jid, 999).await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn the_server_killed_mid_copy_keeps_the_complete_backup_and_the_copy_can_be_retried()
-> Result<()> {
    let (garage, mut app) = Garage::start_with_app().await?;
    let (id, jid) = backup_caught_mid_copy(&app, &garage).await?;
    app.kill9();
    app.start().await?;
    app.login_admin().await?;
    let (_, job) = app.get_json(&format!("/api/backups/jobs/{jid}/")).await?;
    let error = copy_failed_and_backup_kept(&app, &job);
    assert_eq!(error, "interrupted by restart");
    assert!(
        job["warnings"][0].as_str().unwrap().contains("restarted"),
        "{job}"
    );
    let (s, _) = retry(&app, jid, id).await?;
    assert_eq!(s, 202);
    let job = wait_for_retry(&app, jid).await?;
    assert_eq!(copies(&job)[0]["status"], "succeeded", "{job}");
    Ok(())
}

#[tokio::test]
async fn a_fresh_install_lists_the_copies_and_imports_one_that_then_restores() -> Result<()> {
    let (garage, old) = Garage::start_with_app().await?;
    add_destination(&old, garage.destination_body("garage", "dr")).await?;
    let job = old.backup(json!({})).await?;
    assert_eq!(copies(&job)[0]["status"], "succeeded", "{job}");
    let name = job["archive_name"].as_str().unwrap().to_owned();
    drop(old); // the server died

    let app = TestApp::spawn_with(&[("BACKSTOP_DEMO", "0")]).await?;
    app.login_admin().await?;
    let id = add_destination(&app, garage.destination_body("same bucket", "dr")).await?;
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!(list["archives"][0]["name"], name.as_str(), "{list}");
    let (s, e) = import_copy(&app, id, "no-such.tar.gz", json!({})).await?;
    assert_eq!(s, 404, "{e}");
    let (s, imported) = import_copy(&app, id, &name, json!({})).await?;
    assert_eq!(s, 201, "{imported}");
    assert_eq!(imported["trigger"], "import");
    assert_eq!(imported["status"], "succeeded");
    assert_eq!(imported["sha256"], job["sha256"]);
    let restored = app.restore(imported["id"].as_i64().unwrap()).await?;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    let pool = app.content_pool().await?;
    let channels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels")
        .fetch_one(&pool)
        .await?;
    assert!(channels > 0, "the demo channels came back");

    // A tampered copy is refused and nothing is kept.
    let store = garage.raw_store()?;
    store
        .put(
            &ObjectPath::from(format!("dr/{name}")),
            PutPayload::from(vec![0u8; job["size_bytes"].as_u64().unwrap() as usize]),
        )
        .await?;
    let (_, before) = app.get_json("/api/backups/jobs/").await?;
    let (s, e) = import_copy(&app, id, &name, json!({})).await?;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match its sidecar"),
        "{e}"
    );
    let (_, after) = app.get_json("/api/backups/jobs/").await?;
    assert_eq!(before["total"], after["total"]);
    let leftovers: Vec<_> = std::fs::read_dir(app.data.path().join("backups"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[tokio::test]
async fn cancel_during_the_copy_stops_it_and_keeps_the_complete_backup() -> Result<()> {
    let (garage, app) = Garage::start_with_app().await?;
    let (id, jid) = backup_caught_mid_copy(&app, &garage).await?;
    let (s, c) = app
        .post_json(&format!("/api/backups/jobs/{jid}/cancel/"), json!({}))
        .await?;
    assert_eq!(s, 200, "{c}");
    let job = app.wait_job(jid, Duration::from_secs(60)).await?;
    let error = copy_failed_and_backup_kept(&app, &job);
    assert_eq!(error, "canceled by request");
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!(
        list["archives"],
        json!([]),
        "a canceled copy is never listed: {list}"
    );
    Ok(())
}
