//! Jobs (DESIGN section 4): the job store (this file: records in the state DB, events,
//! listing, cancel, delete, the archive a record owns), the single [`runner`], and
//! [`retention`] with the crash-safe deletes and the restart sweep. The backup pipeline
//! itself is [`crate::backup`]; the restore pipeline is [`crate::restore`].
//!
//! One job runs at a time; others wait as `pending` and start in id order. Progress flows
//! from the blocking archive code through a `watch` channel to an async task that persists
//! it and broadcasts a snapshot, so the blocking thread never waits on the database.
//! Cancel is cooperative: a `CancellationToken` checked between buffers by the archive code.

pub(crate) mod retention;
pub(crate) mod runner;

pub use wire::{Job, JobId, JobKind, JobProgress, JobStatus, JobTrigger};

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sqlx::{FromRow, SqlitePool};
use tokio::sync::broadcast;

use crate::archive::{Progress, ProgressFn};
use crate::core::Core;
use crate::plugins::Annotation;
use crate::{Error, Result};

#[derive(FromRow)]
pub(crate) struct JobRow {
    pub(crate) id: JobId,
    pub(crate) kind: JobKind,
    pub(crate) status: JobStatus,
    pub(crate) trigger: JobTrigger,
    pub(crate) requested_by: Option<String>,
    pub(crate) archive_name: Option<String>,
    pub(crate) archive_dir: Option<String>,
    pub(crate) original_filename: Option<String>,
    pub(crate) size_bytes: Option<i64>,
    pub(crate) sha256: Option<String>,
    pub(crate) include_recordings: bool,
    pub(crate) progress_step: Option<String>,
    pub(crate) progress_done: i64,
    pub(crate) progress_total: i64,
    pub(crate) error: Option<String>,
    pub(crate) warnings: String,
    pub(crate) annotations: String,
    pub(crate) source_job_id: Option<JobId>,
    pub(crate) created_at: String,
    pub(crate) started_at: Option<String>,
    pub(crate) finished_at: Option<String>,
    pub(crate) file_stamp: Option<String>,
}

#[derive(FromRow)]
struct CopyRow {
    job_id: JobId,
    destination_id: wire::DestinationId,
    destination: String,
    status: String,
    error: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    encrypted: bool,
    finished_at: Option<String>,
}

impl JobRow {
    pub(crate) fn into_job(self) -> Job {
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
            encrypted: self
                .archive_name
                .as_deref()
                .is_some_and(crate::encryption::is_age_name),
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
            copies: Vec::new(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

pub(crate) const SELECT: &str = "SELECT id, kind, status, trigger, requested_by, archive_name, archive_dir, original_filename, \
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

pub use crate::core::JobEvent;

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

impl Core {
    /// Why the saved backup folder breaks the layout rule ([`crate::settings::check_backup_folder`]), for
    /// settings saved before the rule existed or made unsafe by a later plugin grant; `None`
    /// when it is fine. Backups refuse to run while this is `Some`.
    pub(crate) async fn backup_folder_conflict(&self) -> Result<Option<String>> {
        let plugins = self.plugins().clone();
        crate::settings::backup_folder_conflict(self.state(), self.data_dir(), move || {
            crate::settings::restore_targets(&plugins.describe())
        })
        .await
    }
}

impl Core {
    pub(crate) fn emit(&self, event: JobEvent) {
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

    pub(crate) async fn emit_job(&self, id: JobId) {
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
        let mut jobs: Vec<Job> = rows.into_iter().map(|r| self.view(r)).collect();
        self.attach_copies(&mut jobs).await?;
        Ok((jobs, total))
    }

    /// One job, or NotFound.
    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        let mut job = [self.view(self.job_row(id).await?)];
        self.attach_copies(&mut job).await?;
        let [job] = job;
        Ok(job)
    }

    /// Fills each job's `copies` (one query for the page).
    async fn attach_copies(&self, jobs: &mut [Job]) -> Result<()> {
        let (Some(lo), Some(hi)) = (
            jobs.iter().map(|j| j.id).min(),
            jobs.iter().map(|j| j.id).max(),
        ) else {
            return Ok(());
        };
        let rows: Vec<CopyRow> = sqlx::query_as(
            "SELECT job_id, destination_id, destination, status, error, size_bytes, sha256, encrypted, finished_at \
             FROM job_copies WHERE job_id BETWEEN ? AND ? ORDER BY destination_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(self.state())
        .await?;
        for r in rows {
            if let Some(job) = jobs.iter_mut().find(|j| j.id == r.job_id) {
                job.copies.push(wire::destination::JobCopy {
                    destination_id: r.destination_id,
                    destination: r.destination,
                    status: r
                        .status
                        .parse()
                        .unwrap_or(wire::destination::CopyStatus::Failed),
                    error: r.error,
                    size_bytes: r.size_bytes,
                    sha256: r.sha256,
                    finished_at: r.finished_at,
                    encrypted: r.encrypted,
                });
            }
        }
        Ok(())
    }

    pub(crate) async fn job_row(&self, id: JobId) -> Result<JobRow> {
        let row: Option<JobRow> = sqlx::query_as(&format!("{SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.state())
            .await?;
        row.ok_or_else(|| Error::not_found(format!("no job {id}")))
    }

    /// A job as clients see it: a restore past its point of no return cannot be canceled.
    pub(crate) fn view(&self, row: JobRow) -> Job {
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
        let copying: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_copies WHERE job_id = ? AND status IN ('pending', 'running')",
        )
        .bind(id)
        .fetch_one(self.state())
        .await?;
        if copying > 0 {
            return Err(Error::conflict(format!(
                "backup {id} is being copied to a destination; delete it when the copy has ended"
            )));
        }
        self.remove_job_and_file(&row, "delete.record-removed")
            .await?;
        self.emit(JobEvent::Deleted(id));
        Ok(())
    }

    /// A pending or running restore job that restores from backup `source`.
    pub(crate) async fn active_restore_of(&self, source: JobId) -> Result<Option<JobId>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE kind = 'restore' AND status IN ('pending', 'running') AND source_job_id = ? LIMIT 1",
        )
        .bind(source)
        .fetch_optional(self.state())
        .await?)
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
    pub(crate) async fn save_plugin_log(&self, id: JobId) {
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
    pub(crate) fn row_archive_path(&self, row: &JobRow) -> Option<PathBuf> {
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
            tokio::task::spawn_blocking(move || crate::archive::file_sha256(&p))
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

    /// Claims a fresh archive name in `dir` for backup record `id` before its file is
    /// written: a name no record holds (the unique index `jobs_archive_owner` makes the claim
    /// atomic between a backup and a concurrent upload) and no file in `dir` has, in either
    /// form; `NAME.tar.gz.age` when the archive is stored `encrypted`.
    pub(crate) async fn claim_archive_name(
        &self,
        id: JobId,
        dir: &Path,
        encrypted: bool,
    ) -> Result<String> {
        for _ in 0..100 {
            let recorded = self.recorded_names().await?;
            let name =
                crate::archive::writer::archive_name_avoiding(chrono::Utc::now(), dir, &|n| {
                    recorded.contains(n)
                });
            let name = if encrypted {
                format!("{name}.age")
            } else {
                name
            };
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
    pub(crate) async fn release_archive_name(&self, id: JobId) {
        let _ = sqlx::query("UPDATE jobs SET archive_name = NULL WHERE id = ?")
            .bind(id)
            .execute(self.state())
            .await;
    }

    pub(crate) async fn update_job_archive(
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
pub(crate) fn changed_on_disk(id: JobId, name: &str, how: &str) -> Error {
    Error::rejected(format!(
        "the archive of job {id} ({name}) has changed since it was made ({how}); it is refused. \
         Restore or download another backup, or delete this one"
    ))
}

/// What identifies one version of a file without reading it: inode, size, mtime and ctime
/// (nanoseconds). Any write changes ctime, which a process cannot set back.
pub(crate) fn file_stamp(meta: &std::fs::Metadata) -> String {
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
