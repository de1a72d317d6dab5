//! The single job runner: runs pending jobs one at a time (the background task, or a CLI
//! command in its own process), records each job's progress and outcome, and runs the
//! plugin hooks for the pipelines.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Completed, Job, JobId, JobKind, JobRow, JobStatus, JobTrigger, plugin_progress};
use crate::archive::{Progress, ProgressFn};
use crate::core::{Core, RunningJob};
use crate::plugins::{HookPoint, JobContext};
use crate::{Error, ErrorKind, Result};

impl Core {
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

    pub(crate) async fn next_pending(&self) -> Result<Option<JobId>> {
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
                return Err(Error::canceled());
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
                // A backup's retention already ran inside its pipeline (crate::backup).
                if !is_backup {
                    crate::fault::point("restore.finished");
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
                let canceled = cancel.is_cancelled() && e.kind() == ErrorKind::Canceled;
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
            // The record now tells how the restore ended: its journal can go.
            Ok(_) => self.close_restore_journal(id).await,
        }
        self.emit_job(id).await;
    }

    pub(crate) fn job_context(
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
        // A veto stops the job only at a gate (`pre-*`, DESIGN section 7); elsewhere it is
        // recorded, never acted on (a post-archive veto must not lose a finished archive).
        if let Some((plugin, reason)) = report.veto {
            if !point.is_gate() {
                done.annotations.push(crate::plugins::Annotation {
                    plugin,
                    step: point.as_str().to_owned(),
                    text: format!("veto ignored ({} is not a gate): {reason}", point.as_str()),
                });
                return Ok(());
            }
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
}
