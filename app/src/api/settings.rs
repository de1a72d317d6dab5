//! Backup settings.

use leptos::prelude::*;

use crate::model::{SaveOutcome, SettingsView};

#[server]
pub async fn get_settings() -> Result<SettingsView, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    engine
        .settings_view()
        .await
        .map_err(crate::error::AppError::from)
}

/// Validates and saves; invalid fields come back one message each, nothing saved.
#[server]
pub async fn save_settings(settings: String) -> Result<SaveOutcome, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    let value: serde_json::Value = serde_json::from_str(&settings)
        .map_err(|_| crate::error::AppError::new("the settings are not valid JSON"))?;
    match engine.save_settings(&value).await {
        Ok(()) => {
            let v = engine
                .settings_view()
                .await
                .map_err(crate::error::AppError::from)?;
            Ok(SaveOutcome::Saved(v))
        }
        Err(e) if e.kind() == engine::ErrorKind::Invalid => {
            let mut fields = e.field_errors().clone();
            if fields.is_empty() {
                fields.insert("form".into(), e.message().to_owned());
            }
            Ok(SaveOutcome::Invalid(fields))
        }
        Err(e) => Err(e.into()),
    }
}
