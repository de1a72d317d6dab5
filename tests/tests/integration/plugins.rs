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

/// A server whose data dir has `ids` installed (plugins are discovered at start).
async fn app_with_plugins(ids: &[&str]) -> anyhow::Result<TestApp> {
    app_with_plugins_env(ids, &[]).await
}

async fn app_with_plugins_env(ids: &[&str], env: &[(&str, &str)]) -> anyhow::Result<TestApp> {
    let mut app = TestApp::spawn_with(env).await?;
    app.stop();
    for id in ids {
        let src = built_plugin(id).expect("plugins are built by ./build.sh (plugins/build.sh)");
        let dest = app.data.path().join("plugins").join(id);
        std::fs::create_dir_all(&dest)?;
        for f in ["plugin.toml", "plugin.wasm"] {
            std::fs::copy(src.join(f), dest.join(f))?;
        }
    }
    app.start().await?;
    app.login_admin().await?;
    Ok(app)
}

#[tokio::test]
async fn recordings_plugin_archives_and_restores_recordings() -> anyhow::Result<()> {
    let app = app_with_plugins(&["recordings"]).await?;

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
    let done = app.restore(job["id"].as_i64().unwrap()).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(sha256_file(&recordings.join("recording-001.ts")), before);
    Ok(())
}

#[tokio::test]
async fn space_guard_vetoes_at_the_gate_only_with_the_veto_grant() -> anyhow::Result<()> {
    let app = app_with_plugins(&["space-guard"]).await?;
    // A reserve larger than any disk: the estimate can never fit.
    let settings = json!({"reserve_mb": 1_000_000_000_i64});
    let r = app
        .req(Method::PUT, "/api/backups/plugins/space-guard/")
        .json(&json!({"enabled": true, "grants": {"veto": false}, "settings": settings}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    // Without the veto grant the refusal is only a note; the backup runs.
    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let notes = format!("{} {}", job["annotations"], job["warnings"]);
    assert!(notes.contains("not enough free space"), "{notes}");
    // With the grant, the pre-backup gate stops the job with the plugin's reason.
    let r = app
        .req(Method::PUT, "/api/backups/plugins/space-guard/")
        .json(&json!({"grants": {"veto": true}}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "failed", "{job}");
    let err = job["error"].as_str().unwrap();
    assert!(
        err.contains("space-guard") && err.contains("not enough free space"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn custom_dirs_archives_its_directories_restores_them_and_logs_per_job() -> anyhow::Result<()>
{
    let app = app_with_plugins(&["custom-dirs"]).await?;
    // A host folder outside the data dir, granted as the plugin's `root` mount.
    let root = tempfile::tempdir()?;
    let nginx = root.path().join("etc/nginx");
    std::fs::create_dir_all(nginx.join("sites"))?;
    std::fs::write(nginx.join("nginx.conf"), b"worker_processes 2;\n")?;
    std::fs::write(nginx.join("sites/tv.conf"), b"server { listen 8080; }\n")?;
    let r = app
        .req(Method::PUT, "/api/backups/plugins/custom-dirs/")
        .json(&json!({
            "enabled": true,
            "grants": {"mounts": {"root": root.path()}},
            "settings": {"directories": [{"name": "nginx", "path": "etc/nginx"}]},
        }))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);

    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let out = tempfile::tempdir()?;
    let archive = app
        .data
        .path()
        .join("backups")
        .join(job["archive_name"].as_str().unwrap());
    assert!(
        run(Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(out.path()))
        .0
    );
    assert_eq!(
        std::fs::read(out.path().join("data/nginx/sites/tv.conf"))?,
        b"server { listen 8080; }\n"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json"))?)?;
    let dir = manifest["directories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "nginx")
        .cloned()
        .unwrap_or_else(|| panic!("data/nginx in the manifest: {manifest}"));
    assert_eq!(dir["contributed_by"], "custom-dirs", "{dir}");
    let plugins = manifest["plugins"].to_string();
    assert!(plugins.contains("custom-dirs"), "{plugins}");

    // The job's plugin log, through the API.
    let (s, log) = app
        .get_json(&format!("/api/backups/jobs/{}/plugin-log/", job["id"]))
        .await?;
    assert_eq!(s, 200, "{log}");
    let lines = log["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["plugin"] == "custom-dirs" && l["message"] == "archiving nginx"),
        "{log}"
    );

    // Change the directory and a recording; restore puts nginx back as it was and leaves
    // recordings (absent from this archive) exactly as they are now.
    std::fs::write(nginx.join("nginx.conf"), b"broken")?;
    std::fs::write(nginx.join("sites/new.conf"), b"added later")?;
    let recording = app.data.path().join("recordings/recording-001.ts");
    std::fs::write(&recording, b"recorded after the backup")?;
    let done = app.restore(job["id"].as_i64().unwrap()).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        std::fs::read(nginx.join("nginx.conf"))?,
        b"worker_processes 2;\n"
    );
    assert!(
        !nginx.join("sites/new.conf").exists(),
        "the directory is the archived one"
    );
    assert_eq!(std::fs::read(&recording)?, b"recorded after the backup");

    // The log is kept with the job across a restart, and goes when the job is deleted.
    let mut app = app;
    app.stop();
    app.start().await?;
    app.login_admin().await?;
    let log_url = format!("/api/backups/jobs/{}/plugin-log/", job["id"]);
    let (s, again) = app.get_json(&log_url).await?;
    assert_eq!((s, &again), (200, &log), "the same lines after a restart");
    let r = app
        .req(Method::DELETE, &format!("/api/backups/jobs/{}/", job["id"]))
        .send()
        .await?;
    assert_eq!(r.status(), 204, "{}", r.text().await?);
    let (s, gone) = app.get_json(&log_url).await?;
    assert_eq!(s, 404, "{gone}");
    for bad in ["abc", "0", "-1", "99999"] {
        let (s, body) = app
            .get_json(&format!("/api/backups/jobs/{bad}/plugin-log/"))
            .await?;
        assert_eq!(s, 404, "{bad}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn a_looping_plugin_is_stopped_at_its_deadline_while_the_api_keeps_answering()
-> anyhow::Result<()> {
    let app = app_with_plugins(&["fixture-spin"]).await?;
    // A deadline long enough that "the API answered while the plugin was still looping"
    // is an observation, not luck.
    let r = app
        .req(Method::PUT, "/api/backups/plugins/fixture-spin/")
        .json(&json!({
            "enabled": true,
            "grants": {"limits": {"timeout_ms": 6000}},
            "settings": {"only": "pre-backup"},
        }))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let (s, job) = app.post_json("/api/backups/jobs/", json!({})).await?;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_i64().unwrap();

    // The plugin reports progress before it loops: the job shows it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
        if j["progress"]["step"] == "plugin" {
            assert_eq!(j["status"], "running", "{j}");
            assert_eq!(j["progress"]["done_bytes"], 1, "{j}");
            assert_eq!(j["progress"]["total_bytes"], 3, "{j}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin's progress never showed: {j}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While it spins, the server answers: health, the history, the data page.
    let r = app.client.get(app.url("/api/health")).send().await?;
    assert_eq!(r.status(), 200);
    let (s, _) = app.get_json("/api/backups/jobs/").await?;
    assert_eq!(s, 200);
    let r = app.client.get(app.url("/data")).send().await?;
    assert_eq!(r.status(), 200);
    let (_, j) = app.get_json(&format!("/api/backups/jobs/{id}/")).await?;
    assert_eq!(
        (j["status"].as_str(), j["progress"]["step"].as_str()),
        (Some("running"), Some("plugin")),
        "the answers came while the plugin was still looping: {j}"
    );

    // Stopped at its deadline; `warn` policy: the job goes on and says so.
    let done = app.wait_job(id, Duration::from_secs(120)).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    let warnings = done["warnings"].to_string();
    assert_eq!(
        warnings
            .matches("stopped after its 6000 ms deadline")
            .count(),
        1,
        "{warnings}"
    );
    assert!(warnings.contains("fixture-spin"), "{warnings}");
    Ok(())
}

#[tokio::test]
async fn plugin_dev_mode_reloads_a_changed_plugin_and_normal_mode_does_not() -> anyhow::Result<()> {
    async fn version_after_edit(app: &TestApp) -> anyhow::Result<String> {
        let version = |list: &Value| {
            list["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == "fixture-echo")
                .map(|p| p["version"].as_str().unwrap().to_owned())
        };
        let (_, list) = app.get_json("/api/backups/plugins/").await?;
        assert_eq!(version(&list).as_deref(), Some("0.1.0"), "{list}");
        // A new build of the plugin lands in its folder (a different length, so even a
        // coarse mtime cannot hide the change).
        let toml = app.data.path().join("plugins/fixture-echo/plugin.toml");
        let text = std::fs::read_to_string(&toml)?;
        assert!(text.contains("version = \"0.1.0\""), "{text}");
        std::fs::write(
            &toml,
            text.replace("version = \"0.1.0\"", "version = \"0.10.0\""),
        )?;
        let (_, list) = app.get_json("/api/backups/plugins/").await?;
        Ok(version(&list).unwrap_or_default())
    }
    let dev = app_with_plugins_env(&["fixture-echo"], &[("BACKSTOP_PLUGIN_DEV", "1")]).await?;
    assert_eq!(version_after_edit(&dev).await?, "0.10.0", "reloaded");
    let normal = app_with_plugins(&["fixture-echo"]).await?;
    assert_eq!(
        version_after_edit(&normal).await?,
        "0.1.0",
        "a restart is needed without dev mode"
    );
    Ok(())
}

#[tokio::test]
async fn an_admin_installs_a_plugin_by_upload_and_bad_uploads_are_refused_with_the_reason()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let src = built_plugin("fixture-echo").expect("plugins are built by ./build.sh");
    let manifest = std::fs::read_to_string(src.join("plugin.toml"))?;
    let component = std::fs::read(src.join("plugin.wasm"))?;
    let upload = |manifest: String, component: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest)
            .part(
                "component",
                reqwest::multipart::Part::bytes(component).file_name("plugin.wasm"),
            );
        app.req(Method::POST, "/api/backups/plugins/")
            .multipart(form)
            .send()
    };

    // A manifest with a key the contract does not know: refused, nothing installed.
    let r = upload(format!("{manifest}\nsurprise = true\n"), component.clone()).await?;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await?;
    assert!(body.to_string().contains("surprise"), "{body}");
    // Bytes that are not a component: refused.
    let r = upload(manifest.clone(), b"\0asm not really".to_vec()).await?;
    assert_eq!(r.status(), 400, "{}", r.text().await?);
    let (_, list) = app.get_json("/api/backups/plugins/").await?;
    assert_eq!(list["plugins"], json!([]), "nothing was installed: {list}");
    assert!(
        !app.data.path().join("plugins/fixture-echo").exists(),
        "no files written for a refused plugin"
    );

    // The real thing: installed, disabled until an admin enables it, files in place.
    let r = upload(manifest.clone(), component.clone()).await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    let view: Value = r.json().await?;
    assert_eq!(view["id"], "fixture-echo", "{view}");
    assert_eq!(view["enabled"], false, "{view}");
    assert!(
        app.data
            .path()
            .join("plugins/fixture-echo/plugin.wasm")
            .is_file()
    );
    let (_, list) = app.get_json("/api/backups/plugins/").await?;
    assert_eq!(list["plugins"].as_array().unwrap().len(), 1, "{list}");

    // Without a session: 401.
    let anonymous = reqwest::Client::new()
        .get(app.url("/api/backups/plugins/"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    Ok(())
}

/// Issue 11 step 6: the binary carries its first-party plugins. A fresh data dir offers all
/// three, disabled, with the recordings folder already granted, so one `enabled: true` is
/// all it takes; a restart installs nothing twice and keeps an admin's changes.
#[tokio::test]
async fn a_fresh_server_offers_the_bundled_plugins_and_recordings_is_one_switch_away()
-> anyhow::Result<()> {
    let mut app = TestApp::spawn_with(&[("BACKSTOP_BUNDLED_PLUGINS", "1")]).await?;
    app.login_admin().await?;
    let (s, list) = app.get_json("/api/backups/plugins/").await?;
    assert_eq!(s, 200);
    let plugins = list["plugins"].as_array().expect("a list");
    let mut ids: Vec<&str> = plugins.iter().map(|p| p["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["custom-dirs", "recordings", "space-guard"], "{list}");
    for p in plugins {
        assert_eq!(p["enabled"], false, "bundled plugins start disabled: {p}");
        assert_ne!(p["state"], "broken", "{p}");
    }
    let recordings = app.data.path().join("recordings");
    let rec = plugins.iter().find(|p| p["id"] == "recordings").unwrap();
    assert_eq!(rec["grants"]["mounts"]["recordings"], json!(recordings));

    let r = app
        .req(Method::PUT, "/api/backups/plugins/recordings/")
        .json(&json!({"enabled": true}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let job = app.backup(json!({"include_recordings": true})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, manifest) = app
        .get_json(&format!("/api/backups/jobs/{}/manifest/", job["id"]))
        .await?;
    let dir = manifest["directories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "recordings")
        .unwrap_or_else(|| panic!("no recordings in {manifest}"));
    assert_eq!(dir["contributed_by"], "recordings");

    // An admin's own plugin.toml survives restarts: nothing bundled is written over it.
    let toml = app.data.path().join("plugins/custom-dirs/plugin.toml");
    let edited = std::fs::read_to_string(&toml)?.replace("Custom", "My custom");
    std::fs::write(&toml, &edited)?;
    app.stop();
    app.start().await?;
    app.login_admin().await?;
    assert_eq!(std::fs::read_to_string(&toml)?, edited);
    let (_, list) = app.get_json("/api/backups/plugins/").await?;
    let rec = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "recordings")
        .unwrap()
        .clone();
    assert_eq!(rec["enabled"], true, "still enabled after a restart: {rec}");
    Ok(())
}
