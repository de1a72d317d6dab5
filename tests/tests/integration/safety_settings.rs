//! Data safety through the real server (DESIGN section 4, data safety 4, and section 7,
//! grants): a backup folder that a restore would overwrite, or that would hold the data
//! dir, is refused by the settings; a plugin grant that would reach Backstop's own files
//! is refused by the plugin API. Refusals store nothing and create nothing.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};
use tests::TestApp;

/// A server whose data dir has the built `custom-dirs` plugin installed (its `root` mount
/// has backup and restore access), signed in as admin.
async fn app_with_custom_dirs() -> anyhow::Result<TestApp> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/backstop-plugins/custom-dirs");
    assert!(
        src.join("plugin.wasm").is_file(),
        "plugins are built by ./build.sh (plugins/build.sh)"
    );
    let mut app = TestApp::spawn().await?;
    app.stop();
    let dest = app.data.path().join("plugins/custom-dirs");
    std::fs::create_dir_all(&dest)?;
    for f in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(src.join(f), dest.join(f))?;
    }
    app.start().await?;
    app.login_admin().await?;
    Ok(app)
}

/// `PUT` with a JSON body -> (status, body).
async fn put(app: &TestApp, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let r = app.req(Method::PUT, path).json(&body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

/// The data dir as the server resolves it (messages name resolved paths).
fn data_dir(app: &TestApp) -> PathBuf {
    app.data.path().canonicalize().expect("the data dir exists")
}

async fn saved_path(app: &TestApp) -> anyhow::Result<Value> {
    let (s, v) = app.get_json("/api/backups/settings/").await?;
    assert_eq!(s, 200, "{v}");
    Ok(v["path"].clone())
}

/// A plugin change that grants `path` as custom-dirs' `root` mount.
fn grant(path: &Path) -> Value {
    json!({"grants": {"mounts": {"root": path}}})
}

async fn root_grant(app: &TestApp) -> anyhow::Result<Value> {
    let (s, list) = app.get_json("/api/backups/plugins/").await?;
    assert_eq!(s, 200, "{list}");
    let p = list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["id"] == "custom-dirs")
        .cloned()
        .unwrap_or_else(|| panic!("custom-dirs is listed: {list}"));
    Ok(p["grants"]["mounts"]["root"].clone())
}

#[tokio::test]
async fn backup_folder_over_the_data_dir_or_a_restored_folder_is_refused_and_not_created()
-> anyhow::Result<()> {
    let app = app_with_custom_dirs().await?;
    let data = data_dir(&app);
    // A host folder granted to custom-dirs with restore access: a restore replaces it.
    let target_dir = tempfile::tempdir()?;
    let target = target_dir.path().canonicalize()?;
    let (s, v) = put(
        &app,
        "/api/backups/plugins/custom-dirs/",
        json!({"grants": {"mounts": {"root": target}}}),
    )
    .await?;
    assert_eq!(s, 200, "{v}");

    let replaces = "a restore replaces that folder";
    let granted = format!(
        "the folder granted to plugin custom-dirs for its mount root ({})",
        target.display()
    );
    let d = data.display();
    let refused: Vec<(PathBuf, String)> = vec![
        (
            data.clone(),
            format!(
                "the backup folder may not be the data folder itself ({d}): a restore replaces what it holds"
            ),
        ),
        (
            data.parent()
                .expect("the data dir has a parent")
                .to_path_buf(),
            format!(
                "the backup folder may not contain the data folder ({d}): a restore replaces what it holds"
            ),
        ),
        (
            data.join("logos"),
            format!("the backup folder may not be logos/ ({d}/logos): {replaces}"),
        ),
        (
            data.join("logos/sub"),
            format!("the backup folder may not be inside logos/ ({d}/logos): {replaces}"),
        ),
        (
            data.join("plugins"),
            format!(
                "the backup folder may not be plugins/ ({d}/plugins): it holds the installed plugins and their compiled cache"
            ),
        ),
        (
            target.clone(),
            format!("the backup folder may not be {granted}: {replaces}"),
        ),
        (
            target.join("archives"),
            format!("the backup folder may not be inside {granted}: {replaces}"),
        ),
    ];
    for (path, message) in &refused {
        let existed = path.exists();
        let (s, v) = put(&app, "/api/backups/settings/", json!({"path": path})).await?;
        assert_eq!(s, 400, "{} -> {v}", path.display());
        assert_eq!(v["error"]["fields"]["path"], json!(message), "{v}");
        assert_eq!(
            saved_path(&app).await?,
            "backups",
            "the settings are unchanged"
        );
        assert_eq!(path.exists(), existed, "{} is not created", path.display());
    }

    // Anywhere else inside the data dir, or outside it, is fine.
    let elsewhere = data.join("elsewhere");
    let (s, v) = put(&app, "/api/backups/settings/", json!({"path": elsewhere})).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(saved_path(&app).await?, json!(elsewhere));
    assert!(elsewhere.is_dir());
    let outside = tempfile::tempdir()?;
    let (s, v) = put(
        &app,
        "/api/backups/settings/",
        json!({"path": outside.path()}),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(saved_path(&app).await?, json!(outside.path()));
    Ok(())
}

#[tokio::test]
async fn plugin_grant_of_backstops_own_files_is_refused_and_not_stored() -> anyhow::Result<()> {
    let app = app_with_custom_dirs().await?;
    let data = data_dir(&app);
    let d = data.display();
    let own = "a plugin may not reach Backstop's own files";
    let refused = [
        (
            data.clone(),
            format!(
                "{d} is the data folder: grant a folder outside it, or recordings/ or logos/ inside it"
            ),
        ),
        (
            data.join("backups"),
            format!("{d}/backups is the archive folder ({d}/backups): {own}"),
        ),
        (
            data.join("plugins"),
            format!("{d}/plugins is the plugins folder ({d}/plugins): {own}"),
        ),
    ];
    for (path, message) in &refused {
        let (s, v) = put(&app, "/api/backups/plugins/custom-dirs/", grant(path)).await?;
        assert_eq!(s, 400, "{} -> {v}", path.display());
        assert_eq!(
            v["error"]["fields"]["grants.mounts.root"],
            json!(message),
            "{v}"
        );
        assert_eq!(root_grant(&app).await?, Value::Null, "nothing is stored");
    }

    // A folder outside the data dir, and recordings/ inside it, may be granted.
    let outside_dir = tempfile::tempdir()?;
    let outside = outside_dir.path().canonicalize()?;
    let (s, v) = put(&app, "/api/backups/plugins/custom-dirs/", grant(&outside)).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(root_grant(&app).await?, json!(outside));

    // The archive folder is refused wherever the settings put it.
    let archive_dir = tempfile::tempdir()?;
    let archive = archive_dir.path().canonicalize()?;
    let (s, v) = put(&app, "/api/backups/settings/", json!({"path": archive})).await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = put(&app, "/api/backups/plugins/custom-dirs/", grant(&archive)).await?;
    assert_eq!(s, 400, "{v}");
    let a = archive.display();
    assert_eq!(
        v["error"]["fields"]["grants.mounts.root"],
        json!(format!("{a} is the archive folder ({a}): {own}")),
        "{v}"
    );
    assert_eq!(
        root_grant(&app).await?,
        json!(outside),
        "the old grant stays"
    );

    let recordings = data.join("recordings");
    let (s, v) = put(
        &app,
        "/api/backups/plugins/custom-dirs/",
        grant(&recordings),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(root_grant(&app).await?, json!(recordings));
    Ok(())
}
