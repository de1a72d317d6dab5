//! Backstop's WebAssembly plugin host: the only crate that names wasmtime. It implements
//! the engine's [`engine::plugins::PluginRuntime`] with WASI 0.2 components built against
//! `plugins/wit` (`backstop:plugin@0.1.0`).
//!
//! Layout:
//! - [`manifest`]: `plugin.toml`, parsed strictly.
//! - [`paths`]: resolving paths a plugin returns beneath their grant (cap-std).
//! - `sandbox`: the wasmtime engine, component cache, limits, and one call in a fresh store.
//! - [`host`]: [`PluginHost`]: discovery, grants, failure policies, the runtime trait.
//!
//! Security notes: wasmtime is 48.0.8 (newer lines need a newer rustc); the two 48.0.9
//! advisories that reach this build are closed in `sandbox` (GHSA-rc4p-x33f-vpr2: the GC
//! proposal is off; GHSA-5m8g-xhq4-4h93: stdout/stderr are our own stream). See the
//! "wasmtime 48.0.8 and its advisories" part of `plugins/README.md`.
//!
//! Construction: `PluginHost::new(HostConfig::for_data_dir(data_dir))`, shared as
//! `Arc<PluginHost>`; after the engine opened the state DB, load the stored grants with
//! `engine::plugins::sync_records(engine.state(), &*host)`.

pub mod host;
pub mod manifest;
pub mod paths;
mod sandbox;

pub use host::{HostConfig, Limits, PluginHost};
pub use manifest::{API_VERSION, FailurePolicy, Manifest};
pub use sandbox::{CallError, TICK};
