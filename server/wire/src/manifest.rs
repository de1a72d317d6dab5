//! `manifest.json`, the first entry of every archive (DESIGN section 3, archive format v1).
//!
//! Written by the engine's archive writer, read by the verifier, the restore and the
//! browser's upload review. Reading is lenient where v1 allows (fields added later default
//! when absent), and fields this version does not know are kept in `extra`, so a manifest
//! read and written again loses nothing.

use std::collections::BTreeMap;

/// `manifest.json`'s `format`.
pub const MANIFEST_FORMAT: &str = "backstop-backup";
/// The newest archive format version this build reads and the one it writes.
pub const FORMAT_VERSION: i64 = 1;
/// `contributed_by` of the built-in directories (`logos`, `recordings`).
pub const BUILTIN_CONTRIBUTOR: &str = "backstop";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    pub format: String,
    pub format_version: i64,
    /// RFC 3339 UTC.
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub app_version: String,
    /// `manual`, `scheduled` or `pre-restore` (kept as text: an archive is never refused
    /// for a trigger this build does not know).
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub include_recordings: bool,
    pub database: ManifestDatabase,
    #[serde(default)]
    pub directories: Vec<ManifestDirectory>,
    #[serde(default)]
    pub missing_directories: Vec<String>,
    #[serde(default)]
    pub plugins: Vec<ManifestPlugin>,
    #[serde(default)]
    pub annotations: Vec<crate::Annotation>,
    #[serde(default)]
    pub totals: ManifestTotals,
    /// Fields this version does not know, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestDatabase {
    #[serde(default = "default_db_file")]
    pub file: String,
    /// `sqlite` (and `postgres` once PostgreSQL content databases exist).
    #[serde(default = "default_engine")]
    pub engine: String,
    pub schema_version: i64,
    #[serde(default)]
    pub tables: u64,
    #[serde(default)]
    pub rows: u64,
    /// Lowercase hex SHA-256 of `database.json`.
    pub sha256: String,
}

fn default_db_file() -> String {
    "database.json".into()
}

fn default_engine() -> String {
    "sqlite".into()
}

/// One `data/<name>/` tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestDirectory {
    pub name: String,
    #[serde(default)]
    pub archive_path: String,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// [`BUILTIN_CONTRIBUTOR`] or a plugin id; absent means built-in.
    #[serde(default = "builtin")]
    pub contributed_by: String,
}

fn builtin() -> String {
    BUILTIN_CONTRIBUTOR.into()
}

impl ManifestDirectory {
    /// Made by Backstop itself (restored into the data dir), not by a plugin.
    pub fn is_builtin(&self) -> bool {
        self.contributed_by.is_empty() || self.contributed_by == BUILTIN_CONTRIBUTOR
    }
}

/// One plugin whose files are under `plugins/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestPlugin {
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
}

/// Content files (database, data, plugin files; not the manifest and checksums).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestTotals {
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
}

/// `POST /api/backups/jobs/{id}/verify/` and `backstop verify`: the result of a successful
/// full check (a failed check is an error, not a report).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    /// Always true: a failed check is an error, not a report.
    pub ok: bool,
    /// The archive's `manifest.json`.
    pub manifest: Manifest,
    /// Tar entries (files and folders).
    pub entries: u64,
    /// Regular files, including `manifest.json` and `checksums.sha256`.
    pub files: u64,
    /// Total size of the files once extracted.
    pub total_bytes: u64,
    /// Size of the archive file.
    pub archive_bytes: u64,
    /// Lowercase hex SHA-256 of the archive file.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_v1_manifest_reads_with_defaults_and_keeps_unknown_fields() {
        let m: Manifest = serde_json::from_str(
            r#"{"format":"backstop-backup","format_version":1,
                "database":{"schema_version":3,"sha256":"ab"},
                "directories":[{"name":"logos"}],
                "future_field":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(m.database.file, "database.json");
        assert!(m.directories[0].is_builtin());
        assert_eq!(m.extra["future_field"]["x"], 1);
        let again: Manifest = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }
}
