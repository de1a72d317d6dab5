//! The data-safety invariants of DESIGN section 4 ("Data safety"), checked from outside the
//! server the way an operator could: through the API and the filesystem. Shared by the
//! model-based test (`integration/model.rs`) and the kill -9 tests (`integration/crash.rs`).
//!
//! - I1: every succeeded backup record's file exists with the size and sha256 it is listed
//!   with ([`check_archives`]).
//! - I2: every archive file is owned by exactly one backup record; restore jobs own none
//!   ([`check_archives`]).
//! - I3: a restore never writes the archive folders, the plugins folder or the state DB
//!   (callers compare [`files_in`] and [`tree`] before and after).
//! - I4: files outside the managed directories never change ([`Sentinels`]).
//! - I5: the server starts and answers: health, login, the job list ([`server_up`]).
//!
//! Plus what every check needs: [`Content`] (the content DB's dump and the managed
//! directories, the only things a restore may change), [`all_jobs`], [`leftovers`], and an
//! archive rewriter for the "a restore may not replace this directory" cases
//! ([`with_extra_directory`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::hostile::{self, Member};
use crate::{TestApp, run, sha256_file, sha256_hex};

/// SHA-256 of a file, remembered by (inode, size, ctime): a soak re-checks hundreds of
/// archives after every step, and only the ones that changed need reading again. ctime
/// cannot be set back from user space, so any write to the file is seen.
pub fn sha256_cached(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;
    type Key = (u64, u64, i64, i64);
    static CACHE: Mutex<BTreeMap<PathBuf, (Key, String)>> = Mutex::new(BTreeMap::new());
    let Ok(m) = std::fs::metadata(path) else {
        return sha256_file(path);
    };
    let key = (m.ino(), m.size(), m.ctime(), m.ctime_nsec());
    if let Some((k, sha)) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(path)
        && *k == key
    {
        return sha.clone();
    }
    let sha = sha256_file(path);
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf(), (key, sha.clone()));
    sha
}

/// Relative path -> sha256 of every file below a folder; folders appear as `name/` -> "".
pub type Tree = BTreeMap<String, String>;

/// Every file and folder below `dir` (empty when `dir` does not exist).
pub fn tree(dir: &Path) -> Tree {
    let mut out = Tree::new();
    collect(dir, "", &mut out);
    out
}

fn collect(dir: &Path, prefix: &str, out: &mut Tree) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            out.insert(format!("{name}/"), String::new());
            collect(&p, &format!("{name}/"), out);
        } else {
            out.insert(name, sha256_cached(&p));
        }
    }
}

/// Everything a restore may change, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// `sqlite3 .dump` of the content DB.
    pub db: String,
    pub logos: Tree,
    pub recordings: Tree,
}

impl Content {
    /// Reads the live content of `app`'s data dir.
    pub fn read(app: &TestApp) -> Result<Content> {
        let (ok, db, err) = run(Command::new("sqlite3").arg(app.content_db()).arg(".dump"));
        if !ok {
            bail!("sqlite3 .dump failed: {err}");
        }
        Ok(Content {
            db,
            logos: tree(&app.data.path().join("logos")),
            recordings: tree(&app.data.path().join("recordings")),
        })
    }

    /// A short account of how `other` differs from `self` (for failure messages).
    pub fn diff(&self, other: &Content) -> String {
        let mut parts = Vec::new();
        if self.db != other.db {
            let a: BTreeSet<&str> = self.db.lines().collect();
            let b: BTreeSet<&str> = other.db.lines().collect();
            let gone: Vec<&&str> = a.difference(&b).take(3).collect();
            let new: Vec<&&str> = b.difference(&a).take(3).collect();
            parts.push(format!(
                "content DB differs (expected lines missing: {gone:?}; unexpected lines: {new:?})"
            ));
        }
        for (dir, a, b) in [
            ("logos", &self.logos, &other.logos),
            ("recordings", &self.recordings, &other.recordings),
        ] {
            if a != b {
                let changed: Vec<&String> = a
                    .keys()
                    .chain(b.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| a.get(*k) != b.get(*k))
                    .take(5)
                    .collect();
                parts.push(format!("{dir}/ differs at {changed:?}"));
            }
        }
        if parts.is_empty() {
            "no difference".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Every job, oldest first (all pages of `GET /api/backups/jobs/`).
pub async fn all_jobs(app: &TestApp) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let (s, page) = app
            .get_json(&format!(
                "/api/backups/jobs/?limit=1000&offset={}",
                out.len()
            ))
            .await?;
        if s != 200 {
            bail!("listing jobs answered {s}: {page}");
        }
        let jobs = page["jobs"].as_array().context("jobs list")?.clone();
        let total = page["total"].as_u64().context("total")? as usize;
        let n = jobs.len();
        out.extend(jobs);
        if n == 0 || out.len() >= total {
            break;
        }
    }
    out.sort_by_key(|j| j["id"].as_i64());
    Ok(out)
}

/// Regular files directly in an archive folder: name -> (size, sha256). Dot entries and
/// `.partial` files are leftovers, reported by [`leftovers`], not listed here.
pub fn files_in(folder: &Path) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(folder) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !name.starts_with('.') && !name.ends_with(".partial") {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.insert(name, (len, sha256_cached(&e.path())));
        }
    }
    out
}

/// Where a backup record's file should be, for [`check_archives`].
pub type FolderOf<'a> = &'a dyn Fn(&Value) -> PathBuf;

/// I1 and I2 over the server's job list and the archive folders.
///
/// `changed_on_disk`: records whose file the test itself altered (tamper), exempt from the
/// size/sha comparison of I1. `folders`: every archive folder in use; a file in one of them
/// that no backup record names is an orphan (DESIGN section 4: "each archive file is owned
/// by exactly one backup record").
pub fn check_archives(
    jobs: &[Value],
    folder_of: FolderOf<'_>,
    changed_on_disk: &BTreeSet<i64>,
    folders: &[PathBuf],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut owners: BTreeMap<PathBuf, Vec<i64>> = BTreeMap::new();
    for j in jobs {
        let id = j["id"].as_i64().unwrap_or(-1);
        if j["kind"] != "backup" {
            continue;
        }
        let Some(name) = j["archive_name"].as_str() else {
            if j["status"] == "succeeded" {
                problems.push(format!("I1: succeeded backup {id} names no archive: {j}"));
            }
            continue;
        };
        let path = folder_of(j).join(name);
        owners.entry(path.clone()).or_default().push(id);
        if j["status"] != "succeeded" || changed_on_disk.contains(&id) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            problems.push(format!(
                "I1: the file of succeeded backup {id} is missing: {}",
                path.display()
            ));
            continue;
        };
        let listed_size = j["size_bytes"].as_u64();
        if listed_size != Some(meta.len()) {
            problems.push(format!(
                "I1: backup {id} is listed with {listed_size:?} bytes, its file {} has {}",
                path.display(),
                meta.len()
            ));
        }
        let sha = sha256_cached(&path);
        if j["sha256"].as_str() != Some(sha.as_str()) {
            problems.push(format!(
                "I1: backup {id} is listed with sha256 {}, its file {} has {sha}",
                j["sha256"],
                path.display()
            ));
        }
    }
    for (path, ids) in &owners {
        if ids.len() > 1 {
            problems.push(format!(
                "I2: backup records {ids:?} all name the file {}",
                path.display()
            ));
        }
    }
    for folder in folders {
        for name in files_in(folder).keys() {
            let path = folder.join(name);
            if !owners.contains_key(&path) {
                problems.push(format!(
                    "I2: {} is owned by no backup record (an orphan archive)",
                    path.display()
                ));
            }
        }
    }
    problems
}

/// Leftovers of interrupted work: `*.partial` files, `.staging-*` folders and any other dot
/// entry in the archive folders; staging folders, `.partial` files and the swap journal in
/// the data dir. Once no job runs there must be none.
pub fn leftovers(data: &Path, folders: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for folder in folders {
        let Ok(rd) = std::fs::read_dir(folder) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            if name.starts_with('.') || name.ends_with(".partial") || !is_file {
                out.push(format!(
                    "leftover in the archive folder: {}",
                    e.path().display()
                ));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(data) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".staging")
                || name.starts_with(".restore")
                || name.starts_with(".backstop-")
                || name.ends_with(".partial")
            {
                out.push(format!("leftover in the data dir: {}", e.path().display()));
            }
        }
    }
    out
}

/// I4: files Backstop must never touch, planted in the data dir root and in a folder of
/// the admin's own (`<data>/other/`), including a `.env` (archives never hold the
/// deployment's environment, and nothing may remove it).
pub struct Sentinels {
    other: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
    other_tree: Tree,
}

impl Sentinels {
    pub fn plant(data: &Path) -> Result<Sentinels> {
        let other = data.join("other");
        std::fs::create_dir_all(other.join("nested"))?;
        let files = vec![
            (data.join("NOTES.txt"), b"the admin's own notes\n".to_vec()),
            (data.join(".env"), b"SECRET_KEY=do-not-archive\n".to_vec()),
            (other.join("keep.txt"), b"keep me\n".to_vec()),
            (
                other.join("nested/deep.bin"),
                (0..4096u32).map(|i| (i * 7 % 251) as u8).collect(),
            ),
        ];
        for (p, bytes) in &files {
            std::fs::write(p, bytes)?;
        }
        let other_tree = tree(&other);
        Ok(Sentinels {
            other,
            files,
            other_tree,
        })
    }

    /// Names this planted directly in the data dir root.
    pub fn root_names(&self) -> Vec<String> {
        vec!["NOTES.txt".into(), ".env".into(), "other".into()]
    }

    /// Every sentinel is there, byte for byte, and `other/` gained or lost nothing.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (p, bytes) in &self.files {
            match std::fs::read(p) {
                Ok(b) if &b == bytes => {}
                Ok(_) => out.push(format!("I4: sentinel {} was modified", p.display())),
                Err(_) => out.push(format!("I4: sentinel {} was removed", p.display())),
            }
        }
        let now = tree(&self.other);
        if now != self.other_tree {
            out.push(format!(
                "I4: {} changed: {:?} -> {:?}",
                self.other.display(),
                self.other_tree.keys().collect::<Vec<_>>(),
                now.keys().collect::<Vec<_>>()
            ));
        }
        out
    }
}

/// I5: the server answers health, login and the job list.
pub async fn server_up(app: &TestApp) -> Result<()> {
    let r = app.client.get(app.url("/api/health")).send().await?;
    if !r.status().is_success() {
        bail!("I5: /api/health answered {}", r.status());
    }
    app.login_admin().await.context("I5: login after start")?;
    let (s, body) = app.get_json("/api/backups/jobs/").await?;
    if s != 200 {
        bail!("I5: the job list answered {s}: {body}");
    }
    Ok(())
}

/// `POST /api/backups/upload/` with a raw `application/gzip` body.
pub async fn upload_raw(app: &TestApp, bytes: Vec<u8>) -> Result<(u16, Value)> {
    let r = app
        .req(reqwest::Method::POST, "/api/backups/upload/")
        .header("content-type", "application/gzip")
        .body(bytes)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// `PUT` with a JSON body.
pub async fn put_json(app: &TestApp, path: &str, body: Value) -> Result<(u16, Value)> {
    let r = app
        .req(reqwest::Method::PUT, path)
        .json(&body)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// `GET .../download/`: the bytes on success, else the status and the error message.
pub async fn download(
    app: &TestApp,
    id: i64,
) -> Result<std::result::Result<Vec<u8>, (u16, String)>> {
    let r = app
        .req(
            reqwest::Method::GET,
            &format!("/api/backups/jobs/{id}/download/"),
        )
        .send()
        .await?;
    let s = r.status().as_u16();
    if r.status().is_success() {
        return Ok(Ok(r.bytes().await?.to_vec()));
    }
    let body: Value = r.json().await.unwrap_or(Value::Null);
    Ok(Err((s, error_message(&body))))
}

/// The `error.message` of an API error body (empty when there is none).
pub fn error_message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or("").to_owned()
}

/// Rewrites a real archive so its manifest lists one more directory, `name`, with a
/// matching `data/<name>/x` member, correct checksums and the manifest's database sha256:
/// a well-formed archive whose only fault is a directory a restore may not replace.
/// `contributed_by`: `None` leaves the field out (it then means the built-in source).
pub fn with_extra_directory(archive: &[u8], name: &str, contributed_by: Option<&str>) -> Vec<u8> {
    let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut tmp, archive).expect("write temp archive");
    let mut members = hostile::read_members(tmp.path());
    let payload = format!("written by an archive that lists {name}/\n").into_bytes();
    let db_sha = members
        .iter()
        .find(|m| m.name() == "database.json")
        .map(|m| sha256_hex(&m.data))
        .expect("database.json in a real archive");
    let manifest = members
        .iter_mut()
        .find(|m| m.name() == "manifest.json")
        .expect("manifest.json in a real archive");
    let mut v: Value = serde_json::from_slice(&manifest.data).expect("manifest JSON");
    let mut dir = json!({
        "name": name,
        "archive_path": format!("data/{name}"),
        "files": 1,
        "bytes": payload.len(),
    });
    if let Some(by) = contributed_by {
        dir["contributed_by"] = json!(by);
    }
    v["directories"]
        .as_array_mut()
        .expect("directories list")
        .push(dir);
    if let Some(t) = v.get_mut("totals") {
        t["files"] = json!(t["files"].as_u64().unwrap_or(0) + 1);
        t["bytes"] = json!(t["bytes"].as_u64().unwrap_or(0) + payload.len() as u64);
    }
    v["database"]["sha256"] = json!(db_sha);
    manifest.data = serde_json::to_vec(&v).expect("manifest JSON");
    // data/<name>/ goes after the other data trees, before plugins/ and checksums.
    let pos = members
        .iter()
        .position(|m| m.name().starts_with("plugins/") || m.name() == "checksums.sha256")
        .unwrap_or(members.len());
    members.insert(pos, Member::file(&format!("data/{name}/x"), &payload));
    members.insert(pos, Member::dir(&format!("data/{name}/")));
    hostile::refresh_checksums(&mut members);
    hostile::gzip(&hostile::tar_bytes(&members))
}
