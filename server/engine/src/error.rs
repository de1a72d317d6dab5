//! The engine's error policy.
//!
//! Every fallible engine call returns [`Error`]: a [`ErrorKind`] that the HTTP layer maps to a
//! status code, a `message` written for a person ("backup path /x is not writable", never
//! "os error 13"), optional per-field messages for form validation, and the underlying
//! source, which is logged but never sent to a client.

use std::collections::BTreeMap;
use std::fmt;

/// What went wrong, coarsely: decides the HTTP status and how the UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input (400).
    Invalid,
    /// Not authenticated (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Denied,
    /// Unknown resource (404).
    NotFound,
    /// Wrong state for the action (409).
    Conflict,
    /// The work was canceled on request (409 `canceled`): a cancel is a kind of its own, so
    /// no caller has to recognise it by its message.
    Canceled,
    /// Body or archive too large (413).
    TooLarge,
    /// Archive rejected by validation (422).
    Rejected,
    /// Too many attempts (429).
    RateLimited,
    /// A dependency is not available right now (503).
    Unavailable,
    /// A bug or an environment failure (500).
    Internal,
}

impl ErrorKind {
    /// The stable machine-readable code sent as `error.code`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Denied => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Canceled => "canceled",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Rejected => "archive_rejected",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The engine's error: a kind, a message a person can act on, optional field errors, and the
/// source kept for the logs.
pub struct Error {
    kind: ErrorKind,
    message: String,
    fields: BTreeMap<String, String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            fields: BTreeMap::new(),
            source: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// The error every canceled operation returns (kind [`ErrorKind::Canceled`]).
    pub fn canceled() -> Self {
        Self::new(ErrorKind::Canceled, "canceled")
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }
    /// An internal failure: `message` is what the user sees, `source` goes to the log.
    pub fn internal(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::new(ErrorKind::Internal, message).with_source(source)
    }
    /// Field-level validation errors (400) with one message per field.
    pub fn fields(fields: BTreeMap<String, String>) -> Self {
        let mut e = Self::invalid("some fields are invalid");
        e.fields = fields;
        e
    }
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }
    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.fields.insert(field.into(), message.into());
        self
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn field_errors(&self) -> &BTreeMap<String, String> {
        &self.fields
    }
    /// The message followed by the whole source chain, for logs only.
    pub fn detailed(&self) -> String {
        let mut s = self.message.clone();
        let mut src: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detailed())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Database errors are internal unless the caller maps them: the text is logged, not shown.
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::internal("database error", e)
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::internal("database migration failed", e)
    }
}
