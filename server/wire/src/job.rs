//! Jobs as every client sees them (DESIGN section 4): the REST API, the event stream and the
//! server functions send exactly these.

use std::fmt;

/// A string that is not one of an enum's values (a filter, a state DB row from the future).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; use one of {}",
            self.what,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// Declares a contract enum: serde, sqlx and the OpenAPI schema (`openapi` feature) spell
/// each variant as given, `as_str` and `FromStr` use the same spelling, `ALL` lists every
/// value.
macro_rules! contract_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] #[cfg_attr(feature = "sqlx", sqlx(rename = $text))] $variant),+
        }

        impl $name {
            /// Every value, in the contract's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value as the contract spells it.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        // The OpenAPI schema is written from `NAMES` rather than derived: utoipa's derive
        // does not see a `serde(rename)` whose value is a macro argument, and would spell
        // the variants as in Rust (`Backup`).
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownValue { what: $what, value: s.to_owned(), expected: Self::NAMES }),
                }
            }
        }
    };
}

pub(crate) use contract_enum;

contract_enum!(
    /// What a job does.
    JobKind, "kind", {
        Backup = "backup",
        Restore = "restore",
    }
);

contract_enum!(
    /// Where a job is in its life: `pending` -> `running` -> one of the three ends.
    JobStatus, "status", {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
);

impl JobStatus {
    /// Not yet ended: cancelable, not deletable.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

contract_enum!(
    /// Who or what started a job.
    JobTrigger, "trigger", {
        Manual = "manual",
        Scheduled = "scheduled",
        Upload = "upload",
        /// The safety backup a restore takes first.
        PreRestore = "pre-restore",
        /// An archive imported from a destination (DESIGN section 10).
        Import = "import",
    }
);

impl JobTrigger {
    /// Backups Backstop made itself, which retention may prune (uploads and imports never).
    pub fn is_pruneable(self) -> bool {
        matches!(
            self,
            JobTrigger::Manual | JobTrigger::Scheduled | JobTrigger::PreRestore
        )
    }
}

/// A job's progress: the step it is at, and bytes done of the step's total (0 = unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobProgress {
    pub step: Option<String>,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// A note a plugin attached to a step; stored with the job and written to the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Annotation {
    pub plugin: String,
    pub step: String,
    pub text: String,
}

/// A job, exactly as the REST API and the event stream send it (DESIGN section 4).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: crate::JobId,
    pub kind: JobKind,
    pub status: JobStatus,
    pub trigger: JobTrigger,
    pub requested_by: Option<String>,
    /// The archive's file name: owned by this record for a backup; for a restore, the
    /// source's name, for display only (see `source_job_id`).
    pub archive_name: Option<String>,
    pub original_filename: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    /// The archive is stored encrypted (`NAME.tar.gz.age`, DESIGN section 11): a download
    /// gives the `.age` file as stored, and a restore decrypts it with the instance key.
    /// For a restore job: whether its source is.
    #[serde(default)]
    pub encrypted: bool,
    pub include_recordings: bool,
    pub progress: JobProgress,
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub annotations: Vec<Annotation>,
    /// A restore's source backup.
    #[serde(default)]
    pub source_job_id: Option<crate::JobId>,
    /// Where the archive was copied (DESIGN section 10), by destination.
    #[serde(default)]
    pub copies: Vec<crate::destination::JobCopy>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub can_download: bool,
    pub can_restore: bool,
    pub can_cancel: bool,
    pub can_delete: bool,
}

/// One page of the history (`GET /api/backups/jobs/`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub total: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_spelled_as_the_contract_says_in_json_and_from_str() {
        for (k, s) in JobKind::ALL.iter().zip(JobKind::NAMES) {
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{s}\""));
            assert_eq!(s.parse::<JobKind>().unwrap(), *k);
        }
        assert_eq!(JobTrigger::PreRestore.as_str(), "pre-restore");
        assert_eq!(
            serde_json::from_str::<JobTrigger>("\"pre-restore\"").unwrap(),
            JobTrigger::PreRestore
        );
        assert_eq!(JobStatus::NAMES.len(), 5);
        let e = "done".parse::<JobStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown status \"done\"; use one of pending, running, succeeded, failed, canceled"
        );
        assert!(serde_json::from_str::<JobKind>("\"Backup\"").is_err());
    }
}
