//! Backstop's domain: everything a backup system does, with no HTTP and no wasmtime.
//!
//! Layout:
//! - [`error`]: the one error type and its [`error::ErrorKind`] (mapped to HTTP codes by the server).
//! - [`content`]: the content DB (the thing that is backed up): open, migrate, inspect.
//! - [`demo`]: the reference IPTV demo data set.
//! - [`dirs`]: the writability probe for the data folders.
//! - [`state`]: Backstop's own state DB (accounts, sessions, tokens, settings, jobs).
//! - [`auth`]: accounts, password hashing, API tokens.
//! - [`settings`]: backup settings as the admin saves them, validated.
//! - [`schedule`]: next-run computation and the in-process scheduler.
//! - [`archive`]: archive format v1: database dump, writer, reader and validation.
//! - [`plugins`]: the traits through which the engine sees plugins (implemented by `plugin-host`).
//! - [`fault`]: crash fault points for the kill -9 tests (debug builds only).
//! - [`backup`]: the backup pipeline, top to bottom.
//! - [`destinations`]: copies off this machine (S3), their retention, import.
//! - [`encryption`]: the instance key and streamed age encryption of archives.
//! - [`jobs`]: job records, the single runner, cancel, retention, restart sweep.

pub mod archive;
pub mod auth;
pub mod backup;
pub mod content;
pub mod content_db;
mod core;
pub mod demo;
pub mod destinations;
pub mod dirs;
pub mod encryption;
pub mod error;
pub mod fault;
pub mod instance;
pub mod jobs;
pub mod plugin_admin;
pub mod plugins;
pub mod restore;
pub mod schedule;
pub mod settings;
pub mod state;

pub use core::EngineConfig;
pub use error::{Error, ErrorKind, Result};
pub use instance::Engine;
