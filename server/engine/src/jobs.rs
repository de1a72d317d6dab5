//! Jobs: records in the state DB, the single runner, progress, cancel, retention and the
//! restart sweep (DESIGN section 4).
//!
//! One job runs at a time; others wait as `pending` and start in id order. Progress flows
//! from the blocking archive code through a `watch` channel to an async task that persists
//! it and broadcasts a snapshot, so the blocking thread never waits on the database.
//! Cancel is cooperative: a `CancellationToken` checked between buffers by the archive code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::{FromRow, SqlitePool};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::archive::{Progress, ProgressFn};
use crate::plugins::{Annotation, ContentSource, HookPoint, JobContext};
use crate::{Engine, Error, ErrorKind, Result};

pub use wire::{Job, JobId, JobKind, JobProgress, JobStatus, JobTrigger};

#[derive(FromRow)]
struct JobRow {
    id: JobId,
    kind: JobKind,
    status: JobStatus,
    trigger: JobTrigger,
    requested_by: Option<String>,
    archive_name: Option<String>,
    archive_dir: Option<String>,
    original_filename: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    include_recordings: bool,
    progress_step: Option<String>,
    progress_done: i64,
    progress_total: i64,
    error: Option<String>,
    warnings: String,
    annotations: String,
    source_job_id: Option<JobId>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    file_stamp: Option<String>,
}

impl JobRow {
    fn into_job(self) -> Job {
        let active = self.status.is_active();
        let has_archive = self.kind == JobKind::Backup
            && self.status == JobStatus::Succeeded
            && self.archive_name.is_some();
        Job {
            id: self.id,
            can_download: has_archive,
            can_restore: has_archive,
            can_cancel: active,
            can_delete: !active,
            kind: self.kind,
            status: self.status,
            trigger: self.trigger,
            requested_by: self.requested_by,
            archive_name: self.archive_name,
            original_filename: self.original_filename,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            include_recordings: self.include_recordings,
            progress: JobProgress {
                step: self.progress_step,
                done_bytes: self.progress_done.max(0) as u64,
                total_bytes: self.progress_total.max(0) as u64,
            },
            error: self.error,
            warnings: serde_json::from_str(&self.warnings).unwrap_or_default(),
            annotations: serde_json::from_str(&self.annotations).unwrap_or_default(),
            source_job_id: self.source_job_id,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

const SELECT: &str = "SELECT id, kind, status, trigger, requested_by, archive_name, archive_dir, original_filename, \
     size_bytes, sha256, include_recordings, progress_step, progress_done, progress_total, error, warnings, \
     annotations, source_job_id, created_at, started_at, finished_at, file_stamp FROM jobs";

/// List filters (`?kind=&status=&limit=&offset=`).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A change pushed to event-stream subscribers.
#[derive(Debug, Clone)]
pub enum JobEvent {
    Updated(Box<Job>),
    Deleted(JobId),
}

/// What a new job is.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub trigger: JobTrigger,
    pub requested_by: Option<String>,
    pub include_recordings: bool,
    pub source_job_id: Option<JobId>,
    pub archive_name: Option<String>,
    pub archive_dir: Option<String>,
    pub original_filename: Option<String>,
}

/// In-memory state of the runner.
#[derive(Default)]
pub(crate) struct Runner {
    wake: Notify,
    events: Option<broadcast::Sender<JobEvent>>,
    running: Mutex<HashMap<JobId, RunningJob>>,
    /// Serializes job execution between the background runner and CLI-run jobs.
    exec: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct RunningJob {
    cancel: CancellationToken,
    /// Set once a restore starts swapping directories: cancel is refused from then on.
    point_of_no_return: Arc<AtomicBool>,
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

impl Engine {
    fn runner(&self) -> &Runner {
        self.runner_ref()
    }

    fn emit(&self, event: JobEvent) {
        if let Some(tx) = &self.runner().events {
            let _ = tx.send(event);
        }
    }

    /// Subscribes to job changes (for the event stream).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        match &self.runner().events {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    async fn emit_job(&self, id: JobId) {
        if let Ok(job) = self.get_job(id).await {
            self.emit(JobEvent::Updated(Box::new(job)));
        }
    }

    /// Jobs newest first, filtered and paged; and the total matching the filter.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<(Vec<Job>, i64)> {
        let kind = match f.kind.as_deref().map(str::parse::<JobKind>).transpose() {
            Ok(k) => k,
            Err(e) => {
                return Err(Error::invalid(e.to_string()).with_field("kind", "backup or restore"));
            }
        };
        let status = match f.status.as_deref().map(str::parse::<JobStatus>).transpose() {
            Ok(s) => s,
            Err(e) => {
                return Err(Error::invalid(e.to_string()).with_field("status", "unknown status"));
            }
        };
        if !(1..=1000).contains(&f.limit) {
            return Err(
                Error::invalid("limit must be between 1 and 1000").with_field("limit", "1-1000")
            );
        }
        if f.offset < 0 {
            return Err(
                Error::invalid("offset must not be negative").with_field("offset", "0 or more")
            );
        }
        let cond = "WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2)";
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "{SELECT} {cond} ORDER BY id DESC LIMIT ?3 OFFSET ?4"
        ))
        .bind(kind)
        .bind(status)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(self.state())
        .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM jobs {cond}"))
            .bind(kind)
            .bind(status)
            .fetch_one(self.state())
            .await?;
        Ok((rows.into_iter().map(|r| self.view(r)).collect(), total))
    }

    /// One job, or NotFound.
    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        Ok(self.view(self.job_row(id).await?))
    }

    async fn job_row(&self, id: JobId) -> Result<JobRow> {
        let row: Option<JobRow> = sqlx::query_as(&format!("{SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.state())
            .await?;
        row.ok_or_else(|| Error::not_found(format!("no job {id}")))
    }

    /// A job as clients see it: a restore past its point of no return cannot be canceled.
    fn view(&self, row: JobRow) -> Job {
        let mut job = row.into_job();
        if job.status == JobStatus::Running {
            let running = self
                .runner()
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if running
                .get(&job.id)
                .is_some_and(|r| r.point_of_no_return.load(Ordering::SeqCst))
            {
                job.can_cancel = false;
            }
        }
        job
    }

    /// Inserts a pending job and wakes the runner.
    pub async fn enqueue(&self, new: NewJob) -> Result<Job> {
        let id: JobId = sqlx::query_scalar(
            "INSERT INTO jobs (kind, status, trigger, requested_by, include_recordings, source_job_id, archive_name, archive_dir, original_filename, created_at) \
             VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.kind)
        .bind(new.trigger)
        .bind(&new.requested_by)
        .bind(new.include_recordings)
        .bind(new.source_job_id)
        .bind(&new.archive_name)
        .bind(&new.archive_dir)
        .bind(&new.original_filename)
        .bind(crate::state::now_rfc3339())
        .fetch_one(self.state())
        .await?;
        self.emit_job(id).await;
        self.runner().wake.notify_one();
        self.get_job(id).await
    }

    /// Queues a backup. `include_recordings` defaults to the saved setting.
    pub async fn start_backup(
        &self,
        trigger: JobTrigger,
        requested_by: Option<String>,
        include_recordings: Option<bool>,
    ) -> Result<Job> {
        if let Some(conflict) = self.backup_folder_conflict().await? {
            return Err(Error::invalid(format!(
                "{conflict}; change the backup folder in the settings before backing up"
            ))
            .with_field("path", conflict));
        }
        let settings = crate::settings::load(self.state()).await?;
        self.enqueue(NewJob {
            kind: JobKind::Backup,
            trigger,
            requested_by,
            include_recordings: include_recordings.unwrap_or(settings.include_recordings),
            source_job_id: None,
            archive_name: None,
            archive_dir: None,
            original_filename: None,
        })
        .await
    }

    /// Whether a scheduled backup is already waiting (the scheduler then skips a run).
    pub async fn scheduled_pending(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE trigger = 'scheduled' AND status = 'pending'",
        )
        .fetch_one(self.state())
        .await?;
        Ok(n > 0)
    }

    /// Cancels a pending or running job. Pending jobs end at once; running ones stop at
    /// their next check (well under a second). Refused (409) for finished jobs and for a
    /// restore that has begun swapping directories.
    pub async fn cancel_job(&self, id: JobId) -> Result<Job> {
        let job = self.get_job(id).await?;
        match job.status {
            JobStatus::Pending => {
                let done = sqlx::query("UPDATE jobs SET status = 'canceled', error = 'canceled before it started', finished_at = ? WHERE id = ? AND status = 'pending'")
                    .bind(crate::state::now_rfc3339())
                    .bind(id)
                    .execute(self.state())
                    .await?;
                if done.rows_affected() == 0 {
                    // It started in between: cancel the running job instead.
                    return Box::pin(self.cancel_job(id)).await;
                }
                self.emit_job(id).await;
                self.get_job(id).await
            }
            JobStatus::Running => {
                let running = self
                    .runner()
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .cloned();
                match running {
                    Some(r) if r.point_of_no_return.load(Ordering::SeqCst) => Err(Error::conflict(
                        "the restore is already swapping directories into place and can no longer be canceled",
                    )),
                    Some(r) => {
                        r.cancel.cancel();
                        // Plugin calls in flight for this job end at their next check too.
                        self.plugins().cancel_job(id.get());
                        self.get_job(id).await
                    }
                    None => Err(Error::conflict(format!(
                        "job {id} is finishing and can no longer be canceled"
                    ))),
                }
            }
            other => Err(Error::conflict(format!(
                "job {id} is {other}; only pending or running jobs can be canceled"
            ))),
        }
    }

    /// Deletes a finished job: its archive file and its record together.
    pub async fn delete_job(&self, id: JobId) -> Result<()> {
        let row = self.job_row(id).await?;
        if row.status.is_active() {
            return Err(Error::conflict(format!(
                "job {id} is {}; cancel it before deleting it",
                row.status
            )));
        }
        if let Some(restore) = self.active_restore_of(id).await? {
            return Err(Error::conflict(format!(
                "backup {id} is the source of restore job {restore}, which has not finished; \
                 cancel the restore or wait for it before deleting the backup"
            )));
        }
        self.remove_job_and_file(&row, "delete.record-removed")
            .await?;
        self.emit(JobEvent::Deleted(id));
        Ok(())
    }

    /// A pending or running restore job that restores from backup `source`.
    async fn active_restore_of(&self, source: JobId) -> Result<Option<JobId>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE kind = 'restore' AND status IN ('pending', 'running') AND source_job_id = ? LIMIT 1",
        )
        .bind(source)
        .fetch_optional(self.state())
        .await?)
    }

    /// Deletes a record and the one file it owns (DESIGN section 4: each archive file is
    /// owned by exactly one backup record; restore records own none).
    ///
    /// Crash-safe order: the record is deleted and the file queued in `pending_file_deletes`
    /// in one transaction; then the file is unlinked and the queue row removed. A crash in
    /// between leaves the queue row, which the restart sweep finishes. So no record ever
    /// names a missing file, and no deleted record leaves its file behind.
    async fn remove_job_and_file(&self, row: &JobRow, fault_point: &'static str) -> Result<()> {
        let owned = self.row_archive_path(row);
        let mut tx = self.state().begin().await?;
        if let Some(path) = &owned {
            sqlx::query("INSERT OR REPLACE INTO pending_file_deletes (path, job_id, queued_at) VALUES (?, ?, ?)")
                .bind(path.to_string_lossy().as_ref())
                .bind(row.id)
                .bind(crate::state::now_rfc3339())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM job_plugin_log WHERE job_id = ?")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        crate::fault::point(fault_point);
        if let Some(path) = owned {
            self.finish_file_delete(&path).await;
        }
        Ok(())
    }

    /// Unlinks a queued file and drops its queue row (a missing file counts as deleted).
    async fn finish_file_delete(&self, path: &Path) {
        match tokio::fs::remove_file(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // Left queued: the next start tries again. The record is already gone.
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an archive file; will retry at the next start");
                return;
            }
        }
        let _ = sqlx::query("DELETE FROM pending_file_deletes WHERE path = ?")
            .bind(path.to_string_lossy().as_ref())
            .execute(self.state())
            .await;
    }

    /// Finishes file deletes a crash interrupted (restart sweep).
    async fn finish_pending_file_deletes(&self) -> Result<()> {
        let paths: Vec<String> = sqlx::query_scalar("SELECT path FROM pending_file_deletes")
            .fetch_all(self.state())
            .await?;
        if paths.is_empty() {
            return Ok(());
        }
        let owners: Vec<JobRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE kind = 'backup' AND archive_name IS NOT NULL"
        ))
        .fetch_all(self.state())
        .await?;
        let owned: std::collections::HashSet<PathBuf> = owners
            .iter()
            .filter_map(|r| self.row_archive_path(r))
            .collect();
        for p in paths {
            // A queued path is one a record owned; never delete a file a live record names.
            if owned.contains(Path::new(&p)) {
                let _ = sqlx::query("DELETE FROM pending_file_deletes WHERE path = ?")
                    .bind(&p)
                    .execute(self.state())
                    .await;
                continue;
            }
            tracing::info!(path = %p, "finishing an archive delete interrupted by the last shutdown");
            self.finish_file_delete(Path::new(&p)).await;
        }
        Ok(())
    }

    /// What plugins logged during job `id`, oldest first: live from the plugin host while
    /// the job runs, from the state DB once it has ended. 404 for an unknown job.
    pub async fn plugin_log(&self, id: JobId) -> Result<Vec<crate::plugins::PluginLogLine>> {
        let row = self.job_row(id).await?;
        if row.status.is_active() {
            return Ok(self.plugins().job_log(id.get()));
        }
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT plugin, level, message, at FROM job_plugin_log WHERE job_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.state())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(plugin, level, message, at)| crate::plugins::PluginLogLine {
                    plugin,
                    level,
                    message,
                    at,
                },
            )
            .collect())
    }

    /// Keeps the plugin log of a job that ends (the host holds only the most recent jobs').
    async fn save_plugin_log(&self, id: JobId) {
        let lines = self.plugins().job_log(id.get());
        if lines.is_empty() {
            return;
        }
        let saved: Result<()> = async {
            let mut tx = self.state().begin().await?;
            for (seq, l) in lines.iter().enumerate() {
                sqlx::query("INSERT OR REPLACE INTO job_plugin_log (job_id, seq, plugin, level, message, at) VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(id)
                    .bind(seq as i64)
                    .bind(&l.plugin)
                    .bind(&l.level)
                    .bind(&l.message)
                    .bind(&l.at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = saved {
            tracing::warn!(job = %id, error = %e.detailed(), "cannot keep the plugin log");
        }
    }

    /// The file a record owns: only backup records own one (a restore names its source by
    /// `source_job_id`, and its `archive_name` is for display only).
    fn row_archive_path(&self, row: &JobRow) -> Option<PathBuf> {
        if row.kind != JobKind::Backup {
            return None;
        }
        let name = row.archive_name.as_deref()?;
        // Names are chosen by the server; refuse anything that is not a plain file name.
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return None;
        }
        let dir = row
            .archive_dir
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.data_dir().join("backups"));
        Some(dir.join(name))
    }

    /// The archive file of a succeeded backup job (for download, manifest, verify, restore).
    pub async fn archive_path(&self, id: JobId) -> Result<PathBuf> {
        let row = self.job_row(id).await?;
        if row.kind != JobKind::Backup || row.status != JobStatus::Succeeded {
            return Err(Error::conflict(format!(
                "job {id} has no archive (it is a {} job that is {})",
                row.kind, row.status
            )));
        }
        let path = self
            .row_archive_path(&row)
            .ok_or_else(|| Error::not_found(format!("job {id} has no archive")))?;
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => {
                return Err(Error::not_found(format!(
                    "the archive of job {id} ({}) is missing from disk",
                    path.display()
                )));
            }
        };
        let name = row.archive_name.clone().unwrap_or_default();
        if let Some(size) = row.size_bytes
            && meta.len() != size as u64
        {
            return Err(changed_on_disk(
                id,
                &name,
                &format!("it is {} bytes, the record says {size}", meta.len()),
            ));
        }
        let Some(expected) = row.sha256.clone() else {
            return Ok(path);
        };
        let stamp = file_stamp(&meta);
        if row.file_stamp.as_deref() == Some(stamp.as_str()) {
            return Ok(path);
        }
        // The file was touched since it was last hashed (or never stamped): hash it again.
        let (size, sha) = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || crate::restore::file_sha256(&p))
                .await
                .map_err(|e| Error::internal("hashing the archive failed", e))??
        };
        if sha != expected || row.size_bytes.is_some_and(|s| s as u64 != size) {
            return Err(changed_on_disk(
                id,
                &name,
                "its SHA-256 no longer matches the record",
            ));
        }
        self.set_file_stamp(id, &path).await;
        Ok(path)
    }

    /// Records the archive file's current stamp (after its sha256 was checked or computed).
    pub(crate) async fn set_file_stamp(&self, id: JobId, path: &Path) {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            let _ = sqlx::query("UPDATE jobs SET file_stamp = ? WHERE id = ?")
                .bind(file_stamp(&meta))
                .bind(id)
                .execute(self.state())
                .await;
        }
    }

    /// The size and sha256 a backup record lists for its archive.
    pub(crate) async fn recorded_digest(&self, id: JobId) -> Result<(Option<u64>, Option<String>)> {
        let row = self.job_row(id).await?;
        Ok((row.size_bytes.map(|s| s as u64), row.sha256))
    }

    /// Whether any record names `name` as its archive (names are never reused while one does).
    pub(crate) async fn recorded_names(&self) -> Result<std::collections::HashSet<String>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT archive_name FROM jobs WHERE archive_name IS NOT NULL")
                .fetch_all(self.state())
                .await?;
        Ok(names.into_iter().collect())
    }

    /// Marks jobs left `pending`/`running` by a previous process as failed, and removes
    /// leftover `.partial` files and staging folders.
    pub async fn restart_sweep(&self) -> Result<u64> {
        // Repairs never keep the server from starting (DESIGN section 4, data safety 5):
        // a repair that fails is logged and its journal kept for the next start.
        match self.repair_interrupted_swap().await {
            Ok(Some(job)) => tracing::warn!(
                job = %job,
                "repaired a restore interrupted by the last shutdown (see the job's message)"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e.detailed(), "cannot repair a restore interrupted by the last shutdown; will try again at the next start")
            }
        }
        if let Err(e) = self.finish_pending_file_deletes().await {
            tracing::error!(error = %e.detailed(), "cannot finish archive deletes interrupted by the last shutdown");
        }
        // A backup interrupted after its archive got its final name owns that file, but it
        // never succeeded: remove it, as a failed backup leaves no file behind.
        let interrupted: Vec<JobRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE kind = 'backup' AND status IN ('pending', 'running') AND archive_name IS NOT NULL"
        ))
        .fetch_all(self.state())
        .await?;
        for row in &interrupted {
            if let Some(path) = self.row_archive_path(row) {
                tracing::info!(job = %row.id, path = %path.display(), "removing the archive of a backup interrupted by the last shutdown");
                crate::archive::writer::discard_file(&path);
            }
        }
        let done = sqlx::query("UPDATE jobs SET status = 'failed', error = 'interrupted by restart', finished_at = ? WHERE status IN ('pending', 'running')")
            .bind(crate::state::now_rfc3339())
            .execute(self.state())
            .await?;
        let settings = crate::settings::load(self.state()).await?;
        let mut dirs = vec![
            settings.resolved_path(self.data_dir()),
            self.data_dir().join("backups"),
        ];
        dirs.dedup();
        for dir in dirs {
            remove_leftovers(&dir);
        }
        // A restore journal that could not be repaired still needs its staging folder.
        if !self.data_dir().join(crate::restore::JOURNAL).exists() {
            remove_leftovers(self.data_dir());
        }
        Ok(done.rows_affected())
    }

    /// Starts the background runner. It runs pending jobs one at a time until `shutdown`.
    pub fn spawn_runner(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                // Register for wake-ups before looking, so an enqueue in between is not lost.
                let woken = engine.runner().wake.notified();
                match engine.next_pending().await {
                    Ok(Some(id)) => {
                        let _guard = engine.runner().exec.lock().await;
                        engine.run_job(id, None, None).await;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e.detailed(), "cannot read pending jobs"),
                }
                tokio::select! {
                    _ = woken => {}
                    _ = shutdown.cancelled() => break,
                    // A safety net against a lost wake-up; cheap (one indexed query a minute).
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                }
            }
            // Drain: cancel what runs so the process can exit promptly and cleanly.
            for r in engine
                .runner()
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                r.cancel.cancel();
            }
        })
    }

    async fn next_pending(&self) -> Result<Option<JobId>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT 1")
                .fetch_optional(self.state())
                .await?,
        )
    }

    /// Runs a job synchronously from the CLI (no server running), printing progress.
    pub async fn run_backup_cli(
        &self,
        include_recordings: bool,
        progress: ProgressFn,
    ) -> Result<Job> {
        let job = self
            .start_backup(
                JobTrigger::Manual,
                Some("cli".into()),
                Some(include_recordings),
            )
            .await?;
        self.run_to_completion(job.id, progress).await
    }

    /// Runs a queued job in this task (CLI use) and returns it, or its error when it did not
    /// succeed.
    pub(crate) async fn run_to_completion(&self, id: JobId, progress: ProgressFn) -> Result<Job> {
        self.run_job_now(id, Some(progress)).await;
        let job = self.get_job(id).await?;
        match job.status {
            JobStatus::Succeeded => Ok(job),
            _ => Err(Error::new(
                ErrorKind::Internal,
                job.error
                    .clone()
                    .unwrap_or_else(|| format!("{} {}", job.kind, job.status)),
            )),
        }
    }

    /// Runs a job in this task, after any job already running (CLI use).
    pub(crate) async fn run_job_now(&self, id: JobId, progress: Option<ProgressFn>) {
        let _guard = self.runner().exec.lock().await;
        self.run_job(id, progress, None).await;
    }

    /// Records an upload that passed validation, as a `running` backup record with its
    /// size and sha256 (its file gets its final name next; see `finish_upload`).
    pub(crate) async fn insert_upload_record(
        &self,
        new: NewJob,
        size: u64,
        sha256: &str,
    ) -> Result<JobId> {
        let now = crate::state::now_rfc3339();
        let id: JobId = sqlx::query_scalar(
            "INSERT INTO jobs (kind, status, trigger, requested_by, include_recordings, archive_dir, original_filename, size_bytes, sha256, progress_step, created_at, started_at) \
             VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, 'storing', ?, ?) RETURNING id",
        )
        .bind(new.kind)
        .bind(new.trigger)
        .bind(&new.requested_by)
        .bind(new.include_recordings)
        .bind(&new.archive_dir)
        .bind(&new.original_filename)
        .bind(size as i64)
        .bind(sha256)
        .bind(&now)
        .bind(&now)
        .fetch_one(self.state())
        .await?;
        Ok(id)
    }

    /// Removes the record of an upload that could not be stored (it owned no file yet).
    pub(crate) async fn forget_upload_record(&self, id: JobId) {
        let _ = sqlx::query("DELETE FROM jobs WHERE id = ? AND status = 'running'")
            .bind(id)
            .execute(self.state())
            .await;
    }

    /// Marks a stored upload succeeded and announces it.
    pub(crate) async fn finish_upload_record(&self, id: JobId) -> Result<Job> {
        let now = crate::state::now_rfc3339();
        sqlx::query("UPDATE jobs SET status = 'succeeded', progress_step = 'done', finished_at = ? WHERE id = ?")
            .bind(&now)
            .bind(id)
            .execute(self.state())
            .await?;
        if let Ok(row) = self.job_row(id).await
            && let Some(path) = self.row_archive_path(&row)
        {
            self.set_file_stamp(id, &path).await;
        }
        self.emit_job(id).await;
        self.get_job(id).await
    }

    /// The point-of-no-return flag of a running job (a restore sets it when its swap begins).
    pub(crate) fn running_ponr(&self, id: JobId) -> Option<Arc<AtomicBool>> {
        self.runner()
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|r| r.point_of_no_return.clone())
    }

    /// Runs a backup inside another job (the restore's safety backup): its own record with
    /// `trigger`, canceled together with the parent. Fails when the backup fails.
    pub(crate) async fn enqueue_inline_backup(
        &self,
        trigger: JobTrigger,
        requested_by: Option<String>,
        include_recordings: bool,
        parent: &CancellationToken,
    ) -> Result<Job> {
        let job = self
            .start_backup(trigger, requested_by, Some(include_recordings))
            .await?;
        Box::pin(self.run_job(job.id, None, Some(parent))).await;
        let job = self.get_job(job.id).await?;
        if job.status != JobStatus::Succeeded {
            if parent.is_cancelled() {
                return Err(Error::conflict("canceled"));
            }
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "the safety backup failed, so nothing was restored: {}",
                    job.error.clone().unwrap_or_default()
                ),
            ));
        }
        Ok(job)
    }

    /// Runs one job to its end and records the outcome. Never panics the runner.
    pub(crate) async fn run_job(
        &self,
        id: JobId,
        extra_progress: Option<ProgressFn>,
        parent: Option<&CancellationToken>,
    ) {
        let claimed = sqlx::query("UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'pending'")
            .bind(crate::state::now_rfc3339())
            .bind(id)
            .execute(self.state())
            .await;
        match claimed {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => return, // canceled while waiting
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot start job");
                return;
            }
        }
        let cancel = parent.map(|p| p.child_token()).unwrap_or_default();
        let ponr = Arc::new(AtomicBool::new(false));
        self.runner()
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                RunningJob {
                    cancel: cancel.clone(),
                    point_of_no_return: ponr.clone(),
                },
            );
        self.emit_job(id).await;
        let kind = self
            .job_row(id)
            .await
            .map(|r| r.kind)
            .unwrap_or(JobKind::Backup);
        crate::fault::point(if kind == JobKind::Backup {
            "backup.claimed"
        } else {
            "restore.claimed"
        });

        // Progress: the blocking code writes into a watch channel; this task persists and
        // broadcasts at most a few times a second.
        let (ptx, mut prx) = watch::channel(Progress {
            step: "queued",
            done_bytes: 0,
            total_bytes: 0,
        });
        let progress: ProgressFn = {
            let extra = extra_progress.clone();
            Arc::new(move |p: Progress| {
                if let Some(f) = &extra {
                    f(p);
                }
                match p.step {
                    "archive" => {
                        crate::fault::half("backup.archive-half", p.done_bytes, p.total_bytes)
                    }
                    "extract" => {
                        crate::fault::half("restore.extract-half", p.done_bytes, p.total_bytes)
                    }
                    _ => {}
                }
                ptx.send_replace(p);
            })
        };
        // Stopped explicitly when the job ends: waiting for every progress sender to drop
        // would make each job sit out the 200 ms pause (and a plugin call still unwinding
        // past its deadline holds a sender).
        let stop_persister = CancellationToken::new();
        let persister = {
            let engine = self.clone();
            let stop = stop_persister.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => break,
                        changed = prx.changed() => if changed.is_err() { break },
                    }
                    let p = *prx.borrow_and_update();
                    let _ = sqlx::query("UPDATE jobs SET progress_step = ?, progress_done = ?, progress_total = ? WHERE id = ?")
                        .bind(p.step)
                        .bind(p.done_bytes as i64)
                        .bind(p.total_bytes as i64)
                        .bind(id)
                        .execute(engine.state())
                        .await;
                    engine.emit_job(id).await;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
            })
        };

        let row = self.job_row(id).await;
        let outcome = match row {
            Ok(row) if row.kind == JobKind::Backup => {
                self.execute_backup(&row, &cancel, progress.clone()).await
            }
            Ok(row) => {
                let job = self.view(row);
                self.execute_restore_impl(&job, &cancel, &ponr, progress.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        drop(progress);
        stop_persister.cancel();
        let _ = persister.await;
        self.runner()
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.save_plugin_log(id).await;
        self.plugins().job_finished(id.get());

        let is_backup = self
            .job_row(id)
            .await
            .is_ok_and(|row| row.kind == JobKind::Backup);
        if outcome.is_err() && is_backup {
            // A failed or canceled backup leaves no file: remove the one it owns, if it got
            // as far as writing it (a post-archive veto, say). Its record keeps the name, so
            // the name is not reused.
            if let Ok(row) = self.job_row(id).await
                && let Some(path) = self.row_archive_path(&row)
                && path.exists()
            {
                crate::archive::writer::discard_file(&path);
            }
        }
        let result = match outcome {
            Ok(done) => {
                // Retention runs before the job is marked succeeded: the new archive is
                // already durable (fsynced and renamed), and anyone who sees this job
                // succeeded also sees the history already pruned (no window in which
                // N + 1 backups are listed).
                if !is_backup {
                    crate::fault::point("restore.finished");
                }
                if is_backup && let Err(e) = self.apply_retention(id).await {
                    tracing::warn!(error = %e.detailed(), "retention failed");
                }
                let now = crate::state::now_rfc3339();
                sqlx::query("UPDATE jobs SET status = 'succeeded', finished_at = ?, error = NULL, warnings = ?, annotations = ?, progress_step = 'done' WHERE id = ?")
                    .bind(&now)
                    .bind(serde_json::to_string(&done.warnings).unwrap_or_else(|_| "[]".into()))
                    .bind(serde_json::to_string(&done.annotations).unwrap_or_else(|_| "[]".into()))
                    .bind(id)
                    .execute(self.state())
                    .await
            }
            Err(e) => {
                let now = crate::state::now_rfc3339();
                let canceled = cancel.is_cancelled() && e.kind() == ErrorKind::Conflict;
                if !canceled {
                    tracing::warn!(job = %id, error = %e.detailed(), "job failed");
                }
                sqlx::query("UPDATE jobs SET status = ?, finished_at = ?, error = ? WHERE id = ?")
                    .bind(if canceled {
                        JobStatus::Canceled
                    } else {
                        JobStatus::Failed
                    })
                    .bind(&now)
                    .bind(if canceled {
                        "canceled by request".to_owned()
                    } else {
                        e.message().to_owned()
                    })
                    .bind(id)
                    .execute(self.state())
                    .await
            }
        };
        match result {
            Err(e) => tracing::error!(job = %id, error = %e, "cannot record job outcome"),
            Ok(_) if is_backup => crate::fault::point("backup.succeeded"),
            Ok(_) => {}
        }
        self.emit_job(id).await;
    }

    /// Keeps the newest `retention_count` succeeded backups made by Backstop (manual,
    /// scheduled, pre-restore); deletes file and record of the others. 0 keeps all;
    /// uploads are never pruned; the newest backup is never pruned.
    /// `finishing` is the backup just completed: its archive is durable but its record is
    /// not yet marked succeeded, and it counts as one of the kept backups.
    async fn apply_retention(&self, finishing: JobId) -> Result<Vec<JobId>> {
        let settings = crate::settings::load(self.state()).await?;
        if settings.retention_count == 0 {
            return Ok(Vec::new());
        }
        let keep = i64::from(settings.retention_count.max(1));
        // The source of a pending or running restore is never pruned (a restore's own safety
        // backup would otherwise prune the archive being restored), nor counted as pruneable.
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE kind = 'backup' AND (status = 'succeeded' OR id = ?) AND trigger IN ('manual', 'scheduled', 'pre-restore') \
             ORDER BY id DESC LIMIT -1 OFFSET ?"
        ))
        .bind(finishing)
        .bind(keep)
        .fetch_all(self.state())
        .await?;
        let protected: Vec<JobId> = sqlx::query_scalar(
            "SELECT source_job_id FROM jobs WHERE kind = 'restore' AND status IN ('pending', 'running') AND source_job_id IS NOT NULL",
        )
        .fetch_all(self.state())
        .await?;
        let mut pruned = Vec::new();
        for row in rows {
            let id = row.id;
            if id == finishing || protected.contains(&id) {
                continue;
            }
            self.remove_job_and_file(&row, "backup.retention").await?;
            tracing::info!(job = %id, "pruned by retention");
            self.emit(JobEvent::Deleted(id));
            pruned.push(id);
        }
        Ok(pruned)
    }

    /// Claims a fresh archive name in `dir` for backup record `id` before its file is
    /// written: a name no record holds (the unique index `jobs_archive_owner` makes the claim
    /// atomic between a backup and a concurrent upload) and no file in `dir` has.
    pub(crate) async fn claim_archive_name(&self, id: JobId, dir: &Path) -> Result<String> {
        for _ in 0..100 {
            let recorded = self.recorded_names().await?;
            let name =
                crate::archive::writer::archive_name_avoiding(chrono::Utc::now(), dir, &|n| {
                    recorded.contains(n)
                });
            let claimed =
                sqlx::query("UPDATE jobs SET archive_name = ?, archive_dir = ? WHERE id = ?")
                    .bind(&name)
                    .bind(dir.to_string_lossy().as_ref())
                    .bind(id)
                    .execute(self.state())
                    .await;
            match claimed {
                Ok(_) => return Ok(name),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::conflict(
            "no free archive name could be claimed; try again",
        ))
    }

    /// Gives up a claimed name whose file could not be published (another file took it).
    async fn release_archive_name(&self, id: JobId) {
        let _ = sqlx::query("UPDATE jobs SET archive_name = NULL WHERE id = ?")
            .bind(id)
            .execute(self.state())
            .await;
    }

    async fn update_job_archive(
        &self,
        id: JobId,
        name: &str,
        dir: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE jobs SET archive_name = ?, archive_dir = ?, size_bytes = ?, sha256 = ? WHERE id = ?")
            .bind(name)
            .bind(dir.to_string_lossy().as_ref())
            .bind(size as i64)
            .bind(sha256)
            .bind(id)
            .execute(self.state())
            .await?;
        Ok(())
    }

    fn job_context(
        &self,
        row: &JobRow,
        facts: Vec<(String, String)>,
        progress: &ProgressFn,
    ) -> JobContext {
        JobContext {
            job_id: row.id.get(),
            kind: row.kind.as_str().into(),
            trigger: row.trigger.as_str().into(),
            include_recordings: row.include_recordings,
            facts,
            progress: plugin_progress(progress),
        }
    }

    /// Runs hooks off the async workers; a veto at a gate or an `abort` policy failure ends
    /// the job with the plugin's reason.
    pub(crate) async fn hooks(
        &self,
        point: HookPoint,
        ctx: &JobContext,
        done: &mut Completed,
    ) -> Result<()> {
        let plugins = self.plugins().clone();
        let ctx = ctx.clone();
        let report = tokio::task::spawn_blocking(move || plugins.run_hooks(point, &ctx))
            .await
            .map_err(|e| Error::internal("a plugin hook task failed", e))?;
        done.annotations.extend(report.annotations);
        done.warnings.extend(report.warnings);
        if let Some(reason) = report.abort {
            return Err(Error::new(ErrorKind::Internal, reason));
        }
        if let Some((plugin, reason)) = report.veto {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "plugin {plugin} stopped the job at {}: {reason}",
                    point.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// The backup pipeline, top to bottom.
    async fn execute_backup(
        &self,
        row: &JobRow,
        cancel: &CancellationToken,
        progress: ProgressFn,
    ) -> Result<Completed> {
        let mut done = Completed::default();
        // A backup folder saved before the layout checks existed may sit where a restore
        // writes (DESIGN section 4, data safety 4): refuse to write archives there.
        if let Some(conflict) = self.backup_folder_conflict().await? {
            return Err(Error::invalid(format!(
                "{conflict}; change the backup folder in the settings before backing up"
            )));
        }
        let settings = crate::settings::load(self.state()).await?;
        let dest = settings.resolved_path(self.data_dir());
        crate::settings::ensure_writable_dir(&dest).map_err(Error::invalid)?;
        // Facts for gate plugins (space-guard): free space, and the last backup's size as the
        // first estimate.
        let last_size: Option<i64> = sqlx::query_scalar(
            "SELECT size_bytes FROM jobs WHERE kind = 'backup' AND status = 'succeeded' AND size_bytes IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.state())
        .await?
        .flatten();
        let mut facts = vec![("archive_dir".into(), dest.display().to_string())];
        if let Some(free) = crate::archive::verify::free_bytes(&dest) {
            facts.push(("free_bytes".into(), free.to_string()));
        }
        if let Some(size) = last_size {
            facts.push(("estimated_bytes".into(), size.to_string()));
        }
        let ctx = self.job_context(row, facts, &progress);
        self.hooks(HookPoint::PreBackup, &ctx, &mut done).await?;

        let staging = dest.join(format!(".staging-{}", row.id));
        let _cleanup = RemoveOnDrop(staging.clone());
        tokio::fs::create_dir_all(&staging).await.map_err(|e| {
            Error::internal(
                format!("cannot create a staging folder in {}", dest.display()),
                e,
            )
        })?;

        // 1. Database, from one read transaction.
        progress(Progress {
            step: "dump",
            done_bytes: 0,
            total_bytes: 0,
        });
        let schema_version = crate::content::schema_version(self.content()).await?;
        let db_path = staging.join("database.json");
        let db_stats =
            crate::archive::dump::dump_database(self.content(), schema_version, &db_path, cancel)
                .await?;
        crate::fault::point("backup.dumped");

        // 2. Directories and plugin content.
        let sources: Vec<Box<dyn ContentSource>> = vec![
            Box::new(crate::plugins::BuiltinDirectories {
                data_dir: self.data_dir().to_path_buf(),
                // The recordings plugin, when enabled, archives recordings/ itself.
                recordings: !self.plugins().provides_directory("recordings"),
            }),
            Box::new(self.plugins().clone()),
        ];
        let scratch = staging.join("scratch");
        let collected = {
            let ctx = ctx.clone();
            let scratch = scratch.clone();
            tokio::task::spawn_blocking(move || {
                let _ = std::fs::create_dir_all(&scratch);
                sources
                    .iter()
                    .map(|s| s.collect(&ctx, &scratch))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| Error::internal("collecting content failed", e))?
        };
        let mut directories = Vec::new();
        let mut missing = Vec::new();
        let mut plugin_files = Vec::new();
        let mut plugins = Vec::new();
        for c in collected {
            for d in c.directories {
                if d.path.is_dir() {
                    directories.push(d)
                } else {
                    missing.push(d.name)
                }
            }
            if let Some(reason) = c.abort {
                return Err(Error::new(ErrorKind::Internal, reason));
            }
            plugin_files.extend(c.files);
            plugins.extend(c.plugins);
            done.warnings.extend(c.warnings);
        }
        crate::fault::point("backup.collected");
        self.hooks(HookPoint::PostCollect, &ctx, &mut done).await?;
        // At the archive gate the estimate is what will be read (an upper bound: media is
        // stored, text compresses).
        let estimated = {
            let paths: Vec<PathBuf> = directories
                .iter()
                .map(|d| d.path.clone())
                .chain(plugin_files.iter().map(|f| f.path.clone()))
                .collect();
            let db_bytes = db_stats.bytes;
            tokio::task::spawn_blocking(move || {
                db_bytes + paths.iter().map(|p| tree_bytes(p)).sum::<u64>()
            })
            .await
            .map_err(|e| Error::internal("estimating the archive size failed", e))?
        };
        let mut gate_ctx = ctx.clone();
        gate_ctx
            .facts
            .retain(|(k, _)| k != "estimated_bytes" && k != "free_bytes");
        gate_ctx
            .facts
            .push(("estimated_bytes".into(), estimated.to_string()));
        if let Some(free) = crate::archive::verify::free_bytes(&dest) {
            gate_ctx.facts.push(("free_bytes".into(), free.to_string()));
        }
        self.hooks(HookPoint::PreArchive, &gate_ctx, &mut done)
            .await?;
        if cancel.is_cancelled() {
            return Err(Error::conflict("canceled"));
        }

        // 3. Stream tar -> gzip -> sha256 -> .partial -> fsync -> rename. The record claims the
        // name before the file exists, so the file is owned from its first byte (a crash
        // leaves a file the restart sweep knows to remove), and no other record names it.
        let name = self.claim_archive_name(row.id, &dest).await?;
        let req = crate::archive::writer::ArchiveRequest {
            dest_dir: dest.clone(),
            file_name: name.clone(),
            created_at: chrono::Utc::now(),
            app_version: self.config().app_version.clone(),
            trigger: row.trigger.as_str().to_owned(),
            include_recordings: row.include_recordings,
            annotations: done.annotations.clone(),
            schema_version,
            database_json: db_path.clone(),
            database: db_stats,
            directories,
            missing_directories: missing,
            plugin_files,
            plugins,
        };
        let outcome = {
            let (cancel, progress) = (cancel.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                crate::archive::writer::write_archive(req, &cancel, progress)
            })
            .await
            .map_err(|e| Error::internal("the archive task failed", e))?
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                if e.kind() == ErrorKind::Conflict && !cancel.is_cancelled() {
                    // The name was taken on disk by a file that is not ours: never touch it.
                    self.release_archive_name(row.id).await;
                }
                return Err(e);
            }
        };
        crate::fault::point("backup.renamed");
        done.warnings.extend(outcome.warnings.iter().cloned());
        self.update_job_archive(row.id, &name, &dest, outcome.size_bytes, &outcome.sha256)
            .await?;
        self.set_file_stamp(row.id, &outcome.path).await;
        crate::fault::point("backup.recorded");
        let ctx = self.job_context(
            row,
            vec![("archive_path".into(), outcome.path.display().to_string())],
            &progress,
        );
        self.hooks(HookPoint::PostArchive, &ctx, &mut done).await?;
        self.hooks(HookPoint::PostBackup, &ctx, &mut done).await?;
        Ok(done)
    }
}

/// What a finished job reports besides success.
#[derive(Debug, Default)]
pub(crate) struct Completed {
    pub warnings: Vec<String>,
    pub annotations: Vec<Annotation>,
}

/// Removes a folder tree when dropped (staging areas on every exit path).
pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.0)
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove staging folder");
        }
    }
}

/// Bytes of regular files under `path` (symlinks not followed), or of `path` itself.
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes `*.partial` files and `.staging-*` / `.restore-*` folders left in `dir`.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        // Only names Backstop makes: the backup folder may be shared with other files.
        let ours = name.starts_with("backstop-") || name.starts_with("upload-");
        if !is_dir && ours && name.ends_with(".partial") {
            tracing::info!(path = %path.display(), "removing partial archive left by an interrupted job");
            let _ = std::fs::remove_file(&path);
        } else if is_dir && name.starts_with(".staging-") {
            tracing::info!(path = %path.display(), "removing staging folder left by an interrupted job");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Convenience for callers holding only a pool (tests).
pub async fn count(pool: &SqlitePool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(pool)
        .await?)
}

/// A plugin's `host.progress(done, total)` as the job's progress, step `plugin`.
pub(crate) fn plugin_progress(progress: &ProgressFn) -> crate::plugins::PluginProgress {
    let progress = progress.clone();
    crate::plugins::PluginProgress::new(move |done, total| {
        progress(Progress {
            step: "plugin",
            done_bytes: done,
            total_bytes: total,
        })
    })
}

/// The error for a stored archive that no longer matches its record (DESIGN section 4,
/// data safety 3). Kind Rejected (422): the archive is refused.
fn changed_on_disk(id: JobId, name: &str, how: &str) -> Error {
    Error::rejected(format!(
        "the archive of job {id} ({name}) has changed since it was made ({how}); it is refused. \
         Restore or download another backup, or delete this one"
    ))
}

/// What identifies one version of a file without reading it: inode, size, mtime and ctime
/// (nanoseconds). Any write changes ctime, which a process cannot set back.
fn file_stamp(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}:{}.{}:{}.{}",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}
