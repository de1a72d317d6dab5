//! Wire types shared by the browser and the server (serde only; no server dependencies).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The signed-in account (the wire type: `id`, `username`, `role`, `is_admin()`).
pub use wire::account::{Account as MeView, Role};

/// The plugin wire types (`/api/backups/plugins/`), shared the same way.
pub use wire::plugin::{GrantsUpdate, PluginLimits, PluginList, PluginUpdate, PluginView};
/// The job wire types are the engine's own ([`wire`]): one definition for REST, the event
/// stream and the server functions, so the browser can never drift from the server.
pub use wire::{
    Annotation as AnnotationView, Job as JobView, JobId, JobKind, JobPage,
    JobProgress as ProgressView, JobStatus, JobTrigger, Manifest,
};

/// One line a plugin logged during a job (`GET /api/backups/jobs/{id}/plugin-log/`).
pub use wire::plugin::PluginLogLine as PluginLogLineView;

/// Destinations (DESIGN section 10) and a job's copies, as the REST API has them.
pub use wire::DestinationId;
pub use wire::destination::{
    CopyStatus, Destination, DestinationInput, DestinationKind, JobCopy, RemoteArchive, S3Input,
    TestResult,
};

/// Encryption (DESIGN section 11): the settings and the key check.
pub use wire::encryption::{CheckResult, EncryptionView};

/// A content table for the Data page (the wire type).
pub use wire::content::TableSummary as TableView;

/// Backup settings as the settings card shows them (the wire type).
pub use wire::settings::{Frequency, Schedule as ScheduleView, SettingsView};

/// The result of saving settings: saved, or one message per invalid field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SaveOutcome {
    Saved(SettingsView),
    Invalid(BTreeMap<String, String>),
}

/// The result of saving a destination: saved, or one message per invalid field (a field
/// error is an answer, like [`SaveOutcome::Invalid`], not a failed call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DestinationSave {
    Saved(Box<Destination>),
    Invalid(BTreeMap<String, String>),
}

/// The result of changing the encryption settings: saved (the first enable carries the
/// key and the kit, once), or one message per invalid field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EncryptionSave {
    Saved(Box<EncryptionView>),
    Invalid(BTreeMap<String, String>),
}

/// The message of a REST error body (`{"error":{"message","fields"}}`, DESIGN section 6)
/// with its per-field messages, or "`what` failed (HTTP status)" when the body is not one.
pub fn api_error_message(body: &str, status: u16, what: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let Some(message) = v.pointer("/error/message").and_then(|m| m.as_str()) else {
        return format!("{what} failed (HTTP {status})");
    };
    let mut out = message.to_owned();
    if let Some(fields) = v.pointer("/error/fields").and_then(|f| f.as_object()) {
        for (field, m) in fields {
            out.push_str(&format!("; {field}: {}", m.as_str().unwrap_or_default()));
        }
    }
    out
}

/// Human-readable byte size.
pub fn format_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", n as i64)
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod api_error_tests {
    use super::api_error_message;

    #[test]
    fn reads_the_message_and_its_fields_or_says_what_failed() {
        assert_eq!(
            api_error_message(
                r#"{"error":{"code":"invalid","message":"bad plugin"}}"#,
                400,
                "the install"
            ),
            "bad plugin"
        );
        assert_eq!(
            api_error_message(
                r#"{"error":{"message":"refused","fields":{"limits.timeout_ms":"too long"}}}"#,
                400,
                "the install"
            ),
            "refused; limits.timeout_ms: too long"
        );
        assert_eq!(
            api_error_message("<html>502</html>", 502, "the upload"),
            "the upload failed (HTTP 502)"
        );
    }
}
