//! The HTTP surface: REST API (DESIGN section 6), sessions, the Leptos pages, static assets.
//!
//! - [`auth`]: identity middleware, the same-origin rule, `/api/auth/...`.
//! - [`backups`]: `/api/backups/...` behind the admin guard.
//! - [`error`]: the JSON error body.

pub mod auth;
pub mod backups;
pub mod error;
pub mod openapi;
pub mod plugins;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router, middleware};
use engine::{Engine, EngineConfig, Error, Result};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio_util::sync::CancellationToken;
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

    let api = Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi))
        .nest("/auth", auth::routes())
        .nest("/backups", backups::routes())
        .fallback(api_not_found);

    let router = Router::new()
        .nest("/api", api)
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(engine_for_ctx.clone()),
            move || app::shell(leptos_options.clone()),
        )
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
    let _lock = crate::cli::exclusive_lock(&config.data_dir)?;
    let engine = open_with_plugins(config, args.plugin_dev).await?;
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
    let stop_on_signal = stop.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        stop_on_signal.cancel();
    })
    .await
    .map_err(|e| Error::internal("the HTTP server failed", e))?;
    stop.cancel();
    let _ = runner.await;
    let _ = scheduler.await;
    engine.close().await;
    tracing::info!("stopped");
    Ok(())
}
