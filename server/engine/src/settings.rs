//! Backup settings as the admin saves them: where archives go, whether recordings are
//! included, how many to keep, and the schedule. Stored in the state DB; every field is
//! validated before anything is saved.

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
        if p.is_absolute() { p.to_path_buf() } else { data_dir.join(p) }
    }
}

/// Reads the saved settings (defaults when none were saved).
pub async fn load(pool: &SqlitePool) -> Result<BackupSettings> {
    match crate::state::get_setting(pool, KEY).await? {
        None => Ok(BackupSettings::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| Error::internal("stored backup settings are corrupt", e)),
    }
}

/// Validates raw JSON from a client and returns settings, or every field error at once.
/// Missing top-level fields keep their current value (so a client may send a subset).
pub fn parse(value: &Value, current: &BackupSettings, data_dir: &Path) -> Result<BackupSettings> {
    let mut errors = BTreeMap::new();
    let Some(obj) = value.as_object() else {
        return Err(Error::invalid("the settings must be a JSON object"));
    };
    for key in obj.keys() {
        if !["path", "include_recordings", "retention_count", "schedule", "next_run_at", "schedule_description"].contains(&key.as_str()) {
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
            if let Err(msg) = ensure_writable_dir(&out.resolved_path(data_dir)) {
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
    if errors.is_empty() { Ok(out) } else { Err(Error::fields(errors)) }
}

/// Saves validated settings.
pub async fn save(pool: &SqlitePool, settings: &BackupSettings) -> Result<()> {
    let v = serde_json::to_value(settings).map_err(|e| Error::internal("cannot encode settings", e))?;
    crate::state::put_setting(pool, KEY, &v).await
}

/// Creates `dir` if missing and proves it is writable; the message names the folder.
pub fn ensure_writable_dir(dir: &Path) -> std::result::Result<(), String> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!("backup path {} cannot be created: permission denied", dir.display()),
            _ => format!("backup path {} cannot be created ({})", dir.display(), e.kind()),
        });
    }
    if !dir.is_dir() {
        return Err(format!("backup path {} is not a folder", dir.display()));
    }
    crate::instance::check_writable(dir).map_err(|_| format!("backup path {} is not writable", dir.display()))
}
