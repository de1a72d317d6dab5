//! The hostile-archive corpus: archives built byte by byte (so nothing in a tar library can
//! "fix" them), each broken in one specific way, starting from a real, valid backup.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a tar member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

/// One tar member, with its name as raw bytes.
#[derive(Debug, Clone)]
pub struct Member {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    /// Declared size when it should differ from `data.len()` (a lying header).
    pub declared_size: Option<u64>,
}

impl Member {
    pub fn file(path: &str, data: &[u8]) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            kind: Kind::File,
            data: data.to_vec(),
            link: vec![],
            declared_size: None,
        }
    }
    pub fn dir(path: &str) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            kind: Kind::Dir,
            data: vec![],
            link: vec![],
            declared_size: None,
        }
    }
    pub fn special(path: &str, kind: Kind, link: &str) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            kind,
            data: vec![],
            link: link.as_bytes().to_vec(),
            declared_size: None,
        }
    }
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Reads every member of a (valid) .tar.gz.
pub fn read_members(archive: &Path) -> Vec<Member> {
    let f = std::fs::File::open(archive).expect("open archive");
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    let mut out = Vec::new();
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path_bytes().to_vec();
        let kind = if e.header().entry_type().is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read entry");
        out.push(Member {
            path,
            kind,
            data,
            link: vec![],
            declared_size: None,
        });
    }
    out
}

/// `checksums.sha256` for the regular files among `members` (except the manifest and the
/// checksums file itself), as Backstop writes it.
pub fn checksums(members: &[Member]) -> Vec<u8> {
    let mut s = String::new();
    for m in members {
        let n = m.name();
        if m.kind == Kind::File && n != "manifest.json" && n != "checksums.sha256" {
            s.push_str(&format!(
                "{}  {}\n",
                hex::encode(Sha256::digest(&m.data)),
                n
            ));
        }
    }
    s.into_bytes()
}

/// Replaces the checksums member with freshly computed sums (so a test breaks only what it
/// means to break).
pub fn refresh_checksums(members: &mut Vec<Member>) {
    members.retain(|m| m.name() != "checksums.sha256");
    let sums = checksums(members);
    members.push(Member::file("checksums.sha256", &sums));
}

fn header_for(m: &Member, name_bytes: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let (ty, mode) = match m.kind {
        Kind::File => (tar::EntryType::Regular, 0o644),
        Kind::Dir => (tar::EntryType::Directory, 0o755),
        Kind::Symlink => (tar::EntryType::Symlink, 0o777),
        Kind::HardLink => (tar::EntryType::Link, 0o644),
        Kind::Char => (tar::EntryType::Char, 0o644),
        Kind::Block => (tar::EntryType::Block, 0o644),
        Kind::Fifo => (tar::EntryType::Fifo, 0o644),
    };
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_mtime(1_764_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(if m.kind == Kind::File {
        m.declared_size.unwrap_or(m.data.len() as u64)
    } else {
        0
    });
    let old = h.as_old_mut();
    old.name[..name_bytes.len()].copy_from_slice(name_bytes);
    let link = &m.link[..m.link.len().min(100)];
    old.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    h
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// A raw tar stream of `members` (GNU long names for names over 100 bytes).
pub fn tar_bytes(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let name: &[u8] = if m.path.len() > 100 {
            let mut long = tar::Header::new_gnu();
            long.set_entry_type(tar::EntryType::GNULongName);
            long.set_size(m.path.len() as u64 + 1);
            long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            long.set_cksum();
            out.extend_from_slice(long.as_bytes());
            out.extend_from_slice(&m.path);
            out.push(0);
            pad(&mut out);
            &m.path[..100]
        } else {
            &m.path
        };
        out.extend_from_slice(header_for(m, name).as_bytes());
        if m.kind == Kind::File {
            out.extend_from_slice(&m.data);
            pad(&mut out);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// One hostile case: a name, the archive bytes, and the words the refusal must contain.
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: &'static str,
}

fn edit_json(members: &mut [Member], name: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let m = members
        .iter_mut()
        .find(|m| m.name() == name)
        .expect("member present");
    let mut v: serde_json::Value = serde_json::from_slice(&m.data).expect("json");
    f(&mut v);
    m.data = serde_json::to_vec(&v).expect("json");
}

/// Keeps the manifest's database.sha256 in step with an edited database.json.
fn resync_db_sha(members: &mut [Member]) {
    let db = members
        .iter()
        .find(|m| m.name() == "database.json")
        .expect("database.json")
        .data
        .clone();
    let sha = hex::encode(Sha256::digest(&db));
    edit_json(members, "manifest.json", |m| {
        m["database"]["sha256"] = serde_json::Value::String(sha)
    });
}

/// Inserts `m` before checksums.sha256.
fn insert(members: &mut Vec<Member>, m: Member) {
    let pos = members
        .iter()
        .position(|x| x.name() == "checksums.sha256")
        .unwrap_or(members.len());
    members.insert(pos, m);
}

/// The corpus, built from a valid archive's members. Every case is refused on upload.
pub fn corpus(valid: &[Member]) -> Vec<Case> {
    let base = || valid.to_vec();
    let ok = |m: Vec<Member>| gzip(&tar_bytes(&m));
    let with = |m: Member| {
        let mut v = base();
        insert(&mut v, m);
        v
    };
    let mut cases = Vec::new();
    let mut add = |name: &'static str, bytes: Vec<u8>, expect: &'static str| {
        cases.push(Case {
            name,
            bytes,
            expect,
        })
    };

    add(
        "dotdot path",
        ok(with(Member::file("data/logos/../../../etc/evil", b"x"))),
        "'..' component",
    );
    add(
        "dotdot at start",
        ok(with(Member::file("../evil.txt", b"x"))),
        "'..' component",
    );
    add(
        "absolute path",
        ok(with(Member::file("/etc/evil", b"x"))),
        "absolute path",
    );
    add(
        "symlink inside",
        ok(with(Member::special(
            "data/logos/alias.svg",
            Kind::Symlink,
            "logo-00001.svg",
        ))),
        "archives may hold only regular files and folders",
    );
    add(
        "symlink outside",
        ok(with(Member::special(
            "data/logos/passwd",
            Kind::Symlink,
            "/etc/passwd",
        ))),
        "archives may hold only regular files and folders",
    );
    add(
        "hard link inside",
        ok(with(Member::special(
            "data/logos/hard.svg",
            Kind::HardLink,
            "data/logos/logo-00001.svg",
        ))),
        "archives may hold only regular files and folders",
    );
    add(
        "hard link outside",
        ok(with(Member::special(
            "data/logos/shadow",
            Kind::HardLink,
            "/etc/shadow",
        ))),
        "archives may hold only regular files and folders",
    );
    add(
        "character device",
        ok(with(Member::special("data/logos/null", Kind::Char, ""))),
        "archives may hold only regular files and folders",
    );
    add(
        "block device",
        ok(with(Member::special("data/logos/sda", Kind::Block, ""))),
        "archives may hold only regular files and folders",
    );
    add(
        "fifo",
        ok(with(Member::special("data/logos/pipe", Kind::Fifo, ""))),
        "archives may hold only regular files and folders",
    );
    {
        let mut v = base();
        let dup = v
            .iter()
            .find(|m| m.name().starts_with("data/logos/") && m.kind == Kind::File)
            .expect("a logo")
            .clone();
        insert(&mut v, dup);
        add("duplicate file", ok(v), "appears twice");
    }
    {
        let mut v = base();
        insert(&mut v, Member::dir("data/logos/nested/"));
        insert(&mut v, Member::file("data/logos/nested", b"not a folder"));
        refresh_checksums(&mut v);
        add(
            "file replacing a directory",
            ok(v),
            "a file where the archive already has a folder",
        );
        let mut v = base();
        insert(&mut v, Member::file("data/logos", b"not a folder"));
        add(
            "file where a data directory belongs",
            ok(v),
            "not part of the Backstop archive format",
        );
    }
    {
        let mut v = base();
        let pos = v
            .iter()
            .position(|m| m.name() == "checksums.sha256")
            .expect("checksums");
        v.insert(pos, Member::file("data/logos/thing", b"x"));
        v.insert(pos + 1, Member::file("data/logos/thing/inner", b"y"));
        refresh_checksums(&mut v);
        add("file used as a folder", ok(v), "which is a file");
    }
    {
        // A tree the manifest does not list (checksums correct): never extracted anywhere.
        let mut v = base();
        let pos = v
            .iter()
            .position(|m| m.name() == "checksums.sha256")
            .expect("checksums");
        v.insert(pos, Member::file("data/backups/evil.tar.gz", b"x"));
        refresh_checksums(&mut v);
        add(
            "data tree missing from the manifest",
            ok(v),
            "manifest.json does not list it",
        );
    }
    {
        // The manifest lists Backstop's own archive folder as a built-in directory.
        let mut v = base();
        let mut m: serde_json::Value = serde_json::from_slice(&v[0].data).expect("manifest");
        m["directories"]
            .as_array_mut()
            .expect("directories")
            .push(serde_json::json!({"name": "backups", "archive_path": "data/backups", "files": 0, "bytes": 0, "contributed_by": "backstop"}));
        v[0] = Member::file("manifest.json", &serde_json::to_vec(&m).expect("json"));
        add(
            "manifest lists the archive folder",
            ok(v),
            "which a restore may not replace",
        );
    }
    {
        let full = ok(base());
        add(
            "truncated gzip",
            full[..full.len() / 2].to_vec(),
            "truncated",
        );
    }
    {
        let mut t = tar_bytes(&base());
        t[148] ^= 0x55; // the first header's checksum field
        add("corrupt tar header", gzip(&t), "damaged");
    }
    {
        let mut b = ok(base());
        b.extend_from_slice(b"this is not gzip data, just garbage at the end of the file");
        add("trailing garbage", b, "unexpected data after its end");
    }
    {
        // 2 GiB of zeros declared in one entry: a few MiB of gzip.
        let mut t = tar_bytes(&base()[..2]);
        t.truncate(t.len() - 1024);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("data/logos/bomb.bin").expect("path");
        h.set_size(2 << 30);
        h.set_mode(0o644);
        h.set_cksum();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&t).expect("gz");
        e.write_all(h.as_bytes()).expect("gz");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..2048 {
            e.write_all(&zeros).expect("gz");
        }
        add("gzip bomb", e.finish().expect("gz"), "gzip bomb guard");
    }
    add(
        "over-long name",
        ok(with(Member::file(
            &format!("data/logos/{}", "n".repeat(5000)),
            b"x",
        ))),
        "longer than",
    );
    {
        let mut m = Member::file("data/logos/x", b"x");
        m.path = b"data/logos/caf\xe9.svg".to_vec();
        add("non-UTF-8 name", ok(with(m)), "not valid UTF-8");
    }
    {
        let mut v = base();
        v.retain(|m| m.name() != "manifest.json");
        add("missing manifest", ok(v), "manifest.json is missing");
    }
    {
        let mut v = base();
        v.iter_mut()
            .find(|m| m.name() == "manifest.json")
            .expect("manifest")
            .data = b"{not json".to_vec();
        add(
            "manifest not JSON",
            ok(v),
            "manifest.json is not valid JSON",
        );
    }
    {
        let mut v = base();
        edit_json(&mut v, "manifest.json", |m| {
            m["format"] = "tarball-of-stuff".into()
        });
        add("unknown format", ok(v), "this is not a Backstop archive");
    }
    {
        let mut v = base();
        edit_json(&mut v, "manifest.json", |m| m["format_version"] = 2.into());
        add(
            "newer format_version",
            ok(v),
            "format version 2, newer than this Backstop supports",
        );
    }
    {
        let mut v = base();
        edit_json(&mut v, "manifest.json", |m| {
            m["database"]["schema_version"] = 999.into()
        });
        add("newer schema_version", ok(v), "schema version 999 is newer");
    }
    {
        let mut v = base();
        let logo = v
            .iter_mut()
            .find(|m| m.name().starts_with("data/logos/") && m.kind == Kind::File)
            .expect("a logo");
        logo.data.push(b'!');
        add("checksum mismatch", ok(v), "checksum mismatch");
    }
    {
        let mut v = base();
        v.retain(|m| m.name() != "checksums.sha256");
        add("missing checksums", ok(v), "checksums.sha256 is missing");
    }
    {
        let mut v = with(Member::file("data/logos/unlisted.svg", b"<svg/>"));
        // Keep the old sums: the new file is not listed.
        v.retain(|m| m.name() != "checksums.sha256");
        v.push(Member::file("checksums.sha256", &checksums(valid)));
        add(
            "file missing from checksums",
            ok(v),
            "is not listed in checksums.sha256",
        );
    }
    {
        let mut v = base();
        edit_json(&mut v, "database.json", |d| {
            d["tables"].as_array_mut().expect("tables").push(serde_json::json!({"name": "secret_stuff", "columns": [{"name": "x", "type": "TEXT"}], "rows": []}));
        });
        resync_db_sha(&mut v);
        refresh_checksums(&mut v);
        add(
            "unknown table",
            ok(v),
            "has table \"secret_stuff\", which this database does not have",
        );
    }
    {
        let mut v = base();
        edit_json(&mut v, "database.json", |d| {
            let t = d["tables"]
                .as_array_mut()
                .expect("tables")
                .iter_mut()
                .find(|t| t["name"] == "channel_groups")
                .expect("channel_groups");
            t["columns"]
                .as_array_mut()
                .expect("columns")
                .push(serde_json::json!({"name": "colour", "type": "TEXT"}));
            for r in t["rows"].as_array_mut().expect("rows") {
                r.as_array_mut().expect("row").push("red".into());
            }
        });
        resync_db_sha(&mut v);
        refresh_checksums(&mut v);
        add(
            "unknown column",
            ok(v),
            "has column \"colour\" in table \"channel_groups\"",
        );
    }
    {
        let mut v = base();
        edit_json(&mut v, "database.json", |d| {
            let t = d["tables"]
                .as_array_mut()
                .expect("tables")
                .iter_mut()
                .find(|t| t["name"] == "channel_groups")
                .expect("channel_groups");
            t["rows"][0][0] = "not-a-number".into();
        });
        resync_db_sha(&mut v);
        refresh_checksums(&mut v);
        add(
            "wrong column type",
            ok(v),
            "table \"channel_groups\" column \"id\"",
        );
    }
    {
        let mut v = base();
        v.iter_mut()
            .find(|m| m.name() == "database.json")
            .expect("db")
            .data = b"{\"format\":\"backstop-database\",\"tables\":[".to_vec();
        resync_db_sha(&mut v);
        refresh_checksums(&mut v);
        add("database.json not JSON", ok(v), "database.json");
    }
    {
        let mut v = base();
        v.retain(|m| m.name() != "database.json");
        refresh_checksums(&mut v);
        add("missing database.json", ok(v), "database.json is missing");
    }
    {
        let mut v = base();
        v.swap(0, 1);
        add(
            "manifest not first",
            ok(v),
            "manifest.json is missing: it must be the first entry",
        );
    }
    add(
        "entry outside the format",
        ok(with(Member::file("etc/cron.d/evil", b"* * * * * root sh"))),
        "not part of the Backstop archive format",
    );
    add("plain tar, not gzip", tar_bytes(&base()), "damaged");
    add(
        "not an archive at all",
        b"%PDF-1.7 this is a pdf".to_vec(),
        "damaged",
    );
    {
        let mut v = base();
        let last = v.pop().expect("checksums");
        v.insert(2, last);
        add("checksums not last", ok(v), "must be last");
    }
    cases
}
