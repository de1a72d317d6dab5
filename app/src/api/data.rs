//! The Data page: content tables and their row counts.

use leptos::prelude::*;

use crate::model::TableView;

/// Every content table with its row count; for an admin also the first rows, secrets
/// masked by the engine (a viewer gets names and counts only). Any signed-in account may
/// ask: the engine decides what each role sees, so nothing secret is ever sent here.
#[server]
pub async fn content_tables() -> Result<Vec<TableView>, crate::error::AppError> {
    let engine = super::ssr::engine()?;
    let Some(account) = super::ssr::current_account().await? else {
        return Err(crate::error::AppError::new("sign in first"));
    };
    engine
        .content_summary(&account)
        .await
        .map_err(crate::error::AppError::from)
}
