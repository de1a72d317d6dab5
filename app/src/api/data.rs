//! The Data page: content tables and their row counts.

use leptos::prelude::*;

use crate::model::TableView;

/// Every content table with its row count and a few rows. Any signed-in account may look.
#[server]
pub async fn content_tables() -> Result<Vec<TableView>, ServerFnError> {
    let engine = super::ssr::engine()?;
    if super::ssr::current_account().await?.is_none() {
        return Err(ServerFnError::new("sign in first"));
    }
    let tables = engine
        .content_summary(5)
        .await
        .map_err(super::ssr::to_sfe)?;
    super::ssr::convert(&tables)
}
