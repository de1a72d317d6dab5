//! Backstop's contract as types (DESIGN sections 3 and 4), written once and used by the
//! engine (state DB rows, archive manifest), the server (REST, event stream, OpenAPI) and the
//! browser (server functions, event stream), so the strings of the contract live here only.
//!
//! - [`JobId`], [`PluginId`], [`DestinationId`]: ids that cannot be mixed up.
//! - [`JobKind`], [`JobStatus`], [`JobTrigger`]: the job enums, serialized exactly as the
//!   contract spells them (and stored so in the state DB with the `sqlx` feature).
//! - [`Job`], [`JobProgress`], [`Annotation`], [`JobPage`]: a job as every client sees it.
//! - [`Manifest`]: `manifest.json` of archive format v1.
//! - [`account`]: accounts, roles and API tokens.
//! - [`content`]: the content tables as the Data page shows them.
//! - [`settings`]: the backup settings as the API returns them.
//! - [`plugin`]: plugins as the admin sees and changes them, and what they logged.
//! - [`destination`]: destinations off this machine, a job's copies, the sidecar.

pub mod account;
pub mod content;
pub mod destination;
pub mod encryption;
mod ids;
mod job;
mod manifest;
pub mod plugin;
pub mod settings;

pub use ids::{DestinationId, JobId, PluginId};
pub use job::{
    Annotation, Job, JobKind, JobPage, JobProgress, JobStatus, JobTrigger, UnknownValue,
};
pub use manifest::{
    BUILTIN_CONTRIBUTOR, FORMAT_VERSION, MANIFEST_FORMAT, Manifest, ManifestDatabase,
    ManifestDirectory, ManifestPlugin, ManifestTotals, VerifyReport,
};
