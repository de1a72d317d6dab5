//! Security hardening (issue 15, items 1 and 2), each limit obeyed and violated:
//! sign-in budgets counted before hashing, `Retry-After`, the per-address budget against a
//! username spray, a lockout that stays on one address, the CLI reset as the way back in;
//! what the Data page sends to a viewer and to an admin (secrets masked); event streams
//! that end when their token is revoked or their session signed out.
//!
//! The budgets (see `engine::auth::limiter`): 5 per address and username, 20 per address,
//! 30 per username. The per-username budget across many addresses is unit-tested there
//! with a fake clock; here the two addresses available are 127.0.0.1 and ::1.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tests::{ADMIN_PASSWORD, TestApp, client};

/// The pair budget (one address, one username).
const PAIR_BURST: usize = 5;
/// The address budget (one address, any usernames).
const ADDRESS_BURST: usize = 20;

/// One sign-in attempt without cookies: (status, Retry-After seconds, body).
async fn attempt(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<(u16, Option<u64>, Value)> {
    let r = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await?;
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, retry, body))
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn thirty_parallel_wrong_passwords_get_five_401s_and_429s_with_retry_after()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let http = reqwest::Client::new();
    let guesses = (0..30).map(|i| {
        let http = http.clone();
        let base = app.base.clone();
        async move { attempt(&http, &base, "admin", &format!("wrong-guess-{i}")).await }
    });
    let answers = futures_util::future::try_join_all(guesses).await?;
    let unauthorized = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(unauthorized, PAIR_BURST, "{answers:?}");
    assert_eq!(limited.len(), 30 - PAIR_BURST, "{answers:?}");
    for (_, retry, body) in &limited {
        // The pair budget refills one attempt every 10 minutes.
        assert_eq!(*retry, Some(600), "{body}");
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(
            message(body),
            "too many failed sign-in attempts; try again in 10 minutes"
        );
    }
    // Locked: even the right password from this address is refused, unchecked.
    let (s, retry, _) = attempt(&http, &app.base, "admin", ADMIN_PASSWORD).await?;
    assert_eq!((s, retry.is_some()), (429, true));
    Ok(())
}

#[tokio::test]
async fn a_right_password_within_the_pair_budget_signs_in_and_starts_it_over() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let http = reqwest::Client::new();
    for _ in 0..PAIR_BURST - 1 {
        let (s, retry, _) = attempt(&http, &app.base, "admin", "wrong-guess").await?;
        assert_eq!((s, retry), (401, None));
    }
    let (s, _, body) = attempt(&http, &app.base, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 200, "{body}");
    // The success cleared this address's count for admin: five fresh tries, then 429.
    for _ in 0..PAIR_BURST {
        let (s, _, _) = attempt(&http, &app.base, "admin", "wrong-guess").await?;
        assert_eq!(s, 401);
    }
    let (s, _, _) = attempt(&http, &app.base, "admin", "wrong-guess").await?;
    assert_eq!(s, 429);
    Ok(())
}

#[tokio::test]
async fn a_username_spray_from_one_address_is_refused_after_twenty() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..50 {
        let (s, retry, body) =
            attempt(&http, &app.base, &format!("sprayed-{i}"), "wrong-guess").await?;
        if s == 429 {
            // One username more every 2 minutes, counted from the first attempt.
            assert!(
                retry.is_some_and(|r| r > 60 && r <= 120),
                "{retry:?} {body}"
            );
            assert!(
                message(&body).starts_with(
                    "too many failed sign-in attempts from this address; try again in "
                ),
                "{body}"
            );
        }
        statuses.push(s);
    }
    assert!(
        statuses[..ADDRESS_BURST].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    assert!(
        statuses[ADDRESS_BURST..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    // The address is out of budget for every username, admin included.
    let (s, _, _) = attempt(&http, &app.base, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 429);
    Ok(())
}

#[tokio::test]
async fn nineteen_sprayed_usernames_leave_room_for_the_admin() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let http = reqwest::Client::new();
    for i in 0..ADDRESS_BURST - 1 {
        let (s, _, _) = attempt(&http, &app.base, &format!("sprayed-{i}"), "wrong-guess").await?;
        assert_eq!(s, 401);
    }
    let (s, _, body) = attempt(&http, &app.base, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 200, "{body}");
    // A sign-in is not a guess: its slot came back, so one more username still fits.
    let (s, _, _) = attempt(&http, &app.base, "sprayed-last", "wrong-guess").await?;
    assert_eq!(s, 401);
    let (s, _, _) = attempt(&http, &app.base, "sprayed-over", "wrong-guess").await?;
    assert_eq!(s, 429);
    Ok(())
}

/// A server listening on `[::]` so a test has two client addresses: 127.0.0.1 (seen as
/// the IPv4 address it is) and ::1. Killed on drop.
struct DualStack {
    _app: TestApp,
    v4: String,
    v6: String,
}

/// `None` when this machine has no IPv6 loopback.
async fn dual_stack() -> anyhow::Result<Option<DualStack>> {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return Ok(None);
    }
    // A normal start creates the data dir and the admin; then the same dir is served on [::].
    let mut app = TestApp::spawn().await?;
    app.stop();
    app.bind = "[::]:0".into();
    app.start().await?;
    let port = app
        .base
        .strip_prefix("http://[::]:")
        .with_context(|| format!("not a dual-stack address: {}", app.base))?
        .to_owned();
    Ok(Some(DualStack {
        _app: app,
        v4: format!("http://127.0.0.1:{port}"),
        v6: format!("http://[::1]:{port}"),
    }))
}

#[tokio::test]
async fn a_lockout_from_one_address_leaves_the_account_open_from_another() -> anyhow::Result<()> {
    let Some(server) = dual_stack().await? else {
        return Ok(());
    };
    let http = reqwest::Client::new();
    for _ in 0..PAIR_BURST {
        let (s, _, _) = attempt(&http, &server.v6, "admin", "wrong-guess").await?;
        assert_eq!(s, 401);
    }
    let (s, _, _) = attempt(&http, &server.v6, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 429, "::1 is locked out of admin");
    // From 127.0.0.1 the right password works, and that success does not unlock ::1.
    let (s, _, body) = attempt(&http, &server.v4, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 200, "{body}");
    let (s, _, _) = attempt(&http, &server.v6, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 429, "a success elsewhere does not clear ::1's counter");
    // The spray budget is per address too: ::1 spraying does not touch 127.0.0.1.
    for i in 0..ADDRESS_BURST {
        attempt(&http, &server.v6, &format!("sprayed-{i}"), "wrong-guess").await?;
    }
    let (s, _, _) = attempt(&http, &server.v6, "someone-new", "wrong-guess").await?;
    assert_eq!(s, 429);
    let (s, _, _) = attempt(&http, &server.v4, "someone-new", "wrong-guess").await?;
    assert_eq!(s, 401);
    Ok(())
}

#[tokio::test]
async fn a_locked_out_admin_gets_back_in_after_a_cli_password_reset() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let http = reqwest::Client::new();
    for _ in 0..PAIR_BURST {
        attempt(&http, &app.base, "admin", "wrong-guess").await?;
    }
    let (s, _, _) = attempt(&http, &app.base, "admin", ADMIN_PASSWORD).await?;
    assert_eq!(s, 429, "locked out");
    // The CLI needs no sign-in and is never throttled; the new password starts a fresh
    // budget, so the admin is in at once, without a restart.
    let mut cmd = app.command();
    cmd.args(["user", "reset-password", "admin"]);
    let (ok, _, err) = super::auth::run_with_stdin(&mut cmd, "a-brand-new-password\n");
    assert!(ok, "{err}");
    let (s, _, body) = attempt(&http, &app.base, "admin", "a-brand-new-password").await?;
    assert_eq!(s, 200, "{body}");
    Ok(())
}

/// Creates a viewer with the CLI and returns a cookie client signed in as them.
pub(crate) async fn signed_in_viewer(app: &TestApp) -> anyhow::Result<reqwest::Client> {
    let mut cmd = app.command();
    cmd.args(["user", "create", "vera", "--role", "viewer"]);
    let (ok, _, err) = super::auth::run_with_stdin(&mut cmd, "viewer-password\n");
    assert!(ok, "{err}");
    let viewer = client()?;
    let r = viewer
        .post(app.url("/api/auth/login"))
        .header("origin", &app.base)
        .json(&json!({"username": "vera", "password": "viewer-password"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    Ok(viewer)
}

/// The Data page as the server renders it for `http`: the HTML plus the serialized data
/// of its server function, i.e. everything the browser receives.
async fn data_page(app: &TestApp, http: &reqwest::Client) -> anyhow::Result<String> {
    let r = http.get(app.url("/data")).send().await?;
    assert_eq!(r.status(), 200);
    let html = r.text().await?;
    assert!(html.contains(r#"data-table="channels""#), "{html}");
    Ok(html)
}

#[tokio::test]
async fn a_viewers_data_page_has_row_counts_but_no_rows() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let viewer = signed_in_viewer(&app).await?;
    let html = data_page(&app, &viewer).await?;
    assert!(
        html.contains(r#"data-rows="40""#),
        "the 40 demo channels are counted"
    );
    assert!(html.contains("Row contents are shown to admins only."));
    for leaked in [
        "channel_number",
        "ch1.demo",
        "Xtream Provider",
        "demo-password",
        "demo-key-",
        "Show rows",
    ] {
        assert!(!html.contains(leaked), "a viewer was sent {leaked:?}");
    }
    Ok(())
}

#[tokio::test]
async fn the_admins_data_page_masks_the_demo_passwords_and_api_keys() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let html = data_page(&app, &app.client).await?;
    // The admin gets rows (the granted side of the viewer test)...
    assert!(html.contains("channel_number") && html.contains("ch1.demo"));
    assert!(html.contains("Xtream Provider") && html.contains("Show rows"));
    // ...with m3u_accounts.password and users.api_key masked before they left the server.
    assert!(html.contains("•••"));
    assert!(!html.contains("demo-password"), "the M3U password was sent");
    assert!(!html.contains("demo-key-"), "an API key was sent");
    Ok(())
}

/// An open event stream, read in the background: `closed()` resolves when it ends.
struct EventStream {
    ended: tokio::sync::oneshot::Receiver<()>,
}

impl EventStream {
    async fn open(req: reqwest::RequestBuilder) -> anyhow::Result<EventStream> {
        let r = req.send().await?;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()?
                .starts_with("text/event-stream")
        );
        let (tx, ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut body = r.bytes_stream();
            while let Some(Ok(_)) = body.next().await {}
            let _ = tx.send(());
        });
        Ok(EventStream { ended })
    }

    /// True when the stream ended within `wait`.
    async fn ends_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, &mut self.ended).await.is_ok()
    }
}

/// The stream re-checks its credential every 2 s: 6 s is three chances.
const CLOSE_WITHIN: Duration = Duration::from_secs(6);

#[tokio::test]
async fn an_event_stream_opened_with_a_token_ends_when_the_token_is_revoked() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let mut tokens = Vec::new();
    for name in ["revoked", "kept"] {
        let (s, t) = app
            .post_json("/api/auth/tokens", json!({ "name": name }))
            .await?;
        assert_eq!(s, 201);
        tokens.push((
            t["id"].as_i64().unwrap(),
            t["token"].as_str().unwrap().to_owned(),
        ));
    }
    let bare = reqwest::Client::new();
    let events = app.url("/api/backups/events/");
    let mut revoked = EventStream::open(bare.get(&events).bearer_auth(&tokens[0].1)).await?;
    let mut kept = EventStream::open(bare.get(&events).bearer_auth(&tokens[1].1)).await?;
    let r = app
        .req(Method::DELETE, &format!("/api/auth/tokens/{}", tokens[0].0))
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let t = Instant::now();
    assert!(
        revoked.ends_within(CLOSE_WITHIN).await,
        "still open after revoke"
    );
    eprintln!("revoked token's stream ended after {:?}", t.elapsed());
    // The other token's stream is untouched, and the revoked token opens nothing new.
    assert!(
        !kept.ends_within(CLOSE_WITHIN).await,
        "the kept token's stream ended"
    );
    let r = bare.get(&events).bearer_auth(&tokens[0].1).send().await?;
    assert_eq!(r.status(), 401);
    Ok(())
}

#[tokio::test]
async fn an_event_stream_opened_with_a_cookie_ends_at_logout() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    // A second session of the same admin (another browser).
    let other = client()?;
    let r = other
        .post(app.url("/api/auth/login"))
        .header("origin", &app.base)
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let events = app.url("/api/backups/events/");
    let mut signed_out = EventStream::open(app.client.get(&events)).await?;
    let mut still_in = EventStream::open(other.get(&events)).await?;
    let r = app.req(Method::POST, "/api/auth/logout").send().await?;
    assert_eq!(r.status(), 204);
    let t = Instant::now();
    assert!(
        signed_out.ends_within(CLOSE_WITHIN).await,
        "still open after logout"
    );
    eprintln!("signed-out session's stream ended after {:?}", t.elapsed());
    assert!(
        !still_in.ends_within(CLOSE_WITHIN).await,
        "the other session's stream ended"
    );
    let r = app.client.get(&events).send().await?;
    assert_eq!(r.status(), 401);
    Ok(())
}

/// A password reset ends every session of that account (its open event stream included),
/// and only that account's: another user's session and the account's API tokens stay.
/// (Viewers may not open the event stream, so the viewer's session is checked by `me`.)
#[tokio::test]
async fn a_password_reset_ends_every_session_of_that_account_only() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let (s, t) = app
        .post_json("/api/auth/tokens", json!({ "name": "automation" }))
        .await?;
    assert_eq!(s, 201);
    let token = t["token"].as_str().unwrap().to_owned();
    let viewer = signed_in_viewer(&app).await?;
    let events = app.url("/api/backups/events/");
    let mut admin_stream = EventStream::open(app.client.get(&events)).await?;
    assert_eq!(
        viewer.get(app.url("/api/auth/me")).send().await?.status(),
        200
    );

    let mut cmd = app.command();
    cmd.args(["user", "reset-password", "admin"]);
    let (ok, _, err) = super::auth::run_with_stdin(&mut cmd, "a-brand-new-password\n");
    assert!(ok, "{err}");

    assert!(
        admin_stream.ends_within(CLOSE_WITHIN).await,
        "the admin's stream is still open after the reset"
    );
    let r = app.req(Method::GET, "/api/backups/jobs/").send().await?;
    assert_eq!(r.status(), 401, "the old session still works");
    let r = viewer.get(app.url("/api/auth/me")).send().await?;
    assert_eq!(r.status(), 200, "the viewer was signed out");
    let r = reqwest::Client::new()
        .get(app.url("/api/backups/jobs/"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "API tokens are kept");
    // Signing in again with the new password starts a session that works.
    app.login("admin", "a-brand-new-password").await?;
    let r = app.req(Method::GET, "/api/backups/jobs/").send().await?;
    assert_eq!(r.status(), 200);
    Ok(())
}
