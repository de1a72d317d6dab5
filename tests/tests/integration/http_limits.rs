//! HTTP limits (issue 15, item 5), each obeyed and violated: the header-read timeout (a client
//! that stalls mid request line is cut off while others are served), the per-client
//! connection cap (32: the extra connections are closed at once, a slot frees when one
//! closes), the event-stream cap (16 per account: 429, then a slot frees when a stream
//! closes), and request body limits (2 MiB JSON on the REST API, 1 MiB for server functions:
//! 413, while a body under the limit is read).
//!
//! Every test connects from 127.0.0.1, so "another client" is the same address: the
//! per-client cap is shown as "the extra connections are closed, and service comes back".

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tests::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `MAX_CONNECTIONS_PER_CLIENT` in server/src/http/mod.rs.
const CONNECTIONS_PER_CLIENT: usize = 32;
/// `MAX_EVENT_STREAMS_PER_ACCOUNT` in server/src/http/mod.rs.
const EVENT_STREAMS_PER_ACCOUNT: usize = 16;
/// `JSON_BODY_LIMIT` in server/src/http/mod.rs.
const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// `SERVER_FN_BODY_LIMIT` in server/src/http/mod.rs.
const SERVER_FN_BODY_LIMIT: usize = 1024 * 1024;

/// `host:port` of the app, for raw sockets.
fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Whether the server has closed `socket`: a read that ends (EOF or reset) within `wait`.
async fn closed_within(socket: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, socket.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_elapsed) => false,
    }
}

/// Sends `GET /api/health` on a raw socket and returns the status line.
async fn health_on(socket: &mut TcpStream) -> anyhow::Result<String> {
    socket
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: backstop\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .context("no answer to a health check on an open connection")??;
    let reply = String::from_utf8_lossy(&reply);
    Ok(reply.lines().next().unwrap_or("").to_owned())
}

/// Sends a request on a raw socket (`head` without its final blank line, then `body`) and
/// returns the status code and the body of the answer. Used for bodies over a limit: the
/// server answers before reading them, so the request is sent only as far as the server
/// reads it (a client still writing when the server closes would see a reset instead).
async fn raw_request(app: &TestApp, head: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
    let mut socket = TcpStream::connect(addr(app)).await?;
    socket
        .write_all(format!("{head}\r\nHost: {}\r\nConnection: close\r\n\r\n", addr(app)).as_bytes())
        .await?;
    socket.write_all(body).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut reply))
        .await
        .context("no answer")??;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {reply:?}"))?;
    let body = reply
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, body))
}

/// Polls `/api/health` with a fresh client until it answers 200 (the server may take a
/// moment to notice closed connections and free their slots).
async fn health_comes_back(app: &TestApp) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::new();
        if let Ok(r) = fresh.get(app.url("/api/health")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("/api/health did not answer 200 again within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_stalled_mid_request_line_is_disconnected_while_others_are_served()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let mut stalled = TcpStream::connect(addr(&app)).await?;
    stalled.write_all(b"GET /api/hea").await?;
    // Read the stalled socket in the background until the server ends it (the safety
    // timeout only keeps a broken server from hanging the test).
    let cut_off = tokio::spawn(async move {
        let mut reply = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(60), stalled.read_to_end(&mut reply)).await;
        (read.is_ok(), reply, Instant::now())
    });

    // Meanwhile another connection is served.
    let r = reqwest::Client::new()
        .get(app.url("/api/health"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let served_at = Instant::now();
    assert!(
        !cut_off.is_finished(),
        "the stalled connection ended before the header timeout"
    );

    let (ended, reply, ended_at) = cut_off.await?;
    assert!(ended, "the stalled connection was still open after 60 s");
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "the stalled client got a real answer: {reply:?}"
    );
    assert!(
        served_at < ended_at,
        "the health check was answered only after the stalled client was cut off"
    );
    // And the server is still there afterwards.
    health_comes_back(&app).await
}

#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_and_service_comes_back_when_they_go()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let extra = 5;
    let mut sockets = Vec::new();
    for _ in 0..CONNECTIONS_PER_CLIENT + extra {
        sockets.push(TcpStream::connect(addr(&app)).await?);
    }
    // The extra ones are closed at once; the ones within the cap wait for their headers
    // (for 10 s, the header timeout: 3 s is well inside it).
    let closed = futures_util::future::join_all(
        sockets
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(3))),
    )
    .await;
    let n_closed = closed.iter().filter(|&&c| c).count();
    assert!(
        n_closed >= extra,
        "only {n_closed} of {} idle connections were closed",
        CONNECTIONS_PER_CLIENT + extra
    );
    // The cap is still full: one more connection from this client is closed too...
    let mut one_more = TcpStream::connect(addr(&app)).await?;
    assert!(
        closed_within(&mut one_more, Duration::from_secs(3)).await,
        "a connection over the cap was kept open"
    );
    // ...while a connection within the cap is served.
    let open = closed
        .iter()
        .position(|&c| !c)
        .context("no connection within the cap was kept open")?;
    let status = health_on(&mut sockets[open]).await?;
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "a connection within the cap was not served: {status:?}"
    );
    // Once the client lets go, it is served again.
    drop(sockets);
    health_comes_back(&app).await
}

/// Signs in and returns an admin API token.
async fn admin_token(app: &TestApp) -> anyhow::Result<String> {
    app.login_admin().await?;
    let (s, t) = app
        .post_json("/api/auth/tokens", json!({ "name": "streams" }))
        .await?;
    assert_eq!(s, 201, "{t}");
    Ok(t["token"].as_str().context("token")?.to_owned())
}

#[tokio::test]
async fn event_streams_over_the_per_account_cap_answer_429_until_one_closes() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let token = admin_token(&app).await?;
    let bare = reqwest::Client::new();
    let events = app.url("/api/backups/events/");
    let open = || bare.get(&events).bearer_auth(&token).send();
    let mut streams = Vec::new();
    for i in 0..EVENT_STREAMS_PER_ACCOUNT {
        let r = open().await?;
        assert_eq!(r.status(), 200, "stream {i} within the cap was refused");
        streams.push(r);
    }
    let r = open().await?;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await?;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("{EVENT_STREAMS_PER_ACCOUNT} event streams open")),
        "{message}"
    );
    // The same account signed in with a cookie shares the cap.
    let r = app.req(Method::GET, "/api/backups/events/").send().await?;
    assert_eq!(r.status(), 429);

    // Closing one frees its slot (once the server sees the connection go).
    drop(streams.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = open().await?;
        if r.status() == 200 {
            streams.push(r);
            break;
        }
        assert_eq!(r.status(), 429);
        if Instant::now() > deadline {
            bail!("no event stream could open 10 s after one was closed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(streams.len(), EVENT_STREAMS_PER_ACCOUNT);
    Ok(())
}

/// `body` followed by spaces (still the same JSON) to exactly `len` bytes.
fn padded_json(body: &Value, len: usize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(body).expect("JSON");
    assert!(bytes.len() <= len);
    bytes.resize(len, b' ');
    bytes
}

#[tokio::test]
async fn a_json_body_over_the_limit_answers_413_and_one_under_it_is_read() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let (s, settings) = app.get_json("/api/backups/settings/").await?;
    assert_eq!(s, 200);
    let mut saved = serde_json::Map::new();
    for key in ["path", "include_recordings", "retention_count", "schedule"] {
        saved.insert(key.to_owned(), settings[key].clone());
    }
    let saved = Value::Object(saved);
    let put = |bytes: Vec<u8>| {
        app.req(Method::PUT, "/api/backups/settings/")
            .header("content-type", "application/json")
            .body(bytes)
            .send()
    };

    // At the limit: read and saved.
    let r = put(padded_json(&saved, JSON_BODY_LIMIT)).await?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "a body at the limit was not saved: {body}");

    // One byte over: 413 with the JSON error body, before a byte of it is read (the body is
    // not even sent).
    let token = admin_token(&app).await?;
    let (status, body) = raw_request(
        &app,
        &format!(
            "PUT /api/backups/settings/ HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}",
            JSON_BODY_LIMIT + 1
        ),
        b"",
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("2048 KiB"),
        "{body}"
    );

    // The same without a Content-Length (chunked): found while reading, and 413 too.
    let size = JSON_BODY_LIMIT + 1024;
    let mut chunked = format!("{size:x}\r\n").into_bytes();
    chunked.extend(padded_json(&saved, size));
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, body) = raw_request(
        &app,
        &format!(
            "PUT /api/backups/settings/ HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked"
        ),
        &chunked,
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    Ok(())
}

/// The login server function's URL, from the form the login page renders.
async fn login_server_fn(app: &TestApp) -> anyhow::Result<String> {
    let html = reqwest::get(app.url("/login")).await?.text().await?;
    let start = html
        .find("action=\"/api/login")
        .context("the login page has no form posting to the login server function")?
        + "action=\"".len();
    let end = start + html[start..].find('"').context("unterminated action")?;
    Ok(html[start..end].to_owned())
}

#[tokio::test]
async fn a_server_function_body_over_1_mib_answers_413_declared_or_streamed() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let url = app.url(&login_server_fn(&app).await?);
    let http = reqwest::Client::new();
    let form = |len: usize| {
        let mut body = b"username=nobody&password=".to_vec();
        body.resize(len, b'x');
        body
    };
    let post = |body: reqwest::Body| {
        http.post(&url)
            .header("origin", &app.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    // At the limit: the server function reads it and answers on its own terms (a refused
    // sign-in), not 413.
    let r = post(form(SERVER_FN_BODY_LIMIT).into()).await?;
    assert_ne!(
        r.status(),
        413,
        "a body at the limit was refused as too large"
    );

    let path = url.trim_start_matches(&app.base);
    let head = format!(
        "POST {path} HTTP/1.1\r\nOrigin: {}\r\n\
         Content-Type: application/x-www-form-urlencoded",
        app.base
    );
    // One byte over, declared: 413 before a byte of it is read (the body is not even sent).
    let (status, body) = raw_request(
        &app,
        &format!("{head}\r\nContent-Length: {}", SERVER_FN_BODY_LIMIT + 1),
        b"",
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");

    // One byte over, streamed without a length: 413 once the limit is crossed. (The last
    // chunk is left unterminated: the server must answer without waiting for the end.)
    let mut chunked = Vec::new();
    for chunk in form(SERVER_FN_BODY_LIMIT + 1).chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    let (status, body) = raw_request(
        &app,
        &format!("{head}\r\nTransfer-Encoding: chunked"),
        &chunked,
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    Ok(())
}
