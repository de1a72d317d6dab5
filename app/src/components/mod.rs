//! Building blocks of the pages.

pub mod auth_gate;
pub mod confirm_dialog;
pub mod destinations;
pub mod encryption;
pub mod job_table;
pub mod local_time;
pub mod modal;
pub mod progress_bar;
pub mod settings_form;
pub mod upload_dialog;
pub mod user_menu;
