//! Authentication and the same-origin rule.
//!
//! [`identify`] runs on every request: a `Bearer` token or the session cookie becomes an
//! [`Identity`] in the request extensions. Cookie-authenticated writes must come from the
//! same origin (the browser's `Origin`, else `Referer`, must name the `Host`); requests with
//! a bearer token are exempt because a browser never adds one on its own.
//!
//! Ending a credential ends every use of it. Each request looks its credential up again
//! (a revoked token or a flushed session is refused at once); a long-lived response (the
//! event stream) calls [`still_authorized`] every few seconds and ends when it fails.
//!
//! Sign-in refusals carry `Retry-After` (429 when a budget is spent, 503 when the server
//! is busy hashing other attempts); the budgets live in `engine::auth::limiter`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use engine::Error;
use engine::auth::{Account, Role, SESSION_ACCOUNT_KEY, SESSION_EPOCH_KEY};
use tower_sessions::Session;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};

/// The state-DB table of the session store (the name `router` gives it in `http/mod.rs`).
pub const SESSION_TABLE: &str = "sessions";

/// Who is calling, and how they proved it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: Option<Account>,
    pub via_token: bool,
    /// What proved it, kept so a long-lived response can check it again.
    pub credential: Credential,
}

/// The proof an [`Identity`] rests on.
#[derive(Clone)]
pub enum Credential {
    None,
    /// A bearer token (the secret: never logged, see the `Debug` impl).
    Token(String),
    /// The session cookie's session id.
    Session(tower_sessions::session::Id),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Session(_) => f.write_str("Session(..)"),
        }
    }
}

/// Whether `identity`'s credential still stands for the same account with the same role:
/// the token is not revoked, the session is not signed out or expired, the account still
/// exists and was not demoted. Reads only (no `last_used_at` write), so it is cheap to call
/// every few seconds.
pub async fn still_authorized(state: &AppState, identity: &Identity) -> Result<bool, Error> {
    let Some(original) = &identity.account else {
        return Ok(false);
    };
    let pool = state.engine.state();
    let now = match &identity.credential {
        Credential::None => return Ok(false),
        Credential::Token(token) => engine::auth::token_account(pool, token)
            .await?
            .map(|(_, a)| a),
        Credential::Session(id) => {
            use tower_sessions::SessionStore as _;
            let store = tower_sessions_sqlx_store::SqliteStore::new(pool.clone())
                .with_table_name(SESSION_TABLE)
                .map_err(|e| Error::internal("session store", e))?;
            let record = store
                .load(id)
                .await
                .map_err(|e| Error::internal("cannot read the session", e))?;
            let data = record.map(|r| r.data);
            let get = |key| {
                data.as_ref()
                    .and_then(|d| d.get(key))
                    .and_then(|v| v.as_i64())
            };
            match get(SESSION_ACCOUNT_KEY) {
                Some(aid) if aid == original.id => {
                    engine::auth::session_account(pool, aid, get(SESSION_EPOCH_KEY)).await?
                }
                _ => None,
            }
        }
    };
    Ok(now.is_some_and(|a| a.id == original.id && a.role == original.role))
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
                credential: Credential::Token(token),
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
        let epoch: Option<i64> = session.get(SESSION_EPOCH_KEY).await.ok().flatten();
        let account = match id {
            Some(id) => {
                match engine::auth::session_account(state.engine.state(), id, epoch).await {
                    Ok(a) => a,
                    Err(e) => return ApiError(e).into_response(),
                }
            }
            None => None,
        };
        let credential = match (&account, session.id()) {
            (Some(_), Some(sid)) => Credential::Session(sid),
            _ => Credential::None,
        };
        Identity {
            account,
            via_token: false,
            credential,
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

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", security(()),
    summary = "Sign in; sets the session cookie",
    request_body = LoginBody,
    responses((status = 200, description = "the account", body = wire::account::Account),
        (status = 401, description = "wrong username or password", body = super::schemas::ErrorBody),
        (status = 429, description = "too many attempts (Retry-After)", body = super::schemas::ErrorBody),
        (status = 503, description = "busy checking other attempts (Retry-After)", body = super::schemas::ErrorBody)))]
/// Signs in. The client is the socket's address: `X-Forwarded-For` is not trusted (nothing
/// here knows which proxy to believe), so behind a reverse proxy every client shares the
/// proxy's address budget. Refusals carry `Retry-After` in seconds.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    session: Session,
    ApiJson(body): ApiJson<LoginBody>,
) -> Response {
    let account = match state
        .engine
        .login(&addr.ip().to_string(), &body.username, &body.password)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            let wait = engine::auth::retry_after(&e);
            let mut response = ApiError(e).into_response();
            if let Some(wait) = wait {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.max(1).into());
            }
            return response;
        }
    };
    if let Err(e) = app::api::ssr::start_session(&state.engine, &session, &account).await {
        return ApiError(e).into_response();
    }
    Json(account).into_response()
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(()),
    summary = "Sign out (ends the session)",
    responses((status = 204, description = "signed out")))]
async fn logout(session: Session) -> ApiResult<StatusCode> {
    session
        .flush()
        .await
        .map_err(|e| Error::internal("cannot end the session", e))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", summary = "The signed-in account",
    responses((status = 200, description = "the account", body = wire::account::Account)))]
async fn me(Authenticated(account): Authenticated) -> Json<Account> {
    Json(account)
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
}

#[utoipa::path(post, path = "/api/auth/tokens", tag = "auth",
    summary = "Create an API token; the secret is shown once",
    request_body = TokenBody,
    responses((status = 201, description = "the token, with its secret shown this once", body = wire::account::TokenCreated)))]
async fn create_token(
    State(state): State<AppState>,
    Authenticated(account): Authenticated,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<(StatusCode, Json<wire::account::TokenCreated>)> {
    let (id, token) =
        engine::auth::create_token(state.engine.state(), &account, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::account::TokenCreated {
            id,
            token,
            name: body.name.trim().to_owned(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/auth/tokens", tag = "auth", summary = "Your API tokens",
    responses((status = 200, description = "your tokens (never their secrets)", body = wire::account::TokenList)))]
async fn list_tokens(
    State(state): State<AppState>,
    Authenticated(account): Authenticated,
) -> ApiResult<Json<wire::account::TokenList>> {
    let tokens = engine::auth::list_tokens(state.engine.state(), &account).await?;
    Ok(Json(wire::account::TokenList { tokens }))
}

#[utoipa::path(delete, path = "/api/auth/tokens/{id}", tag = "auth", summary = "Revoke an API token",
    params(("id" = i64, Path, description = "a token id")),
    responses((status = 204, description = "revoked")))]
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
