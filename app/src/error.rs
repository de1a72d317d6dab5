//! The error every server function returns: the engine's error kind, its message and its
//! per-field messages, intact across the server-function hop (Leptos' `FromServerFnError`,
//! JSON-encoded), so the browser shows exactly what the REST API would say, never a string
//! it has to take apart.

use std::collections::BTreeMap;
use std::fmt;

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    /// The engine's error code (`invalid`, `not_found`, `conflict`, `forbidden`, ...), or
    /// `transport` when the call itself failed (network, encoding).
    pub code: String,
    /// A message a person can act on.
    pub message: String,
    /// Field name -> what is wrong with it.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl AppError {
    /// An error with the given message and no field errors (code `invalid`).
    pub fn new(message: impl Into<String>) -> Self {
        AppError {
            code: "invalid".into(),
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = code.to_owned();
        self
    }
}

/// The message, then each field's message: `message; field: what`.
impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for (field, m) in &self.fields {
            write!(f, "; {field}: {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let message = match &value {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => {
                "the server could not be reached; check the connection and try again".to_owned()
            }
            other => other.to_string(),
        };
        AppError {
            code: "transport".into(),
            message,
            fields: BTreeMap::new(),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<engine::Error> for AppError {
    /// Internal details stay in the server log; the browser gets the message.
    fn from(e: engine::Error) -> Self {
        if e.kind() == engine::ErrorKind::Internal {
            leptos::logging::error!("server function failed: {}", e.detailed());
        }
        AppError {
            code: e.kind().code().to_owned(),
            message: e.message().to_owned(),
            fields: e.field_errors().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_and_every_field_survive_the_json_hop() {
        let e = AppError {
            code: "invalid".into(),
            message: "the settings are not valid: a: b".into(),
            fields: [("path".to_owned(), "is: not allowed".to_owned())].into(),
        };
        let bytes = e.ser();
        let back = AppError::de(bytes);
        assert_eq!(back, e);
        assert_eq!(
            back.to_string(),
            "the settings are not valid: a: b; path: is: not allowed"
        );
    }
}
