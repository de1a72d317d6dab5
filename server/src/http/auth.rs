//! Authentication and the same-origin rule.
//!
//! [`identify`] runs on every request: a `Bearer` token or the session cookie becomes an
//! [`Identity`] in the request extensions. Cookie-authenticated writes must come from the
//! same origin (the browser's `Origin`, else `Referer`, must name the `Host`); requests with
//! a bearer token are exempt because a browser never adds one on its own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use engine::Error;
use engine::auth::{Account, Role, SESSION_ACCOUNT_KEY};
use tower_sessions::Session;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};

/// Who is calling, and how they proved it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: Option<Account>,
    pub via_token: bool,
}

/// Resolves the caller and enforces the same-origin rule for cookie-authenticated writes.
pub async fn identify(
    State(state): State<AppState>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::trim).map(str::to_owned));
    let identity = if let Some(token) = bearer {
        match engine::auth::verify_token(state.engine.state(), &token).await {
            Ok(Some(account)) => Identity {
                account: Some(account),
                via_token: true,
            },
            Ok(None) => {
                return ApiError(Error::unauthenticated(
                    "the API token is not valid (revoked or mistyped)",
                ))
                .into_response();
            }
            Err(e) => return ApiError(e).into_response(),
        }
    } else {
        let id: Option<i64> = session.get(SESSION_ACCOUNT_KEY).await.ok().flatten();
        let account = match id {
            Some(id) => match engine::auth::account(state.engine.state(), id).await {
                Ok(a) => a,
                Err(e) => return ApiError(e).into_response(),
            },
            None => None,
        };
        Identity {
            account,
            via_token: false,
        }
    };
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method
        && !identity.via_token
        && let Err(e) = check_same_origin(req.headers(), identity.account.is_some())
    {
        return ApiError(e).into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// The same-origin rule. A mismatching `Origin`/`Referer` is always refused; when a session
/// cookie authenticates the request, one of them must be present and match.
fn check_same_origin(headers: &HeaderMap, cookie_authenticated: bool) -> Result<(), Error> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok())
        .filter(|s| *s != "null");
    let refused = || {
        Error::denied(
            "cross-origin request refused: cookie-authenticated changes must come from this site (or use an API token)",
        )
    };
    match (source, host) {
        (Some(src), Some(host)) => {
            let authority = src
                .split("://")
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            if authority.eq_ignore_ascii_case(host) {
                Ok(())
            } else {
                Err(refused())
            }
        }
        (Some(_), None) => Err(refused()),
        (None, _) if cookie_authenticated => Err(refused()),
        (None, _) => Ok(()),
    }
}

/// Route layer for `/api/backups/`: 401 without credentials, 403 for a non-admin.
pub async fn require_admin(req: Request, next: Next) -> Response {
    let account = req
        .extensions()
        .get::<Identity>()
        .and_then(|i| i.account.clone());
    match account {
        None => ApiError(Error::unauthenticated(
            "sign in or send an API token (Authorization: Bearer ...)",
        ))
        .into_response(),
        Some(a) if a.role != Role::Admin => {
            ApiError(Error::denied("only admins can manage backups")).into_response()
        }
        Some(_) => next.run(req).await,
    }
}

/// The signed-in account, or 401.
pub struct Authenticated(pub Account);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Identity>()
            .and_then(|i| i.account.clone())
            .map(Authenticated)
            .ok_or_else(|| ApiError(Error::unauthenticated("sign in or send an API token")))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    session: Session,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Json<Account>> {
    let account = state
        .engine
        .login(&addr.ip().to_string(), &body.username, &body.password)
        .await?;
    start_session(&session, &account).await?;
    Ok(Json(account))
}

/// Binds the session to `account`, with a fresh id (no session fixation).
pub async fn start_session(session: &Session, account: &Account) -> Result<(), Error> {
    session
        .cycle_id()
        .await
        .map_err(|e| Error::internal("cannot start a session", e))?;
    session
        .insert(SESSION_ACCOUNT_KEY, account.id)
        .await
        .map_err(|e| Error::internal("cannot start a session", e))
}

async fn logout(session: Session) -> ApiResult<StatusCode> {
    session
        .flush()
        .await
        .map_err(|e| Error::internal("cannot end the session", e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(Authenticated(account): Authenticated) -> Json<Account> {
    Json(account)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
}

async fn create_token(
    State(state): State<AppState>,
    Authenticated(account): Authenticated,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let (id, token) =
        engine::auth::create_token(state.engine.state(), &account, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "token": token, "name": body.name.trim() })),
    ))
}

async fn list_tokens(
    State(state): State<AppState>,
    Authenticated(account): Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let tokens = engine::auth::list_tokens(state.engine.state(), &account).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

async fn delete_token(
    State(state): State<AppState>,
    Authenticated(account): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::not_found(format!("no token {id:?}")))?;
    engine::auth::delete_token(state.engine.state(), &account, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/api/auth/...`
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/tokens", post(create_token).get(list_tokens))
        .route("/tokens/{id}", delete(delete_token))
}
