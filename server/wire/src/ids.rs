//! Newtype ids: a job id is not a plugin id is not a row count.

use std::fmt;

/// A job's id (the state DB's `jobs.id`). Serialized as a plain integer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobId(pub i64);

impl JobId {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;
    /// Plain decimal digits only (no sign, no spaces): `"12"` is job 12, `"+12"` is not.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            // Produce the standard error for anything that is not plain digits.
            return "x".parse::<i64>().map(JobId);
        }
        s.parse().map(JobId)
    }
}

impl From<i64> for JobId {
    fn from(v: i64) -> Self {
        JobId(v)
    }
}

/// An installed plugin's id (its `plugin.toml` `id`).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginId(pub String);

impl PluginId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A destination's id (DESIGN section 10).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationId(pub i64);

impl fmt::Display for DestinationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_plain_digits_only_and_serialize_as_integers() {
        assert_eq!("12".parse::<JobId>(), Ok(JobId(12)));
        for bad in ["", "+12", "-1", " 1", "1.0", "abc", "99999999999999999999"] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&JobId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<JobId>("7").unwrap(), JobId(7));
    }
}
