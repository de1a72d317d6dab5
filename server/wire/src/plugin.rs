//! Plugins as the admin sees and changes them (`GET`/`PUT /api/backups/plugins/...`, the
//! Plugins page): what a plugin requests, what the admin granted, and a change.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A mount as the plugin requests it in `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestedMount {
    pub name: String,
    pub description: String,
    /// `backup` and/or `restore`.
    pub access: Vec<String>,
}

/// Limits a call runs under. Admin grants may lower or raise them up to the host's ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_kb: Option<u64>,
    /// How large the plugin's `/scratch` may grow during a collect call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_mb: Option<u64>,
}

/// What the admin granted a plugin: host folders for its mounts, the veto, limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PluginGrants {
    /// Mount name -> absolute host folder.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub mounts: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub veto: bool,
    #[serde(default)]
    pub limits: PluginLimits,
    /// The permissions the admin approved with `approved_version`: a later version asking
    /// for more (a new mount, more access, the veto) waits for re-approval.
    #[serde(default)]
    pub approved: ApprovedPermissions,
}

/// The permission set an admin approved.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovedPermissions {
    /// Mount name -> access (`backup`, `restore`).
    #[serde(default)]
    pub mounts: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub veto: bool,
}

/// An admin's change (`PUT /api/backups/plugins/{id}/`); absent fields stay as they are.
/// Setting `enabled: true` approves the permissions the installed version requests.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PluginUpdate {
    pub enabled: Option<bool>,
    pub grants: Option<GrantsUpdate>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The grants part of a [`PluginUpdate`]; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantsUpdate {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, String>>))]
    pub mounts: Option<BTreeMap<String, PathBuf>>,
    pub veto: Option<bool>,
    pub limits: Option<PluginLimits>,
}

/// An installed plugin as the admin sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub api: String,
    pub exports: Vec<String>,
    /// `enabled`, `disabled`, `needs-approval` (a new version asks for more) or `broken`.
    pub state: String,
    pub enabled: bool,
    pub approved_version: Option<String>,
    pub failure_policy: String,
    pub requested_mounts: Vec<RequestedMount>,
    pub requests_veto: bool,
    pub grants: PluginGrants,
    /// The limits calls run under now (manifest, then grants, capped by the host).
    pub limits: PluginLimits,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Setting name -> its type, description and default.
    pub settings_schema: BTreeMap<String, SettingSpec>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// One setting a plugin declares in `plugin.toml`, as the settings form shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingSpec {
    /// `string`, `integer`, `boolean` or `json`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// The value used when the admin set none (`null`: none).
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// `GET /api/backups/plugins/`: every installed plugin.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
}

/// One line a plugin logged during a job (host log, stdout or stderr).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginLogLine {
    pub plugin: String,
    /// `trace`, `debug`, `info`, `warn`, `error`, `stdout` or `stderr`.
    pub level: String,
    pub message: String,
    /// RFC 3339 UTC.
    pub at: String,
}

/// `GET /api/backups/jobs/{id}/plugin-log/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginLog {
    pub lines: Vec<PluginLogLine>,
}
