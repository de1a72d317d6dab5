//! Integration tests: each starts the real `backstop` binary on a free port with a fresh
//! data dir (see `tests::TestApp`). One binary, so they share one build.

mod auth;
mod backups;
mod config;
mod crash;
mod destinations;
mod encrypt_local;
mod encryption;
mod garage_harness;
mod http_limits;
mod model;
#[path = "../../../server/pg/tests/common/mod.rs"]
mod pgcommon;
mod plugins;
mod postgres;
mod restore;
mod route_matrix;
mod safety;
mod safety_settings;
mod security;
