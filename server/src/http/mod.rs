//! The HTTP surface: REST API (DESIGN section 6), sessions, the Leptos pages, static assets.
//!
//! - [`auth`]: identity middleware, the same-origin rule, `/api/auth/...`.
//! - [`backups`]: `/api/backups/...` behind the admin guard.
//! - [`error`]: the JSON error body.
//!
//! This file also holds the accept loop ([`serve`] -> `accept_loop`) and the limits that keep
//! one client from holding the server: a header-read timeout, connection caps per client and
//! in total ([`MAX_CONNECTIONS_PER_CLIENT`], [`MAX_CONNECTIONS`]), event-stream caps
//! ([`MAX_EVENT_STREAMS_PER_ACCOUNT`], [`MAX_EVENT_STREAMS`]) and request body limits
//! ([`JSON_BODY_LIMIT`], [`SERVER_FN_BODY_LIMIT`]).

pub mod auth;
pub mod backups;
pub mod destinations;
pub mod error;
pub mod openapi;
pub mod plugins;
pub mod schemas;

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use engine::{Engine, EngineConfig, Error, ErrorKind, Result};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;

use crate::config::ServeArgs;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub leptos: LeptosOptions,
    /// Largest accepted upload body, in bytes.
    pub upload_limit: u64,
    /// Cancelled at shutdown so long-lived responses (event streams) end and the server drains.
    pub shutdown: CancellationToken,
    /// Open `GET /api/backups/events/` streams, keyed by account id: each stream holds a
    /// [`CapPermit`] until it ends ([`MAX_EVENT_STREAMS_PER_ACCOUNT`], [`MAX_EVENT_STREAMS`]).
    pub event_streams: KeyedCap<i64>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> LeptosOptions {
        s.leptos.clone()
    }
}

/// Builds the whole router around an opened engine.
pub async fn router(state: AppState, secure_cookies: bool) -> Result<Router> {
    let store = SqliteStore::new(state.engine.state().clone())
        .with_table_name("sessions")
        .map_err(|e| Error::new(engine::ErrorKind::Internal, format!("session store: {e}")))?;
    store
        .migrate()
        .await
        .map_err(|e| Error::internal("cannot prepare the session table", e))?;
    let sessions = SessionManagerLayer::new(store)
        .with_name("backstop_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure_cookies)
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::days(7),
        ));

    let pkg_dir =
        PathBuf::from(state.leptos.site_root.as_ref()).join(state.leptos.site_pkg_dir.as_ref());
    let routes = generate_route_list(app::App);
    let engine_for_ctx = state.engine.clone();
    let leptos_options = state.leptos.clone();

    // The Leptos pages and server functions. Server functions read their whole body with no
    // limit of their own (`server_fn` collects it), hence `server_fn_body_limit`.
    let pages = Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(engine_for_ctx.clone()),
            move || app::shell(leptos_options.clone()),
        )
        .layer(middleware::from_fn(server_fn_body_limit));

    let router = Router::new()
        .nest("/api", api_router())
        .merge(pages)
        .nest_service("/pkg", ServeDir::new(pkg_dir))
        .route("/favicon.ico", get(favicon))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        .layer(sessions)
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    Ok(router)
}

/// The REST API, nested at `/api` by [`router`]. A function of its own so the OpenAPI test
/// (`openapi.rs`) can list the routes it really has.
///
/// `Json` bodies are capped by `DefaultBodyLimit`, set here explicitly to [`JSON_BODY_LIMIT`]
/// (the routes that take archives or plugins set their own, closer to the route, which wins);
/// `json_length_limit` refuses an oversized JSON body by its declared length before a byte of
/// it is read.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi))
        .nest("/auth", auth::routes())
        .nest("/backups", backups::routes())
        .fallback(api_not_found)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(json_length_limit))
}

/// Largest JSON request body of the REST API: 2 MiB, axum's own default, set explicitly so the
/// number is written down. The largest real body (backup settings, a plugin's grants and
/// settings) is a few KiB.
pub const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Largest request body of a Leptos server function: 1 MiB. The UI's calls carry a few form
/// fields (the settings form is the largest, well under 10 KiB); login is among them, so this
/// is also what an unauthenticated client can make the server buffer per request.
pub const SERVER_FN_BODY_LIMIT: usize = 1024 * 1024;

fn too_large(what: &str, limit: usize) -> Response {
    error::ApiError(Error::new(
        ErrorKind::TooLarge,
        format!(
            "the request body is too large: {what} take at most {} KiB",
            limit / 1024
        ),
    ))
    .into_response()
}

/// The declared length of a request body, when it has one.
fn content_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Refuses a JSON request whose declared length is over [`JSON_BODY_LIMIT`] with 413 before
/// reading it. (A chunked body over the limit is stopped by `DefaultBodyLimit` when the
/// handler's extractor reads it.)
async fn json_length_limit(req: Request, next: Next) -> Response {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json && content_length(&req).is_some_and(|n| n > JSON_BODY_LIMIT as u64) {
        return too_large("JSON bodies", JSON_BODY_LIMIT);
    }
    next.run(req).await
}

/// Reads a server function's body up to [`SERVER_FN_BODY_LIMIT`] and hands it on buffered;
/// over the limit (declared or streamed) it answers 413. Buffering here costs nothing extra:
/// `server_fn` buffers the whole body anyway, only without a limit.
async fn server_fn_body_limit(req: Request, next: Next) -> Response {
    if content_length(&req).is_some_and(|n| n > SERVER_FN_BODY_LIMIT as u64) {
        return too_large("server function calls", SERVER_FN_BODY_LIMIT);
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) if buf.len() + chunk.len() > SERVER_FN_BODY_LIMIT => {
                return too_large("server function calls", SERVER_FN_BODY_LIMIT);
            }
            Ok(chunk) => buf.extend_from_slice(&chunk),
            Err(e) => {
                tracing::debug!(error = %e, "reading a server function body failed");
                return error::ApiError(Error::invalid("the request body could not be read"))
                    .into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(Bytes::from(buf))))
        .await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn api_not_found() -> error::ApiError {
    error::ApiError(Error::not_found("no such API route; see /api/openapi.json"))
}

/// A tiny SVG favicon, so browsers do not log a 404 on every page.
async fn favicon() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "image/svg+xml")],
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2563eb"/><path d="M4 4h8v8H4z" fill="#fff"/></svg>"##,
    )
}

/// Opens the engine with the WebAssembly plugin host: the composition used by `serve` and by
/// the CLI commands that run jobs. `plugin_dev` reloads changed plugin files (`--plugin-dev`).
pub async fn open_with_plugins(config: EngineConfig, plugin_dev: bool) -> Result<Engine> {
    // The plugin host loads and precompiles every installed plugin: blocking work.
    let mut host_config = plugin_host::HostConfig::for_data_dir(&config.data_dir);
    host_config.dev_reload = plugin_dev;
    if plugin_dev {
        tracing::info!("plugin dev mode: changed plugins are reloaded without a restart");
    }
    let host = tokio::task::spawn_blocking(move || plugin_host::PluginHost::new(host_config))
        .await
        .map_err(|e| Error::internal("starting the plugin host failed", e))??;
    Engine::open_with_plugins(config, std::sync::Arc::new(host)).await
}

/// `backstop serve`: open the engine, take the data-dir lock, run until `shutdown`.
pub async fn serve(
    config: EngineConfig,
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let _lock = crate::lock::exclusive_lock(&config.data_dir)?;
    let data_dir = config.data_dir.clone();
    let installed = if args.bundled_plugins {
        crate::bundled::install_in_data_dir(&data_dir).await
    } else {
        Vec::new()
    };
    let engine = open_with_plugins(config, args.plugin_dev).await?;
    if installed.contains(&"recordings") {
        crate::bundled::grant_recordings_folder(&engine, &data_dir).await;
    }
    let swept = engine.restart_sweep().await?;
    if swept > 0 {
        tracing::warn!(
            jobs = swept,
            "marked jobs interrupted by the last shutdown as failed"
        );
    }
    if let Some(conflict) = engine.backup_folder_conflict().await? {
        tracing::warn!(
            %conflict,
            "the saved backup folder is unsafe: backups will not run until another folder is chosen in Settings (PUT /api/backups/settings/ with a new \"path\")"
        );
    }
    if let Some(password) = engine::auth::ensure_admin(
        engine.state(),
        &args.admin_user,
        args.admin_password.as_deref(),
    )
    .await?
    {
        println!(
            "Created admin account {:?} with password: {password}",
            args.admin_user
        );
        println!(
            "(shown once; change it with `backstop user reset-password {}`)",
            args.admin_user
        );
    }
    let site_root = args.site_dir.clone();
    if !site_root.join("pkg").join("backstop.js").is_file() {
        tracing::warn!(site = %site_root.display(), "UI bundle not found: pages render but do not hydrate; build it with ./run.sh");
    }
    let leptos = LeptosOptions::builder()
        .output_name("backstop")
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .build();
    let stop = CancellationToken::new();
    let state = AppState {
        engine: engine.clone(),
        leptos,
        upload_limit: args.upload_limit_mb.saturating_mul(1024 * 1024),
        shutdown: stop.clone(),
        event_streams: KeyedCap::new(MAX_EVENT_STREAMS_PER_ACCOUNT, MAX_EVENT_STREAMS),
    };
    let runner = engine.spawn_runner(stop.clone());
    let scheduler = engine.spawn_scheduler(stop.clone()).await?;
    let app = router(state, args.secure_cookies).await?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| {
            Error::new(
                engine::ErrorKind::Unavailable,
                format!("cannot listen on {}: {}", args.bind, e.kind()),
            )
            .with_source(e)
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal("no local address", e))?;
    // Tests and scripts read this line to find the port.
    println!("backstop listening on http://{addr}");
    tracing::info!(%addr, "listening");
    accept_loop(listener, app, shutdown, stop.clone()).await;
    stop.cancel();
    let _ = runner.await;
    let _ = scheduler.await;
    engine.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How long a client has to send a request's headers: 10 s from the moment the server waits
/// for them, which is also how long an idle keep-alive connection stays open. A real client
/// sends its headers in one packet; 10 s covers a slow mobile link many times over, and a
/// client that trickles a request line (slowloris) loses its connection after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections one client address may hold: 32. A browser opens at most 6 per host over
/// HTTP/1.1, and each open tab holds one more for its event stream; 32 leaves room for a few
/// people behind one NAT and a script or two. Behind a reverse proxy every client shares the
/// proxy's address (as for sign-in, `X-Forwarded-For` is not trusted), so the proxy should
/// set its own per-client limits.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// Open connections in total: 512. Each costs a task, its buffers and a file descriptor;
/// 512 stays well under the usual 1024 descriptors soft limit, leaving room for the state
/// and content databases, archives being written or read, and plugin files.
pub const MAX_CONNECTIONS: usize = 512;

/// Open event streams one account may hold: 16, a browser tab each (a browser's 6
/// connections per host run out before that) plus a script or two.
pub const MAX_EVENT_STREAMS_PER_ACCOUNT: usize = 16;

/// Open event streams in total: 128. Each holds a connection for as long as it is open and
/// re-checks its credential every 2 s (two reads of the state DB).
pub const MAX_EVENT_STREAMS: usize = 128;

/// Accepts connections on `listener` and serves `app` on each until `shutdown` resolves; then
/// stops accepting, cancels `stop` (so event streams end), lets every connection finish the
/// request in flight and waits for them.
///
/// This replaces `axum::serve`, which has no header-read timeout and no connection caps:
/// hyper's HTTP/1.1 connection builder with a timer and [`HEADER_READ_TIMEOUT`], and a
/// [`KeyedCap`] on client addresses ([`MAX_CONNECTIONS_PER_CLIENT`], [`MAX_CONNECTIONS`]).
/// A connection over a cap is closed at once, before a byte is read. HTTP/1.1 only, as
/// before (axum is built without `http2`, and hyper-util's `auto` builder would pull in h2).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    stop: CancellationToken,
) {
    let connections = KeyedCap::<IpAddr>::new(MAX_CONNECTIONS_PER_CLIENT, MAX_CONNECTIONS);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                // Out of file descriptors or similar: wait instead of spinning (as axum does).
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match connections.try_acquire(remote.ip()) {
            Ok(permit) => permit,
            Err(over) => {
                tracing::debug!(client = %remote.ip(), cap = %over, "connection closed: over the connection cap");
                drop(socket);
                continue;
            }
        };
        let app = app.clone();
        // As `into_make_service_with_connect_info` does: handlers read the peer address
        // (sign-in limits) from `ConnectInfo<SocketAddr>`.
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            app.clone().oneshot(req.map(Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(socket), service));
        tokio::spawn(async move {
            // Timeouts and clients going away end up here: not the server's fault.
            if let Err(e) = connection.await {
                tracing::debug!(client = %remote, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    stop.cancel();
    graceful.shutdown().await;
}

/// Errors of one incoming connection (it went away before it was accepted), not of the
/// listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// A cap on concurrent holders, per key and in total: at most `per_key` [`CapPermit`]s for
/// one key and `total` for all keys together. Used for connections per client address and
/// event streams per account.
///
/// One mutex over a map of counts rather than a semaphore per key: both caps are checked
/// and taken in one step, and a key's entry goes when its last permit does, so the map holds
/// only keys with something open (a client cannot grow it by cycling addresses beyond
/// `total` entries). The lock is held for a hash-map update, never across an await.
#[derive(Clone)]
pub struct KeyedCap<K: Eq + Hash> {
    inner: Arc<CapInner<K>>,
}

struct CapInner<K> {
    per_key: usize,
    total: usize,
    /// The number of permits out in total, and per key (keys with none are removed).
    held: Mutex<(usize, HashMap<K, usize>)>,
}

/// Which cap refused a [`KeyedCap::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapExceeded {
    /// The key already holds `per_key` permits.
    PerKey(usize),
    /// All keys together hold `total` permits.
    Total(usize),
}

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapExceeded::PerKey(n) => write!(f, "per-client cap of {n}"),
            CapExceeded::Total(n) => write!(f, "total cap of {n}"),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedCap<K> {
    pub fn new(per_key: usize, total: usize) -> Self {
        KeyedCap {
            inner: Arc::new(CapInner {
                per_key,
                total,
                held: Mutex::new((0, HashMap::new())),
            }),
        }
    }

    /// Takes a permit for `key` if neither cap is reached; it is given back when dropped.
    pub fn try_acquire(&self, key: K) -> std::result::Result<CapPermit<K>, CapExceeded> {
        let mut held = self.inner.lock();
        let (total, per_key) = &mut *held;
        if *total >= self.inner.total {
            return Err(CapExceeded::Total(self.inner.total));
        }
        if per_key.get(&key).is_some_and(|&n| n >= self.inner.per_key) {
            return Err(CapExceeded::PerKey(self.inner.per_key));
        }
        *per_key.entry(key.clone()).or_insert(0) += 1;
        *total += 1;
        drop(held);
        Ok(CapPermit {
            cap: self.inner.clone(),
            key,
        })
    }
}

impl<K> CapInner<K> {
    /// The counts stay consistent whatever panicked while holding the lock (each update is a
    /// single step), so a poisoned lock is simply taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<K, usize>)> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One slot of a [`KeyedCap`], given back on drop: move it into whatever it accounts for
/// (the connection's task, the event stream's state).
pub struct CapPermit<K: Eq + Hash> {
    cap: Arc<CapInner<K>>,
    key: K,
}

impl<K: Eq + Hash> Drop for CapPermit<K> {
    fn drop(&mut self) {
        let mut held = self.cap.lock();
        let (total, per_key) = &mut *held;
        *total = total.saturating_sub(1);
        if let Some(count) = per_key.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_cap_obeys_both_caps_and_gives_back_on_drop() {
        let cap = KeyedCap::new(2, 3);
        let a1 = cap.try_acquire("a").expect("first for a");
        let a2 = cap.try_acquire("a").expect("second for a");
        assert_eq!(
            cap.try_acquire("a").err(),
            Some(CapExceeded::PerKey(2)),
            "a third for one key is over the per-key cap"
        );
        let b1 = cap.try_acquire("b").expect("another key still fits");
        assert_eq!(
            cap.try_acquire("c").err(),
            Some(CapExceeded::Total(3)),
            "a fourth in all is over the total cap"
        );
        drop(a1);
        let a3 = cap
            .try_acquire("a")
            .expect("a slot came back when a permit dropped");
        drop((a2, a3, b1));
        let held = cap.inner.lock();
        assert_eq!(held.0, 0);
        assert!(held.1.is_empty(), "keys with nothing open leave the map");
    }
}
