//! Encryption (DESIGN section 11) as the API returns it: `GET`/`PUT /api/backups/encryption/`
//! and the key check.

/// The encryption settings. `identity` and `kit` are present once: in the answer to the PUT
/// that created the instance key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EncryptionView {
    /// Copies to destinations with `encrypt` on are encrypted (off: such copies fail with
    /// "set up encryption first").
    pub enabled: bool,
    /// The local archive folder keeps encrypted archives too.
    pub encrypt_local: bool,
    /// The instance key's public half (`age1...`); null before encryption was first enabled.
    pub public_key: Option<String>,
    /// Extra recipients (an admin's own age public keys): each can open every encrypted copy.
    pub recipients: Vec<String>,
    /// The instance key's secret (`AGE-SECRET-KEY-1...`), only in the answer that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The emergency kit (a text file to keep off this machine), with `identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kit: Option<String>,
}

/// `POST /api/backups/encryption/check/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// This key opens the archives this instance encrypts.
    pub ok: bool,
    pub message: String,
}
