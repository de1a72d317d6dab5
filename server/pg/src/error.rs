//! The crate's one error type.
//!
//! Policy: every variant says what failed in words an administrator can act on, with the
//! object (URL part, table, column, privilege) as fields, not glued into a string; the
//! driver's error is kept as `source` for the log. [`Error::kind`] sorts them into the
//! classes the engine maps to HTTP statuses.

use std::io;

/// What went wrong, with the object it went wrong on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection URL cannot be used (syntax, scheme, unknown host form).
    #[error("the PostgreSQL URL is not valid: {reason}")]
    BadUrl { reason: String },

    /// No server answered at the address (refused, no socket file, DNS, timeout).
    #[error("cannot reach the PostgreSQL server at {target}")]
    Unreachable {
        target: String,
        #[source]
        source: sqlx::Error,
    },

    /// The server refused the user (wrong or missing password, no pg_hba.conf entry, no
    /// such role).
    #[error("PostgreSQL refused user {user}: {detail}")]
    Authentication {
        user: String,
        detail: String,
        #[source]
        source: sqlx::Error,
    },

    /// The database named in the URL does not exist on the server.
    #[error("the database {database} does not exist on the PostgreSQL server at {target}")]
    MissingDatabase { database: String, target: String },

    /// The role lacks a privilege the operation needs. `object` names it, e.g.
    /// `table public."Order"`.
    #[error("user {user} lacks the {privilege} privilege on {object}")]
    MissingPrivilege {
        user: String,
        privilege: String,
        object: String,
    },

    /// The server refused an operation for lack of a privilege the checks beforehand did not
    /// cover; `message` is the server's, which names the object.
    #[error("{context}: permission denied: {message}")]
    Denied { context: String, message: String },

    /// The server is older than PostgreSQL 12 (generated columns and the catalog columns
    /// this crate reads are from 12).
    #[error("PostgreSQL {version} is not supported (12 or newer is needed)")]
    Unsupported { version: String },

    /// The archive cannot be read, or does not fit this database (missing table or column, a
    /// value the column cannot hold, a foreign key it breaks). Nothing was changed.
    #[error("{message}")]
    Archive { message: String },

    /// The load would change rows outside the archive's tables (a cascading foreign key from
    /// a table the archive does not hold). Nothing was changed.
    #[error(
        "table {outside} is not in the archive but its foreign key {constraint} would {action} its rows when {table} is emptied; nothing was changed"
    )]
    OutsideTable {
        outside: String,
        constraint: String,
        table: String,
        action: &'static str,
    },

    /// Writing the dump or reading the archive failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// The database answered with an error the cases above do not cover.
    #[error("{context}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    /// `before_commit` failed; the transaction was rolled back.
    #[error("the step before commit failed: {0}")]
    BeforeCommit(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// The class of an [`Error`], for mapping to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad configuration or archive: the caller must change something.
    Invalid,
    /// Authentication or privileges.
    Denied,
    /// The server or database is not there.
    Unavailable,
    /// A bug or an unexpected answer.
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadUrl { .. }
            | Error::Archive { .. }
            | Error::OutsideTable { .. }
            | Error::Unsupported { .. } => ErrorKind::Invalid,
            Error::Authentication { .. }
            | Error::MissingPrivilege { .. }
            | Error::Denied { .. } => ErrorKind::Denied,
            Error::Unreachable { .. } | Error::MissingDatabase { .. } => ErrorKind::Unavailable,
            Error::Io { .. } | Error::Database { .. } | Error::BeforeCommit(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn archive(message: impl Into<String>) -> Error {
        Error::Archive {
            message: message.into(),
        }
    }

    /// Wraps a driver error met while doing `context`, recognising the SQLSTATEs that have
    /// their own variant.
    pub(crate) fn db(context: impl Into<String>, source: sqlx::Error) -> Error {
        let context = context.into();
        if let sqlx::Error::Database(d) = &source {
            // The server's message, with its DETAIL and CONTEXT (for COPY: table, line and
            // column), which say which value was refused.
            let mut message = d.message().to_owned();
            if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(detail) = pg.detail() {
                    message = format!("{message} ({detail})");
                }
                if let Some(at) = pg.r#where() {
                    message = format!("{message}, at {at}");
                }
            }
            match d.code().as_deref() {
                // insufficient_privilege
                Some("42501") => return Error::Denied { context, message },
                // Data that does not fit (class 22) or breaks a constraint (class 23): the
                // archive's fault.
                Some(c) if c.starts_with("22") || c.starts_with("23") => {
                    return Error::Archive {
                        message: format!("{context}: {message}; nothing was changed"),
                    };
                }
                _ => {}
            }
        }
        Error::Database { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
