//! Types that exist only to describe request and response bodies in the OpenAPI document
//! (the error body, raw bytes, multipart forms). A leaf module: the handlers name these in
//! their `#[utoipa::path]` attributes and `openapi` collects the handlers, so keeping them
//! here (not in `openapi`) leaves no import cycle.

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// The JSON error body of DESIGN section 6, as `ApiError` (`http/error.rs`) sends it.
/// (These doc comments are the schemas' descriptions in the document.)
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A machine-readable code: `invalid`, `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `too_large`, `archive_rejected`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
    /// A message a person can act on.
    pub message: String,
    /// Per-field messages for invalid input (the field's name -> what is wrong).
    pub fields: BTreeMap<String, String>,
}

/// Raw bytes: an archive.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// `POST /api/backups/upload/` as multipart form data.
#[derive(ToSchema)]
pub struct UploadForm {
    /// The archive (`.tar.gz`); its file name is kept as the job's `original_filename`.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /api/backups/plugins/` as multipart form data.
#[derive(ToSchema)]
pub struct PluginForm {
    /// The plugin's `plugin.toml`, as text.
    pub manifest: String,
    /// The plugin's WebAssembly component (`plugin.wasm`).
    #[schema(value_type = String, format = Binary)]
    pub component: Vec<u8>,
}
