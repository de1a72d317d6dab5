//! The route-by-role matrix (issue 15, item 7): every route of the API x {no credentials, a
//! bad token, a viewer, an admin} answers as DESIGN section 6 and the README say.
//!
//! The routes come from the OpenAPI document the server itself serves (`/api/openapi.json`),
//! not from a list in this file; the admin's pass also checks that every documented route is
//! really routed (no answer from the API's "no such route" fallback). The converse, that
//! every route the router has is documented, is a unit test next to the document
//! (`server/src/http/openapi.rs`), which reads the router's own route table. Path parameters are
//! an id that does not exist, so the admin's calls change nothing but start one backup.

use reqwest::Method;
use serde_json::{Value, json};
use tests::TestApp;

/// An id no job, token or plugin has.
const NO_SUCH_ID: &str = "999999";

/// Every (method, path) the OpenAPI document lists, path parameters filled in.
async fn documented_routes(app: &TestApp) -> anyhow::Result<Vec<(Method, String)>> {
    let doc: Value = reqwest::get(app.url("/api/openapi.json"))
        .await?
        .json()
        .await?;
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("the document has paths") {
        for method in ops.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            routes.push((method, path.replace("{id}", NO_SUCH_ID)));
        }
    }
    assert!(
        routes.len() >= 20,
        "only {} routes documented",
        routes.len()
    );
    Ok(routes)
}

/// Sends `method path` (writes with an empty JSON object) and returns status and body.
async fn call(
    app: &TestApp,
    http: &reqwest::Client,
    method: &Method,
    path: &str,
    bearer: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http
        .request(method.clone(), app.url(path))
        .header("origin", &app.base);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        req = req.json(&json!({}));
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    // Only JSON answers are read: an admin's event stream would never end.
    let is_json = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return Ok((status, Value::Null));
    }
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn needs_admin(path: &str) -> bool {
    path.starts_with("/api/backups/")
}

fn needs_sign_in(path: &str) -> bool {
    needs_admin(path) || path == "/api/auth/me"
}

#[tokio::test]
async fn every_documented_route_answers_each_role_as_the_design_says() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let routes = documented_routes(&app).await?;

    // An admin token, and a viewer signed in with a cookie.
    app.login_admin().await?;
    let (s, t) = app
        .post_json("/api/auth/tokens", json!({ "name": "matrix" }))
        .await?;
    assert_eq!(s, 201, "{t}");
    let admin_token = t["token"].as_str().expect("token").to_owned();
    let viewer = super::security::signed_in_viewer(&app).await?;

    let bare = reqwest::Client::new();
    let mut wrong = Vec::new();
    for (method, path) in &routes {
        if needs_sign_in(path) {
            let (s, body) = call(&app, &bare, method, path, None).await?;
            if s != 401 {
                wrong.push(format!("{method} {path} without credentials: {s} {body}"));
            }
            let (s, body) = call(&app, &bare, method, path, Some("bst_not-a-token")).await?;
            if s != 401 {
                wrong.push(format!("{method} {path} with a bad token: {s} {body}"));
            }
        }
        if needs_admin(path) {
            let (s, body) = call(&app, &viewer, method, path, None).await?;
            if s != 403 {
                wrong.push(format!("{method} {path} as a viewer: {s} {body}"));
            }
        }
        // The admin last, by token (a cookie sign-out would end the walk's own session).
        let (s, body) = call(&app, &bare, method, path, Some(&admin_token)).await?;
        let unrouted = body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no such API route"));
        if s == 401 || s == 403 || unrouted {
            wrong.push(format!("{method} {path} as an admin: {s} {body}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} calls answered wrongly:\n{}",
        wrong.len(),
        routes.len(),
        wrong.join("\n")
    );
    Ok(())
}
