//! Logging in and out, and who is logged in.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::domain::{AppError, CurrentUser};

/// Checks username and password and starts a new session (a new cookie).
#[server(endpoint = "login", input = Json)]
pub async fn login(username: String, password: String) -> Result<CurrentUser, AppError> {
    super::for_anyone(|backend| async move {
        let username = username.trim();
        if username.is_empty() {
            return Err(AppError::validation("username", "Enter your username."));
        }
        if password.is_empty() {
            return Err(AppError::validation("password", "Enter your password."));
        }
        let previous = super::session_token();
        let (user, token) = backend
            .log_in(
                username,
                &password,
                previous.as_deref(),
                super::client_address(),
            )
            .await?;
        set_cookie(&backend.session_cookie(Some(&token)));
        Ok(user)
    })
    .await
}

/// Ends the caller's session on the server and clears the cookie.
#[server(endpoint = "logout", input = Json)]
pub async fn logout() -> Result<(), AppError> {
    super::for_anyone(|backend| async move {
        if let Some(token) = super::session_token() {
            backend.log_out(&token).await?;
        }
        set_cookie(&backend.session_cookie(None));
        Ok(())
    })
    .await
}

/// The logged-in user, or `None` for an anonymous caller (not an error: the
/// app asks this at start to decide between the login page and the shell).
#[server(endpoint = "current_user", input = Json)]
pub async fn fetch_current_user() -> Result<Option<CurrentUser>, AppError> {
    super::for_anyone(|_| async {
        match super::caller().await {
            Ok(user) => Ok(Some(user)),
            Err(AppError::Unauthorized) => Ok(None),
            Err(other) => Err(other),
        }
    })
    .await
}

#[cfg(feature = "ssr")]
fn set_cookie(value: &str) {
    if let (Some(options), Ok(value)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(value),
    ) {
        options.append_header(http::header::SET_COOKIE, value);
    }
}
