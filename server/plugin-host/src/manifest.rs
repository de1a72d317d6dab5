//! `plugin.toml`: what a plugin is and what it asks for. Parsed strictly: an unknown key is
//! an error, so a typo (`failure-policy`, `memory_mib`) is caught at install instead of
//! silently meaning "the default".

use std::collections::BTreeMap;

use engine::plugins::{PluginLimits, RequestedMount};

/// The API version this host implements (`package backstop:plugin@0.1.0`).
pub const API_VERSION: &str = "0.1.0";

/// A parsed, validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Lowercase letters, digits and `-`; also the plugin's folder name and its archive
    /// folder `plugins/<id>/`.
    pub id: String,
    pub name: String,
    pub version: String,
    /// The `backstop:plugin` API version the component was built against.
    pub api: String,
    #[serde(default)]
    pub description: String,
    /// Which interfaces the host calls.
    pub exports: Vec<Export>,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// `data/<name>/` directories this plugin contributes under a fixed name. When it is
    /// enabled, a built-in source of the same name steps aside and no other plugin may
    /// contribute that name (e.g. `recordings`).
    #[serde(default)]
    pub provides: Vec<String>,
    /// Mount name -> request. Granted mounts appear in the guest at `/mounts/<name>`.
    #[serde(default)]
    pub mounts: BTreeMap<String, MountRequest>,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub limits: PluginLimits,
    /// Setting name -> schema.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSchema>,
}

/// An interface of the `plugin` world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Export {
    Contributor,
    Restorer,
    Hooks,
}

impl Export {
    pub fn as_str(self) -> &'static str {
        match self {
            Export::Contributor => "contributor",
            Export::Restorer => "restorer",
            Export::Hooks => "hooks",
        }
    }
}

/// What happens to the job when one of this plugin's calls fails (trap, deadline, memory,
/// bad output). The call itself always just fails; the server and other plugins go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Logged only.
    Ignore,
    /// Logged and added to the job's warnings.
    #[default]
    Warn,
    /// The job fails with the plugin's error.
    Abort,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "ignore",
            FailurePolicy::Warn => "warn",
            FailurePolicy::Abort => "abort",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRequest {
    #[serde(default)]
    pub description: String,
    /// `backup` (read-only during backups) and/or `restore` (writable during restores).
    pub access: Vec<Access>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Backup,
    Restore,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Backup => "backup",
            Access::Restore => "restore",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// May stop a job at a gate.
    #[serde(default)]
    pub veto: bool,
}

/// One setting's schema.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSchema {
    #[serde(rename = "type")]
    pub kind: SettingType,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub default: Option<toml::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingType {
    String,
    Integer,
    Boolean,
    /// Any JSON value (the plugin parses it); in `plugin.toml` the default is JSON text.
    Json,
}

impl SettingType {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingType::String => "string",
            SettingType::Integer => "integer",
            SettingType::Boolean => "boolean",
            SettingType::Json => "json",
        }
    }
}

/// Why a `plugin.toml` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("plugin.toml is not valid: {0}")]
    Syntax(String),
    #[error("plugin.toml: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses and validates a `plugin.toml`.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(located(text, &e)))?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |msg: String| Err(ManifestError::Invalid(msg));
        if !valid_id(&self.id) {
            return bad(format!(
                "id {:?} must be 1-64 lowercase letters, digits or '-', starting with a letter or digit",
                self.id
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return bad("name must be 1-100 characters".into());
        }
        if self.version.trim().is_empty() || self.version.len() > 64 {
            return bad("version must be 1-64 characters".into());
        }
        if !api_compatible(&self.api) {
            return bad(format!(
                "api {:?} is not supported by this Backstop (it implements {API_VERSION})",
                self.api
            ));
        }
        if self.exports.is_empty() {
            return bad("exports must name at least one of contributor, restorer, hooks".into());
        }
        for name in &self.provides {
            if !valid_name(name) || name == "logos" {
                return bad(format!(
                    "provides: {name:?} is not a directory name a plugin may contribute"
                ));
            }
        }
        for (name, m) in &self.mounts {
            if !valid_name(name) {
                return bad(format!(
                    "mount name {name:?} must be letters, digits, '-', '_' or '.'"
                ));
            }
            if m.access.is_empty() {
                return bad(format!(
                    "mount {name:?} must request backup and/or restore access"
                ));
            }
        }
        for (name, s) in &self.settings {
            if !valid_name(name) {
                return bad(format!(
                    "setting name {name:?} must be letters, digits, '-', '_' or '.'"
                ));
            }
            if let Some(d) = &s.default {
                setting_from_toml(s.kind, d).map_err(|e| {
                    ManifestError::Invalid(format!("default of setting {name:?}: {e}"))
                })?;
            }
        }
        Ok(())
    }

    pub fn exports(&self, e: Export) -> bool {
        self.exports.contains(&e)
    }

    /// Mounts with `access`.
    pub fn mounts_with(&self, access: Access) -> impl Iterator<Item = &str> {
        self.mounts
            .iter()
            .filter(move |(_, m)| m.access.contains(&access))
            .map(|(n, _)| n.as_str())
    }

    pub fn requested_mounts(&self) -> Vec<RequestedMount> {
        self.mounts
            .iter()
            .map(|(name, m)| RequestedMount {
                name: name.clone(),
                description: m.description.clone(),
                access: m.access.iter().map(|a| a.as_str().to_owned()).collect(),
            })
            .collect()
    }

    /// The JSON schema view of the settings (`{name: {type, description, default}}`).
    pub fn settings_schema(
        &self,
    ) -> std::collections::BTreeMap<String, engine::plugins::SettingSpec> {
        self.settings
            .iter()
            .map(|(name, s)| {
                let default = s
                    .default
                    .as_ref()
                    .and_then(|d| setting_from_toml(s.kind, d).ok());
                let spec = engine::plugins::SettingSpec {
                    kind: s.kind.as_str().to_owned(),
                    description: s.description.clone(),
                    default,
                };
                (name.clone(), spec)
            })
            .collect()
    }

    /// The default settings.
    pub fn default_settings(&self) -> serde_json::Map<String, serde_json::Value> {
        self.settings
            .iter()
            .filter_map(|(name, s)| {
                let d = s.default.as_ref()?;
                Some((name.clone(), setting_from_toml(s.kind, d).ok()?))
            })
            .collect()
    }

    /// Checks an admin's settings against the schema: unknown names and wrong types refused.
    pub fn check_settings(
        &self,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        for (name, value) in settings {
            let Some(schema) = self.settings.get(name) else {
                errors.insert(
                    format!("settings.{name}"),
                    "this plugin has no such setting".to_owned(),
                );
                continue;
            };
            let ok = match schema.kind {
                SettingType::String => value.is_string(),
                SettingType::Integer => value.is_i64() || value.is_u64(),
                SettingType::Boolean => value.is_boolean(),
                SettingType::Json => true,
            };
            if !ok {
                errors.insert(
                    format!("settings.{name}"),
                    format!("must be {}", type_phrase(schema.kind)),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn type_phrase(t: SettingType) -> &'static str {
    match t {
        SettingType::String => "text",
        SettingType::Integer => "a whole number",
        SettingType::Boolean => "true or false",
        SettingType::Json => "any JSON value",
    }
}

/// A TOML default as the JSON value the admin would store.
fn setting_from_toml(kind: SettingType, v: &toml::Value) -> Result<serde_json::Value, String> {
    match (kind, v) {
        (SettingType::String, toml::Value::String(s)) => Ok(serde_json::Value::String(s.clone())),
        (SettingType::Integer, toml::Value::Integer(i)) => Ok(serde_json::Value::from(*i)),
        (SettingType::Boolean, toml::Value::Boolean(b)) => Ok(serde_json::Value::Bool(*b)),
        (SettingType::Json, toml::Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("is not valid JSON text: {e}"))
        }
        (k, _) => Err(format!("must be {}", type_phrase(k))),
    }
}

/// toml's message with the line and the key it is about (`line 9, at limits.memory_mb:
/// invalid type: string "8", expected u64`): toml's message alone does not name the key of a
/// mistyped or refused value, which left the author guessing (found by fuzzing).
fn located(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    let Some(before) = e.span().and_then(|s| text.get(..s.start)) else {
        return msg.to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let key = text[line_start..]
        .lines()
        .next()
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with(['[', '#']));
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim());
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line}, at {t}.{k}: {msg}"),
        (None, Some(k)) => format!("line {line}, at {k}: {msg}"),
        _ => format!("line {line}: {msg}"),
    }
}

/// Same major.minor as [`API_VERSION`] (0.x: minor bumps may break, patches may not).
fn api_compatible(api: &str) -> bool {
    let ours: Vec<&str> = API_VERSION.split('.').collect();
    let theirs: Vec<&str> = api.split('.').collect();
    theirs.len() >= 2 && theirs.len() <= 3 && theirs[0] == ours[0] && theirs[1] == ours[1]
}

/// Plugin ids: `[a-z0-9][a-z0-9-]{0,63}`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Mount, setting and directory names: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "custom-dirs"
name = "Custom directories"
version = "1.2.0"
api = "0.1.0"
exports = ["contributor", "restorer"]
failure_policy = "abort"

[mounts.root]
description = "where"
access = ["backup", "restore"]

[permissions]
veto = true

[limits]
memory_mb = 8

[settings.directories]
type = "json"
default = "[]"
"#;

    #[test]
    fn a_complete_manifest_parses() {
        let m = Manifest::parse(GOOD).expect("valid");
        assert_eq!(m.id, "custom-dirs");
        assert_eq!(m.failure_policy, FailurePolicy::Abort);
        assert!(m.permissions.veto);
        assert_eq!(m.limits.memory_mb, Some(8));
        assert_eq!(m.mounts_with(Access::Restore).collect::<Vec<_>>(), ["root"]);
        assert_eq!(m.default_settings()["directories"], serde_json::json!([]));
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        for (from, to) in [
            ("failure_policy", "failure-policy"),
            ("memory_mb", "memory_mib"),
            ("veto = true", "veto = true\nnetwork = true"),
            (
                "description = \"where\"",
                "description = \"where\"\nmode = \"rw\"",
            ),
        ] {
            let text = GOOD.replacen(from, to, 1);
            let err = Manifest::parse(&text).expect_err(&text);
            assert!(
                matches!(err, ManifestError::Syntax(ref m) if m.contains("unknown field")),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let cases = [
            (
                "id = \"custom-dirs\"",
                "id = \"../evil\"",
                "id \"../evil\" must be",
            ),
            (
                "api = \"0.1.0\"",
                "api = \"0.2.0\"",
                "api \"0.2.0\" is not supported",
            ),
            (
                "exports = [\"contributor\", \"restorer\"]",
                "exports = []",
                "exports must name",
            ),
            ("default = \"[]\"", "default = \"[\"", "is not valid JSON"),
            (
                "access = [\"backup\", \"restore\"]",
                "access = []",
                "must request backup",
            ),
        ];
        for (from, to, want) in cases {
            let err = Manifest::parse(&GOOD.replacen(from, to, 1)).expect_err(to);
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        let err =
            Manifest::parse(&GOOD.replacen("\"abort\"", "\"explode\"", 1)).expect_err("policy");
        assert!(
            err.to_string().contains("unknown variant `explode`"),
            "{err}"
        );
    }

    #[test]
    fn a_mistyped_value_is_refused_naming_its_line_and_key() {
        let err = Manifest::parse(&GOOD.replacen("memory_mb = 8", "memory_mb = \"8\"", 1))
            .expect_err("text for a number");
        assert_eq!(
            err.to_string(),
            "plugin.toml is not valid: line 17, at limits.memory_mb: invalid type: string \"8\", expected u64"
        );
        let err = Manifest::parse(&GOOD.replacen("name = \"Custom directories\"", "name = 42", 1))
            .expect_err("a number for text");
        assert!(
            err.to_string()
                .contains("line 3, at name: invalid type: integer `42`"),
            "{err}"
        );
    }

    #[test]
    fn settings_are_checked_against_the_schema() {
        let m = Manifest::parse(GOOD).expect("valid");
        let ok = serde_json::json!({"directories": [{"name": "a", "path": "b"}]});
        assert!(m.check_settings(ok.as_object().expect("object")).is_ok());
        let bad = serde_json::json!({"dirs": []});
        let errs = m
            .check_settings(bad.as_object().expect("object"))
            .expect_err("unknown");
        assert_eq!(errs["settings.dirs"], "this plugin has no such setting");
    }
}
