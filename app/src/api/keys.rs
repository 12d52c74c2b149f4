//! Settings → API keys: a user's own keys for the REST API.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::domain::{ApiKey, AppError, CreatedApiKey};

#[server(endpoint = "list_api_keys", input = Json)]
pub async fn list_api_keys() -> Result<Vec<ApiKey>, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.api_keys(&user).await
    })
    .await
}

/// **Create key**: the answer holds the key, shown this once.
#[server(endpoint = "create_api_key", input = Json)]
pub async fn create_api_key(
    name: String,
    expires_in_days: Option<u32>,
) -> Result<CreatedApiKey, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.create_api_key(&user, &name, expires_in_days).await
    })
    .await
}

#[server(endpoint = "revoke_api_key", input = Json)]
pub async fn revoke_api_key(id: String) -> Result<(), AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.revoke_api_key(&user, &id).await
    })
    .await
}
