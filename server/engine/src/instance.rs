//! [`Engine`]: the composition of the content DB, the state DB, the data folders, the job
//! runner and the plugin runtime. Cheap to clone; the HTTP routes, the server functions
//! and the CLI all call the same methods on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::SqlitePool;

use crate::plugins::{NoPlugins, PluginRuntime};
use crate::{Error, ErrorKind, Result};

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
        }
    }
}

/// The engine. Clone freely: it is an `Arc` inside.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    content: crate::content_db::ContentDb,
    state: SqlitePool,
    plugins: Arc<dyn PluginRuntime>,
    login_limiter: crate::auth::LoginLimiter,
    runner: crate::jobs::Runner,
    schedule_tx: tokio::sync::watch::Sender<crate::schedule::ScheduleSettings>,
}

impl Engine {
    /// Opens everything: creates the data folders, opens and migrates both databases, seeds
    /// demo content into an empty content DB when configured.
    pub async fn open(config: EngineConfig) -> Result<Engine> {
        Self::open_with_plugins(config, Arc::new(NoPlugins)).await
    }

    /// Like [`Engine::open`], with a plugin runtime.
    pub async fn open_with_plugins(
        config: EngineConfig,
        plugins: Arc<dyn PluginRuntime>,
    ) -> Result<Engine> {
        for sub in ["", "logos", "recordings", "backups", "plugins"] {
            let dir = config.data_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot create the data folder {}: check that it is writable",
                        dir.display()
                    ),
                )
                .with_source(e)
            })?;
        }
        crate::dirs::check_writable(&config.data_dir)?;
        let state = crate::state::open(&config.state_db_url).await?;
        crate::plugins::sync_records(&state, &*plugins).await?;
        let content = if is_postgres_url(&config.content_db_url) {
            crate::content_db::ContentDb::open_postgres(&config.content_db_url).await?
        } else {
            crate::content_db::ContentDb::Sqlite(Self::open_sqlite_content(&config).await?)
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                content,
                state,
                plugins,
                login_limiter: Default::default(),
                runner: crate::jobs::Runner::new(),
                schedule_tx: tokio::sync::watch::channel(Default::default()).0,
            }),
        })
    }

    /// Opens the SQLite content DB, migrates it to the reference schema and seeds the demo
    /// data into an empty one when configured.
    async fn open_sqlite_content(config: &EngineConfig) -> Result<SqlitePool> {
        let content =
            crate::content::open_sqlite(&config.content_db_url, "content database").await?;
        let version = crate::content::schema_version(&content).await?;
        let ours = crate::content::current_schema_version();
        if version > ours {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the content database has schema version {version}, newer than this Backstop ({ours}); upgrade Backstop"
                ),
            ));
        }
        crate::content::migrate(&content).await?;
        if config.demo && crate::content::is_empty(&content).await? {
            let stats = crate::demo::seed(&content, &config.data_dir, config.demo_channels).await?;
            tracing::info!(
                ?stats,
                "seeded demo content into the empty content database"
            );
        }
        Ok(content)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }
    /// The content DB (SQLite or PostgreSQL).
    pub fn content(&self) -> &crate::content_db::ContentDb {
        &self.inner.content
    }
    /// The state DB pool.
    pub fn state(&self) -> &SqlitePool {
        &self.inner.state
    }
    pub(crate) fn runner_ref(&self) -> &crate::jobs::Runner {
        &self.inner.runner
    }
    pub(crate) fn schedule_sender(
        &self,
    ) -> &tokio::sync::watch::Sender<crate::schedule::ScheduleSettings> {
        &self.inner.schedule_tx
    }
    pub fn plugins(&self) -> &Arc<dyn PluginRuntime> {
        &self.inner.plugins
    }

    /// Signs in with rate limiting per (client, username).
    pub async fn login(
        &self,
        client: &str,
        username: &str,
        password: &str,
    ) -> Result<crate::auth::Account> {
        crate::auth::login_limited(
            &self.inner.state,
            &self.inner.login_limiter,
            client,
            username,
            password,
        )
        .await
    }

    /// The content tables as `account` may see them on the Data page. Everyone gets table
    /// names and row counts (enough to see what a restore changed). Only an admin, who can
    /// download the whole archive anyway, also gets column names and the first
    /// [`crate::content::ADMIN_SAMPLE_ROWS`] rows, and even then every secret-looking value
    /// is masked here, before it leaves the server ([`crate::content::is_secret_name`]).
    /// A viewer gets no rows at all: M3U passwords and API keys are not theirs to read.
    pub async fn content_summary(
        &self,
        account: &crate::auth::Account,
    ) -> Result<Vec<crate::content::TableSummary>> {
        let sample =
            (account.role == crate::auth::Role::Admin).then_some(crate::content::ADMIN_SAMPLE_ROWS);
        self.inner.content.summarize(sample).await
    }

    /// Installed plugins as the API lists them: `{"plugins": [...]}`. Listing may read
    /// plugin files (dev reload), so it runs off the async workers.
    pub async fn plugins_view(&self) -> Result<crate::plugins::PluginList> {
        let runtime = self.inner.plugins.clone();
        let plugins = tokio::task::spawn_blocking(move || runtime.describe())
            .await
            .map_err(|e| Error::internal("listing plugins failed", e))?;
        Ok(crate::plugins::PluginList { plugins })
    }

    /// One installed plugin as the API shows it.
    pub async fn plugin_view(&self, id: &str) -> Result<crate::plugins::PluginView> {
        self.plugins_view()
            .await?
            .plugins
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::not_found(format!("no plugin {id:?} is installed")))
    }

    /// Closes both pools (checkpointing WAL).
    pub async fn close(&self) {
        if let Some(pool) = self.inner.content.sqlite() {
            pool.close().await;
        }
        self.inner.state.close().await;
    }
}

/// Settings: what the admin saves, validated, and the schedule it drives.
impl Engine {
    /// Settings as the API shows them, with `next_run_at` and a plain-words description.
    pub async fn settings_view(&self) -> Result<wire::settings::SettingsView> {
        crate::settings::view(self.state()).await
    }

    /// Validates every field, saves, and reschedules at once. Nothing invalid is stored.
    pub async fn save_settings(&self, raw: &serde_json::Value) -> Result<()> {
        let plugins = self.plugins().clone();
        let saved =
            crate::settings::validate_and_save(self.state(), self.data_dir(), raw, move || {
                crate::restore::targets::restore_targets(&plugins.describe())
            })
            .await?;
        self.schedule_sender().send_replace(saved.schedule);
        Ok(())
    }

    /// Why the saved backup folder breaks the layout rule
    /// ([`crate::settings::check_backup_folder`]), for settings saved before the rule existed
    /// or made unsafe by a later plugin grant; `None` when it is fine. Backups should refuse
    /// to run while this is `Some`.
    pub async fn backup_folder_conflict(&self) -> Result<Option<String>> {
        let plugins = self.plugins().clone();
        crate::settings::backup_folder_conflict(self.state(), self.data_dir(), move || {
            crate::restore::targets::restore_targets(&plugins.describe())
        })
        .await
    }

    /// Starts the in-process scheduler for the saved schedule.
    pub async fn spawn_scheduler(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let s = crate::settings::load(self.state()).await?;
        self.schedule_sender().send_replace(s.schedule);
        Ok(crate::schedule::spawn_scheduler(
            Arc::new(crate::schedule::SystemClock),
            self.schedule_sender().subscribe(),
            Arc::new(EngineScheduleStore(self.clone())),
            shutdown,
        ))
    }
}

/// The state-DB key under which the scheduler records the instant it handled slots through.
const LAST_SLOT_KEY: &str = "schedule_last_slot";

/// The scheduler's view of the engine: the state DB and the job queue.
struct EngineScheduleStore(Engine);

impl crate::schedule::ScheduleStore for EngineScheduleStore {
    fn last_slot(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<Option<chrono::DateTime<chrono::Utc>>>> {
        Box::pin(async move {
            let v = crate::state::get_setting(self.0.state(), LAST_SLOT_KEY).await?;
            Ok(v.and_then(|v| {
                v.as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            })
            .map(|t| t.with_timezone(&chrono::Utc)))
        })
    }

    fn set_last_slot(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            crate::state::put_setting(
                self.0.state(),
                LAST_SLOT_KEY,
                &serde_json::Value::String(t.to_rfc3339()),
            )
            .await
        })
    }

    fn enqueue_scheduled(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<crate::schedule::EnqueueOutcome>> {
        Box::pin(async move {
            if self.0.scheduled_pending().await? {
                return Ok(crate::schedule::EnqueueOutcome::SkippedAlreadyPending);
            }
            self.0
                .start_backup(
                    crate::jobs::JobTrigger::Scheduled,
                    Some("scheduler".into()),
                    None,
                )
                .await?;
            Ok(crate::schedule::EnqueueOutcome::Enqueued)
        })
    }
}

/// Whether a content DB URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
