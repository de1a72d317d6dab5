//! Destinations (DESIGN section 10): list, add, change, test, delete; the copies a
//! destination holds and their import (disaster recovery); a failed copy's retry. The same
//! engine calls as the REST API under `/api/backups/destinations/`.
//!
//! The save functions take the typed [`DestinationInput`] as JSON (`input = Json`), so an
//! absent secret (`null`: keep the stored one) stays apart from an empty one; the engine
//! reads it back field by field. Its per-field messages come back as
//! [`DestinationSave::Invalid`], an answer like the settings' `SaveOutcome::Invalid`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::model::{Destination, DestinationId, DestinationInput, DestinationSave, JobId, JobView};
use crate::model::{RemoteArchive, TestResult};

/// Every destination, oldest first (secrets are never sent).
#[server]
pub async fn list_destinations() -> Result<Vec<Destination>, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.list_destinations().await?)
}

/// Adds a destination; invalid fields come back one message each, nothing saved.
#[server(input = Json)]
pub async fn create_destination(
    input: DestinationInput,
) -> Result<DestinationSave, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    ssr::outcome(engine.create_destination(&ssr::body(&input)?).await)
}

/// Replaces a destination's settings; a `null` secret keeps the stored one.
#[server(input = Json)]
pub async fn update_destination(
    id: DestinationId,
    input: DestinationInput,
) -> Result<DestinationSave, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    ssr::outcome(engine.update_destination(id, &ssr::body(&input)?).await)
}

/// Forgets a destination; the copies it holds stay where they are.
#[server]
pub async fn delete_destination(id: DestinationId) -> Result<(), crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.delete_destination(id).await?)
}

/// Writes, reads back and deletes a probe object; says exactly what failed.
#[server]
pub async fn test_destination(id: DestinationId) -> Result<TestResult, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.test_destination(id).await?)
}

/// The complete copies a destination holds (from their sidecars), newest first.
#[server]
pub async fn remote_archives(
    id: DestinationId,
) -> Result<Vec<RemoteArchive>, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.remote_archives(id).await?)
}

/// Downloads a copy, checks it against its sidecar and lists it as a backup with trigger
/// `import`, ready to restore. An encrypted copy is opened with `identity` (the
/// `AGE-SECRET-KEY-1...` line of an emergency kit: a fresh install has no key of its own),
/// else with this instance's key.
#[server]
pub async fn import_archive(
    id: DestinationId,
    name: String,
    identity: Option<String>,
) -> Result<JobView, crate::error::AppError> {
    let (engine, who) = super::ssr::require_admin().await?;
    Ok(engine
        .import_archive(id, &name, identity.as_deref(), Some(who.username))
        .await?)
}

/// Queues a failed copy of a backup again; the job comes back with that copy `pending`.
#[server]
pub async fn retry_copy(
    job: JobId,
    destination: DestinationId,
) -> Result<JobView, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.retry_copy(job, destination).await?)
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::error::AppError;
    use crate::model::{Destination, DestinationInput, DestinationSave};

    /// The engine reads a destination from JSON, field by field.
    pub fn body(input: &DestinationInput) -> Result<serde_json::Value, AppError> {
        serde_json::to_value(input).map_err(|_| AppError::new("the destination cannot be encoded"))
    }

    /// Saved, or the engine's per-field messages (invalid fields, a name already taken); a
    /// refusal without fields that the form can still show is `form`; the rest are errors.
    pub fn outcome(saved: engine::Result<Destination>) -> Result<DestinationSave, AppError> {
        match saved {
            Ok(d) => Ok(DestinationSave::Saved(Box::new(d))),
            Err(e) if !e.field_errors().is_empty() => {
                Ok(DestinationSave::Invalid(e.field_errors().clone()))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    engine::ErrorKind::Invalid | engine::ErrorKind::Conflict
                ) =>
            {
                Ok(DestinationSave::Invalid(
                    [("form".to_owned(), e.message().to_owned())].into(),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
}
