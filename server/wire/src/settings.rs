//! Backup settings as the API returns them (`GET`/`PUT /api/backups/settings/`, the settings
//! card). What a client sends is validated field by field by the engine, which reads it as
//! JSON so that every wrong field (a number given as text, an unknown zone) gets its own
//! message and a subset of fields may be sent.

use std::fmt;

use crate::job::contract_enum;

contract_enum!(
    /// How often a scheduled backup runs.
    Frequency, "frequency", {
        /// Every hour, at the minute of `time`.
        Hourly = "hourly",
        /// Every day at `time`.
        Daily = "daily",
        /// Once a week, on `day_of_week` at `time`.
        Weekly = "weekly",
    }
);

/// When scheduled backups run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    /// Off means no scheduled runs at all, including catch-up runs.
    pub enabled: bool,
    pub frequency: Frequency,
    /// Local time of day, `HH:MM`; for hourly only the minute is used.
    pub time: String,
    /// 0 (Sunday) to 6 (Saturday); used by weekly.
    pub day_of_week: u8,
    /// IANA zone name in which `time` and `day_of_week` are read.
    pub timezone: String,
}

/// The saved backup settings, with when the schedule runs next.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsView {
    /// Folder for archives; relative paths are relative to the data dir.
    pub path: String,
    pub include_recordings: bool,
    /// Keep the newest N succeeded backups made by Backstop; 0 keeps all.
    pub retention_count: u32,
    pub schedule: Schedule,
    /// RFC 3339 UTC; null when the schedule is off.
    pub next_run_at: Option<String>,
    /// The schedule in words ("Daily at 03:00 (Europe/London)").
    pub schedule_description: String,
}
