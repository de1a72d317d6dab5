//! `/api/backups/destinations/...` and the copy retry (DESIGN section 10). Mounted inside
//! [`super::backups::routes`], so the admin guard covers them. Handlers only translate
//! HTTP to engine calls.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::Error;
use wire::DestinationId;
use wire::destination::{Destination, DestinationList, RemoteArchiveList, TestResult};

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ApiJson, ApiResult};

/// Routes, nested under `/api/backups` by the caller.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/destinations/", get(list).post(create))
        .route("/destinations/{id}/", get(one).put(update).delete(remove))
        .route("/destinations/{id}/test/", post(test))
        .route("/destinations/{id}/archives/", get(archives))
        .route("/destinations/{id}/archives/{name}/import/", post(import))
        .route("/jobs/{id}/copies/{destination_id}/retry/", post(retry))
        .route("/encryption/", get(encryption).put(put_encryption))
        .route("/encryption/check/", post(check_key))
}

/// Destination ids are positive integers; anything else is simply unknown.
fn destination_id(raw: &str) -> Result<DestinationId, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && raw.bytes().all(|b| b.is_ascii_digit()))
        .map(DestinationId)
        .ok_or_else(|| ApiError(Error::not_found(format!("no destination {raw:?}"))))
}

#[utoipa::path(get, path = "/api/backups/destinations/", tag = "destinations",
    summary = "Every destination (secrets are never returned)",
    responses((status = 200, description = "the destinations", body = DestinationList)))]
pub(super) async fn list(State(st): State<AppState>) -> ApiResult<Json<DestinationList>> {
    Ok(Json(DestinationList {
        destinations: st.engine.list_destinations().await?,
    }))
}

#[utoipa::path(post, path = "/api/backups/destinations/", tag = "destinations",
    summary = "Add a destination",
    request_body(content = wire::destination::DestinationInput, description = "read as JSON so every wrong field gets its own message"),
    responses((status = 201, description = "the destination", body = Destination),
        (status = 400, description = "invalid; `fields` says which", body = super::schemas::ErrorBody),
        (status = 409, description = "the name is taken", body = super::schemas::ErrorBody)))]
pub(super) async fn create(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    let d = st.engine.create_destination(&body).await?;
    Ok((StatusCode::CREATED, Json(d)).into_response())
}

#[utoipa::path(get, path = "/api/backups/destinations/{id}/", tag = "destinations",
    summary = "One destination",
    params(("id" = DestinationId, Path, description = "a destination id")),
    responses((status = 200, description = "the destination", body = Destination)))]
pub(super) async fn one(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Destination>> {
    Ok(Json(st.engine.get_destination(destination_id(&id)?).await?))
}

#[utoipa::path(put, path = "/api/backups/destinations/{id}/", tag = "destinations",
    summary = "Change a destination (a missing or null secret keeps the stored one)",
    params(("id" = DestinationId, Path, description = "a destination id")),
    request_body(content = wire::destination::DestinationInput),
    responses((status = 200, description = "the destination", body = Destination),
        (status = 400, description = "invalid; `fields` says which", body = super::schemas::ErrorBody)))]
pub(super) async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<Destination>> {
    Ok(Json(
        st.engine
            .update_destination(destination_id(&id)?, &body)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/backups/destinations/{id}/", tag = "destinations",
    summary = "Forget a destination (the copies it holds stay there)",
    params(("id" = DestinationId, Path, description = "a destination id")),
    responses((status = 204, description = "deleted"),
        (status = 409, description = "a copy to it is in progress", body = super::schemas::ErrorBody)))]
pub(super) async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.engine.delete_destination(destination_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/backups/destinations/{id}/test/", tag = "destinations",
    summary = "Write, read back and delete a probe object",
    params(("id" = DestinationId, Path, description = "a destination id")),
    responses((status = 200, description = "`ok` and what worked or exactly what failed", body = TestResult)))]
pub(super) async fn test(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResult>> {
    Ok(Json(
        st.engine.test_destination(destination_id(&id)?).await?,
    ))
}

#[utoipa::path(get, path = "/api/backups/destinations/{id}/archives/", tag = "destinations",
    summary = "The complete copies a destination holds (from their sidecars), newest first",
    params(("id" = DestinationId, Path, description = "a destination id")),
    responses((status = 200, description = "the archives", body = RemoteArchiveList),
        (status = 503, description = "the store could not be read", body = super::schemas::ErrorBody)))]
pub(super) async fn archives(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RemoteArchiveList>> {
    Ok(Json(RemoteArchiveList {
        archives: st.engine.remote_archives(destination_id(&id)?).await?,
    }))
}

/// The optional body of an import: the key for an encrypted copy (DESIGN section 11).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportBody {
    /// `AGE-SECRET-KEY-1...` (or a whole emergency kit); the instance key is tried too.
    identity: Option<String>,
}

#[utoipa::path(post, path = "/api/backups/destinations/{id}/archives/{name}/import/", tag = "destinations",
    summary = "Import a copy: downloaded, checked against its sidecar, validated, listed as a backup with trigger `import`",
    params(("id" = DestinationId, Path, description = "a destination id"),
        ("name" = String, Path, description = "an archive name from the archives list")),
    request_body(content = Option<ImportBody>, description = "optional: the key for an encrypted copy"),
    responses((status = 201, description = "the imported backup", body = wire::Job),
        (status = 404, description = "no complete copy of that name", body = super::schemas::ErrorBody),
        (status = 422, description = "the copy is damaged or not a valid archive", body = super::schemas::ErrorBody)))]
pub(super) async fn import(
    State(st): State<AppState>,
    Authenticated(who): Authenticated,
    Path((id, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let identity = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let b: ImportBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError(Error::invalid(format!(
                "the body must be empty or {{\"identity\": \"AGE-SECRET-KEY-1...\"}}: {e}"
            )))
        })?;
        b.identity
    };
    let job = st
        .engine
        .import_archive(
            destination_id(&id)?,
            &name,
            identity.as_deref(),
            Some(who.username),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[utoipa::path(post, path = "/api/backups/jobs/{id}/copies/{destination_id}/retry/", tag = "destinations",
    summary = "Copy a backup to a destination again (after a failed copy)",
    params(("id" = wire::JobId, Path, description = "a backup job id"),
        ("destination_id" = DestinationId, Path, description = "a destination id")),
    responses((status = 202, description = "the job; its copy is queued", body = wire::Job),
        (status = 409, description = "not a succeeded backup, or the copy is under way", body = super::schemas::ErrorBody)))]
pub(super) async fn retry(
    State(st): State<AppState>,
    Path((id, dest)): Path<(String, String)>,
) -> ApiResult<Response> {
    let job = id
        .parse::<wire::JobId>()
        .ok()
        .filter(|j| j.get() > 0)
        .ok_or_else(|| ApiError(Error::not_found(format!("no job {id:?}"))))?;
    let job = st.engine.retry_copy(job, destination_id(&dest)?).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[utoipa::path(get, path = "/api/backups/encryption/", tag = "encryption",
    summary = "The encryption settings (never the secret)",
    responses((status = 200, description = "the settings", body = wire::encryption::EncryptionView)))]
pub(super) async fn encryption(
    State(st): State<AppState>,
) -> ApiResult<Json<wire::encryption::EncryptionView>> {
    Ok(Json(st.engine.encryption().await?))
}

#[utoipa::path(put, path = "/api/backups/encryption/", tag = "encryption",
    summary = "Change the encryption settings; the PUT that first enables it returns the new key (`identity`) and the emergency kit (`kit`), once",
    request_body(content = serde_json::Value, description = "`enabled`, `encrypt_local`, `recipients` (age1... public keys), each optional"),
    responses((status = 200, description = "the settings", body = wire::encryption::EncryptionView),
        (status = 400, description = "invalid; `fields` says which", body = super::schemas::ErrorBody)))]
pub(super) async fn put_encryption(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<wire::encryption::EncryptionView>> {
    Ok(Json(st.engine.update_encryption(&body).await?))
}

/// `POST /api/backups/encryption/check/`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckBody {
    /// `AGE-SECRET-KEY-1...`, or the whole emergency kit.
    identity: String,
}

#[utoipa::path(post, path = "/api/backups/encryption/check/", tag = "encryption",
    summary = "Does this key open the archives this instance encrypts?",
    request_body(content = CheckBody),
    responses((status = 200, description = "`ok` and why", body = wire::encryption::CheckResult)))]
pub(super) async fn check_key(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CheckBody>,
) -> ApiResult<Json<wire::encryption::CheckResult>> {
    Ok(Json(st.engine.check_encryption_key(&body.identity).await?))
}
