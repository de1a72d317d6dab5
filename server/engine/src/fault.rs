//! Crash fault injection for the kill -9 tests (debug builds only; compiled to nothing in a
//! release build).
//!
//! `BACKSTOP_FAULT_CRASH_AT=<point>` makes the process abort (`std::process::abort`, as
//! abrupt as `kill -9`: no destructors, no flush) the first time it reaches `<point>`. The
//! tests start the real server with it, drive it to that point through the API, and check
//! after the restart that every data-safety invariant holds (DESIGN section 4).
//!
//! The points, in pipeline order (the README has the table of outcomes):
//!
//! | point | where |
//! |---|---|
//! | `backup.claimed` | a backup job was marked running |
//! | `backup.dumped` | `database.json` is in the staging folder |
//! | `backup.collected` | directories and plugin content collected |
//! | `backup.archive-half` | half the archive bytes are written to the `.partial` |
//! | `backup.renamed` | the archive has its final name; the record does not know it yet |
//! | `backup.recorded` | the record names the archive; it is not succeeded yet |
//! | `backup.retention` | retention deleted one pruned archive file, not yet its record |
//! | `backup.succeeded` | the record is marked succeeded |
//! | `upload.stored` | an upload was renamed to its final name, not yet recorded |
//! | `restore.claimed` | a restore job was marked running |
//! | `restore.verified` | the archive passed validation (and matches its record) |
//! | `restore.safety-backup` | the safety backup succeeded |
//! | `restore.extract-half` | half the archive is extracted into staging |
//! | `restore.extracted` | staging is complete; the journal is in its `staging` phase |
//! | `restore.journaled` | the journal entered its `apply` phase; nothing live changed yet |
//! | `restore.load-uncommitted` | every row is loaded, not committed; nothing swapped |
//! | `restore.swap-1` | the first directory was swapped into place (not committed) |
//! | `restore.swapped` | every directory is in place; the load is not committed |
//! | `restore.loaded` | the load committed; the journal is not yet removed |
//! | `restore.finished` | plugin restore and hooks ran; the job is not yet marked |
//! | `delete.record-removed` | a deleted job's record is gone (file queued), its file not yet |
//!
//! Outcome after the restart: a crash before `restore.journaled` changed nothing (the job is
//! failed, "interrupted by restart"); from `restore.journaled` on, the restore is completed
//! from its staged copy (the job is succeeded, with a warning saying so).

/// Every point name, so tests can iterate over them and typos are caught at start.
pub const POINTS: &[&str] = &[
    "backup.claimed",
    "backup.dumped",
    "backup.collected",
    "backup.archive-half",
    "backup.renamed",
    "backup.recorded",
    "backup.retention",
    "backup.succeeded",
    "upload.stored",
    "restore.claimed",
    "restore.verified",
    "restore.safety-backup",
    "restore.extract-half",
    "restore.extracted",
    "restore.journaled",
    "restore.load-uncommitted",
    "restore.swap-1",
    "restore.swapped",
    "restore.loaded",
    "restore.finished",
    "delete.record-removed",
];

/// The point armed by `BACKSTOP_FAULT_CRASH_AT`, read once.
fn armed() -> Option<&'static str> {
    if !cfg!(debug_assertions) {
        return None;
    }
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("BACKSTOP_FAULT_CRASH_AT").ok()?;
            if !POINTS.contains(&v.as_str()) {
                tracing::error!(point = %v, "BACKSTOP_FAULT_CRASH_AT names no known fault point");
                return None;
            }
            Some(v)
        })
        .as_deref()
}

/// Aborts the process when `name` is the armed point. A no-op in release builds.
pub fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    if armed() == Some(name) {
        tracing::error!(point = name, "fault injection: aborting the process");
        std::process::abort();
    }
}

/// For progress-driven points (`*-half`): fires once `done` reaches half of `total`.
pub fn half(name: &'static str, done: u64, total: u64) {
    if total > 0 && done.saturating_mul(2) >= total {
        point(name);
    }
}
