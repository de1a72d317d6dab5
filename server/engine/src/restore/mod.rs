//! Uploads, verification and restore (DESIGN section 5), top to bottom:
//!
//! validate (read the archive once, change nothing) -> safety backup (trigger `pre-restore`)
//! -> stage directories next to their targets -> load `database.json` in one transaction ->
//! swap staged directories into place -> plugins and hooks.
//!
//! All-or-nothing: until the swap, nothing outside the staging folders has changed, and the
//! database load is one transaction that either commits or leaves the data as it was. The
//! swap is journaled ([`journal`]): a crash is cleaned up or completed at the next start.
//!
//! Layout: this file is the pipeline; [`upload`] stores uploaded archives, [`verify`] reads
//! and checks stored ones, [`journal`] is the crash-safe swap, [`targets`] says where a
//! restore may write.

mod journal;
pub(crate) mod targets;
mod upload;
mod verify;

use journal::{
    JournalCleanup, JournalPhase, SwapJournal, crash_after_moves, preflight_swap, roll_back,
    swap_failed_error, swap_in,
};
use targets::target_conflict;
pub use upload::UploadTarget;
pub use verify::read_manifest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::archive::{Progress, ProgressFn};
use crate::core::Core;
use crate::jobs::{Completed, Job, JobId, JobKind, JobTrigger, NewJob};
use crate::plugins::{HookPoint, JobContext};
use crate::{Error, ErrorKind, Result};

impl Core {
    /// Queues a restore of backup job `source`.
    pub async fn start_restore(&self, source: JobId, requested_by: Option<String>) -> Result<Job> {
        let _ = self.archive_path(source).await?;
        let src = self.get_job(source).await?;
        self.enqueue(NewJob {
            kind: JobKind::Restore,
            trigger: JobTrigger::Manual,
            requested_by,
            include_recordings: src.include_recordings,
            source_job_id: Some(source),
            archive_name: src.archive_name.clone(),
            archive_dir: None,
            original_filename: src.original_filename.clone(),
        })
        .await
    }

    /// The restore pipeline, top to bottom.
    pub(crate) async fn execute_restore_impl(
        &self,
        job: &Job,
        cancel: &CancellationToken,
        point_of_no_return: &AtomicBool,
        progress: ProgressFn,
    ) -> Result<Completed> {
        let mut done = Completed::default();
        let source = job
            .source_job_id
            .ok_or_else(|| Error::invalid("the restore job names no archive"))?;
        // Size, and sha256 when the file was touched since it was hashed, against the record.
        let archive = self.archive_path(source).await?;
        let ctx = JobContext {
            job_id: job.id.get(),
            kind: JobKind::Restore.as_str().into(),
            trigger: job.trigger.as_str().into(),
            include_recordings: job.include_recordings,
            facts: vec![("archive_path".into(), archive.display().to_string())],
            progress: crate::jobs::plugin_progress(&progress),
        };

        // 1. Validate without changing anything (this pass also hashes every byte read).
        let schema = self.content().schema().await?;
        // An archive stored encrypted (`encrypt_local`) opens with the instance key.
        let keys = self.archive_keys().await?;
        let report = {
            let (archive, schema, keys, cancel, progress, limits) = (
                archive.clone(),
                schema.clone(),
                keys.clone(),
                cancel.clone(),
                progress.clone(),
                self.archive_limits(),
            );
            tokio::task::spawn_blocking(move || {
                crate::archive::verify::verify_archive(
                    &archive, &limits, &schema, &keys, &cancel, progress,
                )
            })
            .await
            .map_err(|e| Error::internal("verification failed", e))??
        };
        self.check_against_record(source, report.archive_bytes, &report.sha256)
            .await?;
        crate::fault::point("restore.verified");
        self.hooks(HookPoint::PreRestore, &ctx, &mut done).await?;

        // Where every directory goes back: built-in ones (the allow-list the verifier already
        // enforced) into the data dir, plugin-made ones where their plugin says, beneath a
        // folder granted with restore access and never over Backstop's own files.
        let manifest = &report.manifest;
        let mut input = restore_input(manifest);
        let plan = {
            let (plugins, ctx, input) = (self.plugins().clone(), ctx.clone(), input.clone());
            tokio::task::spawn_blocking(move || plugins.plan_restore(&ctx, &input))
                .await
                .map_err(|e| Error::internal("planning the restore failed", e))?
        };
        if let Some(reason) = plan.abort {
            return Err(Error::new(ErrorKind::Internal, reason));
        }
        let protected = self.protected_paths().await?;
        for t in &plan.targets {
            if let Some(conflict) = target_conflict(&t.target, self.data_dir(), &protected) {
                return Err(Error::invalid(format!(
                    "plugin {} wants to restore data/{}/ into {}, which {conflict}; nothing was changed. Change the plugin's grant",
                    t.plugin,
                    t.name,
                    t.target.display()
                )));
            }
        }
        done.warnings.extend(plan.warnings.iter().cloned());
        for w in crate::plugins::unplaced_warnings(&input, &plan.targets) {
            if !done.warnings.contains(&w) {
                done.warnings.push(w);
            }
        }

        // 2. Safety backup of the current state (subject to retention like any other; the
        //    source of this running restore is never pruned).
        progress(Progress {
            step: "safety backup",
            done_bytes: 0,
            total_bytes: 0,
        });
        let safety = self
            .enqueue_inline_backup(
                JobTrigger::PreRestore,
                job.requested_by.clone(),
                job.include_recordings,
                cancel,
            )
            .await?;
        done.warnings.push(format!(
            "safety backup of the previous state: job {} ({})",
            safety.id,
            safety.archive_name.clone().unwrap_or_default()
        ));
        crate::fault::point("restore.safety-backup");
        if cancel.is_cancelled() {
            return Err(Error::canceled());
        }

        // 3. Stage directories next to their targets (same filesystem, so the swap is a rename).
        let staging_root = self.data_dir().join(format!(".staging-restore-{}", job.id));
        // (name, live target, staged copy, parked old content)
        let mut places: Vec<(String, PathBuf, PathBuf, PathBuf)> = Vec::new();
        // Every name is plain and every built-in one is on the allow-list: the verifier
        // refused the archive otherwise (`check_manifest_directories`), in step 1 above.
        for dir in &input.directories {
            let name = &dir.name;
            if dir.contributed_by == crate::plugins::BUILTIN_CONTRIBUTOR {
                places.push((
                    name.clone(),
                    self.data_dir().join(name),
                    staging_root.join("data").join(name),
                    staging_root.join("previous").join(name),
                ));
            } else if let Some(t) = plan.targets.iter().find(|t| &t.name == name) {
                // Staged next to its target, so the swap is a rename on one filesystem.
                let parent = t
                    .target
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| t.target.clone());
                let staged = parent.join(format!(".backstop-restore-{}-{name}", job.id));
                let parked = parent.join(format!(".backstop-previous-{}-{name}", job.id));
                places.push((name.clone(), t.target.clone(), staged, parked));
            }
        }
        // The journal names every path this restore may create before any exists, so a
        // crash at any later point is cleaned up (or completed) by deleting only those.
        let db_json = staging_root.join("database.json");
        let mut journal = SwapJournal {
            job_id: job.id,
            phase: JournalPhase::Staging,
            staging_root: staging_root.clone(),
            database_json: db_json.clone(),
            moves: places
                .iter()
                .map(|(_, target, staged, parked)| (target.clone(), staged.clone(), parked.clone()))
                .collect(),
        };
        self.write_journal(&journal).await?;
        let cleanup = JournalCleanup {
            engine: self.clone(),
            journal: journal.clone(),
            armed: true,
        };
        {
            let root = staging_root.clone();
            tokio::task::spawn_blocking(move || std::fs::create_dir_all(root.join("data")))
                .await
                .map_err(|e| Error::internal("cannot create the restore staging folder", e))?
                .map_err(|e| Error::internal("cannot create the restore staging folder", e))?;
        }
        let mut targets = crate::archive::verify::StagingTargets {
            database_json: db_json.clone(),
            plugins: Some(staging_root.join("plugins")),
            ..Default::default()
        };
        for (name, _, staged, _) in &places {
            targets.directories.insert(name.clone(), staged.clone());
        }
        let extracted = {
            let (archive, cancel, progress, limits, schema) = (
                archive.clone(),
                cancel.clone(),
                progress.clone(),
                self.archive_limits(),
                schema.clone(),
            );
            tokio::task::spawn_blocking(move || {
                crate::archive::verify::extract_to_staging(
                    &archive, &limits, &schema, &keys, &targets, &cancel, progress,
                )
            })
            .await
            .map_err(|e| Error::internal("extraction failed", e))??
        };
        // The file was read a second time: it must still be the one the record lists.
        self.check_against_record(
            source,
            extracted.verify.archive_bytes,
            &extracted.verify.sha256,
        )
        .await?;
        crate::fault::point("restore.extracted");
        let dir_names = extracted.directories.clone();
        self.hooks(HookPoint::PostExtract, &ctx, &mut done).await?;
        self.hooks(HookPoint::PreApply, &ctx, &mut done).await?;
        if cancel.is_cancelled() {
            return Err(Error::canceled());
        }

        // Only directories the archive holds are swapped; the others stay as they are.
        journal.moves.retain(|(target, _, _)| {
            places
                .iter()
                .any(|(n, t, ..)| t == target && dir_names.contains(n))
        });
        {
            let moves = journal.moves.clone();
            tokio::task::spawn_blocking(move || preflight_swap(&moves))
                .await
                .map_err(|e| Error::internal("checking the swap failed", e))??;
        }

        // 4 + 5. Load the database in one transaction and, before it commits, swap the staged
        //    directories into place. A failure anywhere rolls the swap back and the
        //    transaction with it: the database and every directory stay as they were. From
        //    the journal's `apply` phase on, a crash is completed at the next start instead.
        journal.phase = JournalPhase::Apply;
        self.write_journal(&journal).await?;
        crate::fault::point("restore.journaled");
        progress(Progress {
            step: "load",
            done_bytes: 0,
            total_bytes: 0,
        });
        let swapped = Arc::new(AtomicBool::new(false));
        let before_commit = {
            let (journal, swapped, progress) = (journal.clone(), swapped.clone(), progress.clone());
            let ponr = self.running_ponr(job.id);
            Box::new(move || {
                crate::fault::point("restore.load-uncommitted");
                if let Some(p) = &ponr {
                    p.store(true, Ordering::SeqCst);
                }
                progress(Progress {
                    step: "swap",
                    done_bytes: 0,
                    total_bytes: 0,
                });
                match swap_in(&journal, crash_after_moves()) {
                    Ok(()) => {
                        swapped.store(true, Ordering::SeqCst);
                        crate::fault::point("restore.swapped");
                        Ok(())
                    }
                    Err(e) => {
                        let undone = roll_back(&journal);
                        Err(swap_failed_error(e, undone))
                    }
                }
            }) as crate::archive::load::BeforeCommit
        };
        let loaded = self
            .content()
            .load(&db_json, &schema, cancel, Some(before_commit))
            .await;
        if let Err(e) = loaded {
            if swapped.load(Ordering::SeqCst) {
                // The swap went in but the commit failed: put the old directories back.
                let j = journal.clone();
                let _ = tokio::task::spawn_blocking(move || roll_back(&j)).await;
            }
            return Err(e);
        }
        point_of_no_return.store(true, Ordering::SeqCst);
        crate::fault::point("restore.loaded");
        // Done: the journal enters its `done` phase (removed once the job is marked) and the
        // parked old content goes. The staging root still holds the staged plugins/<id>/
        // files for step 6; it goes when this returns.
        let _staging = crate::jobs::RemoveOnDrop(staging_root.clone());
        cleanup.finish();

        // 6. Plugins restore their own content (their staged plugins/<id>/ files); hooks run.
        for p in &mut input.plugins {
            let staged = staging_root.join("plugins").join(&p.id);
            p.files = staged.is_dir().then_some(staged);
        }
        //    The database and directories are already restored: from here a plugin failure
        //    (even a panic) is a warning on a succeeded restore, never a "failed" that hides
        //    the fact that the data was replaced.
        let report = {
            let (plugins, ctx, input) = (self.plugins().clone(), ctx.clone(), input.clone());
            tokio::task::spawn_blocking(move || plugins.restore(&ctx, &input)).await
        };
        match report {
            Ok(report) => {
                done.annotations.extend(report.annotations);
                done.warnings.extend(report.warnings);
                if let Some(reason) = report.abort {
                    done.warnings
                        .push(format!("a plugin failed to restore its content: {reason}"));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "plugin restore panicked");
                done.warnings.push(
                    "a plugin failed while restoring its own content; the database and directories were restored".into(),
                );
            }
        }
        if let Err(e) = self.hooks(HookPoint::PostRestore, &ctx, &mut done).await {
            done.warnings.push(format!(
                "a plugin failed after the restore was complete ({}); the restore is kept",
                e.message()
            ));
        }
        Ok(done)
    }
}

/// What the archive holds, as plugins see it at restore.
pub(crate) fn restore_input(manifest: &wire::Manifest) -> crate::plugins::RestoreInput {
    crate::plugins::RestoreInput {
        directories: manifest
            .directories
            .iter()
            .map(|d| crate::plugins::ArchivedDirectory {
                name: d.name.clone(),
                contributed_by: if d.is_builtin() {
                    crate::plugins::BUILTIN_CONTRIBUTOR.to_owned()
                } else {
                    d.contributed_by.clone()
                },
            })
            .collect(),
        plugins: manifest
            .plugins
            .iter()
            .map(|p| crate::plugins::ArchivedPlugin {
                id: p.id.clone(),
                version: p.version.clone(),
                files: None,
            })
            .collect(),
    }
}
