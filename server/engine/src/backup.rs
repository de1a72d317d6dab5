//! The backup pipeline, top to bottom (DESIGN section 4): admit (the backup folder is
//! safe and writable) -> `pre-backup` -> dump the database -> collect directories and plugin
//! content -> `post-collect` -> `pre-archive` -> stream tar -> gzip (-> age, with
//! `encrypt_local`) -> sha256 -> `.partial` -> fsync -> rename (never replacing) -> record ->
//! `post-archive` -> retention -> `post-backup` -> copies to the destinations. The runner
//! ([`crate::jobs::runner`]) marks the job succeeded after this returns, so nobody sees the
//! finished backup before retention has run.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::archive::{Progress, ProgressFn};
use crate::core::Core;
use crate::jobs::{Completed, JobRow, RemoveOnDrop};
use crate::plugins::{ContentSource, HookPoint};
use crate::{Error, ErrorKind, Result};

impl Core {
    /// The backup pipeline, top to bottom.
    pub(crate) async fn execute_backup(
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
        let schema_version = self.content().schema_version().await?;
        let db_path = staging.join("database.json");
        let db_stats = self
            .content()
            .dump(&db_path, schema_version, cancel)
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
            return Err(Error::canceled());
        }

        // 3. Stream tar -> gzip -> sha256 -> .partial -> fsync -> rename. The record claims the
        // name before the file exists, so the file is owned from its first byte (a crash
        // leaves a file the restart sweep knows to remove), and no other record names it.
        // `encrypt_local`: the archive is stored encrypted, written so in the same pass.
        let encrypt_to = crate::encryption::local_recipients(self.state()).await?;
        let name = self
            .claim_archive_name(row.id, &dest, encrypt_to.is_some())
            .await?;
        // A plain archive with destinations that encrypt: its encrypted form is written in
        // the same pass, for the copies. Not having it only means the copies encrypt later.
        let copy_plan = if encrypt_to.is_none() {
            self.encrypted_copy_plan(row.id, &dest, &name)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e.detailed(), "no encrypted copy beside the archive");
                    None
                })
        } else {
            None
        };
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
            encrypt_to,
            also_encrypted: copy_plan
                .as_ref()
                .map(|p| (p.path.clone(), p.recipients.clone())),
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
                if e.kind() == ErrorKind::Conflict {
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

        // 4. Retention, before the job is marked succeeded: the new archive is durable, and
        //    anyone who sees this job succeeded also sees the history already pruned (no
        //    window in which N + 1 backups are listed). This backup counts as one of the N.
        if let Err(e) = self.apply_retention(row.id).await {
            tracing::warn!(error = %e.detailed(), "retention failed");
            done.warnings
                .push(format!("retention did not run: {}", e.message()));
        }

        // 5. `post-backup`: after retention, so hooks see the history as it stays. Older
        //    backups may already be pruned, so from here a plugin failure can no longer fail
        //    the backup (that would lose both): it becomes a warning on the job.
        if let Err(e) = self.hooks(HookPoint::PostBackup, &ctx, &mut done).await {
            done.warnings.push(format!(
                "a plugin failed after the backup was complete ({}); the backup is kept",
                e.message()
            ));
        }

        // 6. Copies to the destinations (DESIGN section 10). A failed copy is a warning,
        //    never a failed backup: the archive is complete and kept.
        let premade = copy_plan.and_then(|p| p.made(outcome.encrypted_copy.clone()));
        let warnings = self
            .copy_to_destinations(row.id, &outcome.path, premade, cancel, &progress)
            .await;
        done.warnings.extend(warnings);
        Ok(done)
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
