//! Accounts and API tokens as the API returns them (`/api/auth/...`, the user menu).

use crate::job::contract_enum;
use std::fmt;

contract_enum!(
    /// An account's role. Only admins manage backups.
    Role, "role", {
        Admin = "admin",
        Viewer = "viewer",
    }
);

/// A signed-in identity (`POST /api/auth/login`, `GET /api/auth/me`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// An API token as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// The secret's first characters, to tell tokens apart.
    pub prefix: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// `GET /api/auth/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// `POST /api/auth/tokens`: the new token with its secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    pub id: i64,
    /// The secret for `Authorization: Bearer`; Backstop keeps only its hash.
    pub token: String,
    pub name: String,
}
