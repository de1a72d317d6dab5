//! Resolving the paths a plugin returns, beneath the folder they must stay in.
//!
//! Two independent checks, so one bug cannot let a path out: a lexical one (no absolute
//! paths, no `..`), then the capability-safe open of cap-std, which follows symlinks only
//! while they stay inside the root. The canonical path the engine then archives is checked
//! once more to lie beneath the canonical root.

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// Why a returned path was refused. The text is recorded as the plugin's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {path:?} is absolute; give a path relative to {within}")]
    Absolute { path: String, within: String },
    #[error("path {path:?} contains '..'; it must stay inside {within}")]
    ParentDir { path: String, within: String },
    #[error("path {path:?} leads outside {within}")]
    Escapes { path: String, within: String },
    #[error("path {path:?} does not exist in {within}")]
    Missing { path: String, within: String },
    #[error("path {path:?} in {within} is not a {expected}")]
    WrongType {
        path: String,
        within: String,
        expected: &'static str,
    },
    #[error("path {path:?} is empty or not usable ({reason})")]
    Unusable { path: String, reason: &'static str },
    #[error("{within} cannot be opened: {reason}")]
    Root { within: String, reason: String },
}

/// What the resolved path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Directory,
    /// A regular file; a symlink is refused even when it points inside (archives hold none).
    File,
}

/// Lexical check: relative, no `..`, no NUL, not absurdly long.
fn lexical(rel: &str, within: &str) -> Result<PathBuf, PathError> {
    let owned = || rel.to_owned();
    if rel.is_empty() {
        return Err(PathError::Unusable {
            path: owned(),
            reason: "empty",
        });
    }
    if rel.len() > 4096 || rel.contains('\0') {
        return Err(PathError::Unusable {
            path: owned(),
            reason: "too long or contains NUL",
        });
    }
    let p = Path::new(rel);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(PathError::ParentDir {
                    path: owned(),
                    within: within.to_owned(),
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute {
                    path: owned(),
                    within: within.to_owned(),
                });
            }
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

/// Resolves `rel` beneath `root` and returns the canonical host path.
/// `within` names the root in error messages (e.g. `mount "data"`).
pub fn resolve_beneath(
    root: &Path,
    rel: &str,
    expect: Expect,
    within: &str,
) -> Result<PathBuf, PathError> {
    let clean = lexical(rel, within)?;
    let root_error = |e: io::Error| PathError::Root {
        within: within.to_owned(),
        reason: e.to_string(),
    };
    let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(root_error)?;
    let io_error = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => PathError::Missing {
            path: rel.to_owned(),
            within: within.to_owned(),
        },
        io::ErrorKind::NotADirectory => PathError::WrongType {
            path: rel.to_owned(),
            within: within.to_owned(),
            expected: "directory",
        },
        // cap-std answers PermissionDenied ("a path led outside of the filesystem") for
        // every attempt to leave the root, including through symlinks.
        _ => PathError::Escapes {
            path: rel.to_owned(),
            within: within.to_owned(),
        },
    };
    match expect {
        Expect::Directory => {
            dir.open_dir(&clean).map_err(io_error)?;
        }
        Expect::File => {
            let meta = dir.symlink_metadata(&clean).map_err(io_error)?;
            if meta.file_type().is_symlink() {
                // Opening it shows whether it escapes (the more useful error); a symlink
                // that stays inside is still refused because archives hold no symlinks.
                dir.open(&clean).map_err(io_error)?;
                return Err(PathError::WrongType {
                    path: rel.to_owned(),
                    within: within.to_owned(),
                    expected: "regular file (it is a symlink)",
                });
            }
            if !meta.is_file() {
                return Err(PathError::WrongType {
                    path: rel.to_owned(),
                    within: within.to_owned(),
                    expected: "regular file",
                });
            }
        }
    }
    // Defense in depth, and the path the engine archives natively.
    let canonical_root = root.canonicalize().map_err(root_error)?;
    let canonical = root.join(&clean).canonicalize().map_err(io_error)?;
    if !canonical.starts_with(&canonical_root) {
        return Err(PathError::Escapes {
            path: rel.to_owned(),
            within: within.to_owned(),
        });
    }
    Ok(canonical)
}

/// Checks a path a plugin wants inside the archive (`plugins/<id>/<path>`): relative, plain
/// components only, printable, at most 200 bytes. Returns it with `/` separators.
pub fn archive_path(rel: &str) -> Result<String, PathError> {
    let within = "the plugin's archive folder";
    let clean = lexical(rel, within)?;
    if rel.len() > 200 {
        return Err(PathError::Unusable {
            path: rel.to_owned(),
            reason: "longer than 200 bytes",
        });
    }
    if rel.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::Unusable {
            path: rel.to_owned(),
            reason: "control character or backslash",
        });
    }
    if clean == Path::new(".") {
        return Err(PathError::Unusable {
            path: rel.to_owned(),
            reason: "names no file",
        });
    }
    let parts: Vec<&str> = clean.iter().map(|c| c.to_str().unwrap_or("")).collect();
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_refusals_name_the_rule() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = |p: &str| {
            resolve_beneath(root.path(), p, Expect::Directory, "mount \"m\"").expect_err(p)
        };
        assert_eq!(
            r("/etc").to_string(),
            "path \"/etc\" is absolute; give a path relative to mount \"m\""
        );
        assert_eq!(
            r("a/../../b").to_string(),
            "path \"a/../../b\" contains '..'; it must stay inside mount \"m\""
        );
        assert_eq!(
            r("nope").to_string(),
            "path \"nope\" does not exist in mount \"m\""
        );
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused_and_one_inside_is_followed_for_directories() {
        let base = tempfile::tempdir().expect("tempdir");
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("inner/deep")).expect("mkdir");
        std::fs::create_dir_all(base.path().join("outside")).expect("mkdir");
        std::os::unix::fs::symlink(base.path().join("outside"), root.join("out")).expect("symlink");
        std::os::unix::fs::symlink("inner", root.join("in")).expect("symlink");
        let err =
            resolve_beneath(&root, "out", Expect::Directory, "mount \"m\"").expect_err("escape");
        assert_eq!(err.to_string(), "path \"out\" leads outside mount \"m\"");
        let ok =
            resolve_beneath(&root, "in/deep", Expect::Directory, "mount \"m\"").expect("inside");
        assert_eq!(ok, root.canonicalize().expect("canon").join("inner/deep"));
        assert_eq!(
            resolve_beneath(&root, ".", Expect::Directory, "m").expect("root"),
            root.canonicalize().expect("c")
        );
    }

    #[test]
    fn files_must_be_regular_files_not_symlinks() {
        let base = tempfile::tempdir().expect("tempdir");
        std::fs::write(base.path().join("f"), b"x").expect("write");
        std::os::unix::fs::symlink("f", base.path().join("l")).expect("symlink");
        assert!(resolve_beneath(base.path(), "f", Expect::File, "/scratch").is_ok());
        let err = resolve_beneath(base.path(), "l", Expect::File, "/scratch").expect_err("symlink");
        assert!(
            err.to_string()
                .contains("is not a regular file (it is a symlink)"),
            "{err}"
        );
    }

    #[test]
    fn archive_paths_are_plain_relative_paths() {
        assert_eq!(archive_path("./a//b.txt").expect("ok"), "a/b.txt");
        assert!(archive_path("../x").is_err());
        assert!(archive_path("/x").is_err());
        assert!(archive_path(".").is_err());
        assert!(archive_path("a\\b").is_err());
    }
}
