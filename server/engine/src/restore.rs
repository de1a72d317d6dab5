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
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::archive::{Progress, ProgressFn};
use crate::jobs::{Completed, Job, JobId, NewJob};
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

/// The journal written before the swap: which directories move where.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SwapJournal {
    job_id: JobId,
    /// (target dir, staged new content, where the old content is parked)
    moves: Vec<(PathBuf, PathBuf, PathBuf)>,
}

const JOURNAL: &str = ".restore-swap.json";

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
        self.verify_file(&path, crate::archive::no_progress()).await
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
    pub async fn finish_upload(
        &self,
        mut target: UploadTarget,
        original_filename: Option<String>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        let report = self
            .verify_file(&target.path, crate::archive::no_progress())
            .await?;
        let name = crate::archive::writer::archive_name(chrono::Utc::now(), &target.dir);
        let final_path = target.dir.join(&name);
        let (size, sha) = {
            let p = target.path.clone();
            tokio::task::spawn_blocking(move || file_sha256(&p))
                .await
                .map_err(|e| Error::internal("hashing the upload failed", e))??
        };
        std::fs::rename(&target.path, &final_path)
            .map_err(|e| Error::internal("cannot store the upload", e))?;
        target.done = true;
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
        let job = self
            .insert_finished_backup(
                NewJob {
                    kind: "backup",
                    trigger: "upload",
                    requested_by,
                    include_recordings,
                    source_job_id: None,
                    archive_name: Some(name),
                    archive_dir: Some(target.dir.to_string_lossy().into_owned()),
                    original_filename: original,
                },
                size,
                &sha,
            )
            .await?;
        Ok(job)
    }

    /// Queues a restore of backup job `source`.
    pub async fn start_restore(&self, source: JobId, requested_by: Option<String>) -> Result<Job> {
        let _ = self.archive_path(source).await?;
        let src = self.get_job(source).await?;
        self.enqueue(NewJob {
            kind: "restore",
            trigger: "manual",
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
        let archive = self.archive_path(source).await?;
        let ctx = JobContext {
            job_id: job.id,
            kind: "restore".into(),
            trigger: job.trigger.clone(),
            include_recordings: job.include_recordings,
            facts: vec![("archive_path".into(), archive.display().to_string())],
            progress: crate::jobs::plugin_progress(&progress),
        };

        // 1. Validate without changing anything.
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
        self.hooks(HookPoint::PreRestore, &ctx, &mut done).await?;

        // Where every directory goes back: built-in ones into the data dir, plugin-made ones
        // where their plugin says (beneath a folder granted with restore access).
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
        done.warnings.extend(plan.warnings.iter().cloned());
        for w in crate::plugins::unplaced_warnings(&input, &plan.targets) {
            if !done.warnings.contains(&w) {
                done.warnings.push(w);
            }
        }

        // 2. Safety backup of the current state (subject to retention like any other).
        progress(Progress {
            step: "safety backup",
            done_bytes: 0,
            total_bytes: 0,
        });
        let safety = self
            .enqueue_inline_backup(
                "pre-restore",
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
        if cancel.is_cancelled() {
            return Err(Error::conflict("canceled"));
        }

        // 3. Stage directories next to their targets (same filesystem, so the swap is a rename).
        let staging_root = self.data_dir().join(format!(".staging-restore-{}", job.id));
        let _cleanup = crate::jobs::RemoveOnDrop(staging_root.clone());
        std::fs::create_dir_all(staging_root.join("data"))
            .map_err(|e| Error::internal("cannot create the restore staging folder", e))?;
        let db_json = staging_root.join("database.json");
        let mut targets = crate::archive::verify::StagingTargets {
            database_json: db_json.clone(),
            plugins: Some(staging_root.join("plugins")),
            ..Default::default()
        };
        // (name, live target, staged copy, parked old content)
        let mut places: Vec<(String, PathBuf, PathBuf, PathBuf)> = Vec::new();
        let mut _plugin_staging = Vec::new();
        for dir in &input.directories {
            let name = &dir.name;
            if !is_plain_name(name) {
                return Err(Error::rejected(format!(
                    "the manifest names an unsafe directory {name:?}"
                )));
            }
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
                _plugin_staging.push(crate::jobs::RemoveOnDrop(staged.clone()));
                _plugin_staging.push(crate::jobs::RemoveOnDrop(parked.clone()));
                places.push((name.clone(), t.target.clone(), staged, parked));
            }
        }
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
        let dir_names = extracted.directories.clone();
        self.hooks(HookPoint::PostExtract, &ctx, &mut done).await?;
        self.hooks(HookPoint::PreApply, &ctx, &mut done).await?;
        if cancel.is_cancelled() {
            return Err(Error::conflict("canceled"));
        }

        // 4. Load the database in one transaction (all or nothing).
        progress(Progress {
            step: "load",
            done_bytes: 0,
            total_bytes: 0,
        });
        crate::archive::load::load_database(self.content(), &db_json, &schema, cancel).await?;

        // 5. Swap: from here on, cancel is refused; a crash is repaired at next start.
        point_of_no_return.store(true, Ordering::SeqCst);
        progress(Progress {
            step: "swap",
            done_bytes: 0,
            total_bytes: 0,
        });
        let moves: Vec<(PathBuf, PathBuf, PathBuf)> = places
            .iter()
            .filter(|(name, ..)| dir_names.contains(name))
            .map(|(_, target, staged, parked)| (target.clone(), staged.clone(), parked.clone()))
            .collect();
        let journal = SwapJournal {
            job_id: job.id,
            moves,
        };
        self.swap_directories(&journal)?;

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

    /// Moves every staged directory into place, parking the old content, with a journal so a
    /// crash in the middle is completed at the next start.
    fn swap_directories(&self, journal: &SwapJournal) -> Result<()> {
        let jpath = self.data_dir().join(JOURNAL);
        let text = serde_json::to_vec(journal)
            .map_err(|e| Error::internal("cannot write the swap journal", e))?;
        write_synced(&jpath, &text)?;
        roll_forward(journal, crash_after_moves())?;
        let _ = std::fs::remove_file(&jpath);
        sync_dir(self.data_dir());
        Ok(())
    }

    /// Finishes a swap interrupted by a crash (the database was already committed, so the
    /// directories are rolled forward to match it). Returns the job id it repaired.
    pub async fn repair_interrupted_swap(&self) -> Result<Option<JobId>> {
        let jpath = self.data_dir().join(JOURNAL);
        let Ok(text) = std::fs::read(&jpath) else {
            return Ok(None);
        };
        let journal: SwapJournal = serde_json::from_slice(&text)
            .map_err(|e| Error::internal("the restore swap journal is corrupt", e))?;
        roll_forward(&journal, None)?;
        let _ = std::fs::remove_file(&jpath);
        sync_dir(self.data_dir());
        // The database was committed before the swap began and now every directory matches
        // it: the restore is complete, and the job says how it got there.
        sqlx::query(
            "UPDATE jobs SET status = 'succeeded', error = NULL, progress_step = 'done', \
             finished_at = COALESCE(finished_at, ?), warnings = json_insert(warnings, '$[#]', ?) \
             WHERE id = ? AND status IN ('pending', 'running')",
        )
        .bind(crate::state::now_rfc3339())
        .bind("the server stopped during the directory swap; the swap was completed (rolled forward) at the next start; plugin restore and post-restore hooks did not run")
        .bind(journal.job_id)
        .execute(self.state())
        .await?;
        if let Some(parent) = journal
            .moves
            .first()
            .and_then(|m| m.1.parent())
            .and_then(|p| p.parent())
        {
            let _ = std::fs::remove_dir_all(parent);
        }
        Ok(Some(journal.job_id))
    }
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

/// Idempotent: each step checks where things are, so it can be re-run after a crash.
fn roll_forward(journal: &SwapJournal, crash_after: Option<usize>) -> Result<()> {
    for (done, (target, staged, parked)) in journal.moves.iter().enumerate() {
        if crash_after == Some(done) {
            tracing::error!("fault injection: aborting in the middle of the swap");
            std::process::abort();
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
    Ok(())
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

/// A directory name from an archive is used as a path component: plain names only.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
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
