//! Retention, deletes and the restart sweep: how records and their files go away without
//! ever leaving a record without its file or a deleted record's file behind (DESIGN section
//! 4, data safety 1 and 5).

use std::path::{Path, PathBuf};

use super::{JobEvent, JobId, JobRow, SELECT};
use crate::Result;
use crate::core::Core;

impl Core {
    /// Deletes a record and the one file it owns (DESIGN section 4: each archive file is
    /// owned by exactly one backup record; restore records own none).
    ///
    /// Crash-safe order: the record is deleted and the file queued in `pending_file_deletes`
    /// in one transaction; then the file is unlinked and the queue row removed. A crash in
    /// between leaves the queue row, which the restart sweep finishes. So no record ever
    /// names a missing file, and no deleted record leaves its file behind.
    pub(crate) async fn remove_job_and_file(
        &self,
        row: &JobRow,
        fault_point: &'static str,
    ) -> Result<()> {
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
    pub(crate) async fn finish_file_delete(&self, path: &Path) {
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
    pub(crate) async fn finish_pending_file_deletes(&self) -> Result<()> {
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

    /// Keeps the newest `retention_count` succeeded backups made by Backstop (manual,
    /// scheduled, pre-restore); deletes file and record of the others. 0 keeps all;
    /// uploads are never pruned; the newest backup is never pruned.
    /// `finishing` is the backup just completed: its archive is durable but its record is
    /// not yet marked succeeded, and it counts as one of the kept backups.
    pub(crate) async fn apply_retention(&self, finishing: JobId) -> Result<Vec<JobId>> {
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

    /// A running backup whose archive was finished and recorded (size, sha256 and the
    /// file's stamp) and is still that file.
    fn was_complete(&self, row: &JobRow) -> bool {
        let (Some(size), Some(_), Some(stamp)) = (row.size_bytes, &row.sha256, &row.file_stamp)
        else {
            return false;
        };
        let Some(path) = self.row_archive_path(row) else {
            return false;
        };
        std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.len() == size as u64 && super::file_stamp(&m) == *stamp)
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
        // never succeeded: remove it, as a failed backup leaves no file behind. Except a
        // backup that was complete: its record names the archive with its size and sha256
        // and the file is still the one that was hashed (same stamp). Retention may already
        // have pruned older backups for it, and its copies may be under way, so deleting it
        // could lose the newest good backup: it is kept and marked succeeded, with a warning,
        // and retention runs for it once every interrupted job is settled (it may have been
        // killed before its retention ran: without this, N + 1 backups would be listed).
        let mut kept = None;
        let interrupted: Vec<JobRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE kind = 'backup' AND status IN ('pending', 'running') AND archive_name IS NOT NULL"
        ))
        .fetch_all(self.state())
        .await?;
        for row in &interrupted {
            if self.was_complete(row) {
                tracing::warn!(job = %row.id, "keeping a backup that was complete when the last shutdown interrupted it");
                sqlx::query("UPDATE jobs SET status = 'succeeded', finished_at = ?, error = NULL, progress_step = 'done', warnings = ? WHERE id = ?")
                    .bind(crate::state::now_rfc3339())
                    .bind(serde_json::json!([
                        "the server restarted after this backup was complete; the archive is kept (copies that had not finished are marked failed and can be retried)"
                    ]).to_string())
                    .bind(row.id)
                    .execute(self.state())
                    .await?;
                kept = kept.max(Some(row.id));
                continue;
            }
            if let Some(path) = self.row_archive_path(row) {
                tracing::info!(job = %row.id, path = %path.display(), "removing the archive of a backup interrupted by the last shutdown");
                crate::archive::writer::discard_file(&path);
            }
        }
        let done = sqlx::query("UPDATE jobs SET status = 'failed', error = 'interrupted by restart', finished_at = ? WHERE status IN ('pending', 'running')")
            .bind(crate::state::now_rfc3339())
            .execute(self.state())
            .await?;
        sqlx::query("UPDATE job_copies SET status = 'failed', error = 'interrupted by restart', finished_at = ? WHERE status IN ('pending', 'running')")
            .bind(crate::state::now_rfc3339())
            .execute(self.state())
            .await?;
        if let Some(id) = kept
            && let Err(e) = self.apply_retention(id).await
        {
            tracing::warn!(job = %id, error = %e.detailed(), "retention for a backup kept at the start did not run; it runs after the next backup");
        }
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
        if !self.data_dir().join(crate::dirs::JOURNAL).exists() {
            remove_leftovers(self.data_dir());
        }
        Ok(done.rows_affected())
    }
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
        } else if !is_dir
            && (name.starts_with(".backstop-write-test-") || name == ".restore-swap.json.tmp")
        {
            // A writability probe or a journal being replaced when the process died.
            let _ = std::fs::remove_file(&path);
        } else if is_dir && name.starts_with(".staging-") {
            tracing::info!(path = %path.display(), "removing staging folder left by an interrupted job");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
