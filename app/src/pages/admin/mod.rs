//! Pages for cluster administrators only.

mod queues;

pub use queues::QueueManagerPage;
