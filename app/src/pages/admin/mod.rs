//! Pages for cluster administrators only.

mod audit;
mod connect;
mod connection;
mod model_hosts;
mod queues;
mod sidesheet;
mod topic_edit;

pub use audit::AuditLogPage;
pub use connect::ConnectQueuePage;
pub use connection::ConnectionDetailsPage;
pub use model_hosts::ModelHostsPage;
pub use queues::QueueManagerPage;
pub use sidesheet::TopicSidesheet;
pub use topic_edit::TopicEditPage;
