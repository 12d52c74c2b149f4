//! What the server provides to the server functions (through Leptos context).
//! The SQL and the Kafka code live once, in the server crate, behind this trait.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{AppError, CurrentUser};

/// Name of the HttpOnly cookie that carries the session token.
pub const SESSION_COOKIE: &str = "eventflows_session";

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The user a session token belongs to, if the session exists and has not expired.
    async fn session_user(&self, token: &str) -> Result<Option<CurrentUser>, AppError>;

    /// Checks the password. On success ends `previous` (if any), starts a new
    /// session and returns its token. Unknown user and wrong password fail alike.
    async fn log_in(
        &self,
        username: &str,
        password: &str,
        previous: Option<&str>,
    ) -> Result<(CurrentUser, String), AppError>;

    /// Ends the session on the server.
    async fn log_out(&self, token: &str) -> Result<(), AppError>;

    /// The `Set-Cookie` value that stores `token` (or clears the cookie when `None`).
    fn session_cookie(&self, token: Option<&str>) -> String;
}

pub type SharedBackend = Arc<dyn Backend>;

pub(crate) fn token_from_headers(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_found_among_other_cookies() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "theme=dark; eventflows_session=abc123; other=1"
                .parse()
                .unwrap(),
        );
        assert_eq!(token_from_headers(&headers).as_deref(), Some("abc123"));
        headers.insert(http::header::COOKIE, "eventflows_session=".parse().unwrap());
        assert_eq!(token_from_headers(&headers), None);
    }
}
