//! Reading an archive: validation (DESIGN section 5 step 1) and extraction into staging
//! folders, both in one streaming pass over the file, so a bad archive is refused without
//! having changed anything and an archive is never trusted between a check and its use.
//!
//! Reader stack, outermost first:
//!
//! ```text
//! tar::Archive -> Guard (limits, cancel, progress) -> MultiGzDecoder -> BufReader -> Counting (SHA-256 of the file) -> File
//! ```
//!
//! The guard sees every decompressed byte: the total-size limit and the expansion-ratio limit
//! (the gzip-bomb guard) stop the read as soon as they are crossed, not after the fact.
//! Failures are `Error::rejected` with a message naming what is wrong.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::dbjson::{self, Sink, Value};
use super::schema::{Affinity, SchemaInfo, TableInfo};
use super::{FORMAT_VERSION, MANIFEST_FORMAT, ProgressFn, Throttle, canceled};
use crate::{Error, ErrorKind, Result};

/// What an archive may hold before it is refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Tar entries (files and folders).
    pub max_entries: u64,
    /// Bytes in one entry path.
    pub max_path_bytes: usize,
    /// Bytes of all entry paths together. Validation keeps every path (to refuse duplicates
    /// and files used as folders), so this bounds its memory whatever the archive holds:
    /// 1M entries of 4 KiB paths would otherwise be 4 GiB. 64 MiB is ~1M paths of 64 bytes.
    pub max_total_path_bytes: u64,
    /// Total size of all files once extracted. Callers should cap it by free disk space.
    pub max_total_bytes: u64,
    /// Largest allowed decompressed/compressed ratio once past `ratio_grace_bytes`: the gzip
    /// bomb guard. A dump of a real database compresses 5-20x; a deflate bomb reaches ~1000x.
    pub max_ratio: u64,
    /// Decompressed bytes read before the ratio is enforced (small archives of repetitive
    /// data legitimately have high ratios).
    pub ratio_grace_bytes: u64,
    /// `manifest.json` and `checksums.sha256` are read into memory: their size caps.
    pub max_manifest_bytes: u64,
    pub max_checksums_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_path_bytes: 4096,
            max_total_path_bytes: 64 << 20,
            max_total_bytes: 1 << 40,
            max_ratio: 200,
            ratio_grace_bytes: 64 << 20,
            max_manifest_bytes: 16 << 20,
            max_checksums_bytes: 256 << 20,
        }
    }
}

/// The result of a successful check (the wire type).
pub use wire::VerifyReport;

/// Where [`extract_to_staging`] puts things. Every path must not exist yet; its parent must.
#[derive(Debug, Clone, Default)]
pub struct StagingTargets {
    /// `data/<name>/...` goes to `directories[name]/...`; names not listed are checked but
    /// not extracted.
    pub directories: BTreeMap<String, PathBuf>,
    /// Where `database.json` is written.
    pub database_json: PathBuf,
    /// `plugins/<id>/...` goes to `plugins/<id>/...` here, when set.
    pub plugins: Option<PathBuf>,
}

/// What [`extract_to_staging`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExtractReport {
    pub verify: VerifyReport,
    /// Names of the `data/<name>` trees extracted (targets absent from the archive are not
    /// created: their live directories are to be left as they are).
    pub directories: Vec<String>,
    /// Plugin ids whose files were extracted.
    pub plugins: Vec<String>,
}

/// Checks `path` completely without changing anything. Blocking.
///
/// An archive stored encrypted (an age file, `NAME.tar.gz.age`) is read through `keys`
/// (none, or none that opens it: refused); the report's `archive_bytes` and `sha256` are
/// then those of the file as stored, and a truncated or changed file fails age's
/// authentication and is refused as damaged.
pub fn verify_archive(
    path: &Path,
    limits: &Limits,
    schema: &SchemaInfo,
    keys: &[age::x25519::Identity],
    cancel: &CancellationToken,
    progress: ProgressFn,
) -> Result<VerifyReport> {
    read_archive(path, limits, schema, keys, cancel, progress, "verify", None)
}

/// Checks `path` exactly as [`verify_archive`] does and, in the same pass, extracts it into
/// `targets`. On any failure everything created under `targets` is removed. Blocking.
pub fn extract_to_staging(
    path: &Path,
    limits: &Limits,
    schema: &SchemaInfo,
    keys: &[age::x25519::Identity],
    targets: &StagingTargets,
    cancel: &CancellationToken,
    progress: ProgressFn,
) -> Result<ExtractReport> {
    let mut out = Extractor::new(targets)?;
    match read_archive(
        path,
        limits,
        schema,
        keys,
        cancel,
        progress,
        "extract",
        Some(&mut out),
    ) {
        Ok(verify) => {
            out.finish()?;
            Ok(ExtractReport {
                verify,
                directories: out.extracted_dirs.into_iter().collect(),
                plugins: out.extracted_plugins.into_iter().collect(),
            })
        }
        Err(e) => {
            out.remove_all();
            Err(e)
        }
    }
}

/// State shared by the reader stack and the walk (single-threaded).
struct Shared {
    compressed: Cell<u64>,
    hasher: RefCell<Sha256>,
    /// A limit or cancel that stopped the read: returned instead of the io error it caused.
    violation: RefCell<Option<Error>>,
}

impl Shared {
    fn fail(&self, e: Error) -> io::Error {
        let mut v = self.violation.borrow_mut();
        if v.is_none() {
            *v = Some(e);
        }
        io::Error::other("archive read stopped")
    }

    /// The error to report for an io error from the reader stack.
    fn explain(&self, e: io::Error, what: &str) -> Error {
        if let Some(v) = self.violation.borrow_mut().take() {
            return v;
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::rejected("the archive is truncated: it ends before its last entry (incomplete upload or copy?)")
                .with_source(e)
        } else {
            Error::rejected(format!("the archive is damaged: {what} could not be read"))
                .with_source(e)
        }
    }
}

/// Hashes and counts the compressed bytes.
struct Counting {
    file: File,
    shared: Rc<Shared>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.shared
            .compressed
            .set(self.shared.compressed.get() + n as u64);
        self.shared.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// Enforces the size limits on the decompressed stream, checks cancel, reports progress.
struct Guard<R> {
    inner: R,
    shared: Rc<Shared>,
    total: u64,
    limits: Limits,
    cancel: CancellationToken,
    throttle: Throttle,
    file_size: u64,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(self.shared.fail(canceled()));
        }
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        // Tar framing adds headers and padding to the file bytes; allow for it.
        if self.total
            > self
                .limits
                .max_total_bytes
                .saturating_add(self.limits.max_total_bytes / 8 + (1 << 20))
        {
            return Err(self.shared.fail(Error::rejected(format!(
                "the archive expands to more than {} bytes, the limit for this server",
                self.limits.max_total_bytes
            ))));
        }
        let compressed = self.shared.compressed.get().max(1);
        if self.total > self.limits.ratio_grace_bytes
            && self.total / compressed > self.limits.max_ratio
        {
            return Err(self.shared.fail(Error::rejected(format!(
                "the archive expands more than {} times its size (gzip bomb guard); refused after {} MiB",
                self.limits.max_ratio,
                self.total >> 20
            ))));
        }
        self.throttle
            .tick(self.shared.compressed.get(), self.file_size);
        Ok(n)
    }
}

/// Hashes what passes through and optionally copies it to a file.
struct Tee<'a, R> {
    inner: R,
    hasher: Sha256,
    copy: Option<&'a mut BufWriter<File>>,
    copy_error: Option<io::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(w) = self.copy.as_mut()
            && let Err(e) = w.write_all(&buf[..n])
        {
            self.copy_error = Some(e);
            self.copy = None;
        }
        Ok(n)
    }
}

/// Where an entry belongs in the format.
enum Role {
    Manifest,
    Database,
    Checksums,
    /// `data/<name>/<rest>`; rest empty for the tree's root.
    Data {
        name: String,
        rest: String,
    },
    /// `plugins/<id>/<rest>`.
    Plugin {
        id: String,
        rest: String,
    },
    /// `data/` or `plugins/` themselves.
    TopDir,
}

fn role(path: &str, is_dir: bool) -> Option<Role> {
    match path {
        "manifest.json" if !is_dir => return Some(Role::Manifest),
        "database.json" if !is_dir => return Some(Role::Database),
        "checksums.sha256" if !is_dir => return Some(Role::Checksums),
        "data" | "plugins" if is_dir => return Some(Role::TopDir),
        _ => {}
    }
    let (top, rest) = path.split_once('/')?;
    let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if rest.is_empty() && !is_dir {
        // `data/<name>` must be a folder.
        return None;
    }
    let (name, rest) = (name.to_owned(), rest.to_owned());
    match top {
        "data" => Some(Role::Data { name, rest }),
        "plugins" => Some(Role::Plugin { id: name, rest }),
        _ => None,
    }
}

/// Checks an entry name: UTF-8, relative, no `.`/`..`/empty components, within limits.
fn safe_path(raw: &[u8], is_dir: bool, limits: &Limits) -> Result<String> {
    let shown = String::from_utf8_lossy(raw);
    let Ok(s) = std::str::from_utf8(raw) else {
        return Err(Error::rejected(format!(
            "entry {shown:?} has a name that is not valid UTF-8"
        )));
    };
    if s.len() > limits.max_path_bytes {
        return Err(Error::rejected(format!(
            "entry {:?}... has a path longer than {} bytes",
            &s[..s.floor_char_boundary(60)],
            limits.max_path_bytes
        )));
    }
    if s.starts_with('/') {
        return Err(Error::rejected(format!("entry {s:?} has an absolute path")));
    }
    let trimmed = if is_dir {
        s.strip_suffix('/').unwrap_or(s)
    } else {
        s
    };
    if trimmed.is_empty() || trimmed.contains('\0') {
        return Err(Error::rejected(format!(
            "entry {s:?} has an empty or invalid path"
        )));
    }
    for c in trimmed.split('/') {
        if c == ".." {
            return Err(Error::rejected(format!(
                "entry {s:?} has a '..' component that would escape the folder"
            )));
        }
        if c.is_empty() || c == "." || c.len() > 255 {
            return Err(Error::rejected(format!(
                "entry {s:?} has an invalid path component"
            )));
        }
    }
    Ok(trimmed.to_owned())
}

#[allow(clippy::too_many_arguments)]
fn read_archive(
    path: &Path,
    limits: &Limits,
    schema: &SchemaInfo,
    keys: &[age::x25519::Identity],
    cancel: &CancellationToken,
    progress: ProgressFn,
    step: &'static str,
    mut extract: Option<&mut Extractor>,
) -> Result<VerifyReport> {
    let file = File::open(path).map_err(|e| {
        Error::not_found(format!("archive {} cannot be opened", path.display())).with_source(e)
    })?;
    let file_size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let shared = Rc::new(Shared {
        compressed: Cell::new(0),
        hasher: RefCell::new(Sha256::new()),
        violation: RefCell::new(None),
    });
    let counting = BufReader::with_capacity(
        64 << 10,
        Counting {
            file,
            shared: Rc::clone(&shared),
        },
    );
    // What is counted and hashed is the file as stored; an encrypted one is decrypted above
    // that (age authenticates every 64 KiB chunk, so a changed byte stops the read).
    let stored: Box<dyn Read> = if crate::encryption::is_age_file(path) {
        Box::new(crate::encryption::decrypting(counting, keys)?)
    } else {
        Box::new(counting)
    };
    let guard = Guard {
        inner: MultiGzDecoder::new(stored),
        shared: Rc::clone(&shared),
        total: 0,
        limits: limits.clone(),
        cancel: cancel.clone(),
        throttle: Throttle::new(progress.clone(), step),
        file_size,
    };
    let mut archive = tar::Archive::new(guard);
    let mut walk = Walk::new(limits, schema);
    {
        let entries = archive
            .entries()
            .map_err(|e| shared.explain(e, "the tar stream"))?;
        for entry in entries {
            let entry = entry.map_err(|e| shared.explain(e, "a tar header"))?;
            walk.entry(entry, &shared, extract.as_deref_mut())?;
        }
    }
    // After the end-of-archive block only zero padding may follow, then the gzip end.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
            Ok(_) => {
                return Err(Error::rejected(
                    "the archive has unexpected data after its end",
                ));
            }
            Err(e) => {
                let e = shared.explain(e, "the end of the archive");
                return Err(
                    if e.kind() == ErrorKind::Rejected && !e.message().contains("truncated") {
                        Error::rejected("the archive has unexpected data after its end")
                    } else {
                        e
                    },
                );
            }
        }
    }
    let (manifest, entries, files, total_bytes) = walk.finish()?;
    let report = VerifyReport {
        ok: true,
        manifest,
        entries,
        files,
        total_bytes,
        archive_bytes: shared.compressed.get(),
        sha256: hex::encode(shared.hasher.replace(Sha256::new()).finalize()),
    };
    Throttle::new(progress, step).finish(report.archive_bytes, report.archive_bytes);
    Ok(report)
}

/// The per-entry checks and the bookkeeping for the end-of-archive checks.
struct Walk<'a> {
    limits: &'a Limits,
    schema: &'a SchemaInfo,
    entries: u64,
    files: u64,
    declared: u64,
    manifest: Option<wire::Manifest>,
    expected_db_sha: String,
    db_sha: Option<String>,
    /// Regular files (except manifest and checksums) and their SHA-256.
    hashes: HashMap<String, String>,
    /// Every regular file path seen.
    file_paths: HashSet<String>,
    /// Folders, explicit or implied by a path below them.
    dirs: HashSet<String>,
    explicit_dirs: HashSet<String>,
    checksums: Option<Vec<u8>>,
    /// Bytes of every entry path seen so far (see [`Limits::max_total_path_bytes`]).
    path_bytes: u64,
    /// Directory names listed in the manifest: the only `data/<name>/` trees allowed.
    manifest_dirs: HashSet<String>,
}

impl<'a> Walk<'a> {
    fn new(limits: &'a Limits, schema: &'a SchemaInfo) -> Self {
        Walk {
            limits,
            schema,
            entries: 0,
            files: 0,
            declared: 0,
            manifest: None,
            expected_db_sha: String::new(),
            db_sha: None,
            hashes: HashMap::new(),
            file_paths: HashSet::new(),
            dirs: HashSet::new(),
            explicit_dirs: HashSet::new(),
            checksums: None,
            path_bytes: 0,
            manifest_dirs: HashSet::new(),
        }
    }

    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        shared: &Shared,
        extract: Option<&mut Extractor>,
    ) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::rejected(format!(
                "the archive has more than {} entries",
                self.limits.max_entries
            )));
        }
        let header = entry.header();
        let entry_type = header.entry_type();
        let is_dir = entry_type.is_dir();
        let path = safe_path(&entry.path_bytes(), is_dir, self.limits)?;
        self.path_bytes += path.len() as u64;
        if self.path_bytes > self.limits.max_total_path_bytes {
            return Err(Error::rejected(format!(
                "the archive's entry names add up to more than {} MiB; it is refused",
                self.limits.max_total_path_bytes >> 20
            )));
        }
        if !is_dir && !entry_type.is_file() {
            let what = match entry_type {
                tar::EntryType::Symlink => "a symlink",
                tar::EntryType::Link => "a hard link",
                tar::EntryType::Char | tar::EntryType::Block => "a device",
                tar::EntryType::Fifo => "a FIFO",
                _ => "not a regular file or folder",
            };
            return Err(Error::rejected(format!(
                "entry {path:?} is {what}; archives may hold only regular files and folders"
            )));
        }
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().unwrap_or(0);
        if self.checksums.is_some() {
            return Err(Error::rejected(format!(
                "entry {path:?} comes after checksums.sha256, which must be last"
            )));
        }
        if self.manifest.is_none() && path != "manifest.json" {
            return Err(Error::rejected(
                "manifest.json is missing: it must be the first entry of the archive",
            ));
        }
        let Some(role) = role(&path, is_dir) else {
            return Err(Error::rejected(format!(
                "entry {path:?} is not part of the Backstop archive format"
            )));
        };
        if let Role::Data { name, .. } = &role
            && !self.manifest_dirs.contains(name)
        {
            return Err(Error::rejected(format!(
                "data/{name}/ is in the archive but manifest.json does not list it"
            )));
        }
        self.check_tree(&path, is_dir)?;

        if is_dir {
            if let Some(x) = extract {
                x.dir(&role, mode, mtime)?;
            }
            return Ok(());
        }
        let size = entry.size();
        self.files += 1;
        self.declared = self.declared.saturating_add(size);
        if self.declared > self.limits.max_total_bytes {
            return Err(Error::rejected(format!(
                "the archive's files add up to more than {} bytes, the limit for this server",
                self.limits.max_total_bytes
            )));
        }
        match role {
            Role::Manifest => {
                if size > self.limits.max_manifest_bytes {
                    return Err(Error::rejected("manifest.json is too large"));
                }
                let mut bytes = Vec::with_capacity(size.min(64 << 10) as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| shared.explain(e, "manifest.json"))?;
                let manifest = self.check_manifest(&bytes)?;
                if let Some(x) = extract {
                    x.needed = manifest.totals.bytes;
                }
                self.manifest = Some(manifest);
            }
            Role::Checksums => {
                if size > self.limits.max_checksums_bytes {
                    return Err(Error::rejected("checksums.sha256 is too large"));
                }
                // Grown as bytes arrive: the header's size may lie (a 5 KiB archive claiming
                // 200 MiB reserved it all up front; found by fuzzing).
                let mut bytes = Vec::with_capacity(size.min(64 << 10) as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| shared.explain(e, "checksums.sha256"))?;
                self.checksums = Some(bytes);
            }
            Role::Database => {
                let mut copy = match extract {
                    Some(x) => Some(x.database_file()?),
                    None => None,
                };
                let mut tee = Tee {
                    inner: &mut entry,
                    hasher: Sha256::new(),
                    copy: copy.as_mut(),
                    copy_error: None,
                };
                let parsed = match &self.schema.postgres {
                    None => {
                        let mut check = SchemaCheck::new(self.schema);
                        dbjson::read(BufReader::with_capacity(256 << 10, &mut tee), &mut check)
                    }
                    // A PostgreSQL content DB: content-pg reads the document (either engine's)
                    // and every table and column must exist in the database.
                    Some(catalog) => {
                        content_pg::scan(BufReader::with_capacity(256 << 10, &mut tee))
                            .and_then(|summary| content_pg::check_fits(&summary, &catalog.0))
                            .map_err(|e| Error::rejected(e.to_string()).with_source(e))
                    }
                };
                if let Some(v) = shared.violation.borrow_mut().take() {
                    return Err(v);
                }
                parsed?;
                // serde stops at the closing brace plus whitespace; hash whatever is left.
                io::copy(&mut tee, &mut io::sink())
                    .map_err(|e| shared.explain(e, "database.json"))?;
                if let Some(e) = tee.copy_error.take() {
                    return Err(Error::internal("cannot write the staged database.json", e));
                }
                let sha = hex::encode(tee.hasher.finalize());
                if let Some(mut w) = copy {
                    w.flush()
                        .map_err(|e| Error::internal("cannot write the staged database.json", e))?;
                }
                if sha != self.expected_db_sha {
                    return Err(Error::rejected(
                        "database.json does not match the SHA-256 recorded in manifest.json",
                    ));
                }
                self.hashes.insert(path, sha.clone());
                self.db_sha = Some(sha);
            }
            Role::Data { .. } | Role::Plugin { .. } => {
                let mut out = match extract {
                    Some(x) => x.file(&role)?,
                    None => None,
                };
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(shared.explain(e, &path)),
                    };
                    hasher.update(&buf[..n]);
                    if let Some((w, _)) = out.as_mut() {
                        w.write_all(&buf[..n]).map_err(|e| {
                            Error::internal(format!("cannot write the staged copy of {path}"), e)
                        })?;
                    }
                }
                if let Some(w) = out {
                    finish_file(w, mode, mtime).map_err(|e| {
                        Error::internal(format!("cannot write the staged copy of {path}"), e)
                    })?;
                }
                self.hashes.insert(path, hex::encode(hasher.finalize()));
            }
            Role::TopDir => {}
        }
        Ok(())
    }

    /// No duplicates, no file where a folder is (or is implied), no path below a file.
    fn check_tree(&mut self, path: &str, is_dir: bool) -> Result<()> {
        if is_dir {
            if self.file_paths.contains(path) {
                return Err(Error::rejected(format!(
                    "entry {path:?} is a folder where the archive already has a file"
                )));
            }
            if !self.explicit_dirs.insert(path.to_owned()) {
                return Err(Error::rejected(format!(
                    "entry {path:?} appears twice in the archive"
                )));
            }
        } else {
            if self.dirs.contains(path) {
                return Err(Error::rejected(format!(
                    "entry {path:?} is a file where the archive already has a folder"
                )));
            }
            if !self.file_paths.insert(path.to_owned()) {
                return Err(Error::rejected(format!(
                    "entry {path:?} appears twice in the archive"
                )));
            }
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let ancestor = &path[..end + i];
            if self.file_paths.contains(ancestor) {
                return Err(Error::rejected(format!(
                    "entry {path:?} is inside {ancestor:?}, which is a file"
                )));
            }
            if !self.dirs.contains(ancestor) {
                // Implied folders are kept too: count them, or one deep path (2000 levels in
                // 4 KiB) would store ~4 MiB of ancestors past the limit (found by fuzzing).
                self.path_bytes += ancestor.len() as u64;
                if self.path_bytes > self.limits.max_total_path_bytes {
                    return Err(Error::rejected(format!(
                        "the archive's entry names add up to more than {} MiB; it is refused",
                        self.limits.max_total_path_bytes >> 20
                    )));
                }
                self.dirs.insert(ancestor.to_owned());
            }
            end += i + 1;
        }
        if is_dir {
            self.dirs.insert(path.to_owned());
        }
        Ok(())
    }

    fn check_manifest(&mut self, bytes: &[u8]) -> Result<wire::Manifest> {
        // The format and its version first, on the untyped document: a newer format may
        // have another shape, and deserves "upgrade Backstop" rather than a field error.
        let m: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::rejected(format!("manifest.json is not valid JSON: {e}")))?;
        if m.get("format").and_then(|f| f.as_str()) != Some(MANIFEST_FORMAT) {
            return Err(Error::rejected(format!(
                "this is not a Backstop archive: manifest.json format is {}, expected {MANIFEST_FORMAT:?}",
                m.get("format")
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "missing".into())
            )));
        }
        let Some(version) = m.get("format_version").and_then(|v| v.as_i64()) else {
            return Err(Error::rejected("manifest.json has no format_version"));
        };
        if version > FORMAT_VERSION {
            return Err(Error::rejected(format!(
                "the archive uses format version {version}, newer than this Backstop supports ({FORMAT_VERSION}); upgrade Backstop to restore it"
            )));
        }
        if version < 1 {
            return Err(Error::rejected(format!(
                "manifest.json has an invalid format_version {version}"
            )));
        }
        // Then the whole manifest as the typed contract (wire::Manifest, DESIGN section 3).
        let m: wire::Manifest = serde_json::from_value(m).map_err(|e| {
            Error::rejected(format!("manifest.json does not follow format v1: {e}"))
        })?;
        let schema_version = m.database.schema_version;
        if self.schema.postgres.is_none() && schema_version > self.schema.schema_version {
            return Err(Error::rejected(format!(
                "the archive's database schema version {schema_version} is newer than this Backstop's ({}); upgrade Backstop to restore it",
                self.schema.schema_version
            )));
        }
        self.expected_db_sha = m.database.sha256.to_ascii_lowercase();
        self.manifest_dirs = check_manifest_directories(&m)?;
        Ok(m)
    }

    /// The end-of-archive checks; returns (manifest, entries, files, total bytes).
    fn finish(mut self) -> Result<(wire::Manifest, u64, u64, u64)> {
        let Some(manifest) = self.manifest.take() else {
            return Err(Error::rejected(
                "manifest.json is missing: the archive is empty",
            ));
        };
        if self.db_sha.is_none() {
            return Err(Error::rejected("database.json is missing from the archive"));
        }
        let Some(checksums) = self.checksums.take() else {
            return Err(Error::rejected(
                "checksums.sha256 is missing: it must be the last entry of the archive",
            ));
        };
        let text = std::str::from_utf8(&checksums)
            .map_err(|_| Error::rejected("checksums.sha256 is not valid UTF-8"))?;
        let mut listed = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((sha, path)) = parse_checksum_line(line) else {
                return Err(Error::rejected(format!(
                    "checksums.sha256 line {} is not in sha256sum format",
                    i + 1
                )));
            };
            match self.hashes.get(&path) {
                None => {
                    return Err(Error::rejected(format!(
                        "checksums.sha256 lists {path:?}, which is not in the archive"
                    )));
                }
                Some(actual) if *actual != sha => {
                    return Err(Error::rejected(format!(
                        "checksum mismatch for {path:?}: the file is damaged"
                    )));
                }
                Some(_) => {}
            }
            listed.insert(path);
        }
        if let Some(unlisted) = self.hashes.keys().filter(|p| !listed.contains(*p)).min() {
            return Err(Error::rejected(format!(
                "{unlisted:?} is not listed in checksums.sha256"
            )));
        }
        Ok((manifest, self.entries, self.files, self.declared))
    }
}

/// The manifest's `directories`: plain, unique names; a built-in one must be one of
/// [`super::MANAGED_DIRECTORIES`] (DESIGN section 4, data safety 2). Returns the names.
fn check_manifest_directories(m: &wire::Manifest) -> Result<HashSet<String>> {
    let mut names = HashSet::new();
    for d in &m.directories {
        let name = d.name.as_str();
        if !is_plain_name(name) {
            return Err(Error::rejected(format!(
                "manifest.json names an unsafe directory {name:?}"
            )));
        }
        if d.is_builtin() && !super::MANAGED_DIRECTORIES.contains(&name) {
            return Err(Error::rejected(format!(
                "the archive lists a directory {name:?}, which a restore may not replace: \
                 only {} (and folders an admin granted to a plugin) are ever restored",
                super::MANAGED_DIRECTORIES.join(" and ")
            )));
        }
        if !names.insert(name.to_owned()) {
            return Err(Error::rejected(format!(
                "manifest.json lists the directory {name:?} twice"
            )));
        }
    }
    Ok(names)
}

/// A directory name from an archive is used as a path component: plain names only.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

/// Parses `<hex>  <path>` (or ` *<path>`, or the backslash-escaped form) into (hex, path).
fn parse_checksum_line(line: &str) -> Option<(String, String)> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (sha, rest) = line.split_at_checked(64)?;
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))?;
    let path = if escaped {
        let mut out = String::with_capacity(path.len());
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next()? {
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    _ => return None,
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        path.to_owned()
    };
    Some((sha.to_ascii_lowercase(), path))
}

/// Validates `database.json` against the content schema as it streams by: every table and
/// column must exist here, rows must have one value per listed column, and each value must be
/// one SQLite could hold in that column as this database declares it (by affinity): no text or
/// blob in INTEGER/REAL columns, no number in TEXT columns, no NULL in a NOT NULL column that is
/// not a primary key, and never a list, a boolean or an unknown object.
pub(crate) struct SchemaCheck<'a> {
    schema: &'a SchemaInfo,
    seen: HashSet<String>,
    /// The current table and, per archive column, its index in the table.
    table: Option<(&'a TableInfo, Vec<usize>)>,
    row: u64,
    pub(crate) rows: u64,
}

impl<'a> SchemaCheck<'a> {
    pub(crate) fn new(schema: &'a SchemaInfo) -> Self {
        SchemaCheck {
            schema,
            seen: HashSet::new(),
            table: None,
            row: 0,
            rows: 0,
        }
    }

    /// The current table and the schema column index of each archive column.
    pub(crate) fn current(&self) -> Option<(&'a TableInfo, &[usize])> {
        self.table.as_ref().map(|(t, cols)| (*t, cols.as_slice()))
    }
}

impl Sink for SchemaCheck<'_> {
    fn header(&mut self, schema_version: i64) -> Result<()> {
        if schema_version > self.schema.schema_version {
            return Err(Error::rejected(format!(
                "database.json has schema version {schema_version}, newer than this Backstop's ({})",
                self.schema.schema_version
            )));
        }
        Ok(())
    }

    fn table(&mut self, name: &str, columns: &[(String, String)]) -> Result<()> {
        let Some(table) = self.schema.table(name) else {
            return Err(Error::rejected(format!(
                "database.json has table {name:?}, which this database does not have"
            )));
        };
        if !self.seen.insert(name.to_owned()) {
            return Err(Error::rejected(format!(
                "database.json lists table {name:?} twice"
            )));
        }
        let mut idx = Vec::with_capacity(columns.len());
        for (col, _) in columns {
            let Some(i) = table.columns.iter().position(|c| &c.name == col) else {
                return Err(Error::rejected(format!(
                    "database.json has column {col:?} in table {name:?}, which this database does not have"
                )));
            };
            if idx.contains(&i) {
                return Err(Error::rejected(format!(
                    "database.json lists column {col:?} of table {name:?} twice"
                )));
            }
            idx.push(i);
        }
        self.table = Some((table, idx));
        self.row = 0;
        Ok(())
    }

    fn row(&mut self, row: &mut Vec<Value>) -> Result<()> {
        let Some((table, idx)) = &self.table else {
            return Err(Error::rejected(
                "database.json has a row outside of a table",
            ));
        };
        self.row += 1;
        self.rows += 1;
        if row.len() != idx.len() {
            return Err(Error::rejected(format!(
                "table {:?} row {} in database.json has {} values, expected {}",
                table.name,
                self.row,
                row.len(),
                idx.len()
            )));
        }
        for (v, &i) in row.iter().zip(idx) {
            let col = &table.columns[i];
            let ok = match (v, col.affinity()) {
                (Value::Unsupported(_) | Value::Bool(_), _) => false,
                (Value::Null, _) => !col.not_null || col.primary_key > 0,
                (Value::Text(_) | Value::Blob(_), Affinity::Integer | Affinity::Real) => false,
                (Value::Int(_) | Value::Real(_), Affinity::Text) => false,
                _ => true,
            };
            if !ok {
                return Err(Error::rejected(format!(
                    "table {:?} column {:?} (type {}) in database.json holds {} in row {}",
                    table.name,
                    col.name,
                    if col.declared_type.is_empty() {
                        "any"
                    } else {
                        &col.declared_type
                    },
                    v.kind(),
                    self.row
                )));
            }
        }
        Ok(())
    }

    fn end_table(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Writes the extracted tree. Every root is created fresh, so nothing under it can be a
/// symlink planted by someone else, and validated paths cannot leave it.
struct Extractor<'t> {
    targets: &'t StagingTargets,
    /// Bytes the archive's files take (`totals.bytes` of the manifest).
    needed: u64,
    /// Everything this extraction created at the top level, removed on failure.
    created_roots: Vec<PathBuf>,
    created_dirs: HashSet<PathBuf>,
    /// Folder modes and mtimes, applied at the end (deepest first) so a read-only folder does
    /// not stop its own extraction and file writes do not reset mtimes.
    dir_meta: Vec<(PathBuf, u32, u64)>,
    extracted_dirs: std::collections::BTreeSet<String>,
    extracted_plugins: std::collections::BTreeSet<String>,
}

impl<'t> Extractor<'t> {
    fn new(targets: &'t StagingTargets) -> Result<Self> {
        let all = targets
            .directories
            .values()
            .chain(targets.plugins.iter())
            .chain([&targets.database_json]);
        for p in all {
            if p.symlink_metadata().is_ok() {
                return Err(Error::conflict(format!(
                    "staging path {} already exists",
                    p.display()
                )));
            }
        }
        Ok(Extractor {
            targets,
            needed: 0,
            created_roots: Vec::new(),
            created_dirs: HashSet::new(),
            dir_meta: Vec::new(),
            extracted_dirs: Default::default(),
            extracted_plugins: Default::default(),
        })
    }

    /// The destination for a role, creating its root on first use; None when not extracted.
    fn dest(&mut self, role: &Role) -> Result<Option<PathBuf>> {
        let (root, rest) = match role {
            Role::Data { name, rest } => match self.targets.directories.get(name) {
                Some(root) => {
                    self.extracted_dirs.insert(name.clone());
                    (root.clone(), rest.clone())
                }
                None => return Ok(None),
            },
            Role::Plugin { id, rest } => match &self.targets.plugins {
                Some(root) => {
                    self.extracted_plugins.insert(id.clone());
                    (
                        root.clone(),
                        if rest.is_empty() {
                            id.clone()
                        } else {
                            format!("{id}/{rest}")
                        },
                    )
                }
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        if !self.created_dirs.contains(&root) {
            self.check_space(&root)?;
            std::fs::create_dir(&root).map_err(|e| {
                Error::internal(
                    format!("cannot create the staging folder {}", root.display()),
                    e,
                )
            })?;
            self.created_roots.push(root.clone());
            self.created_dirs.insert(root.clone());
        }
        Ok(Some(if rest.is_empty() {
            root
        } else {
            root.join(rest)
        }))
    }

    /// Refuses to start extracting when the disk cannot hold the archive's content (as the
    /// manifest states it; the size limits guard against a manifest that lies).
    fn check_space(&self, root: &Path) -> Result<()> {
        let parent = root.parent().unwrap_or(Path::new("."));
        match free_bytes(parent) {
            Some(free) if free < self.needed => Err(Error::rejected(format!(
                "not enough free disk space to restore this archive: it needs {} MiB, {} has {} MiB free",
                self.needed.div_ceil(1 << 20),
                parent.display(),
                free >> 20
            ))),
            _ => Ok(()),
        }
    }

    fn ensure_dir(&mut self, dir: &Path) -> Result<()> {
        if self.created_dirs.contains(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(parent)?;
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => {
                return Err(Error::internal(
                    format!("cannot create the staging folder {}", dir.display()),
                    e,
                ));
            }
        }
        self.created_dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn dir(&mut self, role: &Role, mode: u32, mtime: u64) -> Result<()> {
        if let Some(dest) = self.dest(role)? {
            self.ensure_dir(&dest)?;
            self.dir_meta.push((dest, mode, mtime));
        }
        Ok(())
    }

    fn file(&mut self, role: &Role) -> Result<Option<(BufWriter<File>, PathBuf)>> {
        let Some(dest) = self.dest(role)? else {
            return Ok(None);
        };
        if let Some(parent) = dest.parent() {
            self.ensure_dir(parent)?;
        }
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&dest)
            .map_err(|e| {
                Error::internal(
                    format!("cannot create the staged file {}", dest.display()),
                    e,
                )
            })?;
        Ok(Some((BufWriter::with_capacity(256 << 10, f), dest)))
    }

    fn database_file(&mut self) -> Result<BufWriter<File>> {
        let path = &self.targets.database_json;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                Error::internal(
                    format!("cannot create the staged database {}", path.display()),
                    e,
                )
            })?;
        self.created_roots.push(path.clone());
        Ok(BufWriter::with_capacity(1 << 20, f))
    }

    fn finish(&mut self) -> Result<()> {
        self.dir_meta
            .sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        for (dir, mode, mtime) in &self.dir_meta {
            let set = || -> io::Result<()> {
                File::open(dir)?
                    .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(*mtime))?;
                std::fs::set_permissions(
                    dir,
                    std::fs::Permissions::from_mode((mode & SAFE_MODE_BITS) | 0o700),
                )
            };
            set().map_err(|e| {
                Error::internal(
                    format!("cannot set the mode of staged folder {}", dir.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }

    fn remove_all(&mut self) {
        for root in self.created_roots.drain(..) {
            if root.is_dir() {
                let _ = std::fs::remove_dir_all(&root);
            } else {
                let _ = std::fs::remove_file(&root);
            }
        }
    }
}

fn finish_file((w, path): (BufWriter<File>, PathBuf), mode: u32, mtime: u64) -> io::Result<()> {
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))?;
    // Owner keeps read/write so restore and cleanup can always handle the file.
    std::fs::set_permissions(
        &path,
        std::fs::Permissions::from_mode((mode & SAFE_MODE_BITS) | 0o600),
    )
}

/// The mode bits an archive may set on restored files and folders: permission bits only
/// (never setuid, setgid or sticky) and never group- or world-writable (a umask of 022), so
/// a hostile archive cannot plant a setuid binary or a file anyone may rewrite.
const SAFE_MODE_BITS: u32 = 0o755;

/// Free bytes for unprivileged users on the filesystem holding `path`.
#[allow(unsafe_code)] // statvfs, see SAFETY below
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path; `st` is plain data statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_path_refuses_escapes_and_odd_names() {
        let l = Limits::default();
        assert_eq!(
            safe_path(b"data/logos/a.svg", false, &l).expect("fine"),
            "data/logos/a.svg"
        );
        assert_eq!(
            safe_path(b"data/logos/", true, &l).expect("fine"),
            "data/logos"
        );
        for bad in [
            &b"../x"[..],
            b"data/../../x",
            b"/etc/passwd",
            b"data//x",
            b"./data/x",
            b"data/\xff",
        ] {
            let e = safe_path(bad, false, &l).expect_err("refused");
            assert_eq!(e.kind(), ErrorKind::Rejected, "{bad:?}");
        }
    }

    #[test]
    fn checksum_lines_parse_both_forms() {
        let h = "a".repeat(64);
        assert_eq!(
            parse_checksum_line(&format!("{h}  data/x")),
            Some((h.clone(), "data/x".into()))
        );
        assert_eq!(
            parse_checksum_line(&format!("\\{h}  data/a\\\\b\\nc")),
            Some((h.clone(), "data/a\\b\nc".into()))
        );
        assert_eq!(parse_checksum_line("xyz  data/x"), None);
    }
}
