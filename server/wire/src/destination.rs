//! Destinations (DESIGN section 10): where copies of every archive go, off this machine, and
//! what a job's `copies` say about them.
//!
//! What a client sends to create or change a destination is [`DestinationInput`]; the engine
//! reads it from JSON field by field so each wrong field gets its own message. The secret is
//! write only: [`S3View`] carries `secret_access_key: null` and `secret_set` instead.

use std::fmt;

use crate::DestinationId;
use crate::job::contract_enum;

contract_enum!(
    /// What kind of store a destination is.
    DestinationKind, "kind", {
        /// Any S3-compatible store: AWS, Garage, MinIO, Ceph RGW, R2, B2.
        S3 = "s3",
    }
);

contract_enum!(
    /// Where one copy of an archive is.
    CopyStatus, "copy status", {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

/// The S3 settings of a destination as the API returns them (no secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct S3View {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://garage.lan:3900`, ...
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Objects go under this prefix (`backstop/` or empty).
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), as Garage and MinIO want; off means
    /// virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    pub access_key_id: String,
    /// Always null: the secret is write only.
    pub secret_access_key: Option<String>,
    /// Whether a secret is stored.
    pub secret_set: bool,
}

/// A destination (`GET /api/backups/destinations/{id}/`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Destination {
    pub id: DestinationId,
    pub name: String,
    pub kind: DestinationKind,
    pub enabled: bool,
    /// Keep the newest N copies there; 0 keeps all. The newest is never pruned.
    pub retention_count: u32,
    /// Copies are encrypted before they leave (DESIGN section 11).
    pub encrypt: bool,
    pub s3: S3View,
    /// `succeeded` or `failed` after the last copy or test; null before the first.
    pub last_status: Option<String>,
    /// Why the last copy failed (null after a success).
    pub last_error: Option<String>,
    pub last_success_at: Option<String>,
}

/// `GET /api/backups/destinations/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationList {
    pub destinations: Vec<Destination>,
}

/// The S3 settings a client sends. On update a missing or null secret keeps the stored one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct S3Input {
    pub endpoint: String,
    #[serde(default)]
    pub region: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "yes")]
    pub path_style: bool,
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

fn yes() -> bool {
    true
}

/// A destination as a client creates (`POST`) or replaces (`PUT`) it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationInput {
    pub name: String,
    #[serde(default = "s3_kind")]
    pub kind: DestinationKind,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub retention_count: u32,
    /// Default on: copies that leave the machine are encrypted.
    #[serde(default = "yes")]
    pub encrypt: bool,
    pub s3: S3Input,
}

fn s3_kind() -> DestinationKind {
    DestinationKind::S3
}

/// `POST /api/backups/destinations/{id}/test/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestResult {
    pub ok: bool,
    /// What worked, or exactly what failed (DNS, TLS, credentials, bucket, permission).
    pub message: String,
}

/// An archive a destination holds, read from its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoteArchive {
    pub name: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub created_at: String,
    pub encrypted: bool,
}

/// `GET /api/backups/destinations/{id}/archives/`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoteArchiveList {
    pub archives: Vec<RemoteArchive>,
}

/// One copy of a job's archive (a job's `copies`, DESIGN section 4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCopy {
    pub destination_id: DestinationId,
    /// The destination's name when the copy was made.
    pub destination: String,
    pub status: CopyStatus,
    pub error: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub finished_at: Option<String>,
    /// The copy is the encrypted `.age` form of the archive.
    #[serde(default)]
    pub encrypted: bool,
}

/// The sidecar written next to every copy, last (`<archive name>.json`): an archive whose
/// sidecar is missing is incomplete and never listed, and only objects with a sidecar are
/// ever deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sidecar {
    /// Always [`SIDECAR_FORMAT`]: how Backstop knows the object is its own.
    pub format: String,
    /// The object's name under the prefix (`backstop-...tar.gz`, or `....tar.gz.age`).
    pub name: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub created_at: String,
    /// When the copy was completed (RFC 3339, milliseconds): orders copies made within the
    /// same second.
    #[serde(default)]
    pub copied_at: String,
    pub encrypted: bool,
    /// The archive's manifest summary.
    pub app_version: String,
    pub schema_version: i64,
    pub include_recordings: bool,
    pub trigger: String,
}

/// The `format` of every sidecar Backstop writes.
pub const SIDECAR_FORMAT: &str = "backstop-copy-v1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_gets_the_contract_defaults_and_a_view_never_holds_a_secret() {
        let input: DestinationInput = serde_json::from_str(
            r#"{"name":"nas","s3":{"endpoint":"http://nas:3900","bucket":"b","access_key_id":"k","secret_access_key":"s"}}"#,
        )
        .unwrap();
        assert!(input.enabled && input.encrypt && input.s3.path_style);
        assert_eq!(input.kind, DestinationKind::S3);
        assert_eq!(input.retention_count, 0);
        let view = S3View {
            endpoint: input.s3.endpoint,
            region: String::new(),
            bucket: input.s3.bucket,
            prefix: String::new(),
            path_style: true,
            access_key_id: input.s3.access_key_id,
            secret_access_key: None,
            secret_set: true,
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["secret_access_key"], serde_json::Value::Null);
        assert_eq!(json["secret_set"], true);
        assert_eq!(
            CopyStatus::NAMES,
            ["pending", "running", "succeeded", "failed"]
        );
    }
}
