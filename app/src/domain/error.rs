//! The one error type that crosses the wire.
//!
//! Server functions return `Result<_, AppError>`; [`AppError::status`] is the
//! single place where a domain error becomes an HTTP status. `Internal` never
//! carries details: those go to the server log, not to the browser.

use leptos::server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppError {
    /// No valid session.
    #[error("Please log in to continue.")]
    Unauthorized,
    /// Logged in, but the role or membership does not allow it.
    #[error("You are not allowed to do that.")]
    Forbidden,
    /// The named thing does not exist (or is not visible to the caller).
    #[error("{what} was not found.")]
    NotFound { what: String },
    /// Bad input in one field of a form.
    #[error("{message}")]
    Validation { field: String, message: String },
    /// The change conflicts with what is stored (for example a duplicate name).
    #[error("{message}")]
    Conflict { message: String },
    /// The message broker refused or could not be reached.
    #[error("{message}")]
    Broker { message: String },
    /// Too many attempts (failed logins) or too much at once: try again
    /// after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// Anything else; the details are in the server log.
    #[error("Something went wrong on the server. The details are in the server log.")]
    Internal,
    /// The request never got a proper answer (network, encoding).
    #[error("The server could not be reached: {message}")]
    Transport { message: String },
}

impl AppError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound { .. } => 404,
            Self::Validation { .. } => 422,
            Self::Conflict { .. } => 409,
            Self::Broker { .. } => 502,
            Self::TooManyRequests { .. } => 429,
            Self::Internal => 500,
            Self::Transport { .. } => 400,
        }
    }

    /// The form field this error belongs to, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Validation { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::Transport {
            message: value.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_own_status() {
        assert_eq!(AppError::Unauthorized.status(), 401);
        assert_eq!(AppError::Forbidden.status(), 403);
        assert_eq!(AppError::not_found("User").status(), 404);
        assert_eq!(AppError::validation("name", "bad").status(), 422);
        assert_eq!(AppError::conflict("dup").status(), 409);
        assert_eq!(AppError::Internal.status(), 500);
        let busy = AppError::TooManyRequests {
            message: "later".into(),
            retry_after_secs: 3,
        };
        assert_eq!(busy.status(), 429);
    }

    #[test]
    fn errors_survive_the_json_round_trip() {
        let error = AppError::validation("username", "Enter a username.");
        let json = serde_json::to_string(&error).unwrap();
        assert_eq!(serde_json::from_str::<AppError>(&json).unwrap(), error);
        assert_eq!(error.to_string(), "Enter a username.");
        assert_eq!(error.field(), Some("username"));
    }
}
