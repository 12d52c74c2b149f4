//! Server functions, one file per area, `verb_noun` names.
//!
//! Each one: who is calling ([`caller`] / [`admin`]) → validate → call the
//! [`Backend`] the server provides through context → map the error. The HTTP
//! status of a failure is set in one place, [`respond`].

mod admin;
mod auth;
#[cfg(feature = "ssr")]
mod backend;
mod brokers;
mod catalog;
mod keys;

pub use admin::*;
pub use auth::*;
#[cfg(feature = "ssr")]
pub use backend::{
    Backend, SECURE_SESSION_COOKIE, SESSION_COOKIE, SharedBackend, token_from_headers,
};
pub use brokers::*;
pub use catalog::*;
pub use keys::*;

#[cfg(feature = "ssr")]
use crate::domain::{AppError, CurrentUser};

/// Sets the response status for a failed call and hands the result back.
#[cfg(feature = "ssr")]
pub(crate) fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(error) = &result {
        if let Some(options) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(status) = http::StatusCode::from_u16(error.status()) {
                options.set_status(status);
            }
            if let AppError::TooManyRequests {
                retry_after_secs, ..
            } = error
            {
                options.insert_header(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(*retry_after_secs),
                );
            }
        }
    }
    result
}

#[cfg(feature = "ssr")]
pub(crate) fn backend() -> Result<SharedBackend, AppError> {
    leptos::prelude::use_context::<SharedBackend>().ok_or(AppError::Internal)
}

/// The address of the client a server function call came from, when the
/// server knows it (provided with each call's context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

/// The client address of this call, if known.
#[cfg(feature = "ssr")]
pub(crate) fn client_address() -> Option<std::net::IpAddr> {
    leptos::prelude::use_context::<ClientAddress>().and_then(|c| c.0)
}

/// The session token sent with this request, if any.
#[cfg(feature = "ssr")]
pub(crate) fn session_token() -> Option<String> {
    let parts = leptos::prelude::use_context::<http::request::Parts>()?;
    backend::token_from_headers(&parts.headers)
}

/// The logged-in caller, or `Unauthorized`.
#[cfg(feature = "ssr")]
pub(crate) async fn caller() -> Result<CurrentUser, AppError> {
    let token = session_token().ok_or(AppError::Unauthorized)?;
    backend()?
        .session_user(&token)
        .await?
        .ok_or(AppError::Unauthorized)
}

/// The logged-in caller if an admin: `Unauthorized` or `Forbidden` otherwise.
#[cfg(feature = "ssr")]
pub(crate) async fn admin() -> Result<CurrentUser, AppError> {
    let user = caller().await?;
    if user.is_admin() {
        Ok(user)
    } else {
        Err(AppError::Forbidden)
    }
}
