//! Data safety (DESIGN section 4), the cases issue 10 reported, each as a test: an archive
//! cannot name Backstop's own folders, restore records own no file, retention spares the
//! archive being restored, and a stored archive changed on disk is refused everywhere.

use reqwest::Method;
use serde_json::{Value, json};
use tests::TestApp;
use tests::hostile::{Member, gzip, read_members, refresh_checksums, tar_bytes};
use tests::invariants::upload_raw;

fn listing(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        tests::sha256_file(&e.path()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A real archive with one more directory `name` listed in its manifest (as a built-in
/// directory), holding one file, with every checksum correct.
fn with_extra_directory(members: &[Member], name: &str) -> Vec<u8> {
    let mut members = members.to_vec();
    let mut manifest: Value = serde_json::from_slice(&members[0].data).expect("manifest");
    manifest["directories"]
        .as_array_mut()
        .expect("directories")
        .push(json!({"name": name, "archive_path": format!("data/{name}"), "files": 1, "bytes": 5, "contributed_by": "backstop"}));
    members[0] = Member::file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let at = members
        .iter()
        .position(|m| m.name() == "checksums.sha256")
        .expect("checksums");
    members.insert(at, Member::dir(&format!("data/{name}/")));
    members.insert(at + 1, Member::file(&format!("data/{name}/x"), b"hello"));
    refresh_checksums(&mut members);
    gzip(&tar_bytes(&members))
}

#[tokio::test]
async fn an_archive_naming_backups_plugins_or_state_db_is_refused_at_upload_and_changes_nothing()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let backup = app.backup(json!({})).await?;
    let members = read_members(&app.archive_of(&backup));
    // The unmodified archive is accepted, so a refusal below is about the one change.
    let (s, ok) = upload_raw(&app, gzip(&tar_bytes(&members))).await?;
    assert_eq!(s, 201, "{ok}");
    let before = listing(&app.data.path().join("backups"));
    let (_, jobs_before) = app.get_json("/api/backups/jobs/?limit=100").await?;
    for name in ["backups", "plugins", "state.db", "app.db", "anything-else"] {
        let (s, body) = upload_raw(&app, with_extra_directory(&members, name)).await?;
        assert_eq!(s, 422, "{name}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("{name:?}")) && msg.contains("may not replace"),
            "{name}: {msg}"
        );
    }
    assert_eq!(listing(&app.data.path().join("backups")), before);
    let (_, jobs_after) = app.get_json("/api/backups/jobs/?limit=100").await?;
    assert_eq!(jobs_after["total"], jobs_before["total"]);
    Ok(())
}

#[tokio::test]
async fn deleting_a_finished_restore_job_keeps_the_backup_it_restored_from() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let backup = app.backup(json!({})).await?;
    let file = app.archive_of(&backup);
    let sha = tests::sha256_file(&file);
    let restore = app.restore(backup["id"].as_i64().unwrap()).await?;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert_eq!(restore["source_job_id"], backup["id"]);
    assert_eq!(restore["can_download"], false, "a restore owns no file");
    let r = app
        .req(
            Method::DELETE,
            &format!("/api/backups/jobs/{}/", restore["id"]),
        )
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let (s, still) = app
        .get_json(&format!("/api/backups/jobs/{}/", backup["id"]))
        .await?;
    assert_eq!(s, 200, "{still}");
    assert_eq!(still["status"], "succeeded");
    assert_eq!(
        tests::sha256_file(&file),
        sha,
        "the source archive is untouched"
    );
    // Deleting the backup itself deletes exactly its own file.
    let r = app
        .req(
            Method::DELETE,
            &format!("/api/backups/jobs/{}/", backup["id"]),
        )
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    assert!(!file.exists());
    Ok(())
}

#[tokio::test]
async fn with_keep_the_newest_1_a_restore_succeeds_and_its_source_is_not_pruned_while_it_runs()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let (s, body) = app
        .req(Method::PUT, "/api/backups/settings/")
        .json(&json!({"retention_count": 1}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))?;
    assert_eq!(s, 200, "{:?}", body.text().await);
    let source = app.backup(json!({})).await?;
    let restore = app.restore(source["id"].as_i64().unwrap()).await?;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    // The safety backup is the newest; the source survived its retention because the
    // restore was still running; the next backup's retention may prune it.
    let (_, jobs) = app
        .get_json("/api/backups/jobs/?kind=backup&status=succeeded")
        .await?;
    let ids: Vec<i64> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&source["id"].as_i64().unwrap()), "{jobs}");
    assert!(app.archive_of(&source).exists());
    Ok(())
}

#[tokio::test]
async fn an_archive_changed_on_disk_is_refused_by_restore_verify_download_and_manifest()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let appended = app.backup(json!({})).await?;
    let flipped = app.backup(json!({})).await?;
    let untouched = app.backup(json!({})).await?;
    // One byte more (size differs), and one byte changed in place (same size, new sha256).
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(app.archive_of(&appended))?;
        f.write_all(b"x")?;
    }
    {
        let p = app.archive_of(&flipped);
        let mut bytes = std::fs::read(&p)?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, bytes)?;
    }
    let content_before = tests::sha256_file(&app.content_db());
    for job in [&appended, &flipped] {
        let id = job["id"].as_i64().unwrap();
        for (method, path) in [
            (Method::POST, format!("/api/backups/jobs/{id}/restore/")),
            (Method::POST, format!("/api/backups/jobs/{id}/verify/")),
            (Method::GET, format!("/api/backups/jobs/{id}/download/")),
            (Method::GET, format!("/api/backups/jobs/{id}/manifest/")),
        ] {
            let r = app.req(method.clone(), &path).send().await?;
            let s = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(s, 422, "{method} {path}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("changed since it was made"),
                "{method} {path}: {body}"
            );
        }
    }
    assert_eq!(tests::sha256_file(&app.content_db()), content_before);
    // The untouched archive still verifies, downloads and restores.
    let id = untouched["id"].as_i64().unwrap();
    let (s, report) = app
        .post_json(&format!("/api/backups/jobs/{id}/verify/"), json!({}))
        .await?;
    assert_eq!(s, 200, "{report}");
    let r = app
        .req(Method::GET, &format!("/api/backups/jobs/{id}/download/"))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        tests::sha256_hex(&r.bytes().await?),
        untouched["sha256"].as_str().unwrap()
    );
    let restored = app.restore(id).await?;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    Ok(())
}
