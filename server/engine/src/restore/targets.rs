//! Where a restore may write: never Backstop's own files (the data dir root, the archive
//! folder, the plugins folder, the state and content DB files), checked for every plugin
//! target before anything changes (DESIGN section 4, data safety 2).

use std::path::{Path, PathBuf};

use crate::Result;
use crate::core::Core;

impl Core {
    /// Backstop's own files, which no restore target may be, contain or lie within.
    pub(crate) async fn protected_paths(&self) -> Result<Vec<(&'static str, PathBuf)>> {
        let settings = crate::settings::load(self.state()).await?;
        let mut out = vec![
            (
                "Backstop's archive folder",
                settings.resolved_path(self.data_dir()),
            ),
            (
                "Backstop's default archive folder",
                self.data_dir().join("backups"),
            ),
            ("Backstop's plugins folder", self.data_dir().join("plugins")),
        ];
        for (what, url) in [
            ("Backstop's state database", &self.config().state_db_url),
            ("the content database", &self.config().content_db_url),
        ] {
            if let Some(p) = url.strip_prefix("sqlite://") {
                let p = p.split('?').next().unwrap_or(p);
                out.push((what, PathBuf::from(p)));
            }
        }
        Ok(out)
    }
}

/// Why a restore may not write to `target`, or None. A target may be a folder outside the
/// data dir or one of the managed folders inside it (`logos`, `recordings`), never the data
/// dir itself, nor anything that is, contains or lies within one of `protected`.
pub(crate) fn target_conflict(
    target: &Path,
    data_dir: &Path,
    protected: &[(&str, PathBuf)],
) -> Option<String> {
    let t = canonical_lenient(target);
    let d = canonical_lenient(data_dir);
    if t == d {
        return Some("is Backstop's data dir".into());
    }
    if d.starts_with(&t) {
        return Some("contains Backstop's data dir".into());
    }
    if t.starts_with(&d)
        && !crate::archive::MANAGED_DIRECTORIES
            .iter()
            .any(|m| t.starts_with(d.join(m)))
    {
        return Some(
            "lies inside Backstop's data dir, where only logos/ and recordings/ may be restored"
                .into(),
        );
    }
    for (what, p) in protected {
        let p = canonical_lenient(p);
        if t == p {
            return Some(format!("is {what}"));
        }
        if p.starts_with(&t) {
            return Some(format!("contains {what}"));
        }
        if t.starts_with(&p) {
            return Some(format!("lies inside {what}"));
        }
    }
    None
}

/// `path` with symlinks resolved in its longest existing prefix (the rest appended as is),
/// so paths that do not exist yet compare like the ones that do.
pub(crate) fn canonical_lenient(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{RestoreTarget, restore_targets};

    #[test]
    fn restore_targets_never_reach_backstops_own_files() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        std::fs::create_dir_all(data.join("recordings")).unwrap();
        std::fs::create_dir_all(data.join("backups")).unwrap();
        let outside = t.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        let protected = vec![
            ("Backstop's archive folder", data.join("backups")),
            ("Backstop's plugins folder", data.join("plugins")),
            ("Backstop's state database", data.join("state.db")),
        ];
        let c = |p: &Path| target_conflict(p, &data, &protected);
        assert_eq!(c(&data).as_deref(), Some("is Backstop's data dir"));
        assert_eq!(c(t.path()).as_deref(), Some("contains Backstop's data dir"));
        assert!(c(&data.join("backups")).unwrap().contains("data dir"));
        assert!(
            c(&data.join("other"))
                .unwrap()
                .contains("only logos/ and recordings/")
        );
        assert_eq!(c(&data.join("recordings")), None);
        assert_eq!(c(&data.join("recordings/tv")), None);
        assert_eq!(c(&outside.join("nginx")), None);
        // Outside the data dir, a protected folder elsewhere is still protected.
        let archive_elsewhere = vec![("Backstop's archive folder", outside.join("archives"))];
        assert_eq!(
            target_conflict(&outside.join("archives"), &data, &archive_elsewhere).as_deref(),
            Some("is Backstop's archive folder")
        );
        assert_eq!(
            target_conflict(&outside, &data, &archive_elsewhere).as_deref(),
            Some("contains Backstop's archive folder")
        );
        assert_eq!(
            target_conflict(&outside.join("archives/x"), &data, &archive_elsewhere).as_deref(),
            Some("lies inside Backstop's archive folder")
        );
        // Component-wise: `recordings2` is not inside `recordings`, and a symlink is resolved.
        assert!(c(&data.join("recordings2")).is_some());
        let link = t.path().join("link-to-data");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        assert_eq!(c(&link).as_deref(), Some("is Backstop's data dir"));
    }

    fn view(id: &str, mounts: &[(&str, &[&str], Option<&str>)]) -> crate::plugins::PluginView {
        crate::plugins::PluginView {
            id: id.into(),
            name: id.into(),
            version: "0.1.0".into(),
            description: String::new(),
            api: "0.1.0".into(),
            exports: vec![],
            state: "disabled".into(),
            enabled: false,
            approved_version: None,
            failure_policy: "warn".into(),
            requested_mounts: mounts
                .iter()
                .map(|(name, access, _)| crate::plugins::RequestedMount {
                    name: (*name).into(),
                    description: String::new(),
                    access: access.iter().map(|a| (*a).into()).collect(),
                })
                .collect(),
            requests_veto: false,
            grants: crate::plugins::PluginGrants {
                mounts: mounts
                    .iter()
                    .filter_map(|(name, _, p)| p.map(|p| ((*name).to_owned(), PathBuf::from(p))))
                    .collect(),
                ..Default::default()
            },
            limits: Default::default(),
            settings: Default::default(),
            settings_schema: Default::default(),
            last_error: None,
            last_error_at: None,
        }
    }

    #[test]
    fn restore_targets_are_granted_mounts_with_restore_access_only() {
        let views = [
            view(
                "a",
                &[
                    ("both", &["backup", "restore"], Some("/srv/both")),
                    ("read", &["backup"], Some("/srv/read")),
                    ("ungranted", &["restore"], None),
                ],
            ),
            view("b", &[("put", &["restore"], Some("/srv/put"))]),
        ];
        assert_eq!(
            restore_targets(&views),
            vec![
                RestoreTarget {
                    plugin: "a".into(),
                    mount: "both".into(),
                    path: "/srv/both".into()
                },
                RestoreTarget {
                    plugin: "b".into(),
                    mount: "put".into(),
                    path: "/srv/put".into()
                },
            ]
        );
    }
}
