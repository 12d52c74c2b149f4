//! Types shared by the browser and the server. Nothing here may depend on
//! the database, the async runtime or Kafka: this module compiles to wasm.

mod broker;
mod error;
mod flow;
mod names;
mod user;

pub use broker::{
    Access, BootstrapServers, BrokerConnectionDetails, BrokerConnectionSummary, ConnectionStatus,
    NewBrokerConnection, SaslMechanism, SecurityProtocol, TopicDetails, TopicGrant, TopicInfo,
    TopicName,
};
pub use error::AppError;
pub use flow::{
    AlgorithmDetails, AlgorithmSummary, Batching, DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT_MS,
    Direction, EventRow, FlowError, FlowOrdering, FlowRequest, FlowState, FlowStats, KeptFailure,
    MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS, MAX_CONCURRENCY, RunRecord, VersionInfo,
};
pub use names::{
    AlgorithmName, AlgorithmPath, BUILTIN_ALGORITHMS, OrgName, Runtime, Username, Version,
};
pub use user::{CurrentUser, Role};
