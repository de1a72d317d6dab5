//! Encryption (DESIGN section 11): the settings, the change that first creates the instance
//! key (its answer carries the secret and the emergency kit, once) and the key check. The
//! same engine calls as the REST API under `/api/backups/encryption/`.
//!
//! Per-field messages from the engine come back as [`EncryptionSave::Invalid`], an answer
//! like the destinations' `DestinationSave::Invalid`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::model::{CheckResult, EncryptionSave, EncryptionView};

/// The encryption settings (never the secret).
#[server]
pub async fn get_encryption() -> Result<EncryptionView, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.encryption().await?)
}

/// Switches encryption on or off, sets whether the local archives are kept encrypted too
/// (`encrypt_local`) and the extra recipients; the change that first enables it returns
/// the new key and the emergency kit, once. JSON in (`input = Json`): an empty list has no
/// URL-encoded form.
#[server(input = Json)]
pub async fn update_encryption(
    enabled: bool,
    encrypt_local: bool,
    recipients: Vec<String>,
) -> Result<EncryptionSave, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    let body = serde_json::json!({
        "enabled": enabled,
        "encrypt_local": encrypt_local,
        "recipients": recipients,
    });
    match engine.update_encryption(&body).await {
        Ok(v) => Ok(EncryptionSave::Saved(Box::new(v))),
        Err(e) if !e.field_errors().is_empty() => {
            Ok(EncryptionSave::Invalid(e.field_errors().clone()))
        }
        Err(e) if matches!(e.kind(), engine::ErrorKind::Invalid) => Ok(EncryptionSave::Invalid(
            [("form".to_owned(), e.message().to_owned())].into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Says whether a pasted key (the `AGE-SECRET-KEY-1...` line or a whole kit) is this
/// instance's key.
#[server]
pub async fn check_encryption_key(identity: String) -> Result<CheckResult, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.check_encryption_key(&identity).await?)
}
