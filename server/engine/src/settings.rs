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
pub fn parse(value: &Value, current: &BackupSettings, data_dir: &Path) -> Result<BackupSettings> {
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
    crate::instance::check_writable(dir)
        .map_err(|_| format!("backup path {} is not writable", dir.display()))
}

/// The state-DB key under which the scheduler records the instant it handled slots through.
const LAST_SLOT_KEY: &str = "schedule_last_slot";

impl crate::Engine {
    /// Settings as the API shows them, with `next_run_at` and a plain-words description.
    pub async fn settings_view(&self) -> Result<Value> {
        let s = load(self.state()).await?;
        let next = crate::schedule::next_run_after(&s.schedule, chrono::Utc::now())
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let mut v =
            serde_json::to_value(&s).map_err(|e| Error::internal("cannot encode settings", e))?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "next_run_at".into(),
                next.map(Value::String).unwrap_or(Value::Null),
            );
            o.insert(
                "schedule_description".into(),
                Value::String(crate::schedule::describe(&s.schedule)),
            );
        }
        Ok(v)
    }

    /// Validates every field, saves, and reschedules at once. Nothing invalid is stored.
    pub async fn save_settings(&self, raw: &Value) -> Result<()> {
        let current = load(self.state()).await?;
        let data_dir = self.data_dir().to_path_buf();
        let raw_owned = raw.clone();
        // Path checks touch the filesystem: keep them off the async workers.
        let parsed = tokio::task::spawn_blocking(move || parse(&raw_owned, &current, &data_dir))
            .await
            .map_err(|e| Error::internal("settings validation failed", e))??;
        save(self.state(), &parsed).await?;
        self.schedule_sender().send_replace(parsed.schedule);
        Ok(())
    }

    /// Starts the in-process scheduler for the saved schedule.
    pub async fn spawn_scheduler(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let s = load(self.state()).await?;
        self.schedule_sender().send_replace(s.schedule);
        Ok(crate::schedule::spawn_scheduler(
            std::sync::Arc::new(crate::schedule::SystemClock),
            self.schedule_sender().subscribe(),
            std::sync::Arc::new(EngineScheduleStore(self.clone())),
            shutdown,
        ))
    }
}

/// The scheduler's view of the engine: the state DB and the job queue.
struct EngineScheduleStore(crate::Engine);

impl crate::schedule::ScheduleStore for EngineScheduleStore {
    fn last_slot(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<Option<chrono::DateTime<chrono::Utc>>>> {
        Box::pin(async move {
            let v = crate::state::get_setting(self.0.state(), LAST_SLOT_KEY).await?;
            Ok(v.and_then(|v| {
                v.as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            })
            .map(|t| t.with_timezone(&chrono::Utc)))
        })
    }

    fn set_last_slot(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            crate::state::put_setting(
                self.0.state(),
                LAST_SLOT_KEY,
                &Value::String(t.to_rfc3339()),
            )
            .await
        })
    }

    fn enqueue_scheduled(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<crate::schedule::EnqueueOutcome>> {
        Box::pin(async move {
            if self.0.scheduled_pending().await? {
                return Ok(crate::schedule::EnqueueOutcome::SkippedAlreadyPending);
            }
            self.0
                .start_backup("scheduled", Some("scheduler".into()), None)
                .await?;
            Ok(crate::schedule::EnqueueOutcome::Enqueued)
        })
    }
}
