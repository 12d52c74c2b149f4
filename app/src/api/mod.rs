//! Server functions, one file per area, `verb_noun` names.
//!
//! Each one hands its work to [`for_caller`] (with the role it needs) or
//! [`for_anyone`], which find who is calling and the [`Backend`] the server
//! provides through context, and set the HTTP status of a failure.

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
    ApiKeys, AuditLog, Backend, BrokerAdmin, Catalog, ModelHostAdmin, SECURE_SESSION_COOKIE,
    SESSION_COOKIE, Sessions, SharedBackend, token_from_headers,
};
pub use brokers::*;
pub use catalog::*;
pub use keys::*;

#[cfg(feature = "ssr")]
use crate::domain::{AppError, CurrentUser, Role};

/// Runs a server function's work for the logged-in caller, who must hold
/// `role` when it is [`Role::Admin`]: `Unauthorized` without a session,
/// `Forbidden` for a member where an admin is needed.
#[cfg(feature = "ssr")]
pub(crate) async fn for_caller<T, F>(
    role: Role,
    work: impl FnOnce(CurrentUser, SharedBackend) -> F,
) -> Result<T, AppError>
where
    F: std::future::Future<Output = Result<T, AppError>>,
{
    respond(
        async {
            let user = caller().await?;
            if role == Role::Admin && !user.is_admin() {
                return Err(AppError::Forbidden);
            }
            work(user, backend()?).await
        }
        .await,
    )
}

/// Runs a server function's work whoever calls (logging in and out).
#[cfg(feature = "ssr")]
pub(crate) async fn for_anyone<T, F>(work: impl FnOnce(SharedBackend) -> F) -> Result<T, AppError>
where
    F: std::future::Future<Output = Result<T, AppError>>,
{
    respond(async { work(backend()?).await }.await)
}

/// Sets the response status for a failed call and hands the result back.
#[cfg(feature = "ssr")]
fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
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
fn backend() -> Result<SharedBackend, AppError> {
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
