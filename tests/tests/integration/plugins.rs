//! Plugins through the real server: the first-party `recordings` plugin (built from
//! plugins/ by ./build.sh) installed, granted and enabled over the API, then a backup and a
//! restore that go through it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tests::{TestApp, run, sha256_file};

fn built_plugin(id: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/backstop-plugins")
        .join(id);
    dir.join("plugin.wasm").is_file().then_some(dir)
}

#[tokio::test]
async fn recordings_plugin_archives_and_restores_recordings() -> anyhow::Result<()> {
    let src =
        built_plugin("recordings").expect("plugins are built by ./build.sh (plugins/build.sh)");
    let data = tempfile::tempdir()?;
    let dest = data.path().join("plugins/recordings");
    std::fs::create_dir_all(&dest)?;
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(src.join(f), dest.join(f))?;
    }
    let mut app = TestApp::spawn().await?;
    // Restart on the prepared data dir (the plugin is discovered at start).
    app.stop();
    let old = std::mem::replace(&mut app.data, data);
    drop(old);
    app.start().await?;
    app.login_admin().await?;

    let (s, list) = app.get_json("/api/backups/plugins/").await?;
    assert_eq!(s, 200);
    let p = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "recordings")
        .expect("listed")
        .clone();
    assert_eq!(p["enabled"], false, "installed plugins start disabled: {p}");

    // Enable it with its mount granted.
    let recordings = app.data.path().join("recordings");
    let r = app
        .req(Method::PUT, "/api/backups/plugins/recordings/")
        .json(&json!({"enabled": true, "grants": {"mounts": {"recordings": recordings}}}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);

    let before = sha256_file(&recordings.join("recording-001.ts"));
    let job = app.backup(json!({"include_recordings": true})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let archive = app
        .data
        .path()
        .join("backups")
        .join(job["archive_name"].as_str().unwrap());
    let out = tempfile::tempdir()?;
    assert!(
        run(Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(out.path()))
        .0
    );
    assert_eq!(
        sha256_file(&out.path().join("data/recordings/recording-001.ts")),
        before
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json"))?)?;
    let dirs = manifest["directories"].as_array().unwrap();
    let rec: Vec<&Value> = dirs.iter().filter(|d| d["name"] == "recordings").collect();
    assert_eq!(rec.len(), 1, "one data/recordings tree: {dirs:?}");
    assert_eq!(rec[0]["contributed_by"], "recordings");

    // Restore puts a changed recording back.
    std::fs::write(recordings.join("recording-001.ts"), b"changed")?;
    let (s, rj) = app
        .post_json(
            &format!("/api/backups/jobs/{}/restore/", job["id"]),
            json!({}),
        )
        .await?;
    assert_eq!(s, 202, "{rj}");
    let done = app
        .wait_job(rj["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(sha256_file(&recordings.join("recording-001.ts")), before);
    Ok(())
}
