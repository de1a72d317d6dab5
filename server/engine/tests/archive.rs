//! Archive format v1 end to end: real SQLite files, real archives, checked with GNU tar,
//! sha256sum and Python's tarfile, and tampered archives that validation must refuse.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::ErrorKind;
use engine::archive::{
    self, ArchiveOutcome, ArchiveRequest, Limits, SchemaInfo, StagingTargets, no_progress,
};
use engine::plugins::{Annotation, DirectoryContribution, FileContribution};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = r#"
CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
  installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
  checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);
INSERT INTO _sqlx_migrations VALUES (3, 'init', '2025-01-01', 1, x'00', 1);
CREATE TABLE streams (id INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL REFERENCES channels(id),
  url TEXT NOT NULL, priority INTEGER);
CREATE TABLE channels (id INTEGER PRIMARY KEY, group_id INTEGER REFERENCES channel_groups(id),
  name TEXT NOT NULL, number REAL, logo BLOB, added DATETIME, parent_id INTEGER REFERENCES channels(id));
CREATE TABLE channel_groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"#;

async fn open(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("open sqlite")
}

async fn schema_db(path: &Path) -> SqlitePool {
    let pool = open(path).await;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.expect("schema");
    pool
}

/// A content DB with every kind of value: NULLs, blobs (empty too), unicode, quotes,
/// extreme integers, reals, a self reference.
async fn seeded_db(path: &Path) -> SqlitePool {
    let pool = schema_db(path).await;
    sqlx::raw_sql(
        r#"
        INSERT INTO channel_groups VALUES (1, 'News'), (2, 'Sports "Live" \ ünïcødé ✓');
        INSERT INTO channels VALUES
          (1, 1, 'BBC One', 1.0, x'89504e470d0a1a0a00ff', '2025-01-02 03:04:05', NULL),
          (2, 2, 'Tab	and
newline', -2.5e-7, x'', NULL, 1),
          (3, NULL, 'No group', NULL, NULL, 1735689600, 2),
          (9223372036854775807, 1, 'max id', 1e300, NULL, 3.25, NULL);
        INSERT INTO streams VALUES (1, 1, 'http://a/1.m3u8', 1), (2, 1, 'http://a/2.m3u8', NULL),
          (3, 9223372036854775807, 'http://b/x', -9223372036854775808);
        INSERT INTO settings VALUES ('theme', 'dark'), ('max', 10), ('ratio', 0.5), ('blob', x'00'), ('none', NULL);
        "#,
    )
    .execute(&pool)
    .await
    .expect("seed");
    pool
}

/// Every row of every content table as SQL literals (`quote()` keeps the storage class).
async fn snapshot(pool: &SqlitePool) -> BTreeMap<String, Vec<String>> {
    let schema = archive::content_schema(pool).await.expect("schema");
    let mut out = BTreeMap::new();
    for t in &schema.tables {
        let cols = t
            .columns
            .iter()
            .map(|c| format!("quote(\"{}\")", c.name))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT {cols} FROM \"{}\" ORDER BY 1", t.name))
                .fetch_all(pool)
                .await
                .expect("select");
        out.insert(t.name.clone(), rows);
    }
    out
}

struct Fixture {
    tmp: TempDir,
    pool: SqlitePool,
    schema: SchemaInfo,
}

impl Fixture {
    async fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pool = seeded_db(&tmp.path().join("app.db")).await;
        let schema = archive::content_schema(&pool).await.expect("schema");
        for d in ["backups", "logos", "recordings", "scratch"] {
            std::fs::create_dir(tmp.path().join(d)).expect("mkdir");
        }
        let logos = tmp.path().join("logos");
        std::fs::create_dir(logos.join("sub")).expect("mkdir");
        for i in 0..20 {
            std::fs::write(
                logos.join(format!("logo_{i:02}.svg")),
                format!("<svg><title>{i}</title></svg>\n").repeat(i + 1),
            )
            .expect("write");
        }
        std::fs::write(logos.join("sub/nested name ü.svg"), b"<svg/>").expect("write");
        std::fs::write(logos.join("empty.svg"), b"").expect("write");
        std::fs::write(
            tmp.path().join("recordings/show.ts"),
            pseudo_random(300_000, 1),
        )
        .expect("write");
        std::fs::write(tmp.path().join("scratch/epg.xml"), b"<tv/>").expect("write");
        Fixture { tmp, pool, schema }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn backups(&self) -> PathBuf {
        self.path("backups")
    }

    async fn request(&self) -> ArchiveRequest {
        let db_json = self.path("scratch/database.json");
        let _ = std::fs::remove_file(&db_json);
        let stats = archive::dump_database(&self.pool, 3, &db_json, &CancellationToken::new())
            .await
            .expect("dump");
        let now = chrono::Utc::now();
        ArchiveRequest {
            dest_dir: self.backups(),
            file_name: archive::archive_name(now, &self.backups()),
            created_at: now,
            app_version: "0.1.0-test".into(),
            trigger: "manual".into(),
            include_recordings: true,
            annotations: vec![Annotation {
                plugin: "example".into(),
                step: "pre-backup".into(),
                text: "hello".into(),
            }],
            schema_version: 3,
            database_json: db_json,
            database: stats,
            directories: vec![
                DirectoryContribution {
                    name: "logos".into(),
                    path: self.path("logos"),
                    contributed_by: "core".into(),
                },
                DirectoryContribution {
                    name: "recordings".into(),
                    path: self.path("recordings"),
                    contributed_by: "recordings".into(),
                },
                DirectoryContribution {
                    name: "gone".into(),
                    path: self.path("does-not-exist"),
                    contributed_by: "custom-dirs".into(),
                },
            ],
            missing_directories: vec![],
            plugin_files: vec![FileContribution {
                plugin: "epg".into(),
                relative: "guide/epg.xml".into(),
                path: self.path("scratch/epg.xml"),
            }],
            plugins: vec![("epg".into(), "1.2.3".into())],
            encrypt_to: None,
            also_encrypted: None,
        }
    }

    async fn backup(&self) -> ArchiveOutcome {
        let req = self.request().await;
        tokio::task::spawn_blocking(move || {
            archive::write_archive(req, &CancellationToken::new(), no_progress())
        })
        .await
        .expect("join")
        .expect("archive written")
    }

    fn verify(&self, path: &Path) -> engine::Result<archive::VerifyReport> {
        self.verify_with(path, &Limits::default())
    }

    fn verify_with(&self, path: &Path, limits: &Limits) -> engine::Result<archive::VerifyReport> {
        archive::verify_archive(
            path,
            limits,
            &self.schema,
            &[],
            &CancellationToken::new(),
            no_progress(),
        )
    }
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let m = e.metadata().expect("meta");
            if m.is_dir() {
                tree_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn archive_lists_entries_in_design_order_for_gnu_tar() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    assert!(
        out.path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .starts_with("backstop-")
    );
    let listing = run(Command::new("tar").arg("tzf").arg(&out.path));
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names[0], "manifest.json");
    assert_eq!(names[1], "database.json");
    assert_eq!(*names.last().expect("last"), "checksums.sha256");
    let section = |n: &str| match n {
        n if n.starts_with("data/") => 1,
        n if n.starts_with("plugins/") => 2,
        _ => 0,
    };
    let middle: Vec<i32> = names[2..names.len() - 1]
        .iter()
        .map(|n| section(n))
        .collect();
    assert!(middle.iter().all(|&s| s > 0), "{names:?}");
    assert!(middle.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
    assert!(names.contains(&"data/logos/sub/nested name ü.svg"));
    assert!(names.contains(&"data/recordings/show.ts"));
    assert!(names.contains(&"plugins/epg/guide/epg.xml"));
    // Only the final archive is left: no .partial.
    assert_eq!(
        files_in(&f.backups()),
        vec![
            out.path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        ]
    );
}

#[tokio::test]
async fn gnu_tar_extracts_the_archive_and_sha256sum_check_passes() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let x = f.path("x");
    std::fs::create_dir(&x).expect("mkdir");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&out.path)
        .current_dir(&x));
    run(Command::new("sha256sum")
        .args(["-c", "--strict", "checksums.sha256"])
        .current_dir(&x));
    assert_eq!(
        std::fs::read(x.join("data/recordings/show.ts")).expect("read"),
        pseudo_random(300_000, 1)
    );
    // Entries carry uid/gid 0 and no user or group names.
    let verbose = run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&out.path));
    assert!(verbose.lines().all(|l| l.contains(" 0/0 ")), "{verbose}");
    // The archive's recorded hash is the file's hash.
    let sum = run(Command::new("sha256sum").arg(&out.path));
    assert_eq!(sum.split_whitespace().next(), Some(out.sha256.as_str()));
    assert_eq!(
        std::fs::metadata(&out.path).expect("meta").len(),
        out.size_bytes
    );
}

#[tokio::test]
async fn python_tarfile_data_filter_extracts_without_warnings() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let x = f.path("py");
    let script = "import sys, tarfile\n\
                  with tarfile.open(sys.argv[1]) as t:\n    t.extractall(sys.argv[2], filter='data')\n";
    let o = Command::new("python3")
        .args(["-W", "error", "-c", script])
        .arg(&out.path)
        .arg(&x)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(x.join("plugins/epg/guide/epg.xml").is_file());
}

#[tokio::test]
async fn manifest_counts_match_what_was_archived() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    // The manifest as it is written (the JSON contract of DESIGN section 3).
    let m = &serde_json::to_value(&out.manifest).expect("manifest encodes");
    assert_eq!(m["format"], "backstop-backup");
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["trigger"], "manual");
    assert_eq!(m["include_recordings"], true);
    assert_eq!(m["app_version"], "0.1.0-test");
    assert!(m["created_at"].as_str().expect("created_at").ends_with('Z'));
    assert_eq!(m["database"]["file"], "database.json");
    assert_eq!(m["database"]["engine"], "sqlite");
    assert_eq!(m["database"]["schema_version"], 3);
    assert_eq!(m["database"]["tables"], 4);
    assert_eq!(m["database"]["rows"], 2 + 4 + 3 + 5);
    let logo_bytes = tree_bytes(&f.path("logos"));
    let dirs = m["directories"].as_array().expect("directories");
    assert_eq!(dirs.len(), 2);
    assert_eq!(dirs[0]["name"], "logos");
    assert_eq!(dirs[0]["archive_path"], "data/logos");
    assert_eq!(dirs[0]["files"], 22);
    assert_eq!(dirs[0]["bytes"], logo_bytes);
    assert_eq!(dirs[0]["contributed_by"], "core");
    assert_eq!(dirs[1]["files"], 1);
    assert_eq!(dirs[1]["bytes"], 300_000);
    assert_eq!(m["missing_directories"], serde_json::json!(["gone"]));
    assert_eq!(
        m["plugins"],
        serde_json::json!([{"id": "epg", "version": "1.2.3", "files": 1, "bytes": 5}])
    );
    assert_eq!(m["annotations"][0]["text"], "hello");
    let db_bytes = std::fs::metadata(f.path("scratch/database.json"))
        .expect("meta")
        .len();
    assert_eq!(m["totals"]["files"], 1 + 22 + 1 + 1);
    assert_eq!(m["totals"]["bytes"], db_bytes + logo_bytes + 300_000 + 5);
    // The manifest inside the archive is the one returned.
    let report = f.verify(&out.path).expect("valid");
    assert_eq!(report.manifest, out.manifest);
    assert_eq!(report.sha256, out.sha256);
    assert!(report.ok);
}

#[tokio::test]
async fn symlinks_are_skipped_with_a_warning_and_never_followed() {
    let f = Fixture::new().await;
    std::os::unix::fs::symlink("/etc", f.path("logos/etc-link")).expect("symlink");
    std::os::unix::fs::symlink(f.path("logos/logo_00.svg"), f.path("logos/alias.svg"))
        .expect("symlink");
    let out = f.backup().await;
    assert_eq!(
        out.warnings
            .iter()
            .filter(|w| w.contains("symlink"))
            .count(),
        2,
        "{:?}",
        out.warnings
    );
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("data/logos/etc-link"))
    );
    let listing = run(Command::new("tar").arg("tzf").arg(&out.path));
    assert!(
        !listing.contains("etc-link") && !listing.contains("alias.svg"),
        "{listing}"
    );
    assert!(!listing.contains("passwd"));
    assert_eq!(out.manifest.directories[0].files, 22);
}

#[tokio::test]
async fn non_utf8_names_and_special_files_are_skipped_with_warnings() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new().await;
    let odd = f
        .path("logos")
        .join(std::ffi::OsStr::from_bytes(b"latin1-\xe9.svg"));
    std::fs::write(&odd, b"<svg/>").expect("write");
    run(Command::new("mkfifo").arg(f.path("logos/pipe")));
    let out = f.backup().await;
    assert!(
        out.warnings.iter().any(|w| w.contains("not valid UTF-8")),
        "{:?}",
        out.warnings
    );
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("data/logos/pipe") && w.contains("not a regular file")),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.manifest.directories[0].files, 22);
    f.verify(&out.path).expect("valid");
}

#[tokio::test]
async fn canceled_archive_returns_canceled_and_leaves_no_file() {
    let f = Fixture::new().await;
    // Big enough that finishing instead of canceling would take a while.
    for i in 0..4 {
        std::fs::write(
            f.path(&format!("recordings/big{i}.ts")),
            pseudo_random(16 << 20, i),
        )
        .expect("write");
    }
    let req = f.request().await;
    let cancel = CancellationToken::new();
    let canceled_at = Arc::new(Mutex::new(None));
    let progress: archive::ProgressFn = {
        let cancel = cancel.clone();
        let canceled_at = Arc::clone(&canceled_at);
        // The first report comes after the scan, with the .partial already created.
        Arc::new(move |_p: archive::Progress| {
            if !cancel.is_cancelled() {
                *canceled_at.lock().expect("lock") = Some(Instant::now());
                cancel.cancel();
            }
        })
    };
    let c = cancel.clone();
    let err = tokio::task::spawn_blocking(move || archive::write_archive(req, &c, progress))
        .await
        .expect("join")
        .expect_err("canceled");
    let returned = Instant::now();
    assert_eq!(err.kind(), ErrorKind::Canceled);
    assert_eq!(err.message(), "canceled");
    assert!(
        files_in(&f.backups()).is_empty(),
        "{:?}",
        files_in(&f.backups())
    );
    // How fast a cancel takes effect is measured by the benchmark, not asserted here
    // (timers on a shared machine flake); the point is that it stops part-way, cleanly.
    let at = canceled_at
        .lock()
        .expect("lock")
        .expect("progress was reported");
    assert!(at <= returned);
}

#[tokio::test]
async fn archive_canceled_before_start_leaves_no_file() {
    let f = Fixture::new().await;
    let req = f.request().await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = archive::write_archive(req, &cancel, no_progress()).expect_err("canceled");
    assert_eq!(
        (err.kind(), err.message()),
        (ErrorKind::Canceled, "canceled")
    );
    assert!(files_in(&f.backups()).is_empty());
}

#[tokio::test]
async fn canceled_dump_returns_canceled_and_removes_its_file() {
    let f = Fixture::new().await;
    let dest = f.path("scratch/canceled.json");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = archive::dump_database(&f.pool, 3, &dest, &cancel)
        .await
        .expect_err("canceled");
    assert_eq!(
        (err.kind(), err.message()),
        (ErrorKind::Canceled, "canceled")
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn file_that_grows_after_the_scan_is_cut_and_the_archive_stays_valid() {
    let f = Fixture::new().await;
    // Simulate the race deterministically: the scan sees 10 bytes, the write finds more.
    let req = f.request().await;
    let grow = f.path("recordings/show.ts");
    let progress: archive::ProgressFn = {
        let grow = grow.clone();
        let done = Arc::new(Mutex::new(false));
        Arc::new(move |_p: archive::Progress| {
            let mut d = done.lock().expect("lock");
            if !*d {
                *d = true;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&grow)
                    .expect("open");
                file.write_all(b"more data written during the backup")
                    .expect("append");
            }
        })
    };
    let out = archive::write_archive(req, &CancellationToken::new(), progress).expect("written");
    assert!(
        out.warnings.iter().any(|w| w.contains("grew")),
        "{:?}",
        out.warnings
    );
    f.verify(&out.path).expect("still valid");
    let x = f.path("x");
    std::fs::create_dir(&x).expect("mkdir");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&out.path)
        .current_dir(&x));
    run(Command::new("sha256sum")
        .args(["-c", "checksums.sha256"])
        .current_dir(&x));
    assert_eq!(
        std::fs::metadata(x.join("data/recordings/show.ts"))
            .expect("meta")
            .len(),
        300_000
    );
}

#[tokio::test]
async fn incompressible_data_is_stored_and_text_is_compressed() {
    let f = Fixture::new().await;
    std::fs::write(f.path("recordings/noise.ts"), pseudo_random(4 << 20, 9)).expect("write");
    std::fs::write(
        f.path("logos/big.svg"),
        "<svg><rect x=\"1\" y=\"2\" fill=\"#ffffff\"/></svg>\n".repeat(100_000),
    )
    .expect("write");
    let out = f.backup().await;
    let raw: u64 = 4 << 20;
    // Noise costs at most a little framing; 4.6 MB of SVG shrinks to almost nothing.
    assert!(out.size_bytes > raw, "{}", out.size_bytes);
    assert!(out.size_bytes < raw + 400_000, "{}", out.size_bytes);
    f.verify(&out.path).expect("valid");
}

// ---------------------------------------------------------------------------------------
// Dump and load
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn dump_orders_tables_parents_first_and_skips_internal_tables() {
    let f = Fixture::new().await;
    let dest = f.path("scratch/db.json");
    let stats = archive::dump_database(&f.pool, 3, &dest, &CancellationToken::new())
        .await
        .expect("dump");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dest).expect("read")).expect("json");
    assert_eq!(doc["format"], "backstop-database");
    assert_eq!(doc["engine"], "sqlite");
    assert_eq!(doc["schema_version"], 3);
    let names: Vec<&str> = doc["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["channel_groups", "channels", "settings", "streams"]);
    assert_eq!(stats.tables, 4);
    assert_eq!(stats.rows, 14);
    let channels = &doc["tables"][1];
    assert_eq!(
        channels["columns"][3],
        serde_json::json!({"name": "number", "type": "REAL"})
    );
    assert_eq!(
        channels["rows"][0][4],
        serde_json::json!({"$base64": "iVBORw0KGgoA/w=="})
    );
    assert_eq!(channels["rows"][0][3], serde_json::json!(1.0));
    assert!(channels["rows"][0][3].is_f64(), "REAL stays a float");
    assert_eq!(channels["rows"][2][1], serde_json::Value::Null);
    let sha = run(Command::new("sha256sum").arg(&dest));
    assert_eq!(sha.split_whitespace().next(), Some(stats.sha256.as_str()));
    assert_eq!(stats.bytes, std::fs::metadata(&dest).expect("meta").len());
}

#[tokio::test]
async fn dump_then_load_round_trip_preserves_every_row_blob_and_null() {
    let f = Fixture::new().await;
    let before = snapshot(&f.pool).await;
    let dest = f.path("scratch/db.json");
    archive::dump_database(&f.pool, 3, &dest, &CancellationToken::new())
        .await
        .expect("dump");

    // Into a fresh database with the same schema...
    let fresh = schema_db(&f.path("fresh.db")).await;
    let stats = archive::load_database(&fresh, &dest, &f.schema, &CancellationToken::new())
        .await
        .expect("load");
    assert_eq!((stats.tables, stats.rows), (4, 14));
    assert_eq!(snapshot(&fresh).await, before);

    // ...and over changed content, which is replaced entirely.
    sqlx::raw_sql("DELETE FROM streams; INSERT INTO channel_groups VALUES (7, 'extra'); UPDATE channels SET name = 'x';")
        .execute(&f.pool)
        .await
        .expect("mutate");
    archive::load_database(&f.pool, &dest, &f.schema, &CancellationToken::new())
        .await
        .expect("load");
    assert_eq!(snapshot(&f.pool).await, before);
}

#[tokio::test]
async fn load_with_a_broken_foreign_key_is_rejected_and_changes_nothing() {
    let f = Fixture::new().await;
    let before = snapshot(&f.pool).await;
    let doc = r#"{"format":"backstop-database","engine":"sqlite","schema_version":3,"tables":[
        {"name":"channel_groups","columns":[{"name":"id","type":"INTEGER"},{"name":"name","type":"TEXT"}],"rows":[[1,"a"]]},
        {"name":"channels","columns":[{"name":"id","type":"INTEGER"},{"name":"group_id","type":"INTEGER"},{"name":"name","type":"TEXT"}],
         "rows":[[1,1,"ok"],[2,42,"dangling"]]}]}"#;
    let path = f.path("scratch/bad.json");
    std::fs::write(&path, doc).expect("write");
    let err = archive::load_database(&f.pool, &path, &f.schema, &CancellationToken::new())
        .await
        .expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(
        err.message().contains("table channels"),
        "{}",
        err.message()
    );
    assert_eq!(snapshot(&f.pool).await, before);
}

#[tokio::test]
async fn load_with_a_value_of_the_wrong_type_is_rejected_and_changes_nothing() {
    let f = Fixture::new().await;
    let before = snapshot(&f.pool).await;
    let doc = r#"{"format":"backstop-database","engine":"sqlite","schema_version":3,"tables":[
        {"name":"channel_groups","columns":[{"name":"id","type":"INTEGER"},{"name":"name","type":"TEXT"}],"rows":[[1,"a"],["two","b"]]}]}"#;
    let path = f.path("scratch/bad.json");
    std::fs::write(&path, doc).expect("write");
    let err = archive::load_database(&f.pool, &path, &f.schema, &CancellationToken::new())
        .await
        .expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(
        err.message().contains("\"channel_groups\"") && err.message().contains("\"id\""),
        "{}",
        err.message()
    );
    assert_eq!(snapshot(&f.pool).await, before);
}

// ---------------------------------------------------------------------------------------
// Verify and extract
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn extract_to_staging_recreates_the_trees_and_the_database_file() {
    let f = Fixture::new().await;
    std::fs::set_permissions(
        f.path("logos/logo_01.svg"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .expect("chmod");
    let out = f.backup().await;
    let targets = StagingTargets {
        directories: [
            ("logos".to_string(), f.path("stage-logos")),
            ("recordings".to_string(), f.path("stage-rec")),
            ("absent".to_string(), f.path("stage-absent")),
        ]
        .into(),
        database_json: f.path("stage-db.json"),
        plugins: Some(f.path("stage-plugins")),
    };
    let report = archive::extract_to_staging(
        &out.path,
        &Limits::default(),
        &f.schema,
        &[],
        &targets,
        &CancellationToken::new(),
        no_progress(),
    )
    .expect("extracted");
    assert_eq!(report.directories, ["logos", "recordings"]);
    assert_eq!(report.plugins, ["epg"]);
    assert!(
        !f.path("stage-absent").exists(),
        "absent trees are not created"
    );
    for name in ["logo_07.svg", "sub/nested name ü.svg", "empty.svg"] {
        assert_eq!(
            std::fs::read(f.path("stage-logos").join(name)).expect("staged"),
            std::fs::read(f.path("logos").join(name)).expect("original"),
        );
    }
    let mode = std::fs::metadata(f.path("stage-logos/logo_01.svg"))
        .expect("meta")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::read(f.path("stage-db.json")).expect("db"),
        std::fs::read(f.path("scratch/database.json")).expect("db")
    );
    assert!(f.path("stage-plugins/epg/guide/epg.xml").is_file());
}

#[tokio::test]
async fn extracted_modes_are_masked_no_setuid_and_nothing_group_or_world_writable() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    // Rewrite every file entry's mode to setuid + world-writable, checksums still valid.
    let hostile = f.path("hostile.tar.gz");
    {
        let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(&out.path).expect("open"),
        ));
        let mut raws = Vec::new();
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path_bytes().to_vec();
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            let mode = if path.starts_with(b"data/") {
                0o7777
            } else {
                0o644
            };
            raws.push(Raw {
                path,
                kind,
                data,
                mode,
                link: None,
            });
        }
        std::fs::write(&hostile, gzip(&raw_tar(&raws))).expect("write");
    }
    let targets = StagingTargets {
        directories: [("logos".to_string(), f.path("stage-logos"))].into(),
        database_json: f.path("stage-db.json"),
        plugins: None,
    };
    archive::extract_to_staging(
        &hostile,
        &Limits::default(),
        &f.schema,
        &[],
        &targets,
        &CancellationToken::new(),
        no_progress(),
    )
    .expect("extracted");
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(f.path(p)).expect("meta").permissions(),
        ) & 0o7777
    };
    assert_eq!(
        mode("stage-logos/logo_01.svg"),
        0o755,
        "file: permission bits only, 022 masked"
    );
    assert_eq!(mode("stage-logos/sub"), 0o755, "folder: the same");
}

#[tokio::test]
async fn extract_of_a_tampered_archive_removes_everything_it_staged() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = repack(
        &out.path,
        &f.path("bad.tar.gz"),
        |path, data| {
            if path == "data/recordings/show.ts" {
                let mut d = data;
                d[10] ^= 1;
                d
            } else {
                data
            }
        },
        false,
    );
    let targets = StagingTargets {
        directories: [("logos".to_string(), f.path("stage-logos"))].into(),
        database_json: f.path("stage-db.json"),
        plugins: None,
    };
    let err = archive::extract_to_staging(
        &bad,
        &Limits::default(),
        &f.schema,
        &[],
        &targets,
        &CancellationToken::new(),
        no_progress(),
    )
    .expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(!f.path("stage-logos").exists());
    assert!(!f.path("stage-db.json").exists());
}

/// One tar entry for hand-made archives.
struct Raw {
    path: Vec<u8>,
    kind: tar::EntryType,
    data: Vec<u8>,
    mode: u32,
    link: Option<&'static str>,
}

fn raw_file(path: &str, data: &[u8]) -> Raw {
    Raw {
        path: path.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        mode: 0o644,
        link: None,
    }
}

/// Writes entries with headers taken literally (the tar crate's builder refuses `..`).
fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let name = &mut h.as_old_mut().name;
            name[..e.path.len()].copy_from_slice(&e.path);
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(1_700_000_000);
        if let Some(l) = e.link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("compress");
    e.finish().expect("finish")
}

/// Reads a valid archive, passes every file through `edit`, writes it again. With
/// `fix_sums`, the manifest's database hash and checksums.sha256 are recomputed so only the
/// edit itself is wrong.
fn repack(
    src: &Path,
    dest: &Path,
    edit: impl Fn(&str, Vec<u8>) -> Vec<u8>,
    fix_sums: bool,
) -> PathBuf {
    let mut entries: Vec<(String, tar::EntryType, Vec<u8>, u32)> = Vec::new();
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(src).expect("open"),
    ));
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = String::from_utf8(e.path_bytes().to_vec()).expect("utf8");
        let kind = e.header().entry_type();
        let mode = e.header().mode().expect("mode");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        let data = if kind.is_file() {
            edit(&path, data)
        } else {
            data
        };
        entries.push((path, kind, data, mode));
    }
    if fix_sums {
        use sha2::Digest;
        let hex = |d: &[u8]| hex::encode(sha2::Sha256::digest(d));
        let db = entries
            .iter()
            .find(|e| e.0 == "database.json")
            .map(|e| hex(&e.2));
        let mut sums = String::new();
        for (path, kind, data, _) in &entries {
            if kind.is_file() && path != "manifest.json" && path != "checksums.sha256" {
                sums.push_str(&format!("{}  {path}\n", hex(data)));
            }
        }
        for (path, _, data, _) in entries.iter_mut() {
            if path == "checksums.sha256" {
                *data = sums.clone().into_bytes();
            }
            if path == "manifest.json"
                && let Some(db) = &db
            {
                let mut m: serde_json::Value = serde_json::from_slice(data).expect("manifest");
                m["database"]["sha256"] = serde_json::json!(db);
                *data = serde_json::to_vec(&m).expect("json");
            }
        }
    }
    let raws: Vec<Raw> = entries
        .into_iter()
        .map(|(path, kind, data, mode)| Raw {
            path: path.into_bytes(),
            kind,
            data,
            mode,
            link: None,
        })
        .collect();
    std::fs::write(dest, gzip(&raw_tar(&raws))).expect("write");
    dest.to_path_buf()
}

fn assert_rejected(result: engine::Result<archive::VerifyReport>, needle: &str) {
    let err = result.expect_err("archive must be rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected, "{}", err.detailed());
    assert!(
        err.message().contains(needle),
        "expected {needle:?} in {:?}",
        err.message()
    );
}

#[tokio::test]
async fn verify_accepts_a_fresh_archive() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let report = f.verify(&out.path).expect("valid");
    assert!(report.ok);
    assert_eq!(report.files, 1 + 1 + 22 + 1 + 1 + 1);
    assert_eq!(report.archive_bytes, out.size_bytes);
    // A repack with recomputed sums is valid too (the test helper itself is sound).
    let same = repack(&out.path, &f.path("same.tar.gz"), |_, d| d, true);
    f.verify(&same).expect("repacked archive is valid");
}

#[tokio::test]
async fn verify_rejects_a_truncated_gzip() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bytes = std::fs::read(&out.path).expect("read");
    let cut = f.path("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    assert_rejected(f.verify(&cut), "truncated");
    // Cut inside the gzip trailer only: every tar entry is there, the stream is not whole.
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).expect("write");
    assert_rejected(f.verify(&cut), "truncated");
}

#[tokio::test]
async fn verify_rejects_trailing_garbage() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let mut bytes = std::fs::read(&out.path).expect("read");
    bytes.extend_from_slice(b"garbage after the gzip stream");
    let bad = f.path("trailing.tar.gz");
    std::fs::write(&bad, &bytes).expect("write");
    assert_rejected(f.verify(&bad), "unexpected data after its end");
}

#[tokio::test]
async fn verify_rejects_a_dotdot_path() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let tar = raw_tar(&[
        raw_file("manifest.json", &first_manifest(&out.path)),
        raw_file("data/logos/../../escape.txt", b"x"),
    ]);
    let p = f.path("dotdot.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "'..'");
}

/// The manifest bytes of a real archive, for hand-made ones.
fn first_manifest(archive: &Path) -> Vec<u8> {
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(archive).expect("open"),
    ));
    let mut e = a
        .entries()
        .expect("entries")
        .next()
        .expect("first")
        .expect("entry");
    let mut v = Vec::new();
    e.read_to_end(&mut v).expect("read");
    v
}

#[tokio::test]
async fn verify_rejects_an_absolute_path() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let tar = raw_tar(&[
        raw_file("manifest.json", &first_manifest(&out.path)),
        raw_file("/etc/cron.d/x", b"x"),
    ]);
    let p = f.path("abs.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "absolute path");
}

#[tokio::test]
async fn verify_rejects_a_symlink_entry() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let tar = raw_tar(&[
        raw_file("manifest.json", &first_manifest(&out.path)),
        Raw {
            path: b"data/logos/link".to_vec(),
            kind: tar::EntryType::Symlink,
            data: vec![],
            mode: 0o777,
            link: Some("/etc/passwd"),
        },
    ]);
    let p = f.path("symlink.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "is a symlink");
}

#[tokio::test]
async fn verify_rejects_a_hard_link_and_a_device() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    for (kind, what) in [
        (tar::EntryType::Link, "hard link"),
        (tar::EntryType::Char, "device"),
        (tar::EntryType::Fifo, "FIFO"),
    ] {
        let tar = raw_tar(&[
            raw_file("manifest.json", &first_manifest(&out.path)),
            Raw {
                path: b"data/logos/x".to_vec(),
                kind,
                data: vec![],
                mode: 0o644,
                link: Some("data/logos/y"),
            },
        ]);
        let p = f.path("odd.tar.gz");
        std::fs::write(&p, gzip(&tar)).expect("write");
        assert_rejected(f.verify(&p), what);
    }
}

#[tokio::test]
async fn verify_rejects_a_duplicate_entry() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let tar = raw_tar(&[
        raw_file("manifest.json", &first_manifest(&out.path)),
        raw_file("data/logos/a.svg", b"one"),
        raw_file("data/logos/a.svg", b"two"),
    ]);
    let p = f.path("dup.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "appears twice");
}

#[tokio::test]
async fn verify_rejects_a_file_that_replaces_a_folder() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let tar = raw_tar(&[
        raw_file("manifest.json", &first_manifest(&out.path)),
        raw_file("data/logos/sub/a.svg", b"one"),
        raw_file("data/logos/sub", b"now a file"),
    ]);
    let p = f.path("replace.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "already has a folder");
}

#[tokio::test]
async fn verify_rejects_a_checksum_mismatch() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = repack(
        &out.path,
        &f.path("bad.tar.gz"),
        |path, mut data| {
            if path == "data/logos/logo_05.svg" {
                data[0] = b'X';
            }
            data
        },
        false,
    );
    assert_rejected(
        f.verify(&bad),
        "checksum mismatch for \"data/logos/logo_05.svg\"",
    );
}

#[tokio::test]
async fn verify_rejects_a_file_missing_from_checksums() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = repack(
        &out.path,
        &f.path("bad.tar.gz"),
        |path, data| {
            if path == "checksums.sha256" {
                let text = String::from_utf8(data).expect("utf8");
                text.lines()
                    .filter(|l| !l.ends_with("logo_03.svg"))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .into_bytes()
            } else {
                data
            }
        },
        false,
    );
    assert_rejected(f.verify(&bad), "\"data/logos/logo_03.svg\" is not listed");
}

#[tokio::test]
async fn verify_rejects_a_database_that_does_not_match_the_manifest_hash() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    // database.json edited and listed correctly in checksums.sha256, but not in the manifest.
    let bad = repack(
        &out.path,
        &f.path("bad.tar.gz"),
        |path, data| {
            if path == "database.json" {
                String::from_utf8(data)
                    .expect("utf8")
                    .replace("BBC One", "BBC Two")
                    .into_bytes()
            } else {
                data
            }
        },
        true,
    );
    let fixed = repack(
        &bad,
        &f.path("bad2.tar.gz"),
        |path, data| {
            if path == "manifest.json" {
                let mut m: serde_json::Value = serde_json::from_slice(&data).expect("json");
                m["database"]["sha256"] = serde_json::json!("0".repeat(64));
                serde_json::to_vec(&m).expect("json")
            } else {
                data
            }
        },
        false,
    );
    assert_rejected(
        f.verify(&fixed),
        "database.json does not match the SHA-256 recorded in manifest.json",
    );
}

#[tokio::test]
async fn verify_rejects_an_archive_without_a_manifest() {
    let f = Fixture::new().await;
    let tar = raw_tar(&[
        raw_file("database.json", b"{}"),
        raw_file("checksums.sha256", b""),
    ]);
    let p = f.path("nomanifest.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "manifest.json is missing");
    let p2 = f.path("empty.tar.gz");
    std::fs::write(&p2, gzip(&raw_tar(&[]))).expect("write");
    assert_rejected(f.verify(&p2), "manifest.json is missing");
}

fn edit_manifest(src: &Path, dest: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    repack(
        src,
        dest,
        |path, data| {
            if path == "manifest.json" {
                let mut m: serde_json::Value = serde_json::from_slice(&data).expect("json");
                edit(&mut m);
                serde_json::to_vec(&m).expect("json")
            } else {
                data
            }
        },
        false,
    )
}

#[tokio::test]
async fn verify_rejects_a_newer_format_version() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = edit_manifest(&out.path, &f.path("v2.tar.gz"), |m| {
        m["format_version"] = 2.into()
    });
    assert_rejected(
        f.verify(&bad),
        "format version 2, newer than this Backstop supports (1)",
    );
}

#[tokio::test]
async fn verify_rejects_a_foreign_manifest_format() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = edit_manifest(&out.path, &f.path("foreign.tar.gz"), |m| {
        m["format"] = "other".into()
    });
    assert_rejected(f.verify(&bad), "this is not a Backstop archive");
}

#[tokio::test]
async fn verify_rejects_a_newer_schema_version() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = edit_manifest(&out.path, &f.path("s4.tar.gz"), |m| {
        m["database"]["schema_version"] = 4.into()
    });
    assert_rejected(
        f.verify(&bad),
        "schema version 4 is newer than this Backstop's (3)",
    );
}

fn edit_database(src: &Path, dest: &Path, from: &str, to: &str) -> PathBuf {
    let (from, to) = (from.to_owned(), to.to_owned());
    repack(
        src,
        dest,
        move |path, data| {
            if path == "database.json" {
                let text = String::from_utf8(data).expect("utf8");
                assert!(text.contains(&from), "fixture has {from}");
                text.replacen(&from, &to, 1).into_bytes()
            } else {
                data
            }
        },
        true,
    )
}

#[tokio::test]
async fn verify_rejects_an_unknown_table_naming_it() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = edit_database(
        &out.path,
        &f.path("t.tar.gz"),
        "\"name\":\"settings\"",
        "\"name\":\"secrets\"",
    );
    assert_rejected(
        f.verify(&bad),
        "table \"secrets\", which this database does not have",
    );
}

#[tokio::test]
async fn verify_rejects_an_unknown_column_naming_it() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = edit_database(
        &out.path,
        &f.path("c.tar.gz"),
        "{\"name\":\"priority\"",
        "{\"name\":\"weight\"",
    );
    assert_rejected(f.verify(&bad), "column \"weight\" in table \"streams\"");
}

#[tokio::test]
async fn verify_rejects_a_value_of_the_wrong_type_naming_table_and_column() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let bad = edit_database(
        &out.path,
        &f.path("v.tar.gz"),
        "[1,\"News\"]",
        "[1,{\"nested\":[1]}]",
    );
    assert_rejected(f.verify(&bad), "table \"channel_groups\" column \"name\"");
}

#[tokio::test]
async fn verify_refuses_a_gzip_bomb_early() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    // A valid start, then a 2 GiB file of zeros as 1 MiB gzip members (~2 MiB on disk).
    let mut head = raw_tar(&[raw_file("manifest.json", &first_manifest(&out.path))]);
    head.truncate(head.len() - 1024);
    let mut h = tar::Header::new_gnu();
    h.set_path("data/logos/zeros").expect("path");
    h.set_size(2 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    head.extend_from_slice(h.as_bytes());
    let mut bytes = gzip(&head);
    let zeros = gzip(&vec![0u8; 1 << 20]);
    for _ in 0..2048 {
        bytes.extend_from_slice(&zeros);
    }
    let p = f.path("bomb.tar.gz");
    std::fs::write(&p, &bytes).expect("write");
    let err = f.verify(&p).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.message().contains("gzip bomb"), "{}", err.message());
    // Refused within the grace window, not after inflating the whole 2 GiB.
    let mib: u64 = err
        .message()
        .rsplit("after ")
        .next()
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("MiB in message");
    assert!(mib < 100, "{}", err.message());
}

#[tokio::test]
async fn verify_refuses_an_archive_over_the_size_limit_from_its_headers() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let limits = Limits {
        max_total_bytes: 100_000,
        ..Limits::default()
    };
    let err = f.verify_with(&out.path, &limits).expect_err("too big");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(
        err.message().contains("more than 100000 bytes"),
        "{}",
        err.message()
    );
    // Within limits it passes: the limit is what decides.
    let limits = Limits {
        max_total_bytes: 10_000_000,
        ..Limits::default()
    };
    f.verify_with(&out.path, &limits).expect("within limits");
}

#[tokio::test]
async fn verify_enforces_the_entry_count_and_path_length_limits() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let few = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let err = f.verify_with(&out.path, &few).expect_err("too many");
    assert!(
        err.message().contains("more than 10 entries"),
        "{}",
        err.message()
    );
    let short = Limits {
        max_path_bytes: 20,
        ..Limits::default()
    };
    let err = f.verify_with(&out.path, &short).expect_err("too long");
    assert!(
        err.message().contains("longer than 20 bytes"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn verify_bounds_the_memory_of_entry_names_both_ways() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let names: u64 = {
        let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(&out.path).expect("open"),
        ));
        // Each entry's name, plus each folder its path implies that no earlier entry named
        // (the verifier keeps those too, so they count).
        let mut dirs = std::collections::HashSet::new();
        let mut total = 0u64;
        for e in a.entries().expect("entries") {
            let e = e.expect("entry");
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let p = p.trim_end_matches('/').to_owned();
            total += p.len() as u64;
            let mut end = 0;
            while let Some(i) = p[end..].find('/') {
                let ancestor = p[..end + i].to_owned();
                if dirs.insert(ancestor.clone()) {
                    total += ancestor.len() as u64;
                }
                end += i + 1;
            }
            if e.header().entry_type().is_dir() {
                dirs.insert(p);
            }
        }
        total
    };
    let exact = Limits {
        max_total_path_bytes: names,
        ..Limits::default()
    };
    f.verify_with(&out.path, &exact)
        .expect("names exactly at the limit are fine");
    let less = Limits {
        max_total_path_bytes: names - 1,
        ..Limits::default()
    };
    let err = f.verify_with(&out.path, &less).expect_err("one byte over");
    assert!(
        err.message().contains("entry names add up to more than"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn verify_rejects_a_non_utf8_name() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let tar = raw_tar(&[
        raw_file("manifest.json", &first_manifest(&out.path)),
        Raw {
            path: b"data/logos/\xff.svg".to_vec(),
            kind: tar::EntryType::Regular,
            data: vec![1],
            mode: 0o644,
            link: None,
        },
    ]);
    let p = f.path("utf8.tar.gz");
    std::fs::write(&p, gzip(&tar)).expect("write");
    assert_rejected(f.verify(&p), "not valid UTF-8");
}

#[tokio::test]
async fn verify_of_a_canceled_read_returns_canceled() {
    let f = Fixture::new().await;
    let out = f.backup().await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = archive::verify_archive(
        &out.path,
        &Limits::default(),
        &f.schema,
        &[],
        &cancel,
        no_progress(),
    )
    .expect_err("canceled");
    assert_eq!(
        (err.kind(), err.message()),
        (ErrorKind::Canceled, "canceled")
    );
}

#[tokio::test]
async fn long_and_unicode_paths_survive_gnu_tar_python_and_verify() {
    let f = Fixture::new().await;
    let deep = f.path(&format!("logos/{}/{}", "d".repeat(120), "é".repeat(60)));
    std::fs::create_dir_all(&deep).expect("mkdir");
    std::fs::write(deep.join(format!("{}.svg", "f".repeat(200))), b"<svg/>").expect("write");
    let out = f.backup().await;
    f.verify(&out.path).expect("valid");
    let x = f.path("x");
    std::fs::create_dir(&x).expect("mkdir");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&out.path)
        .current_dir(&x));
    run(Command::new("sha256sum")
        .args(["-c", "--strict", "checksums.sha256"])
        .current_dir(&x));
}

/// Issue 15, item 4: validation is cancellable. A verify canceled at its first progress
/// report stops part-way with "canceled" (the upload and verify routes cancel it this way
/// when their client goes away, through a drop guard in `Engine::verify_file`).
#[tokio::test]
async fn a_validation_canceled_part_way_stops_before_the_end() {
    let f = Fixture::new().await;
    for i in 0..4 {
        std::fs::write(
            f.path(&format!("recordings/big{i}.ts")),
            pseudo_random(16 << 20, i),
        )
        .expect("write");
    }
    let out = f.backup().await;
    let cancel = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let progress: archive::ProgressFn = {
        let (cancel, seen) = (cancel.clone(), Arc::clone(&seen));
        Arc::new(move |p: archive::Progress| {
            seen.lock()
                .expect("lock")
                .push((p.done_bytes, p.total_bytes));
            cancel.cancel();
        })
    };
    let (path, schema, c) = (out.path.clone(), f.schema.clone(), cancel.clone());
    let err = tokio::task::spawn_blocking(move || {
        archive::verify_archive(&path, &Limits::default(), &schema, &[], &c, progress)
    })
    .await
    .expect("join")
    .expect_err("canceled");
    assert_eq!(err.kind(), ErrorKind::Canceled);
    assert_eq!(err.message(), "canceled");
    let seen = seen.lock().expect("lock");
    let &(done, total) = seen.last().expect("progress was reported");
    assert!(
        done < total && total >= 64 << 20,
        "stopped at {done} of {total} bytes"
    );
    // The same archive verifies when nobody cancels.
    assert!(f.verify(&out.path).expect("valid").ok);
}

/// `encrypt_local` and the copies' encrypted form (DESIGN section 11): one pass writes the
/// archive encrypted, or plain plus its encrypted form beside it. Both open with the key
/// into a valid archive, verify reads the stored file through the key (and reports the
/// stored bytes), and no key or another key is refused without reading on.
#[tokio::test]
async fn an_archive_written_encrypted_or_with_an_encrypted_copy_opens_only_with_its_key() {
    let f = Fixture::new().await;
    let key = age::x25519::Identity::generate();
    let stranger = age::x25519::Identity::generate();
    let never = CancellationToken::new();

    // Stored encrypted.
    let mut req = f.request().await;
    req.file_name.push_str(".age");
    req.encrypt_to = Some(vec![key.to_public()]);
    let enc = tokio::task::spawn_blocking(move || {
        archive::write_archive(req, &CancellationToken::new(), no_progress())
    })
    .await
    .expect("join")
    .expect("written");
    let bytes = std::fs::read(&enc.path).expect("read");
    assert!(bytes.starts_with(engine::encryption::AGE_MAGIC));
    assert_eq!(enc.size_bytes, bytes.len() as u64);
    assert_eq!(
        enc.sha256,
        sha256_hex(&bytes),
        "the record is the stored file"
    );
    let keys = [key.clone()];
    let verify_with = |path: &Path, keys: &[age::x25519::Identity]| {
        archive::verify_archive(
            path,
            &Limits::default(),
            &f.schema,
            keys,
            &never,
            no_progress(),
        )
    };
    let report = verify_with(&enc.path, &keys).expect("verifies with the key");
    assert_eq!(
        (report.archive_bytes, report.sha256.as_str()),
        (enc.size_bytes, enc.sha256.as_str())
    );
    for (label, keys) in [("no key", vec![]), ("another key", vec![stranger.clone()])] {
        let e = verify_with(&enc.path, &keys).expect_err(label);
        assert_eq!(e.kind(), ErrorKind::Rejected, "{label}");
    }
    let plain = f.path("scratch/opened.tar.gz");
    engine::encryption::decrypt_file(&enc.path, &plain, &keys, &never).expect("decrypts");
    f.verify(&plain).expect("the plaintext is a valid archive");
    let m = engine::restore::read_manifest(&enc.path, &keys).expect("manifest");
    assert_eq!(m.format, "backstop-backup");

    // A changed byte: refused as damaged by the authenticated stream.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    let bad = f.path("scratch/bad.tar.gz.age");
    std::fs::write(&bad, &flipped).expect("write");
    let e = verify_with(&bad, &keys).expect_err("damaged");
    assert_eq!(e.kind(), ErrorKind::Rejected);

    // Plain, with the encrypted form beside it: that form opens into the very archive.
    let mut req = f.request().await;
    let side = f.path("scratch/copy.tar.gz.age");
    req.also_encrypted = Some((side.clone(), vec![key.to_public()]));
    let both = tokio::task::spawn_blocking(move || {
        archive::write_archive(req, &CancellationToken::new(), no_progress())
    })
    .await
    .expect("join")
    .expect("written");
    let side_bytes = std::fs::read(&side).expect("read");
    assert_eq!(
        both.encrypted_copy,
        Some(Ok((side_bytes.len() as u64, sha256_hex(&side_bytes))))
    );
    let opened = f.path("scratch/copy-opened.tar.gz");
    engine::encryption::decrypt_file(&side, &opened, &keys, &never).expect("decrypts");
    assert_eq!(
        std::fs::read(&opened).expect("read"),
        std::fs::read(&both.path).expect("read"),
        "the encrypted form is the archive itself"
    );

    // The second file cannot be created: the archive is still written, and says why.
    let mut req = f.request().await;
    req.also_encrypted = Some((f.path("no-such-dir/x.age"), vec![key.to_public()]));
    let alone = tokio::task::spawn_blocking(move || {
        archive::write_archive(req, &CancellationToken::new(), no_progress())
    })
    .await
    .expect("join")
    .expect("the archive does not depend on its copy");
    assert!(
        matches!(&alone.encrypted_copy, Some(Err(why)) if why.contains("cannot create")),
        "{:?}",
        alone.encrypted_copy
    );
    f.verify(&alone.path).expect("valid");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
