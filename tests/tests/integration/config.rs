//! Startup configuration: every bad input gets a clear message and a non-zero exit.

use tests::{TestApp, run};

fn serve_with(env: &[(&str, &str)]) -> (bool, String, String) {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(tests::backstop_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("BACKSTOP_DATA_DIR", data.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // `--help`-style commands exit at once; `serve` with a bad value must exit before serving.
    cmd.args(["serve"]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not exit on bad configuration {env:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn bad_bind_address_is_refused_with_its_name() {
    let (ok, _, err) = serve_with(&[("BACKSTOP_BIND", "not-an-address")]);
    assert!(!ok);
    assert!(
        err.contains("--bind") && err.contains("not-an-address"),
        "{err}"
    );
}

#[test]
fn an_unreachable_postgres_content_db_stops_the_start_with_its_address() {
    let (ok, _, err) = serve_with(&[
        (
            "BACKSTOP_CONTENT_DB",
            "postgres://app@localhost/appdb?host=/nonexistent-backstop-socket",
        ),
        ("BACKSTOP_BIND", "127.0.0.1:0"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("cannot reach the PostgreSQL server")
            && err.contains("/nonexistent-backstop-socket"),
        "{err}"
    );
}

#[test]
fn a_postgres_state_db_is_refused_clearly() {
    let (ok, _, err) = serve_with(&[
        ("BACKSTOP_STATE_DB", "postgres://localhost/x"),
        ("BACKSTOP_BIND", "127.0.0.1:0"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("BACKSTOP_STATE_DB") && err.contains("use a sqlite:// URL"),
        "{err}"
    );
}

#[test]
fn unknown_db_url_scheme_is_refused() {
    let (ok, _, err) = serve_with(&[
        ("BACKSTOP_STATE_DB", "mysql://x"),
        ("BACKSTOP_BIND", "127.0.0.1:0"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("BACKSTOP_STATE_DB") && err.contains("not a database URL"),
        "{err}"
    );
}

#[test]
fn bad_demo_flag_is_refused() {
    let (ok, _, err) = serve_with(&[("BACKSTOP_DEMO", "maybe")]);
    assert!(!ok);
    assert!(err.contains("expected 1 or 0"), "{err}");
}

#[test]
fn unwritable_data_dir_is_refused_with_the_path() {
    let parent = tempfile::tempdir().unwrap();
    // Root ignores permission bits, so as root use a path below a regular file instead:
    // nobody can create that.
    let is_root = run(std::process::Command::new("id").arg("-u")).1.trim() == "0";
    let data = if is_root {
        let file = parent.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        file.join("data")
    } else {
        let ro = parent.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let mut perms = std::fs::metadata(&ro).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
        std::fs::set_permissions(&ro, perms).unwrap();
        ro.join("data")
    };
    let (ok, _, err) = serve_with(&[
        ("BACKSTOP_DATA_DIR", data.to_str().unwrap()),
        ("BACKSTOP_BIND", "127.0.0.1:0"),
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot create the data folder {}", data.display())),
        "{err}"
    );
}

#[test]
fn port_in_use_is_reported() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (ok, _, err) = serve_with(&[("BACKSTOP_BIND", &addr)]);
    assert!(!ok);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[tokio::test]
async fn first_start_migrates_and_seeds_demo_data() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    for d in ["logos", "recordings", "backups", "plugins"] {
        assert!(app.data.path().join(d).is_dir(), "{d} missing");
    }
    let pool = app.content_pool().await?;
    let channels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels")
        .fetch_one(&pool)
        .await?;
    assert!(channels > 0);
    let logos = std::fs::read_dir(app.data.path().join("logos"))?.count();
    assert!(logos > 0);
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await?;
    assert_eq!(version, 1);
    Ok(())
}

#[tokio::test]
async fn demo_zero_leaves_the_content_db_empty_and_seed_fills_it_once() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(&[("BACKSTOP_DEMO", "0")]).await?;
    let pool = app.content_pool().await?;
    let channels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels")
        .fetch_one(&pool)
        .await?;
    assert_eq!(channels, 0);
    let mut cmd = app.command();
    cmd.args(["demo", "seed", "--channels", "12"]);
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "{err}");
    assert!(out.contains("seeded 12 channels"), "{out}");
    let channels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels")
        .fetch_one(&pool)
        .await?;
    assert_eq!(channels, 12);
    let (ok, _, err) = run(&mut cmd);
    assert!(!ok);
    assert!(err.contains("already holds data"), "{err}");
    Ok(())
}

#[tokio::test]
async fn openapi_describes_every_route() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let doc: serde_json::Value = reqwest::get(app.url("/api/openapi.json"))
        .await?
        .json()
        .await?;
    // Derived by utoipa 5, which writes OpenAPI 3.1.
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/health", "get"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/auth/me", "get"),
        ("/api/auth/tokens", "post"),
        ("/api/auth/tokens/{id}", "delete"),
        ("/api/backups/jobs/", "get"),
        ("/api/backups/jobs/", "post"),
        ("/api/backups/jobs/{id}/", "delete"),
        ("/api/backups/jobs/{id}/cancel/", "post"),
        ("/api/backups/jobs/{id}/download/", "head"),
        ("/api/backups/jobs/{id}/manifest/", "get"),
        ("/api/backups/jobs/{id}/verify/", "post"),
        ("/api/backups/jobs/{id}/restore/", "post"),
        ("/api/backups/jobs/{id}/plugin-log/", "get"),
        ("/api/backups/upload/", "post"),
        ("/api/backups/settings/", "put"),
        ("/api/backups/events/", "get"),
        ("/api/backups/plugins/", "get"),
        ("/api/backups/plugins/{id}/", "put"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    Ok(())
}
