//! The engine's parts, at the bottom of the crate: the configuration, both databases, the
//! plugin runtime, the login limiter, the runner's in-memory state and the schedule channel.
//!
//! [`Core`] is what the job store, the runner, the backup and restore pipelines and the
//! plugin administration implement their methods on (`impl Core` in their own modules).
//! They depend on this module, never on [`crate::instance`], whose [`crate::Engine`] is the
//! one public facade: every method a caller outside the crate may use is listed there, in
//! one file, and delegates here. So the modules form a tree (checked by
//! `tests/tests/module_cycles.rs`), and a newcomer reads the API in one place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::plugins::PluginRuntime;
use wire::{Job, JobId};

/// Startup configuration of the engine (what the operator chose at start).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Holds `app.db`, `state.db`, `logos/`, `recordings/`, `backups/`, `plugins/`.
    pub data_dir: PathBuf,
    /// `sqlite://...` URL of the content DB.
    pub content_db_url: String,
    /// `sqlite://...` URL of the state DB.
    pub state_db_url: String,
    /// Seed demo content into an empty content DB at open.
    pub demo: bool,
    /// Channels in the demo data set seeded at first start.
    pub demo_channels: usize,
    /// Version string written to manifests.
    pub app_version: String,
    /// How long one request to a destination is retried before the copy fails
    /// (`BACKSTOP_COPY_RETRY_SECS`, default 180 s).
    pub copy_retry: std::time::Duration,
}

impl EngineConfig {
    /// The embedded default for a data dir: both SQLite files inside it.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        EngineConfig {
            content_db_url: crate::content::sqlite_url(&data_dir.join("app.db")),
            state_db_url: crate::content::sqlite_url(&data_dir.join("state.db")),
            data_dir,
            demo: true,
            demo_channels: 40,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            copy_retry: std::time::Duration::from_secs(180),
        }
    }
}

/// The engine's parts. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub(crate) struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    content: crate::content_db::ContentDb,
    state: SqlitePool,
    plugins: Arc<dyn PluginRuntime>,
    login_limiter: crate::auth::LoginLimiter,
    runner: Runner,
    schedule_tx: tokio::sync::watch::Sender<crate::schedule::ScheduleSettings>,
}

impl Core {
    pub(crate) fn new(
        config: EngineConfig,
        content: crate::content_db::ContentDb,
        state: SqlitePool,
        plugins: Arc<dyn PluginRuntime>,
    ) -> Core {
        Core {
            inner: Arc::new(Inner {
                config,
                content,
                state,
                plugins,
                login_limiter: Default::default(),
                runner: Runner::new(),
                schedule_tx: tokio::sync::watch::channel(Default::default()).0,
            }),
        }
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
    pub(crate) fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }
    /// The content DB (SQLite or PostgreSQL).
    pub(crate) fn content(&self) -> &crate::content_db::ContentDb {
        &self.inner.content
    }
    /// The state DB pool.
    pub(crate) fn state(&self) -> &SqlitePool {
        &self.inner.state
    }
    pub(crate) fn plugins(&self) -> &Arc<dyn PluginRuntime> {
        &self.inner.plugins
    }
    pub(crate) fn login_limiter(&self) -> &crate::auth::LoginLimiter {
        &self.inner.login_limiter
    }
    pub(crate) fn runner(&self) -> &Runner {
        &self.inner.runner
    }
    pub(crate) fn schedule_sender(
        &self,
    ) -> &tokio::sync::watch::Sender<crate::schedule::ScheduleSettings> {
        &self.inner.schedule_tx
    }
}

/// A change pushed to event-stream subscribers.
#[derive(Debug, Clone)]
pub enum JobEvent {
    Updated(Box<Job>),
    Deleted(JobId),
}

/// In-memory state of the runner.
#[derive(Default)]
pub(crate) struct Runner {
    pub(crate) wake: Notify,
    pub(crate) events: Option<broadcast::Sender<JobEvent>>,
    pub(crate) running: Mutex<HashMap<JobId, RunningJob>>,
    /// Serializes job execution between the background runner and CLI-run jobs.
    pub(crate) exec: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
pub(crate) struct RunningJob {
    pub(crate) cancel: CancellationToken,
    /// Set once a restore starts swapping directories: cancel is refused from then on.
    pub(crate) point_of_no_return: Arc<AtomicBool>,
}

impl Runner {
    pub(crate) fn new() -> Runner {
        let (tx, _) = broadcast::channel(256);
        Runner {
            events: Some(tx),
            ..Default::default()
        }
    }
}
