//! The restore journal (`<data>/.restore-swap.json`) and the directory swap it protects:
//! written before any staging path exists, it names every path a restore makes, so a crash
//! at any point is cleaned up (phase `staging`) or completed (phase `apply`) at the next
//! start, deleting only what it names (DESIGN section 4, data safety 5). The swap itself
//! runs before the database load commits and is rolled back on any failure.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::dirs::JOURNAL;
use crate::jobs::{JobId, JobStatus};
use crate::{Error, ErrorKind, Result};

/// A restore's journal (`<data>/.restore-swap.json`), written before any staged path is
/// created and rewritten when the apply phase begins. It names every path the restore
/// makes, so repair after a crash deletes only those.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SwapJournal {
    pub(crate) job_id: JobId,
    pub(crate) phase: JournalPhase,
    /// `<data>/.staging-restore-<job>`: staged `database.json`, built-in directories, the
    /// parked old built-in directories and the staged plugin files.
    pub(crate) staging_root: PathBuf,
    /// The staged `database.json` (repair loads it again to complete the restore).
    pub(crate) database_json: PathBuf,
    /// (target dir, staged new content, where the old content is parked)
    pub(crate) moves: Vec<(PathBuf, PathBuf, PathBuf)>,
}

/// The phases of a restore's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum JournalPhase {
    /// Extracting into staging: nothing live has changed.
    Staging,
    /// Validated and staged; the load and swap are under way.
    Apply,
    /// The load committed and the directories are in place; plugin restore and hooks may
    /// still run. Removed once the job is marked (a crash before that must not leave a
    /// completed restore recorded as failed).
    Done,
}

/// Removes the journal and every path it names when dropped, unless disarmed: the restore's
/// cleanup on every exit path before the apply phase ends.
pub(crate) struct JournalCleanup {
    pub(crate) engine: Core,
    pub(crate) journal: SwapJournal,
    pub(crate) armed: bool,
}

impl JournalCleanup {
    /// The restore went through: remove the journal and the parked old content (not the
    /// staging root, which the caller still reads), and disarm.
    pub(crate) fn finish(mut self) {
        self.armed = false;
        // Phase `done` first, so a crash from here on is repaired as a complete restore.
        self.journal.phase = JournalPhase::Done;
        let written = serde_json::to_vec(&self.journal)
            .map_err(|e| Error::internal("cannot write the restore journal", e))
            .and_then(|text| write_synced(&self.engine.data_dir().join(JOURNAL), &text));
        if let Err(e) = written {
            // The `apply` journal stays: a crash is then completed by loading again, which
            // is idempotent. Not a reason to call a restored instance failed.
            tracing::warn!(error = %e.detailed(), "cannot mark the restore journal done");
        }
        for (_, staged, parked) in &self.journal.moves {
            for p in [staged, parked] {
                if p.symlink_metadata().is_ok() {
                    let _ = std::fs::remove_dir_all(p);
                }
            }
        }
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

impl Core {
    /// Removes the journal of restore `id` once its job is marked (phase `done`, or `apply`
    /// when marking it done failed): from then on the job record tells what happened.
    pub(crate) async fn close_restore_journal(&self, id: JobId) {
        let jpath = self.data_dir().join(JOURNAL);
        let Ok(text) = tokio::fs::read(&jpath).await else {
            return;
        };
        if serde_json::from_slice::<SwapJournal>(&text).is_ok_and(|j| j.job_id == id) {
            let dir = self.data_dir().to_path_buf();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_file(&jpath);
                sync_dir(&dir);
            })
            .await;
        }
    }

    pub(crate) async fn write_journal(&self, journal: &SwapJournal) -> Result<()> {
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
            JournalPhase::Done => (
                JobStatus::Succeeded,
                "the server stopped after the restore was complete (database and directories restored); the job was marked at the next start; plugin restore and post-restore hooks may not have run".to_owned(),
            ),
            JournalPhase::Staging => (
                JobStatus::Failed,
                "interrupted by restart before anything was changed; the previous state is as it was".to_owned(),
            ),
            JournalPhase::Apply => {
                let schema = self.content().schema().await?;
                let j = journal.clone();
                let finish: crate::archive::load::BeforeCommit =
                    Box::new(move || swap_in(&j, None));
                match self
                    .content()
                    .load(
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
    pub(crate) fn journal_paths_are_ours(&self, j: &SwapJournal) -> bool {
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
}

/// Deletes what a journal names and nothing else: staged copies that were not moved in,
/// parked old content, and the staging root.
pub(crate) fn remove_journal_paths(j: &SwapJournal) {
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
pub(crate) fn preflight_swap(moves: &[(PathBuf, PathBuf, PathBuf)]) -> Result<()> {
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
            if dir.exists() && crate::dirs::check_writable(dir).is_err() {
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
pub(crate) fn swap_failed_error(e: Error, undone: bool) -> Error {
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
pub(crate) fn crash_after_moves() -> Option<usize> {
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
pub(crate) fn swap_in(journal: &SwapJournal, crash_after: Option<usize>) -> Result<()> {
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
pub(crate) fn roll_back(journal: &SwapJournal) -> bool {
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

/// Replaces `path` atomically: a temporary file next to it is written and fsynced, then
/// renamed over it, then the folder is fsynced. A crash at any moment leaves the old
/// journal or the new one, never a torn one (the soak found a torn journal after a kill -9
/// when it was rewritten in place).
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let err = |e| Error::internal("cannot write the restore journal", e);
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
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
