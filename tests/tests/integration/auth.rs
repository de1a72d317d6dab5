//! Accounts, sessions, tokens, roles, rate limiting, same-origin rule.

use reqwest::Method;
use serde_json::json;
use tests::{ADMIN_PASSWORD, TestApp, client};

#[tokio::test]
async fn health_answers_without_credentials() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let r = reqwest::get(app.url("/api/health")).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await?["status"], "ok");
    Ok(())
}

#[tokio::test]
async fn login_me_logout_round_trip() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let (s, _) = app.get_json("/api/auth/me").await?;
    assert_eq!(s, 401, "no session yet");
    app.login_admin().await?;
    let (s, me) = app.get_json("/api/auth/me").await?;
    assert_eq!(s, 200);
    assert_eq!(me["username"], "admin");
    assert_eq!(me["role"], "admin");
    let r = app.req(Method::POST, "/api/auth/logout").send().await?;
    assert_eq!(r.status(), 204);
    let (s, _) = app.get_json("/api/auth/me").await?;
    assert_eq!(s, 401, "logged out");
    Ok(())
}

#[tokio::test]
async fn session_cookie_is_httponly_samesite_and_rotated_at_login() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let raw = reqwest::Client::new();
    let r = raw
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()?
        .to_owned();
    assert!(cookie.starts_with("backstop_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    // Logging in again with the first session yields a different session id.
    let first = cookie.split(';').next().unwrap().to_owned();
    let r2 = raw
        .post(app.url("/api/auth/login"))
        .header("cookie", &first)
        .header("origin", &app.base)
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    let second = r2
        .headers()
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()?
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(first, second, "session id must change at login");
    Ok(())
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let (s1, b1) = app
        .post_json(
            "/api/auth/login",
            json!({"username": "admin", "password": "nope-nope"}),
        )
        .await?;
    let (s2, b2) = app
        .post_json(
            "/api/auth/login",
            json!({"username": "ghost", "password": "nope-nope"}),
        )
        .await?;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1["error"]["message"], "wrong username or password");
    assert_eq!(b1, b2);
    Ok(())
}

#[tokio::test]
async fn malformed_login_body_is_a_json_400() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let r = app
        .req(Method::POST, "/api/auth/login")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "invalid");
    assert_eq!(
        body["error"]["message"],
        "the request body is not valid JSON"
    );
    let (s, body) = app
        .post_json("/api/auth/login", json!({"username": "admin"}))
        .await?;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn login_is_rate_limited_after_five_failures() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    for _ in 0..5 {
        let (s, _) = app
            .post_json(
                "/api/auth/login",
                json!({"username": "admin", "password": "wrong-guess"}),
            )
            .await?;
        assert_eq!(s, 401);
    }
    let (s, body) = app
        .post_json(
            "/api/auth/login",
            json!({"username": "admin", "password": "wrong-guess"}),
        )
        .await?;
    assert_eq!(s, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many failed sign-in attempts")
    );
    // Even the right password is refused while limited.
    let (s, _) = app
        .post_json(
            "/api/auth/login",
            json!({"username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await?;
    assert_eq!(s, 429);
    // Another username from the same client is not affected.
    let (s, _) = app
        .post_json(
            "/api/auth/login",
            json!({"username": "someone", "password": "wrong-guess"}),
        )
        .await?;
    assert_eq!(s, 401);
    Ok(())
}

#[tokio::test]
async fn backups_api_is_401_without_credentials_and_403_for_a_viewer() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let anon = reqwest::get(app.url("/api/backups/jobs/")).await?;
    assert_eq!(anon.status(), 401);
    let body: serde_json::Value = anon.json().await?;
    assert_eq!(body["error"]["code"], "unauthenticated");

    let mut cmd = app.command();
    cmd.args(["user", "create", "vera", "--role", "viewer"]);
    let (ok, _, err) = run_with_stdin(&mut cmd, "viewer-password\n");
    assert!(ok, "{err}");
    let viewer = shallow(&app);
    viewer.login("vera", "viewer-password").await?;
    let (s, body) = viewer.get_json("/api/backups/jobs/").await?;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["message"], "only admins can manage backups");
    let (s, _) = viewer.get_json("/api/backups/settings/").await?;
    assert_eq!(s, 403);
    // The viewer is still a signed-in user.
    let (s, me) = viewer.get_json("/api/auth/me").await?;
    assert_eq!((s, me["role"].as_str()), (200, Some("viewer")));
    Ok(())
}

#[tokio::test]
async fn api_tokens_authenticate_are_listed_without_secret_and_revocable() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let (s, created) = app
        .post_json("/api/auth/tokens", json!({"name": "nightly script"}))
        .await?;
    assert_eq!(s, 201);
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();
    let bare = reqwest::Client::new();
    let r = bare
        .get(app.url("/api/backups/jobs/"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    // Token writes need no Origin header (a browser never adds a bearer token on its own).
    let r = bare
        .put(app.url("/api/backups/settings/"))
        .bearer_auth(&token)
        .json(&json!({"retention_count": 3}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let (_, list) = app.get_json("/api/auth/tokens").await?;
    let listed = list["tokens"].to_string();
    assert!(listed.contains("nightly script"));
    assert!(!listed.contains(&token), "the secret must never be listed");
    let r = app
        .req(Method::DELETE, &format!("/api/auth/tokens/{id}"))
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let r = bare
        .get(app.url("/api/backups/jobs/"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let r = bare
        .get(app.url("/api/backups/jobs/"))
        .bearer_auth("bst_made-up")
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    Ok(())
}

#[tokio::test]
async fn cookie_writes_from_another_origin_are_refused() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let r = app
        .client
        .post(app.url("/api/backups/jobs/"))
        .header("origin", "http://evil.example")
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cross-origin request refused")
    );
    // Without Origin or Referer a cookie-authenticated write is refused too.
    let r = app
        .client
        .put(app.url("/api/backups/settings/"))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    // Same origin passes.
    let r = app
        .req(Method::PUT, "/api/backups/settings/")
        .json(&json!({"retention_count": 4}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    Ok(())
}

#[tokio::test]
async fn first_start_without_password_prints_a_generated_one_once() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut cmd = std::process::Command::new(tests::backstop_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH")?)
        .env("BACKSTOP_DATA_DIR", data.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap()?;
    let _ = child.kill();
    let _ = child.wait();
    let password = first.rsplit("password: ").next().unwrap().to_owned();
    assert!(
        first.starts_with("Created admin account \"admin\" with password: "),
        "{first}"
    );
    assert!(password.len() >= 16);
    // Second start: the admin exists, nothing is printed about it.
    let mut cmd2 = std::process::Command::new(tests::backstop_bin());
    cmd2.env_clear()
        .env("PATH", std::env::var("PATH")?)
        .env("BACKSTOP_DATA_DIR", data.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd2.spawn()?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap()?;
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("backstop listening on "), "{first}");
    Ok(())
}

#[tokio::test]
async fn reset_password_via_cli_changes_the_login() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let mut cmd = app.command();
    cmd.args(["user", "reset-password", "admin"]);
    let (ok, _, err) = run_with_stdin(&mut cmd, "a-brand-new-password\n");
    assert!(ok, "{err}");
    assert!(app.login("admin", ADMIN_PASSWORD).await.is_err());
    app.login("admin", "a-brand-new-password").await?;
    let mut cmd = app.command();
    cmd.args(["user", "reset-password", "nobody"]);
    let (ok, _, err) = run_with_stdin(&mut cmd, "whatever-password\n");
    assert!(!ok);
    assert!(err.contains("no user named \"nobody\""), "{err}");
    let mut cmd = app.command();
    cmd.args(["user", "create", "shorty", "--role", "admin"]);
    let (ok, _, err) = run_with_stdin(&mut cmd, "short\n");
    assert!(!ok);
    assert!(err.contains("at least 8 characters"), "{err}");
    Ok(())
}

/// Runs a command with `input` on stdin.
pub fn run_with_stdin(cmd: &mut std::process::Command, input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A second handle on the same server (its own cookie jar), for multi-user tests.
fn shallow(app: &TestApp) -> TestApp {
    TestApp {
        base: app.base.clone(),
        data: tempfile::tempdir().unwrap(),
        child: None,
        client: client().unwrap(),
        extra_env: vec![],
        stdout: vec![],
        bind: app.bind.clone(),
    }
}
