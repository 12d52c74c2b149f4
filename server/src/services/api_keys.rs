//! Settings → API keys: keys that let programs call the REST API as their
//! user (`Authorization: Simple <key>`).
//!
//! A key is `ef_` and 32 random bytes (base64url); only its SHA-256 is
//! stored (a key is random, so a fast hash is enough), with its first
//! characters to tell keys apart. It is shown once, when it is created.

use app::api::ApiKeys;
use async_trait::async_trait;
use base64::Engine;
use diesel::Connection;

use app::domain::{ApiKey, AppError, CreatedApiKey, CurrentUser};

use super::Services;
use super::auth::token_hash;
use crate::db::api_keys::{self, ApiKeyRow};
use crate::db::{new_id, now_ms, users};
use crate::runner::clock;

/// Keys a user may have that are not revoked.
pub const MAX_KEYS_PER_USER: usize = 50;
/// The longest expiry a key may be given, in days.
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// Characters of a key kept to show which one it is.
const PREFIX_LEN: usize = 10;

fn view(row: ApiKeyRow, now: i64) -> ApiKey {
    let state = if row.revoked_at_ms.is_some() {
        "revoked"
    } else if row.expires_at_ms.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    };
    ApiKey {
        id: row.id,
        name: row.name,
        prefix: row.prefix,
        created_at: clock(row.created_at_ms),
        expires_at: row.expires_at_ms.map(clock),
        last_used_at: row.last_used_at_ms.map(clock),
        state: state.into(),
    }
}

impl Services {
    async fn user_id(&self, user: &CurrentUser) -> Result<String, AppError> {
        let name = user.username.clone();
        self.db
            .interact(move |c| users::find_user(c, &name))
            .await?
            .map(|u| u.id)
            .ok_or(AppError::Unauthorized)
    }

    /// The user a key acts as, if it is valid (not revoked, not expired).
    pub async fn api_key_user(&self, key: &str) -> Result<Option<CurrentUser>, AppError> {
        let hash = token_hash(key.trim());
        let user = self
            .db
            .interact(move |c| api_keys::user_of(c, &hash))
            .await?;
        match user {
            Some(user) => Ok(Some(self.user_view(user).await?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl ApiKeys for Services {
    async fn api_keys(&self, user: &CurrentUser) -> Result<Vec<ApiKey>, AppError> {
        let id = self.user_id(user).await?;
        let rows = self.db.interact(move |c| api_keys::of_user(c, &id)).await?;
        let now = now_ms();
        Ok(rows.into_iter().map(|r| view(r, now)).collect())
    }

    /// Creates a key for `user`, named `name`, expiring after
    /// `expires_in_days` if set. The key itself is in the answer, and
    /// nowhere else ever again.
    async fn create_api_key(
        &self,
        user: &CurrentUser,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> Result<CreatedApiKey, AppError> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AppError::validation(
                "name",
                "Give the key a name of 1 to 64 characters, such as the program that will use it.",
            ));
        }
        if let Some(days) = expires_in_days
            && !(1..=MAX_EXPIRY_DAYS).contains(&days)
        {
            return Err(AppError::validation(
                "expires_in_days",
                format!("A key expires after 1 to {MAX_EXPIRY_DAYS} days, or never."),
            ));
        }
        let user_id = self.user_id(user).await?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| AppError::Internal)?;
        let key = format!(
            "ef_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let now = now_ms();
        let row = ApiKeyRow {
            id: new_id(),
            user_id,
            name,
            prefix: key[..PREFIX_LEN].to_owned(),
            key_hash: token_hash(&key),
            created_at_ms: now,
            expires_at_ms: expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        let stored = row.clone();
        let created = self
            .db
            .interact(move |c| {
                c.transaction(|c| {
                    let active = api_keys::of_user(c, &stored.user_id)?
                        .iter()
                        .filter(|k| k.revoked_at_ms.is_none())
                        .count();
                    if active >= MAX_KEYS_PER_USER {
                        return Ok(false);
                    }
                    api_keys::insert(c, &stored)?;
                    Ok(true)
                })
            })
            .await?;
        if !created {
            return Err(AppError::conflict(format!(
                "You have {MAX_KEYS_PER_USER} keys; revoke one you no longer use first."
            )));
        }
        tracing::info!(user = %user.username, key = %row.prefix, name = %row.name, "API key created");
        let expiry = match expires_in_days {
            Some(days) => format!("{}…, expires in {days} days", row.prefix),
            None => format!("{}…, does not expire", row.prefix),
        };
        self.audit(&user.username, "api-key-created", &row.name, &expiry)
            .await;
        Ok(CreatedApiKey {
            key,
            summary: view(row, now),
        })
    }

    async fn revoke_api_key(&self, user: &CurrentUser, id: &str) -> Result<(), AppError> {
        let user_id = self.user_id(user).await?;
        let key = id.to_owned();
        let revoked = self
            .db
            .interact(move |c| {
                let name = api_keys::of_user(c, &user_id)?
                    .into_iter()
                    .find(|k| k.id == key)
                    .map(|k| (k.name, k.prefix));
                Ok::<_, diesel::result::Error>(match api_keys::revoke(c, &user_id, &key)? {
                    true => name,
                    false => None,
                })
            })
            .await?;
        let Some((name, prefix)) = revoked else {
            return Err(AppError::not_found("The API key"));
        };
        tracing::info!(user = %user.username, key = id, "API key revoked");
        self.audit(
            &user.username,
            "api-key-revoked",
            &name,
            &format!("{prefix}…"),
        )
        .await;
        Ok(())
    }
}
