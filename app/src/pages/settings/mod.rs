//! Pages of a user's own settings.

mod api_keys;

pub use api_keys::ApiKeysPage;
