//! `/api/backups/plugins/...` (DESIGN section 6): list installed plugins with their state,
//! grants and last error; change one (enable/disable, grants, settings). Mounted behind the
//! admin guard of `/api/backups`. The handlers only translate HTTP: checking, storing and
//! applying a change is `Engine::update_plugin` (which also keeps grants off Backstop's own
//! files).

use axum::Json;
use axum::extract::{Path, State};
use engine::Error;
use engine::plugins::PluginUpdate;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};

#[utoipa::path(get, path = "/api/backups/plugins/", tag = "plugins",
    summary = "Plugins with version, state, grants, last error",
    responses((status = 200, description = "every installed plugin", body = wire::plugin::PluginList)))]
/// `GET /api/backups/plugins/` -> `{"plugins": [PluginView...]}`.
pub async fn list_plugins(
    State(st): State<AppState>,
) -> ApiResult<Json<engine::plugins::PluginList>> {
    Ok(Json(st.engine.plugins_view().await?))
}

#[utoipa::path(put, path = "/api/backups/plugins/{id}/", tag = "plugins",
    summary = "Enable/disable a plugin, change its grants or settings",
    params(("id" = wire::PluginId, Path, description = "a plugin id")),
    request_body(content = wire::plugin::PluginUpdate, description = "absent fields stay as they are"),
    responses((status = 200, description = "the plugin", body = wire::plugin::PluginView),
        (status = 400, description = "bad grants or settings; `fields` says which", body = super::schemas::ErrorBody),
        (status = 409, description = "the plugin is broken", body = super::schemas::ErrorBody)))]
/// `PUT /api/backups/plugins/{id}/` with a [`PluginUpdate`] body
/// (`{"enabled"?, "grants"?: {"mounts"?, "veto"?, "limits"?}, "settings"?}`) -> the plugin.
/// 404 unknown plugin, 409 broken plugin, 400 with per-field messages for bad grants or
/// settings (e.g. `grants.mounts.root`, `settings.directories`), including a mount that
/// would reach Backstop's own files (the data dir, the databases, the archive or plugins
/// folder).
pub async fn update_plugin(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<PluginUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    let view = st.engine.update_plugin(&id, &update).await?;
    Ok(Json(serde_json::to_value(view).map_err(|e| {
        ApiError(Error::internal("cannot encode the plugin", e))
    })?))
}

#[utoipa::path(get, path = "/api/backups/jobs/{id}/plugin-log/", tag = "plugins",
    summary = "What plugins logged during a job",
    params(("id" = wire::JobId, Path, description = "a job id")),
    responses((status = 200, description = "the lines, oldest first", body = wire::plugin::PluginLog)))]
/// `GET /api/backups/jobs/{id}/plugin-log/` -> `{"lines": [PluginLogLine...]}`: what plugins
/// logged during one job (live while it runs, kept with the job once it ended); 404 for an
/// unknown job.
pub async fn job_plugin_log(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::plugin::PluginLog>> {
    let id: engine::jobs::JobId = id
        .parse()
        .ok()
        .filter(|id: &engine::jobs::JobId| id.get() > 0)
        .ok_or_else(|| ApiError(Error::not_found(format!("no job {id:?}"))))?;
    let lines = st.engine.plugin_log(id).await?;
    Ok(Json(wire::plugin::PluginLog { lines }))
}

/// Largest accepted plugin upload (manifest + component).
pub const MAX_PLUGIN_UPLOAD: usize = 64 << 20;

#[utoipa::path(post, path = "/api/backups/plugins/", tag = "plugins",
    summary = "Install a plugin; disabled until an admin enables it",
    request_body(content = super::schemas::PluginForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "the plugin", body = wire::plugin::PluginView),
        (status = 400, description = "the manifest or component is refused (the message says why)", body = super::schemas::ErrorBody)))]
/// `POST /api/backups/plugins/` (multipart: `manifest` = the `plugin.toml` text, `component`
/// = the `.wasm`) -> 201 + the plugin, disabled until an admin enables it. 400 when the
/// manifest or component is refused (the message says why). Mount it with
/// `DefaultBodyLimit::max(MAX_PLUGIN_UPLOAD)`.
pub async fn install_plugin(
    State(st): State<AppState>,
    mut form: axum::extract::Multipart,
) -> ApiResult<(axum::http::StatusCode, Json<serde_json::Value>)> {
    let bad = |m: &str| ApiError(Error::invalid(m.to_owned()));
    let (mut manifest, mut component) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|_| bad("the upload is not valid multipart form data"))?
    {
        match field.name() {
            Some("manifest") => {
                manifest = Some(
                    field
                        .text()
                        .await
                        .map_err(|_| bad("the manifest field is not UTF-8 text"))?,
                )
            }
            Some("component") => {
                component = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|_| bad("the component field could not be read"))?,
                )
            }
            _ => {
                return Err(bad(
                    "send the fields manifest (plugin.toml) and component (plugin.wasm) only",
                ));
            }
        }
    }
    let (Some(manifest), Some(component)) = (manifest, component) else {
        return Err(bad(
            "send both fields: manifest (plugin.toml) and component (plugin.wasm)",
        ));
    };
    let runtime = st.engine.plugins().clone();
    // Compiling a component takes a moment of CPU: not on the async workers.
    let view = tokio::task::spawn_blocking(move || runtime.install(&manifest, &component))
        .await
        .map_err(|e| ApiError(Error::internal("installing the plugin failed", e)))??;
    let body = serde_json::to_value(view)
        .map_err(|e| ApiError(Error::internal("cannot encode the plugin", e)))?;
    Ok((axum::http::StatusCode::CREATED, Json(body)))
}
