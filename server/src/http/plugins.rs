//! `/api/backups/plugins/...` (DESIGN section 6): list installed plugins with their state,
//! grants and last error; change one (enable/disable, grants, settings). Mounted behind the
//! admin guard of `/api/backups`. The handlers only translate HTTP: checking, storing and
//! applying a change is `engine::plugins::update_plugin`.

use axum::Json;
use axum::extract::{Path, State};
use engine::Error;
use engine::plugins::PluginUpdate;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};

/// `GET /api/backups/plugins/` -> `{"plugins": [PluginView...]}`.
pub async fn list_plugins(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let runtime = st.engine.plugins().clone();
    // `describe` may read plugin files (dev reload): keep it off the async workers.
    let plugins = tokio::task::spawn_blocking(move || runtime.describe())
        .await
        .map_err(|e| ApiError(Error::internal("listing plugins failed", e)))?;
    Ok(Json(serde_json::json!({ "plugins": plugins })))
}

/// `PUT /api/backups/plugins/{id}/` with a [`PluginUpdate`] body
/// (`{"enabled"?, "grants"?: {"mounts"?, "veto"?, "limits"?}, "settings"?}`) -> the plugin.
/// 404 unknown plugin, 409 broken plugin, 400 with per-field messages for bad grants or
/// settings (e.g. `grants.mounts.root`, `settings.directories`).
pub async fn update_plugin(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<PluginUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    let view =
        engine::plugins::update_plugin(st.engine.state(), &**st.engine.plugins(), &id, &update)
            .await?;
    Ok(Json(serde_json::to_value(view).map_err(|e| {
        ApiError(Error::internal("cannot encode the plugin", e))
    })?))
}

/// `GET /api/backups/jobs/{id}/plugin-log/` -> `{"lines": [PluginLogLine...]}`: what plugins
/// logged during one job (kept in memory for the most recent jobs; empty otherwise).
pub async fn job_plugin_log(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError(Error::not_found(format!("no job {id:?}"))))?;
    let lines = st.engine.plugins().job_log(id);
    Ok(Json(serde_json::json!({ "lines": lines })))
}
