//! The `backstop` server: configuration, the command line, the HTTP API and the Leptos UI,
//! wired onto the [`engine`].
//!
//! - [`config`]: flags and `BACKSTOP_*` variables, validated at start.
//! - [`cli`]: every subcommand (`serve`, `backup`, `list`, `user`, `demo` ...).
//! - [`http`]: the router: REST API, auth, CSRF, sessions, the Leptos pages.
//! - [`lock`]: the data-dir lock shared by `serve` and the CLI.

pub mod bundled;
pub mod cli;
pub mod config;
pub mod http;
pub mod lock;

use config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Starts `tracing`: `RUST_LOG` filters (default `info`), text or JSON lines on stderr.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves when SIGTERM or ctrl-c arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining");
}
