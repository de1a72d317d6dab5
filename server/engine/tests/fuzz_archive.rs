//! Fuzz target for the archive validator (`archive::verify_archive`, the streaming check of
//! an uploaded `.tar.gz`).
//!
//! A small generator builds valid archives structurally (manifest.json, database.json,
//! `data/<name>/` trees, `plugins/<id>/` files, checksums.sha256, then tar with GNU or PAX long
//! names and gzip in one or several members), and mutations break them: byte flips, cuts and
//! insertions in the tar and the gzip stream, `..` and absolute paths, symlinks, hard links,
//! devices, huge and deep paths, duplicate and missing entries, wrong checksums, entries out
//! of order, edited header sizes, unlisted files, manifest edits.
//!
//! Properties, for every input: the verifier returns (no panic, no hang: a watchdog aborts a
//! case that runs past [`CASE_LIMIT`]), its heap stays bounded, and a refusal is a Rejected
//! error with a message. An unmutated archive is accepted. A mutation that changes content
//! the checksums cover (or a path, a type, the order the format fixes) is refused; when any
//! other mutation is accepted, every covered file reads back exactly as generated.
//!
//! CI runs a bounded number of cases; `PROPTEST_CASES=N` runs more (see `fuzz.sh`).

mod fuzz_support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use engine::ErrorKind;
use engine::archive::dbjson_fuzzing::{self as dbjson, Doc, Value};
use engine::archive::{self, ColumnInfo, Limits, SchemaInfo, TableInfo};
use proptest::prelude::*;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: fuzz_support::Counting = fuzz_support::Counting;

/// One case may take this long before the watchdog calls it a hang (debug build, loaded
/// machine; a case normally takes about a millisecond).
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Heap a verification may hold beyond 4x the decompressed archive and 4x the names limit:
/// its read buffers (64 KiB + 256 KiB + 256 KiB + the inflater's window) and bookkeeping.
const HEAP_SLACK: usize = 2 << 20;

/// The production limits with a smaller cap on entry names, so the memory bound below is
/// tight enough to catch a verifier that keeps more than the names it counts.
fn limits() -> Limits {
    Limits {
        max_total_path_bytes: 4 << 20,
        ..Limits::default()
    }
}

fn col(name: &str, ty: &str, not_null: bool, pk: i64) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        declared_type: ty.into(),
        not_null,
        primary_key: pk,
    }
}

/// The content schema the archives are checked against.
fn schema() -> SchemaInfo {
    SchemaInfo {
        postgres: None,
        schema_version: 3,
        tables: vec![
            TableInfo {
                name: "channels".into(),
                columns: vec![
                    col("id", "INTEGER", false, 1),
                    col("name", "TEXT", true, 0),
                    col("logo", "BLOB", false, 0),
                    col("number", "REAL", false, 0),
                ],
                foreign_keys: vec![],
            },
            TableInfo {
                name: "settings".into(),
                columns: vec![col("key", "TEXT", false, 1), col("value", "", false, 0)],
                foreign_keys: vec![],
            },
        ],
    }
}

// ---- The generator ----

/// How names longer than the 100 bytes of a tar header are written.
#[derive(Debug, Clone, Copy)]
enum LongNames {
    Gnu,
    Pax,
}

/// A valid archive, before it is written.
#[derive(Debug, Clone)]
struct Spec {
    channels: Vec<(String, Option<Vec<u8>>, Option<f64>)>,
    settings: Vec<Value>,
    /// (name, contributed_by, files as (relative path, bytes)).
    dirs: Vec<(String, String, BTreeMap<String, Vec<u8>>)>,
    plugins: Vec<(String, BTreeMap<String, Vec<u8>>)>,
    /// Write folder entries (`data/`, `data/<name>/`, subfolders) or leave them implied.
    folders: bool,
    long_names: LongNames,
    /// Gzip level and where the tar is cut into gzip members (fractions of its length).
    level: u32,
    members: Vec<f64>,
    /// An extra manifest field a future version might add.
    extra: Option<(String, String)>,
}

/// One tar entry as written: everything a header can say, taken literally.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    path: Vec<u8>,
    kind: u8,
    data: Vec<u8>,
    mode: u32,
    link: Vec<u8>,
    /// A size field that disagrees with the data (the data is still written).
    size: Option<u64>,
}

impl Entry {
    fn file(path: &str, data: Vec<u8>) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: b'0',
            data,
            mode: 0o644,
            link: vec![],
            size: None,
        }
    }
    fn dir(path: &str) -> Entry {
        Entry {
            path: format!("{path}/").into_bytes(),
            kind: b'5',
            data: vec![],
            mode: 0o755,
            link: vec![],
            size: None,
        }
    }
    fn is_file(&self) -> bool {
        self.kind == b'0'
    }
}

/// A path component that is valid on disk and in the format: printable, quotes, backslash,
/// spaces, unicode, even a newline (checksums.sha256 then uses its escaped form).
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_]{1,12}(\\.[a-z]{1,4})?",
        "[a-zA-Z0-9 ._\\-\"'\\\\äø✓\n]{1,20}",
        "[a-z]{150,250}",
    ]
    .prop_filter("not . or .., no leading dot clash", |c| {
        c != "." && c != ".." && !c.contains('/') && !c.contains('\0')
    })
}

fn files(max: usize) -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(component(), 1..4),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                (0usize..3000).prop_map(|n| vec![b'z'; n]),
            ],
        ),
        0..max,
    )
    .prop_map(|list| {
        // Keep paths that do not clash: no path equal to or inside another file's path.
        let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (parts, data) in list {
            let path = parts.join("/");
            if path.len() > 3000 {
                continue;
            }
            let clash = out.keys().any(|p| {
                p == &path
                    || path.starts_with(&format!("{p}/"))
                    || p.starts_with(&format!("{path}/"))
            });
            if !clash {
                out.insert(path, data);
            }
        }
        out
    })
}

/// Directory names: plain names (no leading dot, no slash), unique.
fn plugin_dir_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9 _\\-äø]{0,20}"
}

fn spec() -> impl Strategy<Value = Spec> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN is null", |f| !f.is_nan())
            .prop_map(Value::Real),
        any::<String>().prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Blob),
    ];
    let channels = proptest::collection::vec(
        (
            any::<String>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)),
            proptest::option::of(any::<f64>().prop_filter("NaN is null", |f| !f.is_nan())),
        ),
        0..5,
    );
    let builtin = proptest::sample::subsequence(vec!["logos", "recordings"], 0..=2);
    let dirs = (
        builtin,
        proptest::collection::vec(plugin_dir_name(), 0..2),
        proptest::collection::vec(files(5), 4),
    )
        .prop_map(|(builtin, plugin, mut trees)| {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            for name in builtin {
                seen.insert(name.to_string());
                out.push((
                    name.to_string(),
                    "backstop".to_string(),
                    trees.pop().unwrap_or_default(),
                ));
            }
            for name in plugin {
                if seen.insert(name.clone()) {
                    out.push((
                        name,
                        "custom-dirs".to_string(),
                        trees.pop().unwrap_or_default(),
                    ));
                }
            }
            out
        });
    let plugins = proptest::collection::btree_map("[a-z0-9][a-z0-9\\-]{0,10}", files(3), 0..2)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    (
        channels,
        proptest::collection::vec(value, 0..4),
        dirs,
        plugins,
        any::<bool>(),
        prop_oneof![Just(LongNames::Gnu), Just(LongNames::Pax)],
        0u32..10,
        proptest::collection::vec(0.0f64..1.0, 0..3),
        proptest::option::of(("[a-z_]{1,10}", ".{0,20}")),
    )
        .prop_map(
            |(
                channels,
                settings,
                mut dirs,
                mut plugins,
                folders,
                long_names,
                level,
                members,
                extra,
            )| {
                if let LongNames::Pax = long_names {
                    // The tar crate splits PAX records at newlines, so it cannot read back a
                    // PAX path holding one (GNU tar can); keep such names to GNU long names.
                    let strip = |files: &mut BTreeMap<String, Vec<u8>>, root: usize| {
                        *files = std::mem::take(files)
                            .into_iter()
                            .map(|(p, d)| {
                                if root + p.len() > 90 {
                                    (p.replace('\n', " "), d)
                                } else {
                                    (p, d)
                                }
                            })
                            .collect();
                    };
                    for (name, _, files) in &mut dirs {
                        strip(files, name.len() + 6);
                    }
                    for (id, files) in &mut plugins {
                        strip(files, id.len() + 9);
                    }
                }
                Spec {
                    channels,
                    settings,
                    dirs,
                    plugins,
                    folders,
                    long_names,
                    level,
                    members,
                    extra,
                }
            },
        )
}

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// A checksums.sha256 line, escaped as GNU sha256sum does for backslashes and newlines.
fn checksum_line(path: &str, data: &[u8]) -> String {
    if path.contains(['\\', '\n', '\r']) {
        let escaped = path
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{}  {escaped}\n", sha(data))
    } else {
        format!("{}  {path}\n", sha(data))
    }
}

impl Spec {
    fn database_json(&self) -> Vec<u8> {
        let channels = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, (name, logo, number))| {
                vec![
                    Value::Int(i as i64 + 1),
                    Value::Text(name.clone()),
                    logo.clone().map(Value::Blob).unwrap_or(Value::Null),
                    number.map(Value::Real).unwrap_or(Value::Null),
                ]
            })
            .collect();
        let settings = self
            .settings
            .iter()
            .enumerate()
            .map(|(i, v)| vec![Value::Text(format!("key{i}")), v.clone()])
            .collect();
        let cols = |c: &[(&str, &str)]| {
            c.iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect()
        };
        dbjson::write(&Doc {
            schema_version: 3,
            tables: vec![
                (
                    "channels".into(),
                    cols(&[
                        ("id", "INTEGER"),
                        ("name", "TEXT"),
                        ("logo", "BLOB"),
                        ("number", "REAL"),
                    ]),
                    channels,
                ),
                (
                    "settings".into(),
                    cols(&[("key", "TEXT"), ("value", "")]),
                    settings,
                ),
            ],
        })
    }

    /// The entries of the archive, in the format's order.
    fn entries(&self) -> Vec<Entry> {
        let db = self.database_json();
        let mut content: Vec<Entry> = vec![Entry::file("database.json", db.clone())];
        let folder = |out: &mut Vec<Entry>, seen: &mut BTreeSet<String>, path: &str| {
            if self.folders && seen.insert(path.to_owned()) {
                out.push(Entry::dir(path));
            }
        };
        let mut seen = BTreeSet::new();
        let mut total = (1u64, db.len() as u64);
        let mut tree = |out: &mut Vec<Entry>,
                        seen: &mut BTreeSet<String>,
                        root: String,
                        files: &BTreeMap<String, Vec<u8>>| {
            folder(out, seen, &root);
            for (rel, data) in files {
                let parts: Vec<&str> = rel.split('/').collect();
                for i in 1..parts.len() {
                    folder(out, seen, &format!("{root}/{}", parts[..i].join("/")));
                }
                out.push(Entry::file(&format!("{root}/{rel}"), data.clone()));
                total.0 += 1;
                total.1 += data.len() as u64;
            }
        };
        if !self.dirs.is_empty() {
            folder(&mut content, &mut seen, "data");
        }
        for (name, _, files) in &self.dirs {
            tree(&mut content, &mut seen, format!("data/{name}"), files);
        }
        if !self.plugins.is_empty() {
            folder(&mut content, &mut seen, "plugins");
        }
        for (id, files) in &self.plugins {
            tree(&mut content, &mut seen, format!("plugins/{id}"), files);
        }

        let mut manifest = serde_json::json!({
            "format": "backstop-backup",
            "format_version": 1,
            "created_at": "2026-01-02T03:04:05Z",
            "app_version": "0.1.0",
            "trigger": "manual",
            "include_recordings": self.dirs.iter().any(|d| d.0 == "recordings"),
            "database": {"file": "database.json", "engine": "sqlite", "schema_version": 3,
                "tables": 2, "rows": self.channels.len() + self.settings.len(), "sha256": sha(&db)},
            "directories": self.dirs.iter().map(|(name, by, files)| serde_json::json!({
                "name": name, "archive_path": format!("data/{name}"), "files": files.len(),
                "bytes": files.values().map(|d| d.len()).sum::<usize>(), "contributed_by": by,
            })).collect::<Vec<_>>(),
            "missing_directories": [],
            "plugins": self.plugins.iter().map(|(id, files)| serde_json::json!({
                "id": id, "version": "1.0.0", "files": files.len(),
                "bytes": files.values().map(|d| d.len()).sum::<usize>(),
            })).collect::<Vec<_>>(),
            "annotations": [],
            "totals": {"files": total.0, "bytes": total.1},
        });
        if let Some((k, v)) = &self.extra
            && manifest.get(k).is_none()
        {
            manifest[k] = serde_json::json!(v);
        }
        let mut out = vec![Entry::file(
            "manifest.json",
            serde_json::to_vec_pretty(&manifest).expect("json"),
        )];
        let sums: String = content
            .iter()
            .filter(|e| e.is_file())
            .map(|e| checksum_line(std::str::from_utf8(&e.path).expect("utf8"), &e.data))
            .collect();
        out.extend(content);
        out.push(Entry::file("checksums.sha256", sums.into_bytes()));
        out
    }
}

/// Recomputes checksums.sha256 from the entries (so only the edit itself is wrong).
fn fix_checksums(entries: &mut [Entry]) {
    let sums: String = entries
        .iter()
        .filter(|e| e.is_file() && e.path != b"manifest.json" && e.path != b"checksums.sha256")
        .filter_map(|e| Some(checksum_line(std::str::from_utf8(&e.path).ok()?, &e.data)))
        .collect();
    if let Some(c) = entries.iter_mut().find(|e| e.path == b"checksums.sha256") {
        c.data = sums.into_bytes();
    }
}

/// Writes one header block (and a GNU long-name entry or a PAX header before it when the
/// name does not fit), taking every field literally.
fn write_entry(out: &mut Vec<u8>, e: &Entry, long: LongNames) {
    let pad = |out: &mut Vec<u8>| out.resize(out.len().div_ceil(512) * 512, 0);
    let header = |name: &[u8], kind: u8, size: u64, mode: u32, link: &[u8]| {
        let mut h = tar::Header::new_gnu();
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    };
    if e.path.len() > 100 {
        match long {
            LongNames::Gnu => {
                let mut name = e.path.clone();
                name.push(0);
                out.extend_from_slice(
                    header(b"././@LongLink", b'L', name.len() as u64, 0o644, b"").as_bytes(),
                );
                out.extend_from_slice(&name);
                pad(out);
            }
            LongNames::Pax => {
                // "<len> path=<name>\n", where <len> counts itself.
                let body = e.path.len() + " path=\n".len();
                let mut len = body + 1;
                while len != body + len.to_string().len() {
                    len = body + len.to_string().len();
                }
                let mut record = format!("{len} path=").into_bytes();
                record.extend_from_slice(&e.path);
                record.push(b'\n');
                out.extend_from_slice(
                    header(b"PaxHeader", b'x', record.len() as u64, 0o644, b"").as_bytes(),
                );
                out.extend_from_slice(&record);
                pad(out);
            }
        }
    }
    let size = e.size.unwrap_or(e.data.len() as u64);
    out.extend_from_slice(header(&e.path, e.kind, size, e.mode, &e.link).as_bytes());
    out.extend_from_slice(&e.data);
    pad(out);
}

fn tar_bytes(entries: &[Entry], long: LongNames) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write_entry(&mut out, e, long);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Gzip, cut into members at the given fractions of the input (as the parallel writer does).
fn gzip(data: &[u8], level: u32, cuts: &[f64]) -> Vec<u8> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|f| (f * data.len() as f64) as usize)
        .collect();
    at.push(data.len());
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for end in at {
        if end <= start && !(start == 0 && end == data.len()) {
            continue;
        }
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(&data[start..end]).expect("compress");
        out.extend_from_slice(&e.finish().expect("finish"));
        start = end;
    }
    out
}

// ---- Mutations ----

#[derive(Debug, Clone)]
enum Mutation {
    // Refused whatever the rest of the archive holds.
    DotDot {
        entry: usize,
        at: usize,
    },
    Absolute {
        entry: usize,
    },
    Special {
        entry: usize,
        kind: u8,
        link: &'static str,
    },
    HugePath {
        entry: usize,
        len: usize,
    },
    Duplicate {
        entry: usize,
    },
    MoveManifestOrChecksums {
        last: bool,
        to: usize,
    },
    RemoveFile {
        file: usize,
    },
    FlipContent {
        file: usize,
        at: usize,
        xor: u8,
    },
    AppendContent {
        file: usize,
        bytes: Vec<u8>,
    },
    WrongChecksum {
        line: usize,
        digit: usize,
    },
    WrongDatabaseSha,
    Unlisted {
        path: &'static str,
    },
    InsideFile {
        file: usize,
    },
    FileOverFolder,
    BadName {
        entry: usize,
        name: &'static [u8],
    },
    ManifestRefused {
        edit: usize,
    },
    TrailingTarGarbage {
        bytes: Vec<u8>,
    },
    SizeTooLarge {
        entry: usize,
        size: u64,
    },
    // Anything may happen; if accepted, the covered content must be intact.
    Swap {
        a: usize,
        b: usize,
    },
    RemoveAny {
        entry: usize,
    },
    Kind {
        entry: usize,
        kind: u8,
    },
    Nul {
        entry: usize,
        at: usize,
    },
    SizeAny {
        entry: usize,
        size: u64,
    },
    ManifestAny {
        key: String,
        value: String,
    },
    FlipChecksums {
        at: usize,
        xor: u8,
    },
    FlipManifest {
        at: usize,
        xor: u8,
    },
    TarFlip {
        at: usize,
        xor: u8,
    },
    TarCut {
        at: usize,
    },
    TarInsert {
        at: usize,
        bytes: Vec<u8>,
    },
    GzFlip {
        at: usize,
        xor: u8,
    },
    GzCut {
        at: usize,
    },
    GzAppend {
        bytes: Vec<u8>,
    },
    ManyDeep {
        count: usize,
        depth: usize,
    },
    // Must still be accepted.
    DeepValid {
        depth: usize,
    },
}

impl Mutation {
    /// Whether the verifier must refuse the result.
    fn must_refuse(&self) -> bool {
        !matches!(
            self,
            Mutation::Swap { .. }
                | Mutation::RemoveAny { .. }
                | Mutation::Kind { .. }
                | Mutation::Nul { .. }
                | Mutation::SizeAny { .. }
                | Mutation::ManifestAny { .. }
                | Mutation::FlipChecksums { .. }
                | Mutation::FlipManifest { .. }
                | Mutation::TarFlip { .. }
                | Mutation::TarCut { .. }
                | Mutation::TarInsert { .. }
                | Mutation::GzFlip { .. }
                | Mutation::GzCut { .. }
                | Mutation::GzAppend { .. }
                | Mutation::ManyDeep { .. }
                | Mutation::DeepValid { .. }
        )
    }
}

const MANIFEST_REFUSED: &[(&str, &str)] = &[
    ("/format", "\"backstop-backop\""),
    ("/format_version", "2"),
    ("/format_version", "0"),
    ("/format_version", "\"1\""),
    ("/database/schema_version", "4"),
    ("/database/schema_version", "null"),
    ("/database/sha256", "null"),
    ("/directories", "{}"),
    ("/directories", "[{\"name\":\"../etc\"}]"),
    ("/directories", "[{\"name\":\"backups\"}]"),
    (
        "/directories",
        "[{\"name\":\".hidden\",\"contributed_by\":\"p\"}]",
    ),
    (
        "/directories",
        "[{\"name\":\"logos\"},{\"name\":\"logos\"}]",
    ),
    ("/directories", "[{\"contributed_by\":\"p\"}]"),
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = || any::<usize>();
    let bytes = |n| proptest::collection::vec(any::<u8>(), 1..n);
    prop_oneof![
        (i(), i()).prop_map(|(entry, at)| Mutation::DotDot { entry, at }),
        i().prop_map(|entry| Mutation::Absolute { entry }),
        (
            i(),
            prop::sample::select(vec![b'1', b'2', b'3', b'4', b'6']),
            prop::sample::select(vec!["/etc/passwd", "../../x", "data/logos", ""])
        )
            .prop_map(|(entry, kind, link)| Mutation::Special { entry, kind, link }),
        (i(), 4097usize..12000).prop_map(|(entry, len)| Mutation::HugePath { entry, len }),
        i().prop_map(|entry| Mutation::Duplicate { entry }),
        (any::<bool>(), i()).prop_map(|(last, to)| Mutation::MoveManifestOrChecksums { last, to }),
        i().prop_map(|file| Mutation::RemoveFile { file }),
        (i(), i(), 1u8..).prop_map(|(file, at, xor)| Mutation::FlipContent { file, at, xor }),
        (i(), bytes(20)).prop_map(|(file, bytes)| Mutation::AppendContent { file, bytes }),
        (i(), 0usize..64).prop_map(|(line, digit)| Mutation::WrongChecksum { line, digit }),
        Just(Mutation::WrongDatabaseSha),
        prop::sample::select(vec![
            "data/logos/new.svg",
            "data/unlisted/x",
            "etc/passwd",
            "x",
            "data/x",
            "plugins/p",
            "manifest.json/x"
        ])
        .prop_map(|path| Mutation::Unlisted { path }),
        i().prop_map(|file| Mutation::InsideFile { file }),
        Just(Mutation::FileOverFolder),
        (
            i(),
            prop::sample::select(vec![
                &b"data/logos/\xff\xfe"[..],
                b"data//logos/x",
                b"./manifest.json",
                b"data/./x",
                b"",
                b"/",
                b"data/logos/../../etc"
            ])
        )
            .prop_map(|(entry, name)| Mutation::BadName { entry, name }),
        (0..MANIFEST_REFUSED.len()).prop_map(|edit| Mutation::ManifestRefused { edit }),
        bytes(600)
            .prop_filter("not all zero", |b| b.iter().any(|&x| x != 0))
            .prop_map(|bytes| Mutation::TrailingTarGarbage { bytes }),
        (
            i(),
            prop_oneof![1u64 << 20..1 << 33, Just(u64::MAX >> 1), Just(8u64 << 30)]
        )
            .prop_map(|(entry, size)| Mutation::SizeTooLarge { entry, size }),
        (i(), i()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        i().prop_map(|entry| Mutation::RemoveAny { entry }),
        (i(), any::<u8>()).prop_map(|(entry, kind)| Mutation::Kind { entry, kind }),
        (i(), i()).prop_map(|(entry, at)| Mutation::Nul { entry, at }),
        (i(), 0u64..5000).prop_map(|(entry, size)| Mutation::SizeAny { entry, size }),
        (
            "[a-z_]{1,12}",
            prop::sample::select(vec![
                "null",
                "1",
                "-1",
                "\"x\"",
                "[]",
                "{}",
                "1e999",
                "18446744073709551616",
                "[{\"name\":\"logos\"}]"
            ])
        )
            .prop_map(|(key, value)| Mutation::ManifestAny {
                key,
                value: value.into()
            }),
        (i(), 1u8..).prop_map(|(at, xor)| Mutation::FlipChecksums { at, xor }),
        (i(), 1u8..).prop_map(|(at, xor)| Mutation::FlipManifest { at, xor }),
        (i(), 1u8..).prop_map(|(at, xor)| Mutation::TarFlip { at, xor }),
        i().prop_map(|at| Mutation::TarCut { at }),
        (i(), bytes(1100)).prop_map(|(at, bytes)| Mutation::TarInsert { at, bytes }),
        (i(), 1u8..).prop_map(|(at, xor)| Mutation::GzFlip { at, xor }),
        i().prop_map(|at| Mutation::GzCut { at }),
        bytes(64).prop_map(|bytes| Mutation::GzAppend { bytes }),
        (1usize..1500).prop_map(|depth| Mutation::DeepValid { depth }),
        (1usize..40, 100usize..2000).prop_map(|(count, depth)| Mutation::ManyDeep { count, depth }),
    ]
}

/// Indexes of the regular files that checksums or the manifest cover (not manifest.json,
/// not checksums.sha256).
fn covered(entries: &[Entry]) -> Vec<usize> {
    (0..entries.len())
        .filter(|&i| {
            let e = &entries[i];
            e.is_file() && e.path != b"manifest.json" && e.path != b"checksums.sha256"
        })
        .collect()
}

fn edit_manifest(entries: &mut [Entry], pointer: &str, value: serde_json::Value) {
    let m = &mut entries[0];
    let mut doc: serde_json::Value = serde_json::from_slice(&m.data).expect("manifest");
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let target = if parent.is_empty() {
        &mut doc
    } else {
        doc.pointer_mut(parent).expect("parent")
    };
    target[key] = value;
    m.data = serde_json::to_vec(&doc).expect("json");
}

/// `data/logos<top>/d/d/.../f`, `depth` levels deep (`top` holds a `#`, which generated
/// names never do, so it cannot clash with a generated file).
fn deep_path(top: &str, depth: usize) -> String {
    let mut path = format!("data/logos{top}");
    for _ in 0..depth {
        path.push_str("/d");
    }
    path.push_str("/f");
    path
}

/// Makes `data/logos/` a listed directory (the only one, when the spec had none).
fn ensure_logos(spec: &Spec, entries: &mut Vec<Entry>) {
    if !spec.dirs.iter().any(|d| d.0 == "logos") {
        edit_manifest(
            entries,
            "/directories",
            serde_json::json!([{"name": "logos"}]),
        );
        // Other directories are no longer listed: drop their entries.
        entries.retain(|e| !e.path.starts_with(b"data/") || e.path.starts_with(b"data/logos/"));
    }
}

/// What a mutated archive looks like: its bytes, and whether the mutation touched content.
struct Built {
    gz: Vec<u8>,
}

fn build(spec: &Spec, m: Option<&Mutation>) -> Built {
    let mut entries = spec.entries();
    let n = entries.len();
    let files = covered(&entries);
    let pick = |i: usize| i % n;
    let mut tar_edit: Option<&Mutation> = None;
    let mut gz_edit: Option<&Mutation> = None;
    if let Some(m) = m {
        match m {
            Mutation::DotDot { entry, at } => {
                let e = &mut entries[pick(*entry)];
                let mut parts: Vec<Vec<u8>> =
                    e.path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
                let at = at % (parts.len() + 1);
                parts.insert(at, b"..".to_vec());
                e.path = parts.join(&b'/');
            }
            Mutation::Absolute { entry } => {
                let e = &mut entries[pick(*entry)];
                e.path.insert(0, b'/');
            }
            Mutation::Special { entry, kind, link } => {
                let e = &mut entries[pick(*entry)];
                e.kind = *kind;
                e.link = link.as_bytes().to_vec();
                e.data.clear();
            }
            Mutation::HugePath { entry, len } => {
                let e = &mut entries[pick(*entry)];
                let mut p = b"data/logos/".to_vec();
                while p.len() < *len {
                    p.extend_from_slice(b"abcdefghij/");
                }
                p.truncate(*len);
                if p.ends_with(b"/") {
                    p.push(b'x');
                }
                e.path = p;
            }
            Mutation::Duplicate { entry } => {
                let i = pick(*entry);
                let copy = entries[i].clone();
                entries.insert(i + 1, copy);
            }
            Mutation::MoveManifestOrChecksums { last, to } => {
                let from = if *last { n - 1 } else { 0 };
                let e = entries.remove(from);
                // Anywhere but where it was.
                let mut to = to % n;
                if to == from {
                    to = if *last { 0 } else { n - 1 };
                }
                entries.insert(to, e);
            }
            Mutation::RemoveFile { file } => {
                entries.remove(files[file % files.len()]);
            }
            Mutation::FlipContent { file, at, xor } => {
                let e = &mut entries[files[file % files.len()]];
                if e.data.is_empty() {
                    e.data.push(*xor);
                } else {
                    let at = at % e.data.len();
                    e.data[at] ^= xor;
                }
            }
            Mutation::AppendContent { file, bytes } => {
                entries[files[file % files.len()]]
                    .data
                    .extend_from_slice(bytes);
            }
            Mutation::WrongChecksum { line, digit } => {
                let c = entries.last_mut().expect("checksums");
                let text = String::from_utf8(c.data.clone()).expect("utf8");
                let lines: Vec<&str> = text.lines().collect();
                let line = line % lines.len();
                let start: usize = lines[..line].iter().map(|l| l.len() + 1).sum();
                let at = start + usize::from(lines[line].starts_with('\\')) + digit;
                let old = c.data[at];
                c.data[at] = if old == b'0' { b'1' } else { b'0' };
            }
            Mutation::WrongDatabaseSha => {
                edit_manifest(
                    &mut entries,
                    "/database/sha256",
                    serde_json::json!(sha(b"other")),
                );
            }
            Mutation::Unlisted { path } => {
                entries.insert(n - 1, Entry::file(path, b"hello".to_vec()));
            }
            Mutation::InsideFile { file } => {
                let p = entries[files[file % files.len()]].path.clone();
                let mut path = p;
                path.extend_from_slice(b"/inside");
                let mut e = Entry::file("x", b"x".to_vec());
                e.path = path;
                entries.insert(n - 1, e);
                fix_checksums(&mut entries);
            }
            Mutation::FileOverFolder => {
                // database.json as a folder, then data/ as a file: one of them is there.
                entries.insert(n - 1, Entry::dir("database.json"));
            }
            Mutation::BadName { entry, name } => {
                entries[pick(*entry)].path = name.to_vec();
            }
            Mutation::ManifestRefused { edit } => {
                let (pointer, value) = MANIFEST_REFUSED[*edit];
                edit_manifest(
                    &mut entries,
                    pointer,
                    serde_json::from_str(value).expect("json"),
                );
            }
            Mutation::SizeTooLarge { entry, size } => {
                let i = pick(*entry);
                // Sizes beyond the archive: the read runs out of data (a file entry), or the
                // entry is not a file at all (then refused for its type or as a duplicate).
                entries[i].size = Some(*size);
            }
            Mutation::Swap { a, b } => entries.swap(pick(*a), pick(*b)),
            Mutation::RemoveAny { entry } => {
                entries.remove(pick(*entry));
            }
            Mutation::Kind { entry, kind } => entries[pick(*entry)].kind = *kind,
            Mutation::Nul { entry, at } => {
                let e = &mut entries[pick(*entry)];
                let at = at % (e.path.len() + 1);
                e.path.insert(at, 0);
            }
            Mutation::SizeAny { entry, size } => entries[pick(*entry)].size = Some(*size),
            Mutation::ManifestAny { key, value } => {
                edit_manifest(
                    &mut entries,
                    &format!("/{key}"),
                    serde_json::from_str(value).unwrap_or_default(),
                );
            }
            Mutation::FlipChecksums { at, xor } => {
                let c = entries.last_mut().expect("checksums");
                let at = at % c.data.len().max(1);
                if let Some(b) = c.data.get_mut(at) {
                    *b ^= xor;
                }
            }
            Mutation::FlipManifest { at, xor } => {
                let at = at % entries[0].data.len();
                entries[0].data[at] ^= xor;
            }
            Mutation::DeepValid { depth } => {
                ensure_logos(spec, &mut entries);
                let at = entries.len() - 1;
                entries.insert(
                    at,
                    Entry::file(&deep_path("/#deep", *depth), b"deep".to_vec()),
                );
                fix_checksums(&mut entries);
            }
            Mutation::ManyDeep { count, depth } => {
                ensure_logos(spec, &mut entries);
                for i in 0..*count {
                    let at = entries.len() - 1;
                    entries.insert(
                        at,
                        Entry::file(&deep_path(&format!("/#deep{i}"), *depth), vec![]),
                    );
                }
                fix_checksums(&mut entries);
            }
            Mutation::TrailingTarGarbage { .. }
            | Mutation::TarFlip { .. }
            | Mutation::TarCut { .. }
            | Mutation::TarInsert { .. } => tar_edit = Some(m),
            Mutation::GzFlip { .. } | Mutation::GzCut { .. } | Mutation::GzAppend { .. } => {
                gz_edit = Some(m)
            }
        }
    }
    let mut tar = tar_bytes(&entries, spec.long_names);
    match tar_edit {
        Some(Mutation::TrailingTarGarbage { bytes }) => tar.extend_from_slice(bytes),
        Some(Mutation::TarFlip { at, xor }) => {
            let at = at % tar.len();
            tar[at] ^= xor;
        }
        Some(Mutation::TarCut { at }) => tar.truncate(at % tar.len()),
        Some(Mutation::TarInsert { at, bytes }) => {
            let at = at % tar.len();
            tar.splice(at..at, bytes.iter().copied());
        }
        _ => {}
    }
    let mut gz = gzip(&tar, spec.level, &spec.members);
    match gz_edit {
        Some(Mutation::GzFlip { at, xor }) => {
            let at = at % gz.len();
            gz[at] ^= xor;
        }
        Some(Mutation::GzCut { at }) => gz.truncate(at % gz.len()),
        Some(Mutation::GzAppend { bytes }) => gz.extend_from_slice(bytes),
        _ => {}
    }
    Built { gz }
}

// ---- Running the verifier ----

thread_local! {
    /// One scratch folder per test thread, reused by every case.
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

fn scratch_file() -> PathBuf {
    SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| tempfile::tempdir().expect("tempdir"))
            .path()
            .join("upload.tar.gz")
    })
}

/// Runs the verifier on `gz` under the watchdog and the allocation counter; checks what holds
/// for every input.
fn verify(gz: &[u8], schema: &SchemaInfo) -> engine::Result<archive::VerifyReport> {
    let path = scratch_file();
    std::fs::write(&path, gz).expect("write archive");
    let decompressed = {
        let mut out = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(gz)
            .take(64 << 20)
            .read_to_end(&mut out);
        out.len()
    };
    let _watch = fuzz_support::watch(CASE_LIMIT, "fuzz_archive", gz);
    let (out, peak) = fuzz_support::peak_heap(|| {
        archive::verify_archive(
            &path,
            &limits(),
            schema,
            &[],
            &CancellationToken::new(),
            archive::no_progress(),
        )
    });
    assert!(
        peak <= 4 * decompressed.max(gz.len())
            + 4 * limits().max_total_path_bytes as usize
            + HEAP_SLACK,
        "verifying an archive of {} bytes ({decompressed} decompressed) held {peak} bytes of heap",
        gz.len()
    );
    if let Err(e) = &out {
        assert_eq!(e.kind(), ErrorKind::Rejected, "{}", e.detailed());
        assert!(!e.message().is_empty(), "a refusal without a message");
    }
    out
}

/// The regular files of an archive as the tar reader sees them (path -> bytes).
fn files_of(gz: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
    if let Ok(entries) = a.entries() {
        for mut e in entries.flatten() {
            if e.header().entry_type().is_file() {
                let path = e.path_bytes().to_vec();
                let mut data = Vec::new();
                if e.read_to_end(&mut data).is_err() {
                    break;
                }
                out.insert(path, data);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(fuzz_support::config(300))]

    #[test]
    fn generated_archives_are_accepted(spec in spec()) {
        let built = build(&spec, None);
        let report = verify(&built.gz, &schema()).map_err(|e| TestCaseError::fail(e.detailed()))?;
        let entries = spec.entries();
        prop_assert_eq!(report.files, entries.iter().filter(|e| e.is_file()).count() as u64);
        prop_assert_eq!(report.archive_bytes, built.gz.len() as u64);
        prop_assert_eq!(report.sha256, sha(&built.gz));
    }

    #[test]
    fn mutated_archives_are_refused_or_intact(spec in spec(), m in mutation()) {
        let original = build(&spec, None);
        let built = build(&spec, Some(&m));
        let result = verify(&built.gz, &schema());
        if let Mutation::DeepValid { .. } = m {
            result.map_err(|e| TestCaseError::fail(format!("a deep but valid path was refused: {}", e.detailed())))?;
            return Ok(());
        }
        if let Mutation::ManyDeep { .. } = m {
            // Valid but for its size: accepted, or refused for the names it implies.
            if let Err(e) = result {
                prop_assert!(e.message().contains("entry names add up to more than"), "{}", e.detailed());
            }
            return Ok(());
        }
        if m.must_refuse() {
            prop_assert!(result.is_err(), "{m:?} was accepted");
        } else if result.is_ok() {
            // Accepted: every file the checksums cover reads back as generated, and no file
            // under data/ or plugins/ appeared.
            let want = files_of(&original.gz);
            let got = files_of(&built.gz);
            for (path, data) in &want {
                if path == b"manifest.json" || path == b"checksums.sha256" {
                    continue;
                }
                prop_assert!(got.get(path) == Some(data), "{m:?} accepted with {} changed", String::from_utf8_lossy(path));
            }
            for path in got.keys() {
                prop_assert!(want.contains_key(path), "{m:?} accepted with a new file {}", String::from_utf8_lossy(path));
            }
        }
    }

    #[test]
    fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2000), gzipped in any::<bool>()) {
        let gz = if gzipped { gzip(&bytes, 1, &[]) } else { bytes };
        prop_assert!(verify(&gz, &schema()).is_err());
    }
}

/// What the generator had to avoid, shown on Backstop's own writer: a file whose name holds a
/// line break, in a path too long for a plain tar header, is written with a PAX `path`
/// record; the tar crate the verifier reads with splits PAX records at line breaks, so it
/// falls back to the truncated header name and the verifier refuses Backstop's own backup
/// (GNU tar reads it fine). The writer now skips such a name with a warning, as it does for
/// non-UTF-8 names, and archives everything else.
#[test]
fn backstop_verifies_its_own_archive_of_a_long_name_with_a_line_break() {
    use engine::archive::{ArchiveRequest, archive_name, dump_database, write_archive};
    use engine::plugins::DirectoryContribution;
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (stats, schema) = rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(tmp.path().join("app.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("db");
        sqlx::raw_sql("CREATE TABLE t (s TEXT);")
            .execute(&pool)
            .await
            .expect("schema");
        let stats = dump_database(
            &pool,
            0,
            &tmp.path().join("database.json"),
            &CancellationToken::new(),
        )
        .await
        .expect("dump");
        (stats, archive::content_schema(&pool).await.expect("schema"))
    });
    let logos = tmp.path().join("logos");
    std::fs::create_dir(&logos).expect("mkdir");
    std::fs::write(
        logos.join(format!("{}\nlogo.svg", "a".repeat(120))),
        b"<svg/>",
    )
    .expect("write");
    // A short name with a line break fits a plain header and is archived.
    std::fs::write(logos.join("short\nname.svg"), b"<svg/>").expect("write");
    std::fs::create_dir(tmp.path().join("backups")).expect("mkdir");
    let now = chrono::Utc::now();
    let out = write_archive(
        ArchiveRequest {
            dest_dir: tmp.path().join("backups"),
            file_name: archive_name(now, &tmp.path().join("backups")),
            created_at: now,
            app_version: "test".into(),
            trigger: "manual".into(),
            include_recordings: false,
            annotations: vec![],
            schema_version: 0,
            database_json: tmp.path().join("database.json"),
            database: stats,
            directories: vec![DirectoryContribution {
                name: "logos".into(),
                path: logos,
                contributed_by: "core".into(),
            }],
            missing_directories: vec![],
            plugin_files: vec![],
            plugins: vec![],
            encrypt_to: None,
            also_encrypted: None,
        },
        &CancellationToken::new(),
        archive::no_progress(),
    )
    .expect("archive written");
    let report = archive::verify_archive(
        &out.path,
        &Limits::default(),
        &schema,
        &[],
        &CancellationToken::new(),
        archive::no_progress(),
    )
    .expect("Backstop accepts the archive it wrote");
    assert_eq!(
        report.manifest.directories[0].files, 1,
        "the short name is archived"
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("line break"), "{:?}", out.warnings);
}
