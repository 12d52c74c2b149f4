//! Passwords and sessions.
//!
//! Passwords are hashed with argon2id. A session token is 32 random bytes;
//! only its SHA-256 is stored, so a copy of the database opens no session.
//! Every login starts a new session (and ends the one it came with).

use app::api::Sessions;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha256};

use app::api::{SECURE_SESSION_COOKIE, SESSION_COOKIE};
use app::domain::{AppError, CurrentUser, Role};

use std::net::IpAddr;
use std::time::Instant;

use super::throttle::{Key, Refusal};
use super::{Services, blocking};
use crate::db::{now_ms, users};

/// How long a session lasts.
pub const SESSION_LIFETIME_MS: i64 = 14 * 24 * 60 * 60 * 1000;

/// The shortest password accepted for a new user.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| AppError::Internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| AppError::Internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AppError::Internal)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn new_token() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| AppError::Internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn too_many(refusal: Refusal) -> AppError {
    match refusal {
        Refusal::Wait(wait) => AppError::TooManyRequests {
            message: format!(
                "Too many failed logins. Try again in {} seconds.",
                wait.as_secs()
            ),
            retry_after_secs: wait.as_secs(),
        },
        Refusal::Busy => AppError::TooManyRequests {
            message: "The server is busy with other logins. Try again in a moment.".into(),
            retry_after_secs: 1,
        },
    }
}

/// A hash to verify against when the user does not exist, so that an
/// unknown name takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

impl Services {
    pub(super) async fn user_view(&self, user: users::UserRow) -> Result<CurrentUser, AppError> {
        let id = user.id.clone();
        let organizations = self
            .db
            .interact(move |c| users::organizations_of(c, &id))
            .await?;
        Ok(CurrentUser {
            username: user.username,
            role: Role::parse(&user.role).unwrap_or(Role::Member),
            organizations,
        })
    }
}

/// The `Set-Cookie` value for a session (`None`: clears it). Over HTTPS the
/// cookie is `Secure` and carries the `__Host-` prefix.
fn session_cookie(secure: bool, token: Option<&str>) -> String {
    let (name, secure) = if secure {
        (SECURE_SESSION_COOKIE, "; Secure")
    } else {
        (SESSION_COOKIE, "")
    };
    let (value, max_age) = match token {
        Some(token) => (token, SESSION_LIFETIME_MS / 1000),
        None => ("", 0),
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

#[async_trait]
impl Sessions for Services {
    async fn session_user(&self, token: &str) -> Result<Option<CurrentUser>, AppError> {
        let hash = token_hash(token);
        let idle_ms = self.session_idle.as_millis().min(i64::MAX as u128) as i64;
        let user = self
            .db
            .interact(move |c| users::session_user(c, &hash, idle_ms))
            .await?;
        match user {
            Some(user) => Ok(Some(self.user_view(user).await?)),
            None => Ok(None),
        }
    }

    async fn log_in(
        &self,
        username: &str,
        password: &str,
        previous: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(CurrentUser, String), AppError> {
        let mut keys = vec![Key::User(username.to_owned())];
        keys.extend(client.map(Key::Client));
        if let Err(refusal) = self.logins.check(&keys, Instant::now()) {
            tracing::info!(?client, "login refused: too many failed attempts");
            return Err(too_many(refusal));
        }
        let turn = self.logins.turn().await.map_err(too_many)?;
        let name = username.to_owned();
        let user = self
            .db
            .interact(move |c| users::find_user(c, &name))
            .await?;
        let stored = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_owned());
        let password = password.to_owned();
        let matches = blocking(move || verify_password(&password, &stored)).await?;
        drop(turn);
        let known = user.is_some();
        let Some(user) = user.filter(|_| matches) else {
            self.logins.failed(&keys, Instant::now());
            // A name no user has is often a password typed into the wrong
            // field: it is not written to the log.
            let from = client.map(|c| format!("from {c}")).unwrap_or_default();
            if known {
                tracing::info!(username, ?client, "login refused: wrong password");
                self.audit(
                    username,
                    "login-refused",
                    username,
                    format!("wrong password {from}").trim_end(),
                )
                .await;
            } else {
                tracing::info!(?client, "login refused: unknown user name");
                self.audit(
                    "(unknown user)",
                    "login-refused",
                    "",
                    format!("unknown user name {from}").trim_end(),
                )
                .await;
            }
            return Err(AppError::Unauthorized);
        };
        self.logins.succeeded(&keys[..1]);

        let token = new_token()?;
        let hash = token_hash(&token);
        let previous = previous.map(token_hash);
        let user_id = user.id.clone();
        self.db
            .interact(move |c| {
                if let Some(previous) = previous {
                    users::delete_session(c, &previous)?;
                }
                users::delete_expired_sessions(c)?;
                users::insert_session(c, &hash, &user_id, now_ms() + SESSION_LIFETIME_MS)
            })
            .await?;
        tracing::info!(username = %user.username, "logged in");
        let from = client.map(|c| format!("from {c}")).unwrap_or_default();
        self.audit(&user.username, "login", &user.username, &from)
            .await;
        Ok((self.user_view(user).await?, token))
    }

    async fn log_out(&self, token: &str) -> Result<(), AppError> {
        let hash = token_hash(token);
        self.db
            .interact(move |c| users::delete_session(c, &hash))
            .await?;
        Ok(())
    }

    fn session_cookie(&self, token: Option<&str>) -> String {
        session_cookie(self.secure_cookies, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_https_the_session_cookie_is_secure_and_host_only() {
        let cookie = session_cookie(true, Some("t0ken"));
        assert!(
            cookie.starts_with("__Host-eventflows_session=t0ken; Path=/;"),
            "{cookie}"
        );
        assert!(cookie.ends_with("; Secure") && !cookie.contains("Domain"));
        let plain = session_cookie(false, Some("t0ken"));
        assert!(plain.starts_with("eventflows_session=t0ken;") && !plain.contains("Secure"));
        assert!(session_cookie(true, None).contains("Max-Age=0"));
        // Either name is read back.
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; __Host-eventflows_session=t0ken".parse().unwrap(),
        );
        assert_eq!(
            app::api::token_from_headers(&headers).as_deref(),
            Some("t0ken")
        );
    }

    #[test]
    fn password_hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
