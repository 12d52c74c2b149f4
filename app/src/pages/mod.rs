//! One page per file.

mod admin;
mod algorithm;
mod catalog;
mod dead_letters;
mod events;
mod forbidden;
mod login;
mod not_found;
pub(crate) mod rewind;
mod settings;

pub use admin::{
    AuditLogPage, BrokerConnectionsPage, ConnectBrokerPage, ConnectionDetailsPage, ModelHostsPage,
    TopicEditPage,
};
pub use algorithm::{AlgorithmPage, Tab};
pub use catalog::CatalogPage;
pub use forbidden::ForbiddenPage;
pub use login::LoginPage;
pub use not_found::NotFoundPage;
pub use settings::ApiKeysPage;
