//! Backup settings as the admin saves them: where archives go, whether recordings are
//! included, how many to keep, and the schedule. Stored in the state DB; every field is
//! validated before anything is saved.
//!
//! The backup folder is also checked against the data dir's layout (DESIGN section 4, data
//! safety 4): it may not be the data dir or contain it, nor be, contain or sit inside a
//! folder a restore replaces (`logos/`, `recordings/`, a plugin's restore target) or the
//! plugins folder. [`FolderLayout`] holds those folders resolved, [`check_backup_folder`]
//! is the pure rule, [`resolve_path`] resolves a path that may not exist yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::SqlitePool;

use crate::schedule::ScheduleSettings;
use crate::{Error, Result};

const KEY: &str = "backup_settings";

/// What the admin saves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupSettings {
    /// Folder for archives; relative paths are relative to the data dir.
    pub path: String,
    pub include_recordings: bool,
    /// Keep the newest N succeeded backups made by Backstop; 0 keeps all.
    pub retention_count: u32,
    pub schedule: ScheduleSettings,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            path: "backups".into(),
            include_recordings: false,
            retention_count: 7,
            schedule: ScheduleSettings::default(),
        }
    }
}

/// Largest accepted retention count.
pub const MAX_RETENTION: u64 = 10_000;

impl BackupSettings {
    /// The archive folder as an absolute-or-data-relative path.
    pub fn resolved_path(&self, data_dir: &Path) -> PathBuf {
        let p = Path::new(&self.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            data_dir.join(p)
        }
    }
}

/// Reads the saved settings (defaults when none were saved).
pub async fn load(pool: &SqlitePool) -> Result<BackupSettings> {
    match crate::state::get_setting(pool, KEY).await? {
        None => Ok(BackupSettings::default()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| Error::internal("stored backup settings are corrupt", e)),
    }
}

/// Validates raw JSON from a client and returns settings, or every field error at once.
/// Missing top-level fields keep their current value (so a client may send a subset).
/// A new `path` is checked against `layout` before it is created: a refused folder is
/// never made.
pub fn parse(
    value: &Value,
    current: &BackupSettings,
    data_dir: &Path,
    layout: &FolderLayout,
) -> Result<BackupSettings> {
    let mut errors = BTreeMap::new();
    let Some(obj) = value.as_object() else {
        return Err(Error::invalid("the settings must be a JSON object"));
    };
    for key in obj.keys() {
        if ![
            "path",
            "include_recordings",
            "retention_count",
            "schedule",
            "next_run_at",
            "schedule_description",
        ]
        .contains(&key.as_str())
        {
            errors.insert(key.clone(), format!("unknown setting {key:?}"));
        }
    }
    let mut out = current.clone();
    match obj.get("path") {
        None => {}
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.insert("path".into(), "give a folder for the archives".into());
        }
        Some(Value::String(s)) if s.contains('\0') => {
            errors.insert("path".into(), "the path contains a NUL character".into());
        }
        Some(Value::String(s)) => {
            out.path = s.trim().to_owned();
            let dir = out.resolved_path(data_dir);
            if let Some(msg) = check_backup_folder(&resolve_path(&dir), layout) {
                errors.insert("path".into(), msg);
            } else if let Err(msg) = ensure_writable_dir(&dir) {
                errors.insert("path".into(), msg);
            }
        }
        Some(_) => {
            errors.insert("path".into(), "must be a string".into());
        }
    }
    match obj.get("include_recordings") {
        None => {}
        Some(Value::Bool(b)) => out.include_recordings = *b,
        Some(_) => {
            errors.insert("include_recordings".into(), "must be true or false".into());
        }
    }
    match obj.get("retention_count") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_RETENTION => out.retention_count = n as u32,
            _ => {
                errors.insert(
                    "retention_count".into(),
                    format!("must be a whole number from 0 (keep all) to {MAX_RETENTION}"),
                );
            }
        },
    }
    if let Some(s) = obj.get("schedule") {
        match crate::schedule::parse_schedule(s) {
            Ok(s) => out.schedule = s,
            Err(e) => {
                if e.field_errors().is_empty() {
                    errors.insert("schedule".into(), e.message().to_owned());
                }
                errors.extend(e.field_errors().clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::fields(errors))
    }
}

/// Saves validated settings.
pub async fn save(pool: &SqlitePool, settings: &BackupSettings) -> Result<()> {
    let v =
        serde_json::to_value(settings).map_err(|e| Error::internal("cannot encode settings", e))?;
    crate::state::put_setting(pool, KEY, &v).await
}

/// Creates `dir` if missing and proves it is writable; the message names the folder.
pub fn ensure_writable_dir(dir: &Path) -> std::result::Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "backup path {} exists but is not a folder",
            dir.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "backup path {} cannot be created: permission denied",
                dir.display()
            ),
            _ => format!(
                "backup path {} cannot be created ({})",
                dir.display(),
                e.kind()
            ),
        });
    }
    if !dir.is_dir() {
        return Err(format!("backup path {} is not a folder", dir.display()));
    }
    crate::dirs::check_writable(dir)
        .map_err(|_| format!("backup path {} is not writable", dir.display()))
}

/// Resolves `path` as the filesystem will see it once it exists: the longest existing
/// prefix is canonicalized (symlinks followed), the rest is appended with `.` dropped and
/// `..` applied lexically (a component that does not exist yet cannot be a symlink). A
/// relative path is taken relative to the working directory. Touches the filesystem.
pub fn resolve_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let parts: Vec<Component<'_>> = path.components().collect();
    let mut base = None;
    let mut rest = &parts[..];
    for n in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..n].iter().collect();
        if let Ok(c) = prefix.canonicalize() {
            base = Some(c);
            rest = &parts[n..];
            break;
        }
    }
    let mut out = base
        .or_else(|| {
            // Nothing of a relative path exists: start from the working directory.
            (!path.is_absolute())
                .then(|| Path::new(".").canonicalize().ok())
                .flatten()
        })
        .unwrap_or_default();
    for c in rest {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A folder the backup folder must keep clear of, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedFolder {
    /// How the message names it: `logos/`, or `the folder granted to plugin p for its
    /// mount m`.
    pub label: String,
    /// The folder, resolved with [`resolve_path`].
    pub path: PathBuf,
    /// Why it is off limits, e.g. `a restore replaces that folder`.
    pub reason: String,
}

/// What the backup folder is checked against, every path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderLayout {
    /// The data dir (holds both databases by default, and every managed folder).
    pub data_dir: PathBuf,
    /// `logos/`, `recordings/`, `plugins/` and every plugin restore target.
    pub protected: Vec<ProtectedFolder>,
}

/// A folder granted to a plugin for a mount with `restore` access: a restore replaces
/// what is beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTarget {
    pub plugin: String,
    pub mount: String,
    pub path: PathBuf,
}

const RESTORE_REPLACES: &str = "a restore replaces that folder";

impl FolderLayout {
    /// The layout of `data_dir` with the given restore targets, resolved. Touches the
    /// filesystem (canonicalize): call it from a blocking thread.
    pub fn resolve(data_dir: &Path, targets: &[RestoreTarget]) -> FolderLayout {
        let mut protected: Vec<ProtectedFolder> = ["logos", "recordings"]
            .into_iter()
            .map(|name| ProtectedFolder {
                label: format!("{name}/"),
                path: resolve_path(&data_dir.join(name)),
                reason: RESTORE_REPLACES.into(),
            })
            .collect();
        protected.push(ProtectedFolder {
            label: "plugins/".into(),
            path: resolve_path(&data_dir.join("plugins")),
            reason: "it holds the installed plugins and their compiled cache".into(),
        });
        protected.extend(targets.iter().map(|t| ProtectedFolder {
            label: format!(
                "the folder granted to plugin {} for its mount {}",
                t.plugin, t.mount
            ),
            path: resolve_path(&t.path),
            reason: RESTORE_REPLACES.into(),
        }));
        FolderLayout {
            data_dir: resolve_path(data_dir),
            protected,
        }
    }
}

/// Why `folder` (resolved) may not hold the archives, or `None` when it may. Pure: both
/// sides are compared component by component (`a/b` is not inside `a/bc`).
pub fn check_backup_folder(folder: &Path, layout: &FolderLayout) -> Option<String> {
    let data = &layout.data_dir;
    if folder == data {
        return Some(format!(
            "the backup folder may not be the data folder itself ({}): a restore replaces what it holds",
            data.display()
        ));
    }
    if data.starts_with(folder) {
        return Some(format!(
            "the backup folder may not contain the data folder ({}): a restore replaces what it holds",
            data.display()
        ));
    }
    layout.protected.iter().find_map(|p| {
        let relation = if folder == p.path {
            "be"
        } else if folder.starts_with(&p.path) {
            "be inside"
        } else if p.path.starts_with(folder) {
            "contain"
        } else {
            return None;
        };
        Some(format!(
            "the backup folder may not {relation} {} ({}): {}",
            p.label,
            p.path.display(),
            p.reason
        ))
    })
}

/// Settings as the API shows them, with `next_run_at` and a plain-words description.
pub async fn view(state: &SqlitePool) -> Result<wire::settings::SettingsView> {
    use crate::schedule::Frequency;
    use wire::settings::{Frequency as WireFrequency, Schedule, SettingsView};
    let s = load(state).await?;
    let next_run_at = crate::schedule::next_run_after(&s.schedule, chrono::Utc::now())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let schedule_description = crate::schedule::describe(&s.schedule);
    let sched = s.schedule;
    Ok(SettingsView {
        path: s.path,
        include_recordings: s.include_recordings,
        retention_count: s.retention_count,
        schedule: Schedule {
            enabled: sched.enabled,
            frequency: match sched.frequency {
                Frequency::Hourly => WireFrequency::Hourly,
                Frequency::Daily => WireFrequency::Daily,
                Frequency::Weekly => WireFrequency::Weekly,
            },
            time: sched.time,
            day_of_week: sched.day_of_week,
            timezone: sched.timezone,
        },
        next_run_at,
        schedule_description,
    })
}

/// Validates every field and saves; nothing invalid is stored. Returns what was saved (the
/// caller reschedules). `restore_targets` lists the plugins' restore targets: it is asked
/// here, with the path checks, because it may read plugin files.
pub async fn validate_and_save(
    state: &SqlitePool,
    data_dir: &Path,
    raw: &Value,
    restore_targets: impl FnOnce() -> Vec<RestoreTarget> + Send + 'static,
) -> Result<BackupSettings> {
    let current = load(state).await?;
    let data_dir = data_dir.to_path_buf();
    let raw_owned = raw.clone();
    // Path checks touch the filesystem (and `describe` may read plugin files): keep
    // them off the async workers.
    let parsed = tokio::task::spawn_blocking(move || {
        let layout = FolderLayout::resolve(&data_dir, &restore_targets());
        parse(&raw_owned, &current, &data_dir, &layout)
    })
    .await
    .map_err(|e| Error::internal("settings validation failed", e))??;
    save(state, &parsed).await?;
    Ok(parsed)
}

/// Why the saved backup folder breaks the layout rule ([`check_backup_folder`]), for
/// settings saved before the rule existed or made unsafe by a later plugin grant; `None`
/// when it is fine. `restore_targets` as for [`validate_and_save`].
pub async fn backup_folder_conflict(
    state: &SqlitePool,
    data_dir: &Path,
    restore_targets: impl FnOnce() -> Vec<RestoreTarget> + Send + 'static,
) -> Result<Option<String>> {
    let settings = load(state).await?;
    let data_dir = data_dir.to_path_buf();
    // Canonicalizing touches the filesystem: off the async workers.
    tokio::task::spawn_blocking(move || {
        let layout = FolderLayout::resolve(&data_dir, &restore_targets());
        check_backup_folder(&resolve_path(&settings.resolved_path(&data_dir)), &layout)
    })
    .await
    .map_err(|e| Error::internal("checking the backup folder failed", e))
}

/// Every restore target of the installed plugins (enabled or not: a disabled plugin keeps
/// its grants and may be enabled later without the backup folder being checked again).
pub fn restore_targets(plugins: &[wire::plugin::PluginView]) -> Vec<RestoreTarget> {
    plugins
        .iter()
        .flat_map(|p| {
            p.requested_mounts
                .iter()
                .filter(|m| m.access.iter().any(|a| a == "restore"))
                .filter_map(|m| {
                    p.grants.mounts.get(&m.name).map(|path| RestoreTarget {
                        plugin: p.id.clone(),
                        mount: m.name.clone(),
                        path: path.clone(),
                    })
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout built by hand (no filesystem): data dir `/srv/data`, one restore target.
    fn layout() -> FolderLayout {
        let data = Path::new("/srv/data");
        let mut protected: Vec<ProtectedFolder> = ["logos", "recordings"]
            .into_iter()
            .map(|n| ProtectedFolder {
                label: format!("{n}/"),
                path: data.join(n),
                reason: RESTORE_REPLACES.into(),
            })
            .collect();
        protected.push(ProtectedFolder {
            label: "plugins/".into(),
            path: data.join("plugins"),
            reason: "it holds the installed plugins and their compiled cache".into(),
        });
        protected.push(ProtectedFolder {
            label: "the folder granted to plugin custom-dirs for its mount root".into(),
            path: "/etc/nginx".into(),
            reason: RESTORE_REPLACES.into(),
        });
        FolderLayout {
            data_dir: data.into(),
            protected,
        }
    }

    fn check(folder: &str) -> Option<String> {
        check_backup_folder(Path::new(folder), &layout())
    }

    #[test]
    fn backup_folder_may_not_be_or_contain_the_data_dir() {
        assert_eq!(
            check("/srv/data").as_deref(),
            Some(
                "the backup folder may not be the data folder itself (/srv/data): a restore replaces what it holds"
            )
        );
        for parent in ["/srv", "/"] {
            assert_eq!(
                check(parent).as_deref(),
                Some(
                    "the backup folder may not contain the data folder (/srv/data): a restore replaces what it holds"
                ),
                "{parent}"
            );
        }
        // A sibling whose name merely starts like the data dir is neither.
        assert_eq!(check("/srv/dat"), None);
        assert_eq!(check("/srv/data2"), None);
    }

    #[test]
    fn backup_folder_may_not_touch_a_folder_a_restore_replaces() {
        assert_eq!(
            check("/srv/data/logos").as_deref(),
            Some(
                "the backup folder may not be logos/ (/srv/data/logos): a restore replaces that folder"
            )
        );
        assert_eq!(
            check("/srv/data/logos/sub").as_deref(),
            Some(
                "the backup folder may not be inside logos/ (/srv/data/logos): a restore replaces that folder"
            )
        );
        assert_eq!(
            check("/srv/data/recordings/old/archives").as_deref(),
            Some(
                "the backup folder may not be inside recordings/ (/srv/data/recordings): a restore replaces that folder"
            )
        );
        // Component-wise: `logosx` and `recording` are other folders.
        assert_eq!(check("/srv/data/logosx"), None);
        assert_eq!(check("/srv/data/recording"), None);
    }

    #[test]
    fn backup_folder_may_not_touch_the_plugins_folder() {
        let why = "it holds the installed plugins and their compiled cache";
        assert_eq!(
            check("/srv/data/plugins"),
            Some(format!(
                "the backup folder may not be plugins/ (/srv/data/plugins): {why}"
            ))
        );
        assert_eq!(
            check("/srv/data/plugins/.cache"),
            Some(format!(
                "the backup folder may not be inside plugins/ (/srv/data/plugins): {why}"
            ))
        );
        assert_eq!(check("/srv/data/plugins-old"), None);
    }

    #[test]
    fn backup_folder_may_not_touch_a_plugin_restore_target() {
        let target = "the folder granted to plugin custom-dirs for its mount root (/etc/nginx)";
        assert_eq!(
            check("/etc/nginx"),
            Some(format!(
                "the backup folder may not be {target}: a restore replaces that folder"
            ))
        );
        assert_eq!(
            check("/etc/nginx/backups"),
            Some(format!(
                "the backup folder may not be inside {target}: a restore replaces that folder"
            ))
        );
        assert_eq!(
            check("/etc"),
            Some(format!(
                "the backup folder may not contain {target}: a restore replaces that folder"
            ))
        );
        assert_eq!(check("/etc/nginx-backups"), None);
        assert_eq!(check("/etc/ngin"), None);
    }

    #[test]
    fn backup_folder_elsewhere_is_fine() {
        assert_eq!(check("/srv/data/backups"), None, "the default");
        assert_eq!(check("/srv/data/elsewhere/archives"), None);
        assert_eq!(check("/mnt/archive"), None);
    }

    #[test]
    fn resolve_path_follows_symlinks_of_the_existing_prefix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("logos")).expect("mkdir");
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).expect("symlink");
        let logos = real.join("logos").canonicalize().expect("canonical");
        assert_eq!(resolve_path(&tmp.path().join("link/logos")), logos);
        // A tail that does not exist yet is appended, `..` applied to it.
        assert_eq!(
            resolve_path(&tmp.path().join("link/logos/new/../sub")),
            logos.join("sub")
        );
        assert_eq!(
            resolve_path(&tmp.path().join("real/missing/../logos")),
            logos
        );
        // Through the symlink, a new folder inside logos/ is still refused.
        let layout = FolderLayout::resolve(&real, &[]);
        let msg = check_backup_folder(
            &resolve_path(&tmp.path().join("link/logos/archives")),
            &layout,
        )
        .expect("refused");
        assert!(
            msg.starts_with("the backup folder may not be inside logos/"),
            "{msg}"
        );
        assert_eq!(
            check_backup_folder(&resolve_path(&tmp.path().join("link/backups")), &layout),
            None
        );
    }

    #[test]
    fn parse_refuses_a_conflicting_path_without_creating_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("logos")).expect("mkdir");
        let layout = FolderLayout::resolve(&data, &[]);
        let current = BackupSettings::default();
        let refused = data.join("logos/archives");
        let err = parse(
            &serde_json::json!({"path": refused}),
            &current,
            &data,
            &layout,
        )
        .expect_err("refused");
        assert!(
            err.field_errors()["path"].starts_with("the backup folder may not be inside logos/"),
            "{:?}",
            err.field_errors()
        );
        assert!(!refused.exists(), "a refused folder is not created");

        let fine = data.join("elsewhere");
        let parsed = parse(
            &serde_json::json!({"path": "elsewhere"}),
            &current,
            &data,
            &layout,
        )
        .expect("accepted");
        assert_eq!(parsed.path, "elsewhere");
        assert!(fine.is_dir(), "an accepted folder is created");
    }

    #[tokio::test]
    async fn saved_backup_folder_conflict_is_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for sub in ["logos", "recordings", "backups", "plugins"] {
            std::fs::create_dir_all(tmp.path().join(sub)).expect("mkdir");
        }
        let state = crate::state::open(&crate::content::sqlite_url(&tmp.path().join("state.db")))
            .await
            .expect("open");
        let no_targets = Vec::new;
        assert_eq!(
            backup_folder_conflict(&state, tmp.path(), no_targets)
                .await
                .expect("check"),
            None
        );
        // Saved before the rule existed: nothing re-checks it at save time.
        let bad = BackupSettings {
            path: "recordings/archives".into(),
            ..BackupSettings::default()
        };
        save(&state, &bad).await.expect("save");
        let msg = backup_folder_conflict(&state, tmp.path(), no_targets)
            .await
            .expect("check")
            .expect("a conflict");
        assert!(
            msg.starts_with("the backup folder may not be inside recordings/"),
            "{msg}"
        );
        state.close().await;
    }
}
