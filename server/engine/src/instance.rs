//! [`Engine`]: the one public facade of the crate. Every method the HTTP routes, the server
//! functions, the CLI and the tests call is here, in one file, grouped by what it is for:
//! opening, the parts, accounts and content, settings and the schedule, jobs, backups,
//! restores and uploads, plugins. Each delegates to the module that implements it (on
//! [`crate::core::Core`], the parts at the bottom of the crate), so those modules never
//! depend on this one. Cheap to clone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::archive::ProgressFn;
use crate::archive::verify::VerifyReport;
use crate::core::Core;
use crate::jobs::{Job, JobEvent, JobFilter, JobId, JobTrigger, NewJob};
use crate::plugins::{NoPlugins, OwnFiles, PluginRuntime, PluginUpdate, PluginView};
use crate::restore::UploadTarget;
use crate::{EngineConfig, Error, ErrorKind, Result};
use wire::DestinationId;

/// The engine. Clone freely: it is an `Arc` inside.
#[derive(Clone)]
pub struct Engine {
    core: Core,
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
            core: Core::new(config, content, state, plugins),
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
        self.core.config()
    }
    pub fn data_dir(&self) -> &Path {
        self.core.data_dir()
    }
    /// The content DB (SQLite or PostgreSQL).
    pub fn content(&self) -> &crate::content_db::ContentDb {
        self.core.content()
    }
    /// The state DB pool.
    pub fn state(&self) -> &SqlitePool {
        self.core.state()
    }
    fn schedule_sender(&self) -> &tokio::sync::watch::Sender<crate::schedule::ScheduleSettings> {
        self.core.schedule_sender()
    }
    pub fn plugins(&self) -> &Arc<dyn PluginRuntime> {
        self.core.plugins()
    }

    /// Signs in with rate limiting per (client, username).
    pub async fn login(
        &self,
        client: &str,
        username: &str,
        password: &str,
    ) -> Result<crate::auth::Account> {
        crate::auth::login_limited(
            self.core.state(),
            self.core.login_limiter(),
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
        self.core.content().summarize(sample).await
    }

    /// Installed plugins as the API lists them: `{"plugins": [...]}`. Listing may read
    /// plugin files (dev reload), so it runs off the async workers.
    pub async fn plugins_view(&self) -> Result<crate::plugins::PluginList> {
        let runtime = self.core.plugins().clone();
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
        if let Some(pool) = self.core.content().sqlite() {
            pool.close().await;
        }
        self.core.state().close().await;
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
                crate::settings::restore_targets(&plugins.describe())
            })
            .await?;
        self.schedule_sender().send_replace(saved.schedule);
        Ok(())
    }

    /// Why the saved backup folder breaks the layout rule
    /// ([`crate::settings::check_backup_folder`]), or `None` when it is fine.
    pub async fn backup_folder_conflict(&self) -> Result<Option<String>> {
        self.core.backup_folder_conflict().await
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

/// Jobs, backups, restores and uploads, plugins: implemented in `jobs/`, `backup.rs`,
/// `restore/` and `plugin_admin.rs` on [`Core`].
impl Engine {
    /// Subscribes to job changes (for the event stream).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.core.subscribe()
    }

    /// Jobs newest first, filtered and paged; and the total matching the filter.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<(Vec<Job>, i64)> {
        self.core.list_jobs(f).await
    }

    /// One job, or NotFound.
    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        self.core.get_job(id).await
    }

    /// Inserts a pending job and wakes the runner.
    pub async fn enqueue(&self, new: NewJob) -> Result<Job> {
        self.core.enqueue(new).await
    }

    /// Queues a backup. `include_recordings` defaults to the saved setting.
    pub async fn start_backup(
        &self,
        trigger: JobTrigger,
        requested_by: Option<String>,
        include_recordings: Option<bool>,
    ) -> Result<Job> {
        self.core
            .start_backup(trigger, requested_by, include_recordings)
            .await
    }

    /// Whether a scheduled backup is already waiting (the scheduler then skips a run).
    pub async fn scheduled_pending(&self) -> Result<bool> {
        self.core.scheduled_pending().await
    }

    /// Cancels a pending or running job. Pending jobs end at once; running ones stop at
    /// their next check (well under a second). Refused (409) for finished jobs and for a
    /// restore that has begun swapping directories.
    pub async fn cancel_job(&self, id: JobId) -> Result<Job> {
        self.core.cancel_job(id).await
    }

    /// Deletes a finished job: its archive file and its record together.
    pub async fn delete_job(&self, id: JobId) -> Result<()> {
        self.core.delete_job(id).await
    }

    /// What plugins logged during job `id`, oldest first: live from the plugin host while
    /// the job runs, from the state DB once it has ended. 404 for an unknown job.
    pub async fn plugin_log(&self, id: JobId) -> Result<Vec<crate::plugins::PluginLogLine>> {
        self.core.plugin_log(id).await
    }

    /// The archive file of a succeeded backup job (for download, manifest, verify, restore).
    pub async fn archive_path(&self, id: JobId) -> Result<PathBuf> {
        self.core.archive_path(id).await
    }

    /// Starts the background runner. It runs pending jobs one at a time until `shutdown`.
    pub fn spawn_runner(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        self.core.spawn_runner(shutdown)
    }

    /// Runs a job synchronously from the CLI (no server running), printing progress.
    pub async fn run_backup_cli(
        &self,
        include_recordings: bool,
        progress: ProgressFn,
    ) -> Result<Job> {
        self.core.run_backup_cli(include_recordings, progress).await
    }

    /// Marks jobs left `pending`/`running` by a previous process as failed, and removes
    /// leftover `.partial` files and staging folders.
    pub async fn restart_sweep(&self) -> Result<u64> {
        self.core.restart_sweep().await
    }

    /// Queues a restore of backup job `source`.
    pub async fn start_restore(&self, source: JobId, requested_by: Option<String>) -> Result<Job> {
        self.core.start_restore(source, requested_by).await
    }

    /// Reserves a temporary file in the archive folder for an incoming upload.
    pub async fn begin_upload(&self) -> Result<UploadTarget> {
        self.core.begin_upload().await
    }

    /// Validates an uploaded file; on success stores it under a server-chosen name and lists
    /// it as a backup job with trigger `upload`. On failure the file is removed (422).
    ///
    /// The record comes first (status `running`, claiming the name), then the file gets its
    /// final name (never replacing one), then the record is marked succeeded: a crash in
    /// between leaves a `running` upload that the restart sweep marks failed and whose file
    /// it removes, so no file is ever without its owner.
    ///
    /// An encrypted (age) upload is decrypted first with `identity` (the admin's key, from
    /// the emergency kit) and the instance key; a wrong key is refused (422), nothing kept.
    pub async fn finish_upload(
        &self,
        target: UploadTarget,
        original_filename: Option<String>,
        identity: Option<&str>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        self.core
            .finish_upload(target, original_filename, identity, requested_by)
            .await
    }

    /// `backstop restore FILE [--identity KEYFILE]`: list the file as an upload (decrypted
    /// first when it is an age file), then restore it in this process.
    pub async fn restore_file_cli(
        &self,
        file: &Path,
        identity: Option<&str>,
        progress: ProgressFn,
    ) -> Result<Job> {
        self.core.restore_file_cli(file, identity, progress).await
    }

    /// The archive limits used by validation (entry count, sizes, expansion).
    pub fn archive_limits(&self) -> crate::archive::verify::Limits {
        self.core.archive_limits()
    }

    /// Reads `manifest.json` of a backup job's archive.
    pub async fn job_manifest(&self, id: JobId) -> Result<wire::Manifest> {
        self.core.job_manifest(id).await
    }

    /// Full integrity check of a job's archive without restoring.
    pub async fn verify_job(&self, id: JobId) -> Result<VerifyReport> {
        self.core.verify_job(id).await
    }

    /// Full integrity check of any archive file; an encrypted one is read through
    /// `identity` (a pasted key or kit), if given, and the instance key.
    pub async fn verify_file(
        &self,
        path: &Path,
        identity: Option<&str>,
        progress: ProgressFn,
    ) -> Result<VerifyReport> {
        self.core.verify_file(path, identity, progress).await
    }

    /// Repairs a restore interrupted by a crash, from its journal: in the `staging` phase
    /// nothing had changed, so the staged copies are deleted; in the `apply` phase the
    /// archive had been fully validated and staged, so the restore is completed (the
    /// database loaded again from the staged copy, the swap rolled forward). Deletes only
    /// paths the journal names. Returns the job id it repaired.
    pub async fn repair_interrupted_swap(&self) -> Result<Option<JobId>> {
        self.core.repair_interrupted_swap().await
    }

    /// Backstop's own files as [`check_mount`] sees them: the data dir, both DB files, the
    /// saved backup folder and every folder a succeeded backup's archive lives in, the
    /// plugins folder.
    pub async fn own_files(&self) -> Result<OwnFiles> {
        self.core.own_files().await
    }

    /// Applies an admin's change to a plugin (`PUT /api/backups/plugins/{id}/`): every
    /// mount it grants is checked against Backstop's own files ([`check_mount`]) as well as
    /// by the runtime; a refused change answers with `grants.mounts.<name>` field errors
    /// and stores nothing.
    pub async fn update_plugin(&self, id: &str, update: &PluginUpdate) -> Result<PluginView> {
        self.core.update_plugin(id, update).await
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

/// Destinations (DESIGN section 10): copies off this machine.
impl Engine {
    /// Every destination, oldest first (no secrets).
    pub async fn list_destinations(&self) -> Result<Vec<wire::destination::Destination>> {
        self.core.list_destinations().await
    }
    pub async fn get_destination(
        &self,
        id: DestinationId,
    ) -> Result<wire::destination::Destination> {
        self.core.get_destination(id).await
    }
    /// Creates one from a client's JSON body, each wrong field with its own message.
    pub async fn create_destination(
        &self,
        body: &serde_json::Value,
    ) -> Result<wire::destination::Destination> {
        self.core.create_destination(body).await
    }
    /// Replaces one's settings; a missing or null secret keeps the stored one.
    pub async fn update_destination(
        &self,
        id: DestinationId,
        body: &serde_json::Value,
    ) -> Result<wire::destination::Destination> {
        self.core.update_destination(id, body).await
    }
    /// Forgets a destination (what it holds stays there); refused while a copy to it runs.
    pub async fn delete_destination(&self, id: DestinationId) -> Result<()> {
        self.core.delete_destination(id).await
    }
    /// Writes, reads back and deletes a probe object; says what failed.
    pub async fn test_destination(
        &self,
        id: DestinationId,
    ) -> Result<wire::destination::TestResult> {
        self.core.test_destination(id).await
    }
    /// The complete copies a destination holds, from their sidecars, newest first.
    pub async fn remote_archives(
        &self,
        id: DestinationId,
    ) -> Result<Vec<wire::destination::RemoteArchive>> {
        self.core.remote_archives(id).await
    }
    /// Downloads, checks and lists a copy as a backup with trigger `import`.
    /// An encrypted copy is decrypted with `identity` (the admin's key) and the instance key.
    pub async fn import_archive(
        &self,
        id: DestinationId,
        name: &str,
        identity: Option<&str>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        self.core
            .import_archive(id, name, identity, requested_by)
            .await
    }
    /// The encryption settings (no secret).
    pub async fn encryption(&self) -> Result<wire::encryption::EncryptionView> {
        crate::encryption::view(self.core.state()).await
    }
    /// Changes them; the change that first enables encryption returns the new key and the
    /// emergency kit, once.
    pub async fn update_encryption(
        &self,
        body: &serde_json::Value,
    ) -> Result<wire::encryption::EncryptionView> {
        crate::encryption::update(self.core.state(), body).await
    }
    /// Does this key open the archives this instance encrypts?
    pub async fn check_encryption_key(
        &self,
        identity: &str,
    ) -> Result<wire::encryption::CheckResult> {
        crate::encryption::check(self.core.state(), identity).await
    }
    /// Queues a failed (or missing) copy of a backup again.
    pub async fn retry_copy(&self, job: JobId, destination: DestinationId) -> Result<Job> {
        self.core.retry_copy(job, destination).await
    }
}
