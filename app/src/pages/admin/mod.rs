//! Pages for cluster administrators only.

mod audit;
mod connect;
mod connection;
mod connections;
mod model_hosts;
mod sidesheet;
mod topic_edit;

pub use audit::AuditLogPage;
pub use connect::ConnectBrokerPage;
pub use connection::ConnectionDetailsPage;
pub use connections::BrokerConnectionsPage;
pub use model_hosts::ModelHostsPage;
pub use sidesheet::TopicSidesheet;
pub use topic_edit::TopicEditPage;
