//! Pages for cluster administrators only.

mod connect;
mod connection;
mod queues;
mod sidesheet;
mod topic_edit;

pub use connect::ConnectQueuePage;
pub use connection::ConnectionDetailsPage;
pub use queues::QueueManagerPage;
pub use sidesheet::TopicSidesheet;
pub use topic_edit::TopicEditPage;
