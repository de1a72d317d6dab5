//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every route of DESIGN section 6,
//! derived by utoipa rather than written out by hand:
//!
//! - the schemas of what the API sends (`Job`, `JobPage`, `Manifest`, the job enums, ...)
//!   come from the wire types themselves (`wire`'s `openapi` feature derives `ToSchema`), so
//!   a field added to `wire::Job` is in the document at the next build;
//! - each operation comes from the `#[utoipa::path]` attribute on its handler in `auth.rs`,
//!   `backups.rs`, `plugins.rs` and here (`/api/health` lives in `mod.rs` and is added by
//!   [`Common`]);
//! - [`Common`] adds what every operation shares: the security schemes (the session cookie
//!   and `Authorization: Bearer`), the JSON error body as every operation's `default`
//!   response, 401 on every signed-in route and 403 on every admin route.
//!
//! Accounts, tokens, the backup settings, the plugin log and plugin views are the wire
//! types' own schemas, as is the verify report; the settings `PUT` body is read as JSON on
//! purpose (every wrong field gets its message).
//!
//! The tests below hold the document to the router: every route `api_router` really has is
//! documented with the same methods and nothing else is; every `$ref` resolves; the `Job`
//! schema's properties are a serialized job's keys; the enums' values are the wire `NAMES`;
//! the error schema is the body `ApiError` really sends.

use axum::Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

pub use super::schemas::{Binary, ErrorBody, ErrorDetail, PluginForm, UploadForm};

/// The document's derivation: every handler's `#[utoipa::path]`, the wire types' schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backstop API",
        description = "Configuration backups. Every /api/backups/ route needs an admin: a session cookie (sign in with POST /api/auth/login) or an API token (Authorization: Bearer). Cookie-authenticated writes must be same-origin."
    ),
    paths(
        openapi,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::auth::create_token,
        super::auth::list_tokens,
        super::auth::delete_token,
        super::backups::list_jobs,
        super::backups::create_job,
        super::backups::get_job,
        super::backups::delete_job,
        super::backups::cancel_job,
        super::backups::download,
        super::backups::manifest,
        super::backups::verify,
        super::backups::restore,
        super::backups::upload,
        super::backups::get_settings,
        super::backups::put_settings,
        super::backups::events,
        super::plugins::list_plugins,
        super::plugins::install_plugin,
        super::plugins::update_plugin,
        super::plugins::job_plugin_log,
        super::destinations::list,
        super::destinations::create,
        super::destinations::one,
        super::destinations::update,
        super::destinations::remove,
        super::destinations::test,
        super::destinations::archives,
        super::destinations::import,
        super::destinations::retry,
        super::destinations::encryption,
        super::destinations::put_encryption,
        super::destinations::check_key,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        wire::Job,
        wire::JobId,
        wire::JobKind,
        wire::JobStatus,
        wire::JobTrigger,
        wire::JobProgress,
        wire::Annotation,
        wire::JobPage,
        wire::PluginId,
        wire::Manifest,
        wire::ManifestDatabase,
        wire::ManifestDirectory,
        wire::ManifestPlugin,
        wire::ManifestTotals,
        wire::plugin::PluginList,
        wire::plugin::PluginView,
        wire::plugin::PluginUpdate,
        wire::plugin::GrantsUpdate,
        wire::plugin::PluginGrants,
        wire::plugin::PluginLimits,
        wire::plugin::ApprovedPermissions,
        wire::plugin::RequestedMount,
        wire::plugin::SettingSpec,
        wire::DestinationId,
        wire::destination::Destination,
        wire::destination::DestinationKind,
        wire::destination::DestinationList,
        wire::destination::DestinationInput,
        wire::destination::S3View,
        wire::destination::S3Input,
        wire::destination::TestResult,
        wire::destination::RemoteArchive,
        wire::destination::RemoteArchiveList,
        wire::destination::JobCopy,
        wire::destination::CopyStatus,
        wire::encryption::EncryptionView,
        wire::encryption::CheckResult,
        super::destinations::ImportBody,
        super::destinations::CheckBody,
    )),
    modifiers(&Common),
    security(("cookie" = []), ("bearer" = []))
)]
pub struct ApiDoc;

/// What every operation shares (see the module docs).
pub struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("backstop_session"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.responses.insert(
            "Error".into(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("the request was refused or failed; the body says why")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );

        // `/api/health` is routed in `http/mod.rs`; it is described here to keep that file
        // free of documentation.
        doc.paths.add_path_operation(
            "/api/health",
            vec![HttpMethod::Get],
            OperationBuilder::new()
                .summary(Some("Liveness (no authentication)"))
                .tag("meta")
                .operation_id(Some("health"))
                .security(utoipa::openapi::security::SecurityRequirement::default())
                .response(
                    "200",
                    ResponseBuilder::new().description("{status: \"ok\", version}"),
                )
                .build(),
        );

        let error = || RefOr::Ref(Ref::from_response_name("Error"));
        for (path, item) in doc.paths.paths.iter_mut() {
            // `method(get, head)` gives both one operationId; ids must be unique.
            if let (Some(get), Some(head)) = (&item.get, &mut item.head)
                && head.operation_id.is_some()
                && head.operation_id == get.operation_id
            {
                head.operation_id = head.operation_id.take().map(|id| format!("{id}_head"));
            }
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.entry("default".into()).or_insert_with(error);
                // `security` unset = the document's (a credential is needed).
                if op.security.is_none() {
                    responses.entry("401".into()).or_insert_with(error);
                }
                if path.starts_with("/api/backups/") {
                    responses.entry("403".into()).or_insert_with(error);
                }
            }
        }
    }
}

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()),
    summary = "This document",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = serde_json::Value)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;
    use std::collections::BTreeMap;

    fn doc() -> Value {
        serde_json::to_value(document()).expect("the document serializes")
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object()
            .unwrap_or_else(|| panic!("an object: {v}"))
            .keys()
            .cloned()
            .collect()
    }

    /// The methods OpenAPI path items can hold (the keys that are operations).
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// Every (METHOD, path) the router has, read from the router itself.
    ///
    /// axum has no API to list a router's routes, but its `Debug` output has them: the
    /// `Node { paths: {RouteId(n): "/path"} }` map, and per route a `MethodRouter` whose
    /// method fields are `None` where that method is not routed. Nested routers are
    /// flattened into the parent by `nest`, so these are the full paths. Parsing a Debug
    /// format is fragile across axum versions; it fails loudly (the checks below) rather
    /// than quietly finding nothing.
    fn routed(router: &axum::Router<super::super::AppState>, prefix: &str) -> BTreeSet<String> {
        let text = format!("{router:?}");
        let main = text
            .split(", fallback_router:")
            .next()
            .expect("split yields one part");
        let (routes, paths) = main
            .split_once("node: Node { paths: {")
            .expect("axum's Router Debug has `node: Node { paths: {`");
        let id_of =
            |s: &str| -> String { s.split(')').next().expect("RouteId(n)").trim().to_owned() };
        let mut path_of = BTreeMap::new();
        for entry in paths.split("RouteId(").skip(1) {
            let id = id_of(entry);
            let path = entry
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("a quoted path in {entry:?}"));
            path_of.insert(id, path.to_owned());
        }
        let mut out = BTreeSet::new();
        for entry in routes.split("RouteId(").skip(1) {
            let id = id_of(entry);
            let body = entry
                .split_once("MethodRouter { ")
                .unwrap_or_else(|| panic!("route {id} is not a MethodRouter: {entry:?}"))
                .1;
            let path = &path_of[&id];
            let mut found = 0;
            for field in body.split(", ") {
                let Some((name, value)) = field.split_once(": ") else {
                    continue;
                };
                if METHODS.contains(&name) || name == "connect" {
                    found += 1;
                    if value != "None" {
                        out.insert(format!("{} {prefix}{path}", name.to_uppercase()));
                    }
                }
            }
            assert_eq!(
                found, 9,
                "route {path}: expected 9 method fields in {body:?}"
            );
        }
        assert_eq!(path_of.len(), routes.matches("RouteId(").count());
        out
    }

    #[test]
    fn the_route_reader_sees_a_route_added_to_the_router() {
        async fn extra() {}
        let base = routed(&super::super::api_router(), "/api");
        let more = routed(
            &super::super::api_router()
                .route("/extra/{id}/", axum::routing::put(extra).delete(extra)),
            "/api",
        );
        let added: BTreeSet<_> = more.difference(&base).cloned().collect();
        assert_eq!(
            added,
            ["DELETE /api/extra/{id}/", "PUT /api/extra/{id}/"]
                .map(String::from)
                .into()
        );
    }

    fn documented(doc: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in keys(item) {
                assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
        out
    }

    #[test]
    fn every_routed_api_route_is_documented_with_its_methods_and_nothing_else() {
        let routed = routed(&super::super::api_router(), "/api");
        assert!(
            routed.len() >= 25,
            "only {} routes found: {routed:?}",
            routed.len()
        );
        assert!(routed.contains("GET /api/backups/jobs/{id}/download/"));
        assert!(routed.contains("HEAD /api/backups/jobs/{id}/download/"));
        let documented = documented(&doc());
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routed but not documented: {undocumented:?}\ndocumented but not routed: {unrouted:?}"
        );
    }

    /// Every `$ref` in `v`, with where it was found.
    fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    if k == "$ref" {
                        out.push((at.to_owned(), v.as_str().expect("a string $ref").to_owned()));
                    } else {
                        refs(v, &format!("{at}/{k}"), out);
                    }
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    refs(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_document_is_well_formed_openapi_3() {
        let doc = doc();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc["info"]["title"].is_string());
        // Every $ref is local and resolves (a JSON pointer into the document).
        let mut found = Vec::new();
        refs(&doc, "", &mut found);
        assert!(found.len() > 30, "only {} $refs", found.len());
        for (at, target) in &found {
            let pointer = target
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{at}: non-local $ref {target}"));
            assert!(
                doc.pointer(pointer).is_some(),
                "{at}: $ref {target} resolves to nothing"
            );
        }
        // Every operation: a unique operationId, responses with descriptions, security
        // requirements naming declared schemes, path parameters that are in the path.
        let schemes = keys(&doc["components"]["securitySchemes"]);
        assert_eq!(schemes, ["bearer", "cookie"].map(String::from).into());
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            assert!(path.starts_with("/api/"), "{path}");
            for (method, op) in item.as_object().expect("path item") {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                let responses = op["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path}: no responses");
                for (status, r) in responses {
                    assert!(
                        status == "default"
                            || status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                        "{method} {path}: status {status}"
                    );
                    assert!(
                        r["description"].is_string() || r["$ref"].is_string(),
                        "{method} {path} {status}"
                    );
                }
                for requirement in op["security"].as_array().into_iter().flatten() {
                    for scheme in keys(requirement) {
                        assert!(
                            schemes.contains(&scheme),
                            "{method} {path}: scheme {scheme}"
                        );
                    }
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().expect("parameter name");
                    match p["in"].as_str() {
                        Some("path") => assert!(
                            path.contains(&format!("{{{name}}}")),
                            "{method} {path}: {name}"
                        ),
                        Some("query") => {}
                        other => panic!("{method} {path}: parameter {name} in {other:?}"),
                    }
                }
                // Every {param} in the path is declared.
                for segment in path.split('/').filter(|s| s.starts_with('{')) {
                    let name = segment.trim_matches(['{', '}']);
                    assert!(
                        op["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["name"] == name),
                        "{method} {path}: {name} not declared"
                    );
                }
            }
        }
        // The public routes need no credential; the rest inherit cookie-or-bearer.
        assert_eq!(doc["security"], json!([{ "cookie": [] }, { "bearer": [] }]));
        assert_eq!(doc["paths"]["/api/health"]["get"]["security"], json!([{}]));
        assert!(
            doc["paths"]["/api/backups/jobs/"]["get"]
                .get("security")
                .is_none()
        );
        assert!(doc["paths"]["/api/backups/jobs/"]["get"]["responses"]["403"].is_object());
    }

    /// A real job, serialized as the API sends it.
    fn a_serialized_job() -> Value {
        let job = wire::Job {
            id: wire::JobId(1),
            kind: wire::JobKind::Restore,
            status: wire::JobStatus::Succeeded,
            trigger: wire::JobTrigger::Manual,
            requested_by: None,
            archive_name: None,
            original_filename: None,
            size_bytes: None,
            sha256: None,
            encrypted: false,
            include_recordings: false,
            progress: wire::JobProgress::default(),
            error: None,
            warnings: vec![],
            annotations: vec![wire::Annotation {
                plugin: "p".into(),
                step: "s".into(),
                text: "t".into(),
            }],
            source_job_id: Some(wire::JobId(2)),
            copies: Vec::new(),
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            can_download: false,
            can_restore: false,
            can_cancel: false,
            can_delete: true,
        };
        serde_json::to_value(job).expect("a job serializes")
    }

    #[test]
    fn the_job_schema_has_exactly_the_fields_a_serialized_job_has() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let job = a_serialized_job();
        assert_eq!(keys(&schemas["Job"]["properties"]), keys(&job));
        assert_eq!(
            keys(&schemas["JobProgress"]["properties"]),
            keys(&job["progress"])
        );
        assert_eq!(
            keys(&schemas["Annotation"]["properties"]),
            keys(&job["annotations"][0])
        );
        assert_eq!(
            schemas["Job"]["properties"]["progress"]["$ref"],
            "#/components/schemas/JobProgress"
        );
        let page = serde_json::to_value(wire::JobPage {
            jobs: vec![],
            total: 0,
        })
        .expect("a page serializes");
        assert_eq!(keys(&schemas["JobPage"]["properties"]), keys(&page));
    }

    #[test]
    fn the_account_token_settings_and_plugin_log_schemas_have_the_fields_their_bodies_have() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let token = wire::account::TokenInfo {
            id: 1,
            name: "ci".into(),
            prefix: "bst_ab".into(),
            created_at: String::new(),
            last_used_at: None,
        };
        let bodies = [
            (
                "Account",
                serde_json::to_value(wire::account::Account {
                    id: 1,
                    username: "admin".into(),
                    role: wire::account::Role::Admin,
                }),
            ),
            ("TokenInfo", serde_json::to_value(&token)),
            (
                "TokenList",
                serde_json::to_value(wire::account::TokenList { tokens: vec![] }),
            ),
            (
                "TokenCreated",
                serde_json::to_value(wire::account::TokenCreated {
                    id: 1,
                    token: "bst_secret".into(),
                    name: "ci".into(),
                }),
            ),
            (
                "PluginLogLine",
                serde_json::to_value(wire::plugin::PluginLogLine {
                    plugin: "p".into(),
                    level: "info".into(),
                    message: "m".into(),
                    at: String::new(),
                }),
            ),
            (
                "PluginLog",
                serde_json::to_value(wire::plugin::PluginLog { lines: vec![] }),
            ),
        ];
        for (name, body) in bodies {
            let body = body.expect("serializes");
            assert_eq!(keys(&schemas[name]["properties"]), keys(&body), "{name}");
        }
        assert_eq!(schemas["Role"]["enum"], json!(["admin", "viewer"]));
        let settings = wire::settings::SettingsView {
            path: "backups".into(),
            include_recordings: false,
            retention_count: 7,
            schedule: wire::settings::Schedule {
                enabled: false,
                frequency: wire::settings::Frequency::Daily,
                time: "03:00".into(),
                day_of_week: 0,
                timezone: "UTC".into(),
            },
            next_run_at: None,
            schedule_description: String::new(),
        };
        let settings = serde_json::to_value(settings).expect("serializes");
        assert_eq!(
            keys(&schemas["SettingsView"]["properties"]),
            keys(&settings)
        );
        assert_eq!(
            keys(&schemas["Schedule"]["properties"]),
            keys(&settings["schedule"])
        );
        assert_eq!(
            schemas["Frequency"]["enum"],
            json!(["hourly", "daily", "weekly"])
        );
        // The operations name them.
        let paths = &doc["paths"];
        for (path, method, status, schema) in [
            ("/api/auth/me", "get", "200", "Account"),
            ("/api/auth/login", "post", "200", "Account"),
            ("/api/auth/tokens", "get", "200", "TokenList"),
            ("/api/auth/tokens", "post", "201", "TokenCreated"),
            (
                "/api/backups/jobs/{id}/plugin-log/",
                "get",
                "200",
                "PluginLog",
            ),
        ] {
            let r = &paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
                ["$ref"];
            assert_eq!(
                r.as_str(),
                Some(format!("#/components/schemas/{schema}").as_str()),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn the_job_enums_are_string_enums_of_exactly_their_names() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        for (name, names) in [
            ("JobKind", wire::JobKind::NAMES),
            ("JobStatus", wire::JobStatus::NAMES),
            ("JobTrigger", wire::JobTrigger::NAMES),
        ] {
            assert_eq!(schemas[name]["type"], "string", "{name}");
            assert_eq!(schemas[name]["enum"], json!(names), "{name}");
        }
        assert_eq!(
            schemas["JobTrigger"]["enum"],
            json!(["manual", "scheduled", "upload", "pre-restore", "import"])
        );
        for field in ["kind", "status", "trigger"] {
            let r = schemas["Job"]["properties"][field]["$ref"].as_str();
            assert!(
                r.is_some_and(|r| r.starts_with("#/components/schemas/Job")),
                "{field}"
            );
        }
        // The job list's filters take the same values.
        let params = &doc["paths"]["/api/backups/jobs/"]["get"]["parameters"];
        let kind = params
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "kind")
            .expect("a kind parameter");
        assert!(
            kind.to_string().contains("#/components/schemas/JobKind"),
            "{kind}"
        );
    }

    #[test]
    fn the_manifest_schema_has_the_fields_a_written_manifest_has() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let m: wire::Manifest = serde_json::from_value(json!({
            "format": "backstop-backup", "format_version": 1,
            "database": { "schema_version": 3, "sha256": "ab" },
            "directories": [{ "name": "logos" }],
            "plugins": [{ "id": "p" }]
        }))
        .expect("a manifest");
        let sent = serde_json::to_value(&m).expect("a manifest serializes");
        assert_eq!(keys(&schemas["Manifest"]["properties"]), keys(&sent));
        assert_eq!(
            keys(&schemas["ManifestDatabase"]["properties"]),
            keys(&sent["database"])
        );
        assert_eq!(
            keys(&schemas["ManifestDirectory"]["properties"]),
            keys(&sent["directories"][0])
        );
        assert_eq!(
            keys(&schemas["ManifestPlugin"]["properties"]),
            keys(&sent["plugins"][0])
        );
        assert_eq!(
            keys(&schemas["ManifestTotals"]["properties"]),
            keys(&sent["totals"])
        );
    }

    #[tokio::test]
    async fn the_error_schema_is_the_body_an_api_error_sends() {
        use axum::response::IntoResponse;
        let e = engine::Error::invalid("bad").with_field("limit", "a whole number");
        let response = super::super::error::ApiError(e).into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(keys(&schemas["ErrorBody"]["properties"]), keys(&body));
        assert_eq!(
            keys(&schemas["ErrorDetail"]["properties"]),
            keys(&body["error"])
        );
        assert_eq!(body["error"]["fields"]["limit"], "a whole number");
    }
}
