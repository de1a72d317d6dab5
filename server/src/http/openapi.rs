//! `GET /api/openapi.json`: the OpenAPI 3 description of every route of DESIGN section 6.
//! Hand-written (small, and the contract changes rarely); an integration test checks every
//! route is in it. The `Job` schema is built from the wire types' own enum values, and a
//! unit test below checks its properties against a real serialized [`Job`], so the document
//! cannot drift from what the API sends (it had: `source_job_id` and `annotations` were
//! missing).

use axum::Json;
use serde_json::{Value, json};

fn op(summary: &str, ok: &str) -> Value {
    json!({
        "summary": summary,
        "responses": {
            ok: { "description": "success" },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
            "403": { "$ref": "#/components/responses/Error" },
            "404": { "$ref": "#/components/responses/Error" },
            "409": { "$ref": "#/components/responses/Error" }
        }
    })
}

fn id_param() -> Value {
    json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }])
}

/// The `Job` schema (DESIGN section 4), enum values from the wire types.
fn job_schema() -> Value {
    use engine::jobs::{JobKind, JobStatus, JobTrigger};
    let nullable = |t: &str| json!({ "type": t, "nullable": true });
    json!({ "type": "object", "properties": {
        "id": { "type": "integer" },
        "kind": { "type": "string", "enum": JobKind::NAMES },
        "status": { "type": "string", "enum": JobStatus::NAMES },
        "trigger": { "type": "string", "enum": JobTrigger::NAMES },
        "requested_by": nullable("string"),
        "archive_name": nullable("string"),
        "original_filename": nullable("string"),
        "size_bytes": nullable("integer"),
        "sha256": nullable("string"),
        "include_recordings": { "type": "boolean" },
        "progress": { "type": "object", "properties": {
            "step": nullable("string"), "done_bytes": { "type": "integer" }, "total_bytes": { "type": "integer" } } },
        "error": nullable("string"),
        "warnings": { "type": "array", "items": { "type": "string" } },
        "annotations": { "type": "array", "items": { "type": "object", "properties": {
            "plugin": { "type": "string" }, "step": { "type": "string" }, "text": { "type": "string" } } } },
        "source_job_id": { "type": "integer", "nullable": true, "description": "a restore's source backup" },
        "created_at": { "type": "string" },
        "started_at": nullable("string"),
        "finished_at": nullable("string"),
        "can_download": { "type": "boolean" },
        "can_restore": { "type": "boolean" },
        "can_cancel": { "type": "boolean" },
        "can_delete": { "type": "boolean" } } })
}

/// The document.
pub fn document() -> Value {
    let with_id = |v: Value| {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.insert("parameters".into(), id_param());
        }
        v
    };
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Backstop API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Configuration backups. Every /api/backups/ route needs an admin session or an API token (Authorization: Bearer)." },
        "components": {
            "securitySchemes": {
                "cookie": { "type": "apiKey", "in": "cookie", "name": "backstop_session" },
                "bearer": { "type": "http", "scheme": "bearer" }
            },
            "responses": {
                "Error": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" }, "fields": { "type": "object", "additionalProperties": { "type": "string" } } } } } },
                "Job": job_schema()
            }
        },
        "security": [{ "cookie": [] }, { "bearer": [] }],
        "paths": {
            "/api/health": { "get": { "summary": "Liveness (no authentication)", "security": [], "responses": { "200": { "description": "ok" } } } },
            "/api/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "ok" } } } },
            "/api/auth/login": { "post": op("Sign in with {username, password}; sets the session cookie", "200") },
            "/api/auth/logout": { "post": op("Sign out", "204") },
            "/api/auth/me": { "get": op("The signed-in account", "200") },
            "/api/auth/tokens": { "get": op("List your API tokens", "200"), "post": op("Create an API token {name}; the secret is shown once", "201") },
            "/api/auth/tokens/{id}": { "delete": with_id(op("Revoke an API token", "204")) },
            "/api/backups/jobs/": {
                "get": { "summary": "Jobs newest first: {jobs, total}", "parameters": [
                    { "name": "kind", "in": "query", "schema": { "type": "string", "enum": ["backup", "restore"] } },
                    { "name": "status", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } },
                    { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0 } }],
                    "responses": { "200": { "description": "ok" }, "401": { "$ref": "#/components/responses/Error" } } },
                "post": op("Start a backup; body optional {include_recordings}", "202")
            },
            "/api/backups/jobs/{id}/": { "get": with_id(op("One job", "200")), "delete": with_id(op("Delete archive and record (409 while active)", "204")) },
            "/api/backups/jobs/{id}/cancel/": { "post": with_id(op("Cancel a pending or running job", "200")) },
            "/api/backups/jobs/{id}/download/": { "get": with_id(op("The archive (application/gzip; Range supported)", "200")), "head": with_id(op("Archive headers", "200")) },
            "/api/backups/jobs/{id}/manifest/": { "get": with_id(op("The archive's manifest.json", "200")) },
            "/api/backups/jobs/{id}/verify/": { "post": with_id(op("Full integrity check without restoring", "200")) },
            "/api/backups/jobs/{id}/restore/": { "post": with_id(op("Restore this archive (a safety backup is taken first)", "202")) },
            "/api/backups/upload/": { "post": op("Upload an archive (multipart field file, or raw application/gzip); 413 too large, 422 rejected", "201") },
            "/api/backups/settings/": { "get": op("Backup settings with next_run_at", "200"), "put": op("Save settings (validated; 400 with fields)", "200") },
            "/api/backups/events/": { "get": op("text/event-stream of job snapshots (events: job, deleted, resync)", "200") },
            "/api/backups/plugins/": { "get": op("Plugins with version, state, grants, last error", "200"), "post": op("Install a plugin (multipart: manifest = plugin.toml, component = plugin.wasm); disabled until enabled", "201") },
            "/api/backups/jobs/{id}/plugin-log/": { "get": with_id(op("What plugins logged during a job (recent jobs only)", "200")) },
            "/api/backups/plugins/{id}/": { "put": with_id(op("Enable/disable, grants, settings", "200")) }
        }
    })
}

pub async fn openapi() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_schema_has_exactly_the_fields_a_serialized_job_has() {
        let job: engine::jobs::Job = serde_json::from_value(json!({
            "id": 1, "kind": "restore", "status": "succeeded", "trigger": "manual",
            "requested_by": null, "archive_name": null, "original_filename": null,
            "size_bytes": null, "sha256": null, "include_recordings": false,
            "progress": { "step": null, "done_bytes": 0, "total_bytes": 0 }, "error": null,
            "warnings": [], "annotations": [], "source_job_id": 2, "created_at": "",
            "started_at": null, "finished_at": null, "can_download": false,
            "can_restore": false, "can_cancel": false, "can_delete": true
        }))
        .expect("a job");
        let sent: std::collections::BTreeSet<String> = serde_json::to_value(&job)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let schema = job_schema();
        let described: std::collections::BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(described, sent);
        let progress: std::collections::BTreeSet<String> =
            schema["properties"]["progress"]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
        assert_eq!(
            progress,
            ["done_bytes", "step", "total_bytes"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            schema["properties"]["trigger"]["enum"],
            json!(["manual", "scheduled", "upload", "pre-restore", "import"])
        );
    }
}
