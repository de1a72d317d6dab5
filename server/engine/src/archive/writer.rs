//! Writes one archive (DESIGN section 3), top to bottom:
//!
//! 1. scan every contributed directory and plugin file (counts for the manifest, which comes
//!    first; totals for progress). Symlinks, special files, non-UTF-8 names and unreadable
//!    files are skipped with a warning here, so the manifest counts what is archived.
//! 2. stream `manifest.json`, `database.json`, `data/<name>/...`, `plugins/<id>/...` and
//!    `checksums.sha256` as a tar into the parallel gzip stage ([`super::gz`]), hashing every
//!    file as it is read.
//! 3. `<name>.partial` -> fsync -> rename to `<name>` -> fsync the directory, so a listed
//!    archive is always complete. Any error or cancel removes the `.partial`.
//!
//! Blocking: call it from `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::dump::DumpStats;
use super::tarfmt::{self, Kind};
use super::{FORMAT_VERSION, MANIFEST_FORMAT, ProgressFn, Throttle, canceled, gz};
use crate::plugins::{Annotation, DirectoryContribution, FileContribution};
use crate::{Error, ErrorKind, Result};

/// Everything one archive is made of.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    /// Folder the archive is written to (the `.partial` lives there too, so the final rename
    /// stays on one filesystem).
    pub dest_dir: PathBuf,
    /// Final file name, usually from [`archive_name`].
    pub file_name: String,
    pub created_at: DateTime<Utc>,
    pub app_version: String,
    /// `manual` | `scheduled` | `pre-restore`.
    pub trigger: String,
    pub include_recordings: bool,
    pub annotations: Vec<Annotation>,
    pub schema_version: i64,
    /// The `database.json` written by [`super::dump_database`], and what it reported.
    pub database_json: PathBuf,
    pub database: DumpStats,
    /// Archived as `data/<name>/...`.
    pub directories: Vec<DirectoryContribution>,
    /// Names of directories that should have been archived but do not exist.
    pub missing_directories: Vec<String>,
    /// Archived as `plugins/<plugin>/<relative>`.
    pub plugin_files: Vec<FileContribution>,
    /// (plugin id, version) of every contributing plugin.
    pub plugins: Vec<(String, String)>,
    /// Store the archive encrypted to these recipients (`encrypt_local`, DESIGN section 11):
    /// the file is then `NAME.tar.gz.age`, and the outcome's size and sha256 are its own.
    pub encrypt_to: Option<Vec<age::x25519::Recipient>>,
    /// Also write the archive encrypted to these recipients into this new file, in the same
    /// pass (the form the copies send when the local archive is plain). A failure of that
    /// second file never fails the archive: the outcome says what became of it.
    pub also_encrypted: Option<(PathBuf, Vec<age::x25519::Recipient>)>,
}

/// A finished archive.
#[derive(Debug, Clone)]
pub struct ArchiveOutcome {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the archive file.
    pub sha256: String,
    /// The `manifest.json` written as the first entry.
    pub manifest: wire::Manifest,
    /// Things skipped or changed while archiving, for the job's `warnings`.
    pub warnings: Vec<String>,
    /// The encrypted copy asked for by `also_encrypted`: its size and sha256, or why it was
    /// given up.
    pub encrypted_copy: Option<EncryptedCopy>,
}

/// See [`ArchiveOutcome::encrypted_copy`].
pub type EncryptedCopy = super::gz::SideOutcome;

/// `backstop-YYYYMMDDTHHMMSSZ.tar.gz`, or with `-1`, `-2`... when that name (or its
/// `.partial`) already exists in `dir`.
pub fn archive_name(now: DateTime<Utc>, dir: &Path) -> String {
    archive_name_avoiding(now, dir, &|_| false)
}

/// Like [`archive_name`], and also never a name `recorded` says a job record names (DESIGN
/// section 4: a file name is never reused while any record names it, even when its file was
/// deleted from disk behind Backstop's back).
pub fn archive_name_avoiding(
    now: DateTime<Utc>,
    dir: &Path,
    recorded: &dyn Fn(&str) -> bool,
) -> String {
    let base = format!("backstop-{}", now.format("%Y%m%dT%H%M%SZ"));
    // A name is taken in either form (plain, or `.age`), so copies of two archives never
    // share an object name either.
    let taken = |name: &str| {
        [name.to_owned(), format!("{name}.age")].iter().any(|n| {
            recorded(n)
                || dir.join(n).symlink_metadata().is_ok()
                || dir.join(format!("{n}.partial")).symlink_metadata().is_ok()
        })
    };
    let first = format!("{base}.tar.gz");
    if !taken(&first) {
        return first;
    }
    (1u64..)
        .map(|i| format!("{base}-{i}.tar.gz"))
        .find(|n| !taken(n))
        .expect("some suffix is free")
}

/// Writes the archive described by `req`. Blocking.
///
/// Cancel returns an error of kind Canceled within about a chunk's
/// worth of work and leaves no file behind.
pub fn write_archive(
    req: ArchiveRequest,
    cancel: &CancellationToken,
    progress: ProgressFn,
) -> Result<ArchiveOutcome> {
    let final_path = req.dest_dir.join(&req.file_name);
    let partial = req.dest_dir.join(format!("{}.partial", req.file_name));
    let result = write_partial(&req, &partial, cancel, progress).and_then(
        |(written, manifest, warnings)| {
            publish(&partial, &final_path, &req.dest_dir)?;
            Ok(ArchiveOutcome {
                path: final_path.clone(),
                size_bytes: written.size,
                sha256: written.sha256,
                manifest,
                warnings,
                encrypted_copy: written.side,
            })
        },
    );
    result.map_err(|e| {
        discard_file(&partial);
        if let Some((side, _)) = &req.also_encrypted {
            discard_file(side);
        }
        // Whatever failed last, a canceled job reports the cancel.
        if cancel.is_cancelled() { canceled() } else { e }
    })
}

/// Removes a file's name now and frees its blocks in the background. Unlinking a large file
/// on ext4 frees its extents inside the call (about a second for 2 GiB), which would make a
/// cancel slow; with a handle still open, the unlink only drops the name, and the space is
/// released when the handle closes on another thread. Measured by the benchmark's
/// `--cancel-at` runs.
pub(crate) fn discard_file(path: &Path) {
    match std::fs::File::open(path) {
        Ok(handle) => {
            let _ = std::fs::remove_file(path);
            let spawned = std::thread::Builder::new()
                .name("discard".into())
                .spawn(move || drop(handle));
            if let Err(e) = spawned {
                tracing::debug!(error = %e, "no thread to free a discarded file; freed inline");
            }
        }
        Err(_) => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Renames the synced `.partial` into place and syncs the directory entry. The rename never
/// replaces an existing file (`RENAME_NOREPLACE`), so two writers that picked the same name
/// in the same second (a backup and an upload) cannot overwrite each other: the second gets
/// a Conflict and nothing is lost.
pub(crate) fn publish(partial: &Path, final_path: &Path, dir: &Path) -> Result<()> {
    let exists = || {
        Error::conflict(format!(
            "an archive named {} already exists",
            final_path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ))
    };
    if final_path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    match rename_noreplace(partial, final_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(e) => {
            return Err(Error::internal(
                format!(
                    "cannot move the finished archive into place in {}",
                    dir.display()
                ),
                e,
            ));
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        Error::internal(
            format!("cannot sync the backup folder {}", dir.display()),
            e,
        )
    })
}

/// `rename` that fails with `AlreadyExists` instead of replacing `to`. Falls back to a
/// checked plain rename on filesystems without `renameat2` flags (EINVAL/ENOSYS).
#[allow(unsafe_code)] // one libc call, see SAFETY below
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if to.symlink_metadata().is_ok() {
                return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        _ => Err(err),
    }
}

/// One tar entry to write, from the scan.
struct Item {
    archive_path: String,
    /// None for directories that exist only in the archive (`plugins/<id>/`).
    source: Option<PathBuf>,
    kind: Kind,
    size: u64,
    mode: u32,
    mtime: u64,
}

/// What the scan found.
#[derive(Default)]
struct Scan {
    items: Vec<Item>,
    /// Per contributed directory: (contribution index, files, bytes).
    directories: Vec<(usize, u64, u64)>,
    missing: Vec<String>,
    /// Per plugin id: (files, bytes).
    plugin_totals: BTreeMap<String, (u64, u64)>,
    warnings: Vec<String>,
    data_bytes: u64,
}

fn write_partial(
    req: &ArchiveRequest,
    partial: &Path,
    cancel: &CancellationToken,
    progress: ProgressFn,
) -> Result<(gz::Written, wire::Manifest, Vec<String>)> {
    let scan = scan(req, cancel)?;
    let manifest = manifest(req, &scan);
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::internal("cannot encode the manifest", e))?;

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(|e| {
            let msg = if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!("backup folder {} is not writable", req.dest_dir.display())
            } else {
                format!("cannot create the archive file {}", partial.display())
            };
            Error::internal(msg, e)
        })?;
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let mut warnings = scan.warnings.clone();
    let total = req.database.bytes + scan.data_bytes;
    let mut throttle = Throttle::new(progress, "archive");
    throttle.finish(0, total);

    let mut side_error = None;
    let side = match &req.also_encrypted {
        None => None,
        Some((path, recipients)) => {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(f) => Some((f, recipients.clone())),
                Err(e) => {
                    side_error = Some(format!("cannot create {}: {e}", path.display()));
                    None
                }
            }
        }
    };
    let mut written = std::thread::scope(|s| {
        let mut gz = gz::start(s, file, req.encrypt_to.clone(), side, workers, cancel);
        let mut w = EntryWriter {
            gz: &mut gz,
            cancel,
            checksums: Vec::new(),
            done: 0,
            total,
            throttle: &mut throttle,
            warnings: &mut warnings,
            mtime: req.created_at.timestamp().max(0) as u64,
        };
        match w.write_all(req, &scan.items, &manifest_bytes) {
            Ok(()) => gz.finish(),
            Err(e) => Err(match gz.abort() {
                // The writer's failure (disk full, cancel) is the cause of a broken pipeline.
                Some(writer_err) if e.kind() == ErrorKind::Internal => writer_err,
                _ => e,
            }),
        }
    })?;
    if let Some(why) = side_error {
        written.side = Some(Err(why));
    }
    throttle.finish(total, total);
    Ok((written, manifest, warnings))
}

/// The manifest: DESIGN section 3. `totals` counts the content files (database, data,
/// plugin files), not `manifest.json` and `checksums.sha256`.
fn manifest(req: &ArchiveRequest, scan: &Scan) -> wire::Manifest {
    let directories = scan
        .directories
        .iter()
        .map(|&(i, files, bytes)| {
            let d = &req.directories[i];
            wire::ManifestDirectory {
                name: d.name.clone(),
                archive_path: format!("data/{}", d.name),
                files,
                bytes,
                contributed_by: d.contributed_by.clone(),
            }
        })
        .collect();
    let mut versions: BTreeMap<&str, &str> = req
        .plugins
        .iter()
        .map(|(id, v)| (id.as_str(), v.as_str()))
        .collect();
    for id in scan.plugin_totals.keys() {
        versions.entry(id.as_str()).or_insert("");
    }
    let plugins = versions
        .iter()
        .map(|(id, version)| {
            let (files, bytes) = scan.plugin_totals.get(*id).copied().unwrap_or((0, 0));
            wire::ManifestPlugin {
                id: (*id).to_owned(),
                version: (*version).to_owned(),
                files,
                bytes,
            }
        })
        .collect();
    let data_files: u64 = scan.directories.iter().map(|d| d.1).sum::<u64>()
        + scan.plugin_totals.values().map(|p| p.0).sum::<u64>();
    wire::Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        created_at: req.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        app_version: req.app_version.clone(),
        trigger: req.trigger.clone(),
        include_recordings: req.include_recordings,
        database: wire::ManifestDatabase {
            file: "database.json".to_owned(),
            engine: req.database.engine.to_owned(),
            schema_version: req.schema_version,
            tables: req.database.tables,
            rows: req.database.rows,
            sha256: req.database.sha256.clone(),
        },
        directories,
        missing_directories: scan.missing.clone(),
        plugins,
        annotations: req.annotations.clone(),
        totals: wire::ManifestTotals {
            files: 1 + data_files,
            bytes: req.database.bytes + scan.data_bytes,
        },
        extra: BTreeMap::new(),
    }
}

/// A single safe path component: what directory names and plugin ids must be.
fn is_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

fn scan(req: &ArchiveRequest, cancel: &CancellationToken) -> Result<Scan> {
    let mut scan = Scan {
        missing: req.missing_directories.clone(),
        ..Scan::default()
    };
    let mut seen = BTreeSet::new();
    for (i, d) in req.directories.iter().enumerate() {
        if !is_component(&d.name) {
            scan.warnings.push(format!(
                "directory {:?} from {} was skipped: its name must be a single folder name",
                d.name, d.contributed_by
            ));
            continue;
        }
        if !seen.insert(d.name.clone()) {
            scan.warnings.push(format!(
                "directory {:?} from {} was skipped: another directory already uses that name",
                d.name, d.contributed_by
            ));
            continue;
        }
        // The root itself may be a symlink (deployments mount data that way); nothing below
        // it is followed.
        let meta = match std::fs::metadata(&d.path) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                scan.warnings.push(format!(
                    "{} is not a directory; data/{} was not archived",
                    d.path.display(),
                    d.name
                ));
                scan.missing.push(d.name.clone());
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                scan.missing.push(d.name.clone());
                continue;
            }
            Err(_) => {
                scan.warnings.push(format!(
                    "{} cannot be read; data/{} was not archived",
                    d.path.display(),
                    d.name
                ));
                scan.missing.push(d.name.clone());
                continue;
            }
        };
        let prefix = format!("data/{}", d.name);
        scan.items.push(Item {
            archive_path: prefix.clone(),
            source: None,
            kind: Kind::Dir,
            size: 0,
            mode: meta.mode(),
            mtime: meta.mtime().max(0) as u64,
        });
        let (mut files, mut bytes) = (0, 0);
        walk(
            &d.path, &prefix, 0, &mut scan, &mut files, &mut bytes, cancel,
        )?;
        scan.data_bytes += bytes;
        scan.directories.push((i, files, bytes));
    }

    // Plugin files, sorted so the archive is deterministic; the directories they imply are
    // added before them.
    let mut files: Vec<&FileContribution> = req.plugin_files.iter().collect();
    files.sort_by(|a, b| (&a.plugin, &a.relative).cmp(&(&b.plugin, &b.relative)));
    let mut dirs = BTreeSet::new();
    let mut file_paths = BTreeSet::new();
    let mtime = req.created_at.timestamp().max(0) as u64;
    for f in files {
        let rel_ok = !f.relative.is_empty() && f.relative.split('/').all(is_component);
        if !is_component(&f.plugin) || !rel_ok {
            scan.warnings.push(format!(
                "file {:?} from plugin {} was skipped: it must be a relative path without '..'",
                f.relative, f.plugin
            ));
            continue;
        }
        let archive_path = format!("plugins/{}/{}", f.plugin, f.relative);
        let ancestors: Vec<String> = {
            let parts: Vec<&str> = archive_path.split('/').collect();
            (2..parts.len()).map(|n| parts[..n].join("/")).collect()
        };
        if file_paths.contains(&archive_path)
            || dirs.contains(&archive_path)
            || ancestors.iter().any(|a| file_paths.contains(a))
        {
            scan.warnings.push(format!(
                "file {archive_path} from plugin {} was skipped: the path is already used",
                f.plugin
            ));
            continue;
        }
        let meta = match std::fs::symlink_metadata(&f.path) {
            Ok(m) if m.file_type().is_file() => m,
            Ok(m) if m.file_type().is_symlink() => {
                scan.warnings.push(format!(
                    "skipped symlink {archive_path} (symlinks are never archived)"
                ));
                continue;
            }
            Ok(_) => {
                scan.warnings
                    .push(format!("skipped {archive_path}: not a regular file"));
                continue;
            }
            Err(_) => {
                scan.warnings.push(format!(
                    "skipped {archive_path}: {} cannot be read",
                    f.path.display()
                ));
                continue;
            }
        };
        if open_nofollow(&f.path).is_err() {
            scan.warnings.push(format!(
                "skipped {archive_path}: {} cannot be read",
                f.path.display()
            ));
            continue;
        }
        for a in ancestors {
            if dirs.insert(a.clone()) {
                scan.items.push(Item {
                    archive_path: a,
                    source: None,
                    kind: Kind::Dir,
                    size: 0,
                    mode: 0o755,
                    mtime,
                });
            }
        }
        file_paths.insert(archive_path.clone());
        let totals = scan.plugin_totals.entry(f.plugin.clone()).or_default();
        totals.0 += 1;
        totals.1 += meta.len();
        scan.data_bytes += meta.len();
        scan.items.push(Item {
            archive_path,
            source: Some(f.path.clone()),
            kind: Kind::File,
            size: meta.len(),
            mode: meta.mode(),
            mtime: meta.mtime().max(0) as u64,
        });
    }
    Ok(scan)
}

/// Deeper trees than this are almost certainly a loop or an accident; skipped with a warning.
const MAX_DEPTH: usize = 128;

/// Adds the entries below `dir` (already added itself) in name order, directories before
/// their contents.
fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    scan: &mut Scan,
    files: &mut u64,
    bytes: &mut u64,
    cancel: &CancellationToken,
) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(canceled());
    }
    if depth > MAX_DEPTH {
        scan.warnings.push(format!(
            "skipped {prefix}: folders nested deeper than {MAX_DEPTH} levels"
        ));
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(_) => {
            scan.warnings.push(format!(
                "skipped {prefix}: the folder {} cannot be read",
                dir.display()
            ));
            return Ok(());
        }
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            scan.warnings.push(format!(
                "skipped {prefix}/{}: the name is not valid UTF-8",
                name.to_string_lossy()
            ));
            continue;
        };
        let archive_path = format!("{prefix}/{name}");
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if archive_path.contains(['\n', '\r']) && !tarfmt::fits_ustar(&archive_path, is_dir) {
            // Found by fuzzing: tar's PAX records cannot carry a line break back to the
            // verifier, so such an entry would make the whole archive unrestorable.
            scan.warnings.push(format!(
                "skipped {archive_path:?}: a name with a line break in a path this long cannot be archived"
            ));
            continue;
        }
        // symlink_metadata: a symlink is reported as itself, never followed.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                scan.warnings
                    .push(format!("skipped {archive_path}: it cannot be read"));
                continue;
            }
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            scan.warnings.push(format!(
                "skipped symlink {archive_path} (symlinks are never archived)"
            ));
        } else if ft.is_dir() {
            scan.items.push(Item {
                archive_path: archive_path.clone(),
                source: None,
                kind: Kind::Dir,
                size: 0,
                mode: meta.mode(),
                mtime: meta.mtime().max(0) as u64,
            });
            walk(&path, &archive_path, depth + 1, scan, files, bytes, cancel)?;
        } else if ft.is_file() {
            if open_nofollow(&path).is_err() {
                scan.warnings
                    .push(format!("skipped {archive_path}: it cannot be read"));
                continue;
            }
            *files += 1;
            *bytes += meta.len();
            scan.items.push(Item {
                archive_path,
                source: Some(path),
                kind: Kind::File,
                size: meta.len(),
                mode: meta.mode(),
                mtime: meta.mtime().max(0) as u64,
            });
        } else {
            scan.warnings.push(format!(
                "skipped {archive_path}: not a regular file or folder"
            ));
        }
    }
    Ok(())
}

/// Opens a file for reading without following a symlink that replaced it since the scan.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Writes tar entries into the gzip stage, collecting checksum lines.
struct EntryWriter<'a, 'g> {
    gz: &'a mut gz::Gz<'g>,
    cancel: &'a CancellationToken,
    /// `sha256sum` lines for every regular file except the manifest.
    checksums: Vec<u8>,
    done: u64,
    total: u64,
    throttle: &'a mut Throttle,
    warnings: &'a mut Vec<String>,
    /// mtime of the entries Backstop generates (manifest, database, checksums).
    mtime: u64,
}

impl EntryWriter<'_, '_> {
    fn write_all(&mut self, req: &ArchiveRequest, items: &[Item], manifest: &[u8]) -> Result<()> {
        self.small_file("manifest.json", manifest)?;

        let db = open_nofollow(&req.database_json).map_err(|e| {
            Error::internal(
                format!(
                    "cannot read the database dump {}",
                    req.database_json.display()
                ),
                e,
            )
        })?;
        let (sha, short) = self.file("database.json", db, req.database.bytes, 0o644, self.mtime)?;
        if short || sha != req.database.sha256 {
            return Err(Error::internal(
                "the database dump changed after it was written",
                DumpChanged(req.database_json.clone()),
            ));
        }

        for item in items {
            if self.cancel.is_cancelled() {
                return Err(canceled());
            }
            match (&item.kind, &item.source) {
                (Kind::File, Some(source)) => {
                    let f = match open_nofollow(source) {
                        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
                        _ => {
                            self.warnings.push(format!(
                                "skipped {}: it disappeared or became unreadable while archiving",
                                item.archive_path
                            ));
                            self.done += item.size;
                            continue;
                        }
                    };
                    let (_, short) =
                        self.file(&item.archive_path, f, item.size, item.mode, item.mtime)?;
                    if short {
                        self.warnings.push(format!(
                            "{} shrank while being archived; its missing end was filled with zeros",
                            item.archive_path
                        ));
                    }
                }
                _ => {
                    let mut header = Vec::with_capacity(1024);
                    tarfmt::append_header(
                        &mut header,
                        &item.archive_path,
                        Kind::Dir,
                        0,
                        item.mode,
                        item.mtime,
                    );
                    self.gz.write(&header)?;
                }
            }
        }

        let checksums = std::mem::take(&mut self.checksums);
        let mut header = Vec::with_capacity(1024);
        tarfmt::append_header(
            &mut header,
            "checksums.sha256",
            Kind::File,
            checksums.len() as u64,
            0o644,
            self.mtime,
        );
        self.gz.write(&header)?;
        self.gz.write(&checksums)?;
        self.gz.zeros(tarfmt::padding(checksums.len() as u64))?;
        // End of archive: two zero blocks.
        self.gz.zeros(2 * tarfmt::BLOCK)
    }

    /// An entry whose content is in memory (the manifest); not listed in the checksums.
    fn small_file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut header = Vec::with_capacity(1024);
        tarfmt::append_header(
            &mut header,
            path,
            Kind::File,
            data.len() as u64,
            0o644,
            self.mtime,
        );
        self.gz.write(&header)?;
        self.gz.write(data)?;
        self.gz.zeros(tarfmt::padding(data.len() as u64))
    }

    /// Streams exactly `size` bytes of `f` as entry `path` and records its checksum. A file
    /// that shrank since the scan is padded with zeros (returns `short = true`); one that grew
    /// is cut at `size` with a warning. Either way the tar stays valid and the checksum is of
    /// the bytes written.
    fn file(
        &mut self,
        path: &str,
        mut f: File,
        size: u64,
        mode: u32,
        mtime: u64,
    ) -> Result<(String, bool)> {
        let mut header = Vec::with_capacity(1024);
        tarfmt::append_header(&mut header, path, Kind::File, size, mode, mtime);
        self.gz.write(&header)?;
        let mut hasher = Sha256::new();
        let mut remaining = size;
        let mut short = false;
        while remaining > 0 {
            if self.cancel.is_cancelled() {
                return Err(canceled());
            }
            let space = self.gz.space()?;
            let want = space
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = if short {
                space[..want].fill(0);
                want
            } else {
                match read_some(&mut f, &mut space[..want]) {
                    Ok(0) => {
                        short = true;
                        continue;
                    }
                    Ok(n) => n,
                    Err(e) => {
                        return Err(Error::internal(
                            format!("cannot read {path} while archiving it"),
                            e,
                        ));
                    }
                }
            };
            hasher.update(&space[..n]);
            self.gz.advance(n)?;
            remaining -= n as u64;
            self.done += n as u64;
            self.throttle.tick(self.done, self.total);
        }
        self.gz.zeros(tarfmt::padding(size))?;
        if !short && f.metadata().is_ok_and(|m| m.len() > size) {
            self.warnings.push(format!(
                "{path} grew while being archived; the first {size} bytes were archived"
            ));
        }
        let sha = hex::encode(hasher.finalize());
        checksum_line(&mut self.checksums, &sha, path);
        Ok((sha, short))
    }
}

fn read_some(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Appends one `sha256sum` line. Like GNU `sha256sum`, a name containing a backslash or a
/// line break is escaped and the line starts with a backslash.
pub(crate) fn checksum_line(out: &mut Vec<u8>, sha: &str, path: &str) {
    if path.contains(['\\', '\n', '\r']) {
        out.push(b'\\');
        out.extend_from_slice(sha.as_bytes());
        out.extend_from_slice(b"  ");
        for c in path.chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                c => {
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    } else {
        out.extend_from_slice(sha.as_bytes());
        out.extend_from_slice(b"  ");
        out.extend_from_slice(path.as_bytes());
    }
    out.push(b'\n');
}

#[derive(Debug, thiserror::Error)]
#[error("{0} no longer matches its recorded size and SHA-256")]
struct DumpChanged(PathBuf);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn archive_name_adds_a_suffix_when_the_name_or_its_partial_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .single()
            .expect("valid time");
        assert_eq!(
            archive_name(now, dir.path()),
            "backstop-20250304T050607Z.tar.gz"
        );
        std::fs::write(dir.path().join("backstop-20250304T050607Z.tar.gz"), b"").expect("write");
        assert_eq!(
            archive_name(now, dir.path()),
            "backstop-20250304T050607Z-1.tar.gz"
        );
        std::fs::write(
            dir.path()
                .join("backstop-20250304T050607Z-1.tar.gz.partial"),
            b"",
        )
        .expect("write");
        assert_eq!(
            archive_name(now, dir.path()),
            "backstop-20250304T050607Z-2.tar.gz"
        );
    }

    #[test]
    fn checksum_lines_escape_like_sha256sum() {
        let mut out = Vec::new();
        checksum_line(&mut out, "ab", "data/x y.txt");
        checksum_line(&mut out, "cd", "data/a\\b\nc");
        assert_eq!(out, b"ab  data/x y.txt\n\\cd  data/a\\\\b\\nc\n");
    }
}
