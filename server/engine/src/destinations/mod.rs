//! Destinations (DESIGN section 10): S3-compatible stores that get a copy of every archive.
//!
//! - This file: the destinations as saved in the state DB (validated field by field, the
//!   secret write only), and the "test" call.
//! - [`s3`]: one bucket and prefix through `object_store`.
//! - [`copy`]: the copy step after every successful backup, retries, retention per
//!   destination, and import (disaster recovery).
//!
//! Decisions not fixed by DESIGN: a destination's name is unique (1-100 characters); the
//! prefix is a relative path of plain segments (no `.`/`..`), stored without slashes at the
//! ends; a destination with copies in flight cannot be deleted; copy rows keep the
//! destination's name so the history still reads after a destination is deleted.

pub mod copy;
pub mod s3;

use std::collections::BTreeMap;

use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::{FromRow, Row};

use crate::core::Core;
use crate::{Error, Result};
use wire::DestinationId;
use wire::destination::{Destination, DestinationInput, DestinationKind, S3View, TestResult};

#[derive(FromRow)]
pub(crate) struct DestinationRow {
    pub(crate) id: DestinationId,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) enabled: bool,
    pub(crate) retention_count: i64,
    pub(crate) encrypt: bool,
    pub(crate) endpoint: String,
    pub(crate) region: String,
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) path_style: bool,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) last_status: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_success_at: Option<String>,
}

impl std::fmt::Debug for DestinationRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("secret_access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

const SELECT: &str = "SELECT id, name, kind, enabled, retention_count, encrypt, endpoint, region, bucket, prefix, \
     path_style, access_key_id, secret_access_key, last_status, last_error, last_success_at FROM destinations";

impl DestinationRow {
    pub(crate) fn view(&self) -> Destination {
        Destination {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind.parse().unwrap_or(DestinationKind::S3),
            enabled: self.enabled,
            retention_count: self.retention_count.clamp(0, u32::MAX as i64) as u32,
            encrypt: self.encrypt,
            s3: S3View {
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
                bucket: self.bucket.clone(),
                prefix: self.prefix.clone(),
                path_style: self.path_style,
                access_key_id: self.access_key_id.clone(),
                secret_access_key: None,
                secret_set: !self.secret_access_key.is_empty(),
            },
            last_status: self.last_status.clone(),
            last_error: self.last_error.clone(),
            last_success_at: self.last_success_at.clone(),
        }
    }

    pub(crate) fn s3_config(&self) -> s3::S3Config {
        s3::S3Config {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            path_style: self.path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

/// A validated destination, ready to store. `secret: None` keeps the stored one (update).
struct Valid {
    input: DestinationInput,
    prefix: String,
    region: String,
}

impl Valid {
    /// Binds the settings both writes store, in the order the INSERT and the UPDATE name
    /// their columns: name, kind, enabled, retention_count, encrypt, endpoint, region,
    /// bucket, prefix, path_style, access_key_id. The secret (kept on update when absent)
    /// and the rest are the caller's.
    fn bind_settings<'q>(
        &'q self,
        query: Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> Query<'q, Sqlite, SqliteArguments<'q>> {
        let i = &self.input;
        query
            .bind(i.name.trim())
            .bind(i.kind.as_str())
            .bind(i.enabled)
            .bind(i.retention_count as i64)
            .bind(i.encrypt)
            .bind(i.s3.endpoint.trim().trim_end_matches('/'))
            .bind(&self.region)
            .bind(i.s3.bucket.trim())
            .bind(&self.prefix)
            .bind(i.s3.path_style)
            .bind(i.s3.access_key_id.trim())
    }
}

/// Reads a client's JSON body as a destination, every wrong field with its own message.
fn validate(body: &serde_json::Value, updating: bool) -> Result<Valid> {
    let input: DestinationInput = serde_json::from_value(body.clone()).map_err(|e| {
        let msg = e.to_string();
        let field = [
            "name",
            "s3",
            "endpoint",
            "bucket",
            "access_key_id",
            "retention_count",
            "enabled",
            "encrypt",
            "kind",
        ]
        .into_iter()
        .find(|f| msg.contains(&format!("`{f}`")))
        .unwrap_or("body");
        Error::invalid(format!("the destination is not valid: {msg}")).with_field(field, msg)
    })?;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        fields.insert(
            "name".into(),
            "a name of 1 to 100 printable characters".into(),
        );
    }
    let endpoint = input.s3.endpoint.trim();
    let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
    let host = endpoint.split_once("://").map(|(_, h)| h).unwrap_or("");
    if !scheme_ok
        || host.is_empty()
        || host.starts_with('/')
        || endpoint
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        fields.insert(
            "endpoint".into(),
            "an http:// or https:// URL, such as https://s3.eu-west-1.amazonaws.com or http://garage.lan:3900".into(),
        );
    }
    let bucket = input.s3.bucket.trim();
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if !bucket_ok {
        fields.insert(
            "bucket".into(),
            "3 to 63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit".into(),
        );
    }
    let prefix = input.s3.prefix.trim().trim_matches('/').to_owned();
    let prefix_ok = prefix.is_empty()
        || (prefix.len() <= 512
            && prefix.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && !seg.chars().any(|c| c.is_control() || c == '\\')
            }));
    if !prefix_ok {
        fields.insert(
            "prefix".into(),
            "a relative path such as backstop/ or homelab/backstop (no empty, . or .. parts)"
                .into(),
        );
    }
    if input.s3.access_key_id.trim().is_empty() {
        fields.insert(
            "access_key_id".into(),
            "the access key id is required".into(),
        );
    }
    match &input.s3.secret_access_key {
        Some(s) if s.is_empty() => {
            fields.insert(
                "secret_access_key".into(),
                "the secret must not be empty".into(),
            );
        }
        None if !updating => {
            fields.insert(
                "secret_access_key".into(),
                "the secret access key is required".into(),
            );
        }
        _ => {}
    }
    if input.retention_count > 1000 {
        fields.insert("retention_count".into(), "0 (keep all) to 1000".into());
    }
    if !fields.is_empty() {
        let summary = fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = Error::invalid(format!("the destination is not valid: {summary}"));
        for (k, v) in fields {
            e = e.with_field(k, v);
        }
        return Err(e);
    }
    let region = match input.s3.region.trim() {
        "" => "us-east-1".to_owned(),
        r => r.to_owned(),
    };
    Ok(Valid {
        input,
        prefix,
        region,
    })
}

impl Core {
    pub(crate) async fn destination_row(&self, id: DestinationId) -> Result<DestinationRow> {
        sqlx::query_as(&format!("{SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.state())
            .await?
            .ok_or_else(|| Error::not_found(format!("no destination {id}")))
    }

    pub(crate) async fn destination_rows(&self) -> Result<Vec<DestinationRow>> {
        Ok(sqlx::query_as(&format!("{SELECT} ORDER BY id"))
            .fetch_all(self.state())
            .await?)
    }

    /// Every destination, oldest first.
    pub async fn list_destinations(&self) -> Result<Vec<Destination>> {
        Ok(self
            .destination_rows()
            .await?
            .iter()
            .map(DestinationRow::view)
            .collect())
    }

    pub async fn get_destination(&self, id: DestinationId) -> Result<Destination> {
        Ok(self.destination_row(id).await?.view())
    }

    /// Creates a destination from a client's JSON body.
    pub async fn create_destination(&self, body: &serde_json::Value) -> Result<Destination> {
        let v = validate(body, false)?;
        let id: DestinationId = v
            .bind_settings(sqlx::query(
                "INSERT INTO destinations (name, kind, enabled, retention_count, encrypt, endpoint, region, bucket, prefix, \
                 path_style, access_key_id, secret_access_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            ))
            .bind(v.input.s3.secret_access_key.as_deref().unwrap_or_default())
            .bind(crate::state::now_rfc3339())
            .fetch_one(self.state())
            .await
            .map_err(name_taken)?
            .try_get("id")?;
        self.get_destination(id).await
    }

    /// Replaces a destination's settings; a missing or null secret keeps the stored one.
    pub async fn update_destination(
        &self,
        id: DestinationId,
        body: &serde_json::Value,
    ) -> Result<Destination> {
        self.destination_row(id).await?;
        let v = validate(body, true)?;
        v.bind_settings(sqlx::query(
            "UPDATE destinations SET name = ?, kind = ?, enabled = ?, retention_count = ?, encrypt = ?, endpoint = ?, \
             region = ?, bucket = ?, prefix = ?, path_style = ?, access_key_id = ?, \
             secret_access_key = COALESCE(?, secret_access_key) WHERE id = ?",
        ))
        .bind(v.input.s3.secret_access_key.as_deref())
        .bind(id)
        .execute(self.state())
        .await
        .map_err(name_taken)?;
        self.get_destination(id).await
    }

    /// Deletes a destination's settings. What it holds stays where it is (a person may
    /// still want those copies); copies in flight to it refuse the delete.
    pub async fn delete_destination(&self, id: DestinationId) -> Result<()> {
        self.destination_row(id).await?;
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_copies WHERE destination_id = ? AND status IN ('pending', 'running')",
        )
        .bind(id)
        .fetch_one(self.state())
        .await?;
        if busy > 0 {
            return Err(Error::conflict(
                "a copy to this destination is in progress; delete it when the copy has ended",
            ));
        }
        sqlx::query("DELETE FROM destinations WHERE id = ?")
            .bind(id)
            .execute(self.state())
            .await?;
        Ok(())
    }

    /// Writes, reads back and deletes a probe object. The outcome is also the
    /// destination's `last_status`/`last_error`.
    pub async fn test_destination(&self, id: DestinationId) -> Result<TestResult> {
        let row = self.destination_row(id).await?;
        let bucket = s3::Bucket::open(&row.s3_config(), self.config().copy_retry)?;
        let result = match bucket.probe().await {
            Ok(message) => TestResult { ok: true, message },
            Err(message) => TestResult { ok: false, message },
        };
        self.record_destination_outcome(id, result.ok.then_some(()).ok_or(&result.message))
            .await;
        Ok(result)
    }

    pub(crate) async fn record_destination_outcome(
        &self,
        id: DestinationId,
        outcome: std::result::Result<(), &String>,
    ) {
        let now = crate::state::now_rfc3339();
        let r = match outcome {
            Ok(()) => sqlx::query("UPDATE destinations SET last_status = 'succeeded', last_error = NULL, last_success_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(self.state())
                .await,
            Err(msg) => sqlx::query("UPDATE destinations SET last_status = 'failed', last_error = ? WHERE id = ?")
                .bind(msg)
                .bind(id)
                .execute(self.state())
                .await,
        };
        if let Err(e) = r {
            tracing::warn!(destination = %id, error = %e, "cannot record the destination's status");
        }
    }
}

fn name_taken(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return Error::conflict("another destination has this name")
            .with_field("name", "already used by another destination");
    }
    e.into()
}
