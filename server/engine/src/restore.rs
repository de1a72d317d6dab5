//! Uploads, verification and restore (DESIGN section 5), top to bottom:
//!
//! validate (read the archive once, change nothing) -> safety backup (trigger `pre-restore`)
//! -> stage directories next to their targets -> load `database.json` in one transaction ->
//! swap staged directories into place -> plugins and hooks.
//!
//! All-or-nothing: until the swap, nothing outside the staging folders has changed, and the
//! database load is one transaction that either commits or leaves the data as it was. The
//! swap itself is recorded in a journal file so a crash in the middle is finished at the next
//! start (see [`Engine::repair_interrupted_swap`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::archive::{Progress, ProgressFn};
use crate::jobs::{Completed, Job, JobId, JobKind, JobStatus, JobTrigger, NewJob};
use crate::plugins::{HookPoint, JobContext};
use crate::{Engine, Error, ErrorKind, Result};

/// Where an upload is written while it arrives; removed on drop unless finished.
pub struct UploadTarget {
    path: PathBuf,
    dir: PathBuf,
    done: bool,
}

impl UploadTarget {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UploadTarget {
    fn drop(&mut self) {
        if !self.done {
            crate::archive::writer::discard_file(&self.path);
        }
    }
}

/// A restore's journal (`<data>/.restore-swap.json`), written before any staged path is
/// created and rewritten when the apply phase begins. It names every path the restore
/// makes, so repair after a crash deletes only those.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SwapJournal {
    job_id: JobId,
    phase: JournalPhase,
    /// `<data>/.staging-restore-<job>`: staged `database.json`, built-in directories, the
    /// parked old built-in directories and the staged plugin files.
    staging_root: PathBuf,
    /// The staged `database.json` (repair loads it again to complete the restore).
    database_json: PathBuf,
    /// (target dir, staged new content, where the old content is parked)
    moves: Vec<(PathBuf, PathBuf, PathBuf)>,
}

/// The restore journal's file name in the data dir.
pub(crate) const JOURNAL: &str = ".restore-swap.json";

impl Engine {
    /// The archive limits used by validation (entry count, sizes, expansion).
    pub fn archive_limits(&self) -> crate::archive::verify::Limits {
        crate::archive::verify::Limits::default()
    }

    /// Reads `manifest.json` of a backup job's archive.
    pub async fn job_manifest(&self, id: JobId) -> Result<serde_json::Value> {
        let path = self.archive_path(id).await?;
        tokio::task::spawn_blocking(move || read_manifest(&path))
            .await
            .map_err(|e| Error::internal("reading the manifest failed", e))?
    }

    /// Full integrity check of a job's archive without restoring.
    pub async fn verify_job(&self, id: JobId) -> Result<serde_json::Value> {
        let path = self.archive_path(id).await?;
        let report = self
            .verify_file(&path, crate::archive::no_progress())
            .await?;
        let size = report
            .get("archive_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let sha = report.get("sha256").and_then(|v| v.as_str()).unwrap_or("");
        self.check_against_record(id, size, sha).await?;
        Ok(report)
    }

    /// Full integrity check of any archive file.
    pub async fn verify_file(
        &self,
        path: &Path,
        progress: ProgressFn,
    ) -> Result<serde_json::Value> {
        if !path.is_file() {
            return Err(Error::not_found(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let schema = crate::archive::content_schema(self.content()).await?;
        let limits = self.archive_limits();
        let path = path.to_path_buf();
        let report = tokio::task::spawn_blocking(move || {
            crate::archive::verify::verify_archive(
                &path,
                &limits,
                &schema,
                &CancellationToken::new(),
                progress,
            )
        })
        .await
        .map_err(|e| Error::internal("verification failed", e))??;
        serde_json::to_value(&report).map_err(|e| Error::internal("cannot encode the report", e))
    }

    /// Reserves a temporary file in the archive folder for an incoming upload.
    pub async fn begin_upload(&self) -> Result<UploadTarget> {
        let settings = crate::settings::load(self.state()).await?;
        let dir = settings.resolved_path(self.data_dir());
        crate::settings::ensure_writable_dir(&dir)
            .map_err(|m| Error::new(ErrorKind::Unavailable, m))?;
        let path = dir.join(format!("upload-{}.partial", uuid::Uuid::new_v4()));
        Ok(UploadTarget {
            path,
            dir,
            done: false,
        })
    }

    /// Validates an uploaded file; on success stores it under a server-chosen name and lists
    /// it as a backup job with trigger `upload`. On failure the file is removed (422).
    ///
    /// The record comes first (status `running`, claiming the name), then the file gets its
    /// final name (never replacing one), then the record is marked succeeded: a crash in
    /// between leaves a `running` upload that the restart sweep marks failed and whose file
    /// it removes, so no file is ever without its owner.
    pub async fn finish_upload(
        &self,
        mut target: UploadTarget,
        original_filename: Option<String>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        let report = self
            .verify_file(&target.path, crate::archive::no_progress())
            .await?;
        let on_disk = std::fs::metadata(&target.path).map(|m| m.len()).ok();
        let (size, sha) = match report.get("archive_bytes").and_then(|v| v.as_u64()) {
            // The verifier hashed every byte of the file on its way through.
            Some(n) if Some(n) == on_disk => (
                n,
                report
                    .get("sha256")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            _ => {
                let p = target.path.clone();
                tokio::task::spawn_blocking(move || file_sha256(&p))
                    .await
                    .map_err(|e| Error::internal("hashing the upload failed", e))??
            }
        };
        let include_recordings = report
            .pointer("/manifest/include_recordings")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        // Keep only a printable, bounded form of the client's name: it is shown, never used as a path.
        let original = original_filename.map(|n| {
            let base = n.rsplit(['/', '\\']).next().unwrap_or("").to_owned();
            base.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        });
        let id = self
            .insert_upload_record(
                NewJob {
                    kind: JobKind::Backup,
                    trigger: JobTrigger::Upload,
                    requested_by,
                    include_recordings,
                    source_job_id: None,
                    archive_name: None,
                    archive_dir: Some(target.dir.to_string_lossy().into_owned()),
                    original_filename: original,
                },
                size,
                &sha,
            )
            .await?;
        let stored: Result<()> = async {
            let name = self.claim_archive_name(id, &target.dir).await?;
            let final_path = target.dir.join(&name);
            let (from, to, dir) = (target.path.clone(), final_path, target.dir.clone());
            tokio::task::spawn_blocking(move || crate::archive::writer::publish(&from, &to, &dir))
                .await
                .map_err(|e| Error::internal("storing the upload failed", e))?
        }
        .await;
        if let Err(e) = stored {
            self.forget_upload_record(id).await;
            return Err(e);
        }
        target.done = true;
        crate::fault::point("upload.stored");
        self.finish_upload_record(id).await
    }

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

    /// `backstop restore FILE`: list the file as an upload, then restore it in this process.
    pub async fn restore_file_cli(&self, file: &Path, progress: ProgressFn) -> Result<Job> {
        let target = self.begin_upload().await?;
        tokio::fs::copy(file, target.path()).await.map_err(|e| {
            Error::invalid(format!("cannot read {}", file.display())).with_source(e)
        })?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let upload = self.finish_upload(target, name, Some("cli".into())).await?;
        let job = self.start_restore(upload.id, Some("cli".into())).await?;
        self.run_to_completion(job.id, progress).await
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
        let schema = crate::archive::content_schema(self.content()).await?;
        let report = {
            let (archive, schema, cancel, progress, limits) = (
                archive.clone(),
                schema.clone(),
                cancel.clone(),
                progress.clone(),
                self.archive_limits(),
            );
            tokio::task::spawn_blocking(move || {
                crate::archive::verify::verify_archive(
                    &archive, &limits, &schema, &cancel, progress,
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
        let mut input = restore_input(&report.manifest);
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
            return Err(Error::conflict("canceled"));
        }

        // 3. Stage directories next to their targets (same filesystem, so the swap is a rename).
        let staging_root = self.data_dir().join(format!(".staging-restore-{}", job.id));
        // (name, live target, staged copy, parked old content)
        let mut places: Vec<(String, PathBuf, PathBuf, PathBuf)> = Vec::new();
        for dir in &input.directories {
            let name = &dir.name;
            if !crate::archive::verify::is_plain_name(name) {
                return Err(Error::rejected(format!(
                    "the manifest names an unsafe directory {name:?}"
                )));
            }
            if dir.contributed_by == crate::plugins::BUILTIN_CONTRIBUTOR {
                if !crate::archive::MANAGED_DIRECTORIES.contains(&name.as_str()) {
                    return Err(Error::rejected(format!(
                        "the archive lists a directory {name:?}, which a restore may not replace"
                    )));
                }
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
                    &archive, &limits, &schema, &targets, &cancel, progress,
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
            return Err(Error::conflict("canceled"));
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
            let ponr = self.point_of_no_return_flag(job.id);
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
        let loaded = crate::archive::load::load_database_then(
            self.content(),
            &db_json,
            &schema,
            cancel,
            Some(before_commit),
        )
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
        // Done: the journal goes, and the parked old content with it. The staging root
        // still holds the staged plugins/<id>/ files for step 6; it goes when this returns.
        let _staging = crate::jobs::RemoveOnDrop(staging_root.clone());
        cleanup.finish();

        // 6. Plugins restore their own content (their staged plugins/<id>/ files); hooks run.
        for p in &mut input.plugins {
            let staged = staging_root.join("plugins").join(&p.id);
            p.files = staged.is_dir().then_some(staged);
        }
        let report = {
            let (plugins, ctx, input) = (self.plugins().clone(), ctx.clone(), input.clone());
            tokio::task::spawn_blocking(move || plugins.restore(&ctx, &input))
                .await
                .map_err(|e| Error::internal("plugin restore failed", e))?
        };
        done.annotations.extend(report.annotations);
        done.warnings.extend(report.warnings);
        if let Some(reason) = report.abort {
            done.warnings
                .push(format!("a plugin failed to restore its content: {reason}"));
        }
        self.hooks(HookPoint::PostRestore, &ctx, &mut done).await?;
        Ok(done)
    }

    /// Refuses an archive whose bytes (as just read) differ from its record.
    async fn check_against_record(&self, id: JobId, size: u64, sha256: &str) -> Result<()> {
        let (rec_size, rec_sha) = self.recorded_digest(id).await?;
        let size_ok = rec_size.is_none_or(|s| s == size);
        let sha_ok = rec_sha.as_deref().is_none_or(|s| s == sha256);
        if size_ok && sha_ok {
            return Ok(());
        }
        Err(Error::rejected(format!(
            "the archive of job {id} has changed since it was made (its {} no longer matches the record); it is refused and nothing was changed",
            if size_ok { "SHA-256" } else { "size" }
        )))
    }

    /// Backstop's own files, which no restore target may be, contain or lie within.
    pub(crate) async fn protected_paths(&self) -> Result<Vec<(&'static str, PathBuf)>> {
        let settings = crate::settings::load(self.state()).await?;
        let mut out = vec![
            (
                "Backstop's archive folder",
                settings.resolved_path(self.data_dir()),
            ),
            (
                "Backstop's default archive folder",
                self.data_dir().join("backups"),
            ),
            ("Backstop's plugins folder", self.data_dir().join("plugins")),
        ];
        for (what, url) in [
            ("Backstop's state database", &self.config().state_db_url),
            ("the content database", &self.config().content_db_url),
        ] {
            if let Some(p) = url.strip_prefix("sqlite://") {
                let p = p.split('?').next().unwrap_or(p);
                out.push((what, PathBuf::from(p)));
            }
        }
        Ok(out)
    }

    async fn write_journal(&self, journal: &SwapJournal) -> Result<()> {
        let jpath = self.data_dir().join(JOURNAL);
        let text = serde_json::to_vec(journal)
            .map_err(|e| Error::internal("cannot write the restore journal", e))?;
        tokio::task::spawn_blocking(move || write_synced(&jpath, &text))
            .await
            .map_err(|e| Error::internal("cannot write the restore journal", e))?
    }

    /// Repairs a restore interrupted by a crash, from its journal: in the `staging` phase
    /// nothing had changed, so the staged copies are deleted; in the `apply` phase the
    /// archive had been fully validated and staged, so the restore is completed (the
    /// database loaded again from the staged copy, the swap rolled forward). Deletes only
    /// paths the journal names. Returns the job id it repaired.
    pub async fn repair_interrupted_swap(&self) -> Result<Option<JobId>> {
        let jpath = self.data_dir().join(JOURNAL);
        let Ok(text) = std::fs::read(&jpath) else {
            return Ok(None);
        };
        let journal: SwapJournal = match serde_json::from_slice(&text) {
            Ok(j) => j,
            Err(e) => {
                // Never guess: keep the file for a person to look at, and start.
                let kept = self.data_dir().join(format!("{JOURNAL}.unreadable"));
                let _ = std::fs::rename(&jpath, &kept);
                tracing::error!(error = %e, kept = %kept.display(), "the restore journal is unreadable; nothing was repaired");
                return Ok(None);
            }
        };
        if !self.journal_paths_are_ours(&journal) {
            let kept = self.data_dir().join(format!("{JOURNAL}.unreadable"));
            let _ = std::fs::rename(&jpath, &kept);
            tracing::error!(kept = %kept.display(), "the restore journal names paths Backstop does not make; nothing was repaired");
            return Ok(None);
        }
        let (status, message) = match journal.phase {
            JournalPhase::Staging => (
                JobStatus::Failed,
                "interrupted by restart before anything was changed; the previous state is as it was".to_owned(),
            ),
            JournalPhase::Apply => {
                let schema = crate::archive::content_schema(self.content()).await?;
                let j = journal.clone();
                let finish: crate::archive::load::BeforeCommit =
                    Box::new(move || swap_in(&j, None));
                match crate::archive::load::load_database_then(
                    self.content(),
                    &journal.database_json,
                    &schema,
                    &CancellationToken::new(),
                    Some(finish),
                )
                .await
                {
                    Ok(_) => (
                        JobStatus::Succeeded,
                        "the server stopped during the restore, after the archive was validated and staged; the restore was completed at the next start (database loaded again from the staged copy, directories swapped); plugin restore and post-restore hooks did not run".to_owned(),
                    ),
                    Err(e) => {
                        tracing::error!(error = %e.detailed(), "completing an interrupted restore failed; rolling its directories back");
                        let j = journal.clone();
                        let _ = tokio::task::spawn_blocking(move || roll_back(&j)).await;
                        (
                            JobStatus::Failed,
                            format!(
                                "the server stopped during the restore and completing it at the next start failed ({}); the directories were put back. Check the content database, then restore again or restore the safety backup",
                                e.message()
                            ),
                        )
                    }
                }
            }
        };
        remove_journal_paths(&journal);
        let _ = std::fs::remove_file(&jpath);
        sync_dir(self.data_dir());
        let now = crate::state::now_rfc3339();
        sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, progress_step = 'done', \
             finished_at = COALESCE(finished_at, ?), warnings = CASE WHEN ? = 'succeeded' THEN json_insert(warnings, '$[#]', ?) ELSE warnings END \
             WHERE id = ? AND status IN ('pending', 'running')",
        )
        .bind(status)
        .bind(if status == JobStatus::Failed {
            Some(message.clone())
        } else {
            None
        })
        .bind(&now)
        .bind(status)
        .bind(&message)
        .bind(journal.job_id)
        .execute(self.state())
        .await?;
        Ok(Some(journal.job_id))
    }

    /// Every path a journal names is one a restore makes: the staging root is
    /// `<data>/.staging-restore-<job>`, staged and parked copies are named
    /// `.backstop-restore-<job>-*` / `.backstop-previous-<job>-*` or lie in the staging root.
    fn journal_paths_are_ours(&self, j: &SwapJournal) -> bool {
        let root_ok = j.staging_root
            == self
                .data_dir()
                .join(format!(".staging-restore-{}", j.job_id));
        let ours = |p: &Path, prefix: &str| {
            p.starts_with(&j.staging_root)
                || p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{prefix}{}-", j.job_id)))
        };
        root_ok
            && j.database_json.starts_with(&j.staging_root)
            && j.moves.iter().all(|(_, staged, parked)| {
                ours(staged, ".backstop-restore-") && ours(parked, ".backstop-previous-")
            })
    }

    /// The running job's point-of-no-return flag (set when the swap begins).
    fn point_of_no_return_flag(&self, id: JobId) -> Option<Arc<AtomicBool>> {
        self.running_ponr(id)
    }
}

/// The phases of a restore's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum JournalPhase {
    /// Extracting into staging: nothing live has changed.
    Staging,
    /// Validated and staged; the load and swap are under way.
    Apply,
}

/// Removes the journal and every path it names when dropped, unless disarmed: the restore's
/// cleanup on every exit path before the apply phase ends.
struct JournalCleanup {
    engine: Engine,
    journal: SwapJournal,
    armed: bool,
}

impl JournalCleanup {
    /// The restore went through: remove the journal and the parked old content (not the
    /// staging root, which the caller still reads), and disarm.
    fn finish(mut self) {
        self.armed = false;
        for (_, staged, parked) in &self.journal.moves {
            for p in [staged, parked] {
                if p.symlink_metadata().is_ok() {
                    let _ = std::fs::remove_dir_all(p);
                }
            }
        }
        let _ = std::fs::remove_file(self.engine.data_dir().join(JOURNAL));
        sync_dir(self.engine.data_dir());
    }
}

impl Drop for JournalCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        remove_journal_paths(&self.journal);
        let _ = std::fs::remove_file(self.engine.data_dir().join(JOURNAL));
    }
}

/// Deletes what a journal names and nothing else: staged copies that were not moved in,
/// parked old content, and the staging root.
fn remove_journal_paths(j: &SwapJournal) {
    for (_, staged, parked) in &j.moves {
        for p in [staged, parked] {
            if p.symlink_metadata().is_ok()
                && let Err(e) = std::fs::remove_dir_all(p)
            {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a restore staging folder");
            }
        }
    }
    if j.staging_root.exists()
        && let Err(e) = std::fs::remove_dir_all(&j.staging_root)
    {
        tracing::warn!(path = %j.staging_root.display(), error = %e, "cannot remove the restore staging folder");
    }
}

/// Before anything changes: every staged directory can be renamed onto its target (same
/// filesystem, writable parents), so ordinary failures (a directory on another mount, a
/// read-only parent) are refused with a reason instead of failing half-way through.
fn preflight_swap(moves: &[(PathBuf, PathBuf, PathBuf)]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for (target, staged, parked) in moves {
        let tparent = target.parent().unwrap_or(target);
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        let (Some(a), Some(b)) = (dev(tparent), dev(staged)) else {
            return Err(Error::invalid(format!(
                "cannot restore {}: its folder or the staged copy is not accessible; nothing was changed",
                target.display()
            )));
        };
        if a != b {
            return Err(Error::invalid(format!(
                "cannot restore {}: it is on another filesystem than its staged copy; nothing was changed",
                target.display()
            )));
        }
        if target.exists() {
            let ok = std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir());
            if !ok {
                return Err(Error::invalid(format!(
                    "cannot restore {}: it exists and is not a folder; nothing was changed",
                    target.display()
                )));
            }
            if dev(target) != Some(a) {
                return Err(Error::invalid(format!(
                    "cannot restore {}: it is a mount point (another filesystem); restore into a folder inside it instead; nothing was changed",
                    target.display()
                )));
            }
        }
        for dir in [tparent, parked.parent().unwrap_or(parked)] {
            if dir.exists() && crate::instance::check_writable(dir).is_err() {
                return Err(Error::invalid(format!(
                    "cannot restore {}: {} is not writable; nothing was changed",
                    target.display(),
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// The message for a swap that failed part-way and was rolled back.
fn swap_failed_error(e: Error, undone: bool) -> Error {
    let msg = if undone {
        format!(
            "{}; the directories were put back and the database was not changed. Fix the cause and restore again",
            e.message()
        )
    } else {
        format!(
            "{}; putting the previous directories back also failed: the previous content is in the safety backup, restore it",
            e.message()
        )
    };
    Error::new(ErrorKind::Internal, msg)
}

/// Fault injection for the crash-during-swap test, in debug builds only:
/// `BACKSTOP_FAULT_SWAP_CRASH_AFTER=N` aborts the process after N directory moves.
fn crash_after_moves() -> Option<usize> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("BACKSTOP_FAULT_SWAP_CRASH_AFTER")
        .ok()?
        .parse()
        .ok()
}

/// Moves every staged directory into place, parking the old content. Idempotent: each step
/// checks where things are, so it can be re-run after a crash (the repair does).
fn swap_in(journal: &SwapJournal, crash_after: Option<usize>) -> Result<()> {
    for (done, (target, staged, parked)) in journal.moves.iter().enumerate() {
        if crash_after == Some(done) {
            tracing::error!("fault injection: aborting in the middle of the swap");
            std::process::abort();
        }
        if done == 1 {
            crate::fault::point("restore.swap-1");
        }
        if staged.exists() {
            if target.exists() && !parked.exists() {
                if let Some(p) = parked.parent() {
                    std::fs::create_dir_all(p)
                        .map_err(|e| Error::internal("cannot park the old directory", e))?;
                }
                std::fs::rename(target, parked).map_err(|e| {
                    Error::internal(format!("cannot move {} aside", target.display()), e)
                })?;
            }
            std::fs::rename(staged, target).map_err(|e| {
                Error::internal(
                    format!("cannot move the restored {} into place", target.display()),
                    e,
                )
            })?;
        }
    }
    if journal.moves.len() == 1 {
        crate::fault::point("restore.swap-1");
    }
    for (target, _, parked) in &journal.moves {
        for dir in [target.parent(), parked.parent()].into_iter().flatten() {
            sync_dir(dir);
        }
    }
    Ok(())
}

/// Undoes [`swap_in`] as far as it got: each restored directory goes back to its staged
/// place and the parked old content back to its target. Returns whether all went back.
fn roll_back(journal: &SwapJournal) -> bool {
    let mut ok = true;
    for (target, staged, parked) in journal.moves.iter().rev() {
        // Moved in: the staged copy is gone and the target holds it.
        if !staged.exists()
            && target.exists()
            && let Err(e) = std::fs::rename(target, staged)
        {
            tracing::error!(path = %target.display(), error = %e, "cannot move a restored folder back out");
            ok = false;
            continue;
        }
        // Parked: the old content goes back.
        if parked.exists()
            && !target.exists()
            && let Err(e) = std::fs::rename(parked, target)
        {
            tracing::error!(path = %target.display(), error = %e, "cannot put a folder back");
            ok = false;
        }
    }
    ok
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)
        .map_err(|e| Error::internal("cannot write the swap journal", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::internal("cannot write the swap journal", e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Why a restore may not write to `target`, or None. A target may be a folder outside the
/// data dir or one of the managed folders inside it (`logos`, `recordings`), never the data
/// dir itself, nor anything that is, contains or lies within one of `protected`.
pub(crate) fn target_conflict(
    target: &Path,
    data_dir: &Path,
    protected: &[(&str, PathBuf)],
) -> Option<String> {
    let t = canonical_lenient(target);
    let d = canonical_lenient(data_dir);
    if t == d {
        return Some("is Backstop's data dir".into());
    }
    if d.starts_with(&t) {
        return Some("contains Backstop's data dir".into());
    }
    if t.starts_with(&d)
        && !crate::archive::MANAGED_DIRECTORIES
            .iter()
            .any(|m| t.starts_with(d.join(m)))
    {
        return Some(
            "lies inside Backstop's data dir, where only logos/ and recordings/ may be restored"
                .into(),
        );
    }
    for (what, p) in protected {
        let p = canonical_lenient(p);
        if t == p {
            return Some(format!("is {what}"));
        }
        if p.starts_with(&t) {
            return Some(format!("contains {what}"));
        }
        if t.starts_with(&p) {
            return Some(format!("lies inside {what}"));
        }
    }
    None
}

/// `path` with symlinks resolved in its longest existing prefix (the rest appended as is),
/// so paths that do not exist yet compare like the ones that do.
pub(crate) fn canonical_lenient(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Size and SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).map_err(|e| Error::internal("cannot read the archive", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| Error::internal("cannot read the archive", e))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Reads `manifest.json` (the first entry) of an archive without reading the rest.
pub fn read_manifest(path: &Path) -> Result<serde_json::Value> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::internal(format!("cannot open {}", path.display()), e))?;
    let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let mut entries = archive
        .entries()
        .map_err(|e| Error::rejected("the archive is not a readable tar.gz").with_source(e))?;
    let mut first = match entries.next() {
        Some(Ok(e)) => e,
        _ => {
            return Err(Error::rejected(
                "the archive is empty or not a readable tar.gz",
            ));
        }
    };
    let name = first
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name != "manifest.json" {
        return Err(Error::rejected(format!(
            "the archive does not start with manifest.json (found {name:?})"
        )));
    }
    let mut buf = Vec::new();
    (&mut first)
        .take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| Error::rejected("manifest.json cannot be read").with_source(e))?;
    serde_json::from_slice(&buf)
        .map_err(|e| Error::rejected("manifest.json is not valid JSON").with_source(e))
}

/// What the archive holds, as plugins see it at restore.
fn restore_input(manifest: &serde_json::Value) -> crate::plugins::RestoreInput {
    let list = |key: &str| {
        manifest
            .get(key)
            .and_then(|d| d.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    crate::plugins::RestoreInput {
        directories: list("directories")
            .iter()
            .map(|d| crate::plugins::ArchivedDirectory {
                name: text(d, "name"),
                contributed_by: match text(d, "contributed_by") {
                    s if s.is_empty() => crate::plugins::BUILTIN_CONTRIBUTOR.to_owned(),
                    s => s,
                },
            })
            .collect(),
        plugins: list("plugins")
            .iter()
            .map(|p| crate::plugins::ArchivedPlugin {
                id: text(p, "id"),
                version: text(p, "version"),
                files: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(root: &Path, moves: Vec<(PathBuf, PathBuf, PathBuf)>) -> SwapJournal {
        SwapJournal {
            job_id: JobId(7),
            phase: JournalPhase::Apply,
            staging_root: root.join(".staging-restore-7"),
            database_json: root.join(".staging-restore-7/database.json"),
            moves,
        }
    }

    fn dir_with(path: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(path).unwrap();
        std::fs::write(path.join(file), text).unwrap();
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|_| "<missing>".into())
    }

    #[test]
    fn a_swap_that_fails_part_way_is_rolled_back_to_exactly_the_old_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let stage = root.join(".staging-restore-7");
        dir_with(&root.join("logos"), "a", "old logos");
        dir_with(&root.join("recordings"), "r", "old recordings");
        dir_with(&stage.join("data/logos"), "a", "new logos");
        dir_with(&stage.join("data/recordings"), "r", "new recordings");
        // The second move cannot park its old content: its parking place's parent is a file.
        std::fs::write(stage.join("blocked"), "").unwrap();
        let j = journal(
            root,
            vec![
                (
                    root.join("logos"),
                    stage.join("data/logos"),
                    stage.join("previous/logos"),
                ),
                (
                    root.join("recordings"),
                    stage.join("data/recordings"),
                    stage.join("blocked/recordings"),
                ),
            ],
        );
        let err = swap_in(&j, None).unwrap_err();
        assert!(err.message().contains("cannot park"), "{}", err.message());
        assert_eq!(
            read(&root.join("logos/a")),
            "new logos",
            "the first move went in"
        );
        assert!(roll_back(&j), "everything went back");
        assert_eq!(read(&root.join("logos/a")), "old logos");
        assert_eq!(read(&root.join("recordings/r")), "old recordings");
        assert_eq!(read(&stage.join("data/logos/a")), "new logos");
        assert!(!stage.join("previous/logos").exists());
    }

    #[test]
    fn swap_in_is_idempotent_so_a_repair_can_run_it_again() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let stage = root.join(".staging-restore-7");
        dir_with(&root.join("logos"), "a", "old");
        dir_with(&stage.join("data/logos"), "a", "new");
        let j = journal(
            root,
            vec![(
                root.join("logos"),
                stage.join("data/logos"),
                stage.join("previous/logos"),
            )],
        );
        swap_in(&j, None).unwrap();
        swap_in(&j, None).unwrap();
        assert_eq!(read(&root.join("logos/a")), "new");
        assert_eq!(read(&stage.join("previous/logos/a")), "old");
        // A target that did not exist before: rolled back, it is absent again.
        let j2 = journal(
            root,
            vec![(
                root.join("recordings"),
                stage.join("data/recordings"),
                stage.join("previous/recordings"),
            )],
        );
        dir_with(&stage.join("data/recordings"), "r", "new");
        swap_in(&j2, None).unwrap();
        assert!(roll_back(&j2));
        assert!(!root.join("recordings").exists());
    }

    #[test]
    fn restore_targets_never_reach_backstops_own_files() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        std::fs::create_dir_all(data.join("recordings")).unwrap();
        std::fs::create_dir_all(data.join("backups")).unwrap();
        let outside = t.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        let protected = vec![
            ("Backstop's archive folder", data.join("backups")),
            ("Backstop's plugins folder", data.join("plugins")),
            ("Backstop's state database", data.join("state.db")),
        ];
        let c = |p: &Path| target_conflict(p, &data, &protected);
        assert_eq!(c(&data).as_deref(), Some("is Backstop's data dir"));
        assert_eq!(c(t.path()).as_deref(), Some("contains Backstop's data dir"));
        assert!(c(&data.join("backups")).unwrap().contains("data dir"));
        assert!(
            c(&data.join("other"))
                .unwrap()
                .contains("only logos/ and recordings/")
        );
        assert_eq!(c(&data.join("recordings")), None);
        assert_eq!(c(&data.join("recordings/tv")), None);
        assert_eq!(c(&outside.join("nginx")), None);
        // Outside the data dir, a protected folder elsewhere is still protected.
        let archive_elsewhere = vec![("Backstop's archive folder", outside.join("archives"))];
        assert_eq!(
            target_conflict(&outside.join("archives"), &data, &archive_elsewhere).as_deref(),
            Some("is Backstop's archive folder")
        );
        assert_eq!(
            target_conflict(&outside, &data, &archive_elsewhere).as_deref(),
            Some("contains Backstop's archive folder")
        );
        assert_eq!(
            target_conflict(&outside.join("archives/x"), &data, &archive_elsewhere).as_deref(),
            Some("lies inside Backstop's archive folder")
        );
        // Component-wise: `recordings2` is not inside `recordings`, and a symlink is resolved.
        assert!(c(&data.join("recordings2")).is_some());
        let link = t.path().join("link-to-data");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        assert_eq!(c(&link).as_deref(), Some("is Backstop's data dir"));
    }

    #[test]
    fn preflight_refuses_a_target_that_is_not_a_plain_folder_before_anything_moves() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let stage = root.join(".staging-restore-7");
        dir_with(&stage.join("data/recordings"), "r", "new");
        dir_with(&root.join("big-disk/recordings"), "r", "old");
        std::os::unix::fs::symlink(root.join("big-disk/recordings"), root.join("recordings"))
            .unwrap();
        let moves = vec![(
            root.join("recordings"),
            stage.join("data/recordings"),
            stage.join("previous/recordings"),
        )];
        let e = preflight_swap(&moves).unwrap_err();
        assert!(e.message().contains("not a folder"), "{}", e.message());
        std::fs::remove_file(root.join("recordings")).unwrap();
        dir_with(&root.join("recordings"), "r", "old");
        preflight_swap(&moves).unwrap();
    }
}
