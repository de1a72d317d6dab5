//! One file per route.

pub mod backups;
pub mod data;
pub mod login;
pub mod plugins;
