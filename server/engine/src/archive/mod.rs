//! Archive format v1 (DESIGN section 3): the database dump, the archive writer, the reader
//! that validates an archive before anything is restored, and the database load.
//!
//! Layout, in the order a backup and a restore use them:
//! - [`schema`]: the content schema read from the database itself ([`SchemaInfo`]).
//! - [`dump`]: content DB -> `database.json`, streamed from one read transaction.
//! - [`writer`]: `manifest.json` + `database.json` + `data/` + `plugins/` +
//!   `checksums.sha256` -> tar -> parallel multi-member gzip -> `.partial` -> fsync -> rename.
//! - [`verify`]: one streaming pass over an archive that checks everything DESIGN section 5
//!   step 1 asks for, and the same pass extracting into staging folders.
//! - [`load`]: `database.json` -> content DB in one transaction.
//!
//! Private helpers: `tarfmt` (tar headers), `gz` (the parallel gzip pipeline), `dbjson`
//! (the streaming `database.json` reader shared by verify and load).
//!
//! Everything here that does file I/O or heavy CPU work is blocking and meant to run in
//! `spawn_blocking`, except the two database functions, which are async and move their
//! blocking part (file writing / JSON parsing) to a blocking thread themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;

mod dbjson;
pub mod dump;
mod gz;
pub mod load;
pub mod schema;
mod tarfmt;
pub mod verify;
pub mod writer;

/// The `database.json` reader's entry points for the fuzz targets; not an API.
#[doc(hidden)]
pub use dbjson::fuzzing as dbjson_fuzzing;
pub use dbjson::{MAX_HEADER_BYTES, MAX_ROW_BYTES, MAX_ROW_VALUES};
pub use dump::{DumpStats, dump_database};
pub use load::{LoadStats, load_database};
pub use schema::{ColumnInfo, ForeignKey, PgCatalog, SchemaInfo, TableInfo, content_schema};
pub use verify::{
    ExtractReport, Limits, StagingTargets, VerifyReport, extract_to_staging, file_sha256,
    verify_archive,
};
pub use writer::{ArchiveOutcome, ArchiveRequest, archive_name, write_archive};

/// The `format` field of `manifest.json`.
pub const MANIFEST_FORMAT: &str = "backstop-backup";
/// The archive format version this build writes and the newest it reads.
pub const FORMAT_VERSION: i64 = 1;
/// The built-in directories a restore may replace inside the data dir (DESIGN section 4,
/// data safety 2): an explicit allow-list. A built-in (`contributed_by: "backstop"`)
/// directory of any other name refuses the archive at validation, so names such as
/// `backups`, `plugins` or `state.db` can never reach the data dir. Plugin-made directories
/// go only where the plugin's admin-granted restore target says.
pub const MANAGED_DIRECTORIES: &[&str] = &["logos", "recordings"];
/// The `format` field of `database.json`.
pub const DATABASE_FORMAT: &str = "backstop-database";

/// Where a long-running archive step is, for the job's `progress` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// `dump`, `archive`, `verify`, `extract` or `load`.
    pub step: &'static str,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Progress callback. Called at most about ten times a second (and once at the end of a
/// step), from whichever thread does the work, so it must be cheap and thread-safe.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A progress callback that ignores everything, for callers that do not report.
pub fn no_progress() -> ProgressFn {
    Arc::new(|_| {})
}

/// The error every canceled archive operation returns.
pub(crate) fn canceled() -> Error {
    Error::canceled()
}

/// Rate-limits a [`ProgressFn`] to one call per [`Throttle::INTERVAL`].
pub(crate) struct Throttle {
    progress: ProgressFn,
    step: &'static str,
    last: Option<Instant>,
}

impl Throttle {
    /// Ten calls a second is smooth for a progress bar and free for the job record.
    const INTERVAL: Duration = Duration::from_millis(100);

    pub(crate) fn new(progress: ProgressFn, step: &'static str) -> Self {
        Throttle {
            progress,
            step,
            last: None,
        }
    }

    /// Reports unless the previous report is younger than the interval.
    pub(crate) fn tick(&mut self, done_bytes: u64, total_bytes: u64) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Self::INTERVAL)
        {
            return;
        }
        self.last = Some(now);
        (self.progress)(Progress {
            step: self.step,
            done_bytes,
            total_bytes,
        });
    }

    /// Reports unconditionally (end of a step).
    pub(crate) fn finish(&mut self, done_bytes: u64, total_bytes: u64) {
        self.last = Some(Instant::now());
        (self.progress)(Progress {
            step: self.step,
            done_bytes,
            total_bytes,
        });
    }
}

/// Double-quotes an SQLite identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}
