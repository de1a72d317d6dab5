//! `/api/backups/...`: every route needs an admin (the guard is a route layer).
//! Handlers only translate HTTP to engine calls; the engine does the work.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use engine::jobs::{JobEvent, JobFilter};
use engine::{Error, ErrorKind};
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

use super::AppState;
use super::auth::{Authenticated, require_admin};
use super::error::{ApiError, ApiJson, ApiResult};

/// Routes, nested under `/api/backups`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs/", get(list_jobs).post(create_job))
        .route("/jobs/{id}/", get(get_job).delete(delete_job))
        .route("/jobs/{id}/cancel/", post(cancel_job))
        .route("/jobs/{id}/download/", get(download).head(download))
        .route("/jobs/{id}/manifest/", get(manifest))
        .route("/jobs/{id}/verify/", post(verify))
        .route("/jobs/{id}/restore/", post(restore))
        .route("/upload/", post(upload).layer(DefaultBodyLimit::disable()))
        .route("/settings/", get(get_settings).put(put_settings))
        .route("/events/", get(events))
        .route(
            "/jobs/{id}/plugin-log/",
            get(super::plugins::job_plugin_log),
        )
        .route(
            "/plugins/",
            get(super::plugins::list_plugins)
                .post(super::plugins::install_plugin)
                .layer(DefaultBodyLimit::max(super::plugins::MAX_PLUGIN_UPLOAD)),
        )
        .route(
            "/plugins/{id}/",
            axum::routing::put(super::plugins::update_plugin),
        )
        .merge(super::destinations::routes())
        .route_layer(middleware::from_fn(require_admin))
}

/// Job ids are positive integers; anything else (including `..`) is simply unknown.
fn job_id(raw: &str) -> Result<engine::jobs::JobId, ApiError> {
    raw.parse::<engine::jobs::JobId>()
        .ok()
        .filter(|id| id.get() > 0)
        .ok_or_else(|| ApiError(Error::not_found(format!("no job {raw:?}"))))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only jobs of this kind.
    #[param(value_type = Option<wire::JobKind>)]
    kind: Option<String>,
    /// Only jobs in this status.
    #[param(value_type = Option<wire::JobStatus>)]
    status: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Jobs to skip (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    offset: Option<String>,
}

fn int_param(v: &Option<String>, name: &str, default: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            ApiError(
                Error::invalid(format!("{name} must be a whole number"))
                    .with_field(name, "a whole number"),
            )
        }),
    }
}

#[utoipa::path(get, path = "/api/backups/jobs/", tag = "backups",
    summary = "Jobs newest first",
    params(ListQuery),
    responses((status = 200, description = "one page of the history", body = wire::JobPage)))]
async fn list_jobs(
    State(st): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) =
        query.map_err(|e| ApiError(Error::invalid(format!("bad query: {}", e.body_text()))))?;
    let filter = JobFilter {
        kind: q.kind.filter(|s| !s.is_empty()),
        status: q.status.filter(|s| !s.is_empty()),
        limit: int_param(&q.limit, "limit", 50)?,
        offset: int_param(&q.offset, "offset", 0)?,
    };
    let (jobs, total) = st.engine.list_jobs(&filter).await?;
    Ok(Json(serde_json::json!({ "jobs": jobs, "total": total })))
}

#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    include_recordings: Option<bool>,
}

#[utoipa::path(post, path = "/api/backups/jobs/", tag = "backups",
    summary = "Start a backup",
    request_body(content = Option<CreateBody>, description = "optional; no body at all is fine"),
    responses((status = 202, description = "the backup job, queued", body = wire::Job),
        (status = 409, description = "a job is already running or the backup folder is unsafe", body = super::schemas::ErrorBody)))]
async fn create_job(
    State(st): State<AppState>,
    Authenticated(who): Authenticated,
    req: Request,
) -> ApiResult<Response> {
    // The body is optional: accept none at all, or a JSON object.
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0")
        || req.headers().get(header::TRANSFER_ENCODING).is_some();
    let body = if has_body {
        use axum::extract::FromRequest;
        ApiJson::<CreateBody>::from_request(req, &()).await?.0
    } else {
        CreateBody::default()
    };
    let job = st
        .engine
        .start_backup(
            engine::jobs::JobTrigger::Manual,
            Some(who.username),
            body.include_recordings,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[utoipa::path(get, path = "/api/backups/jobs/{id}/", tag = "backups", summary = "One job",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 200, description = "the job", body = wire::Job)))]
async fn get_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<engine::jobs::Job>> {
    Ok(Json(st.engine.get_job(job_id(&id)?).await?))
}

#[utoipa::path(delete, path = "/api/backups/jobs/{id}/", tag = "backups",
    summary = "Delete a job's archive file and record",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 204, description = "deleted"),
        (status = 409, description = "the job is pending or running", body = super::schemas::ErrorBody)))]
async fn delete_job(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    st.engine.delete_job(job_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/backups/jobs/{id}/cancel/", tag = "backups",
    summary = "Cancel a pending or running job",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 200, description = "the job", body = wire::Job),
        (status = 409, description = "the job is not cancelable", body = super::schemas::ErrorBody)))]
async fn cancel_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<engine::jobs::Job>> {
    Ok(Json(st.engine.cancel_job(job_id(&id)?).await?))
}

#[utoipa::path(method(get, head), path = "/api/backups/jobs/{id}/download/", tag = "backups",
    summary = "The archive (attachment; Content-Length and Range supported; HEAD for the headers only)",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 200, description = "the archive", content_type = "application/gzip", body = super::schemas::Binary),
        (status = 206, description = "the requested range", content_type = "application/gzip", body = super::schemas::Binary)))]
/// Streams the archive with `Content-Length`, `HEAD` and `Range` support (tower-http's
/// `ServeFile` does the range arithmetic and never reads the file into memory). An archive
/// stored encrypted (`NAME.tar.gz.age`) is sent as stored, as `application/octet-stream`
/// (age has no registered media type).
async fn download(
    State(st): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let path = st.engine.archive_path(id).await?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup.tar.gz".into());
    let mime = if name.ends_with(".age") {
        "application/octet-stream"
    } else {
        "application/gzip"
    };
    let served =
        tower_http::services::ServeFile::new_with_mime(&path, &mime.parse().expect("valid mime"))
            .oneshot(req)
            .await;
    let mut res = match served {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    };
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

#[utoipa::path(get, path = "/api/backups/jobs/{id}/manifest/", tag = "backups",
    summary = "The archive's manifest.json",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 200, description = "the manifest", body = wire::Manifest)))]
async fn manifest(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<app::model::Manifest>> {
    Ok(Json(st.engine.job_manifest(job_id(&id)?).await?))
}

#[utoipa::path(post, path = "/api/backups/jobs/{id}/verify/", tag = "backups",
    summary = "Full integrity check without restoring",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 200, description = "the report: ok, the manifest, what was checked", body = wire::VerifyReport),
        (status = 422, description = "the archive is damaged (the message says how)", body = super::schemas::ErrorBody)))]
async fn verify(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<engine::archive::VerifyReport>> {
    Ok(Json(st.engine.verify_job(job_id(&id)?).await?))
}

#[utoipa::path(post, path = "/api/backups/jobs/{id}/restore/", tag = "backups",
    summary = "Restore this archive (a safety backup is taken first)",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 202, description = "the restore job, queued", body = wire::Job),
        (status = 409, description = "a job is already running", body = super::schemas::ErrorBody)))]
async fn restore(
    State(st): State<AppState>,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = st
        .engine
        .start_restore(job_id(&id)?, Some(who.username))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[utoipa::path(post, path = "/api/backups/upload/", tag = "backups",
    summary = "Upload an archive; validated and stored under a server-chosen name",
    request_body(content(
        (super::schemas::UploadForm = "multipart/form-data"),
        (super::schemas::Binary = "application/gzip")),
        description = "multipart field `file` (and `identity`, the key for an encrypted `.age` archive), or the raw archive (optional `X-Filename` header)"),
    responses((status = 201, description = "the job (kind backup, trigger upload)", body = wire::Job),
        (status = 413, description = "larger than the upload limit", body = super::schemas::ErrorBody),
        (status = 422, description = "not a valid archive (the message says why)", body = super::schemas::ErrorBody)))]
/// Upload: the body (multipart field `file`, or a raw `application/gzip` body) is streamed
/// to a temporary file in the archive folder, validated, then listed. Never held in memory.
async fn upload(
    State(st): State<AppState>,
    Authenticated(who): Authenticated,
    req: Request,
) -> ApiResult<Response> {
    let limit = st.upload_limit;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit.saturating_add(64 * 1024)
    {
        return Err(too_large(limit));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let target = st.engine.begin_upload().await?;
    let result = async {
        if content_type.starts_with("multipart/form-data") {
            use axum::extract::FromRequest;
            let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError(Error::invalid(format!("bad multipart body: {}", e.body_text()))))?;
            // Fields in any order: `file` (streamed to disk), `identity` (the key for an
            // encrypted archive, DESIGN section 11; small, read into memory).
            let mut got: Option<(Option<String>, u64)> = None;
            let mut identity: Option<String> = None;
            while let Some(mut field) = mp.next_field().await.map_err(|e| ApiError(Error::invalid(format!("bad multipart body: {}", e.body_text()))))? {
                match field.name() {
                    Some("identity") => {
                        let mut text = Vec::new();
                        while let Some(chunk) = field.chunk().await.map_err(|e| ApiError(Error::invalid(format!("bad multipart body: {}", e.body_text()))))? {
                            text.extend_from_slice(&chunk);
                            if text.len() > 16 * 1024 {
                                return Err(ApiError(Error::invalid("the identity field is too long for an age key").with_field("identity", "an AGE-SECRET-KEY-1... line or a kit file")));
                            }
                        }
                        identity = Some(String::from_utf8_lossy(&text).into_owned());
                    }
                    Some("file") if got.is_none() => {
                        let original = field.file_name().map(str::to_owned);
                        let mut file = tokio::fs::File::create(target.path()).await.map_err(|e| ApiError(Error::internal("cannot store the upload", e)))?;
                        let mut written = 0u64;
                        while let Some(chunk) = field.chunk().await.map_err(|e| ApiError(Error::invalid(format!("the upload broke off: {}", e.body_text()))))? {
                            written += chunk.len() as u64;
                            if written > limit {
                                return Err(too_large(limit));
                            }
                            file.write_all(&chunk).await.map_err(|e| ApiError(Error::internal("cannot store the upload", e)))?;
                        }
                        file.flush().await.map_err(|e| ApiError(Error::internal("cannot store the upload", e)))?;
                        got = Some((original, written));
                    }
                    _ => continue,
                }
            }
            match got {
                Some((original, written)) => Ok((original, written, identity)),
                None => Err(ApiError(Error::invalid("the multipart body has no field named \"file\"").with_field("file", "required"))),
            }
        } else if content_type.starts_with("application/gzip") || content_type.starts_with("application/x-gzip") || content_type.starts_with("application/octet-stream") {
            let original = req
                .headers()
                .get("x-filename")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut stream = req.into_body().into_data_stream();
            let mut file = tokio::fs::File::create(target.path()).await.map_err(|e| ApiError(Error::internal("cannot store the upload", e)))?;
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| ApiError(Error::invalid("the upload broke off before the end")))?;
                written += chunk.len() as u64;
                if written > limit {
                    return Err(too_large(limit));
                }
                file.write_all(&chunk).await.map_err(|e| ApiError(Error::internal("cannot store the upload", e)))?;
            }
            file.flush().await.map_err(|e| ApiError(Error::internal("cannot store the upload", e)))?;
            Ok((original, written, None))
        } else {
            Err(ApiError(Error::invalid(
                "send the archive as multipart/form-data (field \"file\") or as a raw application/gzip body",
            )))
        }
    }
    .await;
    match result {
        Ok((original, size, identity)) => {
            if size == 0 {
                return Err(ApiError(Error::invalid("the uploaded file is empty")));
            }
            let job = st
                .engine
                .finish_upload(target, original, identity.as_deref(), Some(who.username))
                .await?;
            Ok((StatusCode::CREATED, Json(job)).into_response())
        }
        Err(e) => Err(e), // `target` is dropped here, removing the partial file
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError(Error::new(
        ErrorKind::TooLarge,
        format!(
            "the upload is larger than the limit of {} MiB (BACKSTOP_UPLOAD_LIMIT_MB)",
            limit / (1024 * 1024)
        ),
    ))
}

#[utoipa::path(get, path = "/api/backups/settings/", tag = "backups",
    summary = "Backup settings with next_run_at",
    responses((status = 200, description = "the saved settings", body = wire::settings::SettingsView)))]
async fn get_settings(State(st): State<AppState>) -> ApiResult<Json<wire::settings::SettingsView>> {
    Ok(Json(st.engine.settings_view().await?))
}

#[utoipa::path(put, path = "/api/backups/settings/", tag = "backups",
    summary = "Save settings (everything is validated before saving)",
    request_body(content = serde_json::Value, description = "the settings as GET returns them, or a subset of their fields (the others keep their value); `next_run_at` and `schedule_description` are ignored. Read as JSON so that every wrong field gets its own message"),
    responses((status = 200, description = "the saved settings", body = wire::settings::SettingsView),
        (status = 400, description = "invalid; `fields` says which", body = super::schemas::ErrorBody)))]
async fn put_settings(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<wire::settings::SettingsView>> {
    st.engine.save_settings(&body).await?;
    Ok(Json(st.engine.settings_view().await?))
}

/// How often an open event stream checks that its credential still stands (session signed
/// out or expired, token revoked, account gone or demoted): it ends at most this long after.
/// The check is two indexed reads of the state DB, cheap enough every 2 s per stream.
const EVENTS_RECHECK: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/api/backups/events/", tag = "backups",
    summary = "Server-sent events: `job` (a job snapshot), `deleted` ({id}), `resync`",
    responses((status = 200, description = "an event stream; each `job` event's data is a Job", content_type = "text/event-stream", body = String),
        (status = 429, description = "too many event streams open", body = super::schemas::ErrorBody)))]
/// Server-sent events: one `job` event per job snapshot change, `deleted` when a job goes.
/// Ends at shutdown and when the caller's credential stops standing ([`EVENTS_RECHECK`]).
///
/// At most [`super::MAX_EVENT_STREAMS_PER_ACCOUNT`] open per account and
/// [`super::MAX_EVENT_STREAMS`] in all: over either, 429. The stream holds its slot and gives
/// it back when it ends, however it ends (client gone, credential revoked, shutdown).
async fn events(
    State(st): State<AppState>,
    axum::Extension(identity): axum::Extension<super::auth::Identity>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    struct Open {
        rx: tokio::sync::broadcast::Receiver<JobEvent>,
        recheck: tokio::time::Interval,
        st: AppState,
        identity: super::auth::Identity,
        /// This stream's slot in `AppState::event_streams`, released when the stream drops.
        _slot: super::CapPermit<i64>,
    }
    // The admin guard ran first, so there is an account; 0 is never an account id.
    let account = identity.account.as_ref().map_or(0, |a| a.id);
    let slot = st.event_streams.try_acquire(account).map_err(|over| {
        let message = match over {
            super::CapExceeded::PerKey(n) => format!(
                "this account already has {n} event streams open, the most allowed; close a Backstop tab or another client first"
            ),
            super::CapExceeded::Total(n) => format!(
                "the server already has {n} event streams open, the most allowed; try again later"
            ),
        };
        ApiError(Error::new(ErrorKind::RateLimited, message))
    })?;
    let mut recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + EVENTS_RECHECK, EVENTS_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let open = Open {
        rx: st.engine.subscribe(),
        recheck,
        st,
        identity,
        _slot: slot,
    };
    let stream = futures::stream::unfold(open, |mut open| async move {
        let next = loop {
            tokio::select! {
                r = open.rx.recv() => break r,
                _ = open.st.shutdown.cancelled() => return None,
                _ = open.recheck.tick() => {
                    match super::auth::still_authorized(&open.st, &open.identity).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::debug!("event stream closed: its credential was revoked");
                            return None;
                        }
                        // Fail closed: the client reconnects and is checked afresh.
                        Err(e) => {
                            tracing::warn!(error = %e.detailed(), "event stream closed: cannot re-check its credential");
                            return None;
                        }
                    }
                }
            }
        };
        let event = match next {
            Ok(JobEvent::Updated(job)) => Event::default()
                .event("job")
                .json_data(&*job)
                .unwrap_or_else(|_| Event::default().comment("encode error")),
            Ok(JobEvent::Deleted(id)) => Event::default()
                .event("deleted")
                .data(serde_json::json!({ "id": id }).to_string()),
            // A slow client missed events: tell it to reload the list.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("resync").data("{}")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), open))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
