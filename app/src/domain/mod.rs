//! Types shared by the browser and the server. Nothing here may depend on
//! the database, the async runtime or Kafka: this module compiles to wasm.

mod broker;
mod error;
mod flow;
mod names;
mod user;

pub use broker::{
    Access, AwsRegion, BootstrapServers, BrokerConnectionDetails, BrokerConnectionSummary,
    BrokerKind, ConnectionStatus, EntityInfo, EntityKind, NewBrokerConnection, QueueInfo,
    SaslMechanism, SecurityProtocol, TopicDetails, TopicGrant, TopicInfo, TopicName,
    check_queue_name,
};
pub use error::AppError;
pub use flow::{
    AlgorithmDetails, AlgorithmSummary, Batching, Comparison, DEAD_LETTERS_PER_PAGE,
    DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT_MS, DeadLetter, DeadLetterPage, DeadLetterQuery,
    Direction, DryRun, DryRunRequest, DrySample, FAILURE_KINDS, FlowError, FlowOrdering,
    FlowRequest, FlowState, FlowStats, GIVE_BACK_HELP, GrantedTopic, MAX_BATCH_SIZE,
    MAX_BATCH_WAIT_MS, MAX_CONCURRENCY, MAX_DRY_RUN, MAX_REPLAY_LETTERS, QueuedMessage,
    ReplayProgress, ReplayRequest, Rewind, RewindPartition, RewindPlan, RunOutcome, RunRecord,
    VersionInfo, diff_lines,
};
pub use names::{
    AlgorithmName, AlgorithmPath, BUILTIN_ALGORITHMS, OrgName, Runtime, Username, Version,
};
pub use user::{
    AUDIT_KINDS, ApiKey, AuditEvent, AuditPage, AuditQuery, CreatedApiKey, CurrentUser, ModelHost,
    Role,
};
