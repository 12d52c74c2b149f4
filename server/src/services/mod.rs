//! What the server functions, the REST routes and the command line call.
//! The domain rules live here once; SQL lives in `db`.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod brokers;
pub mod catalog;
pub mod directory;
pub mod model_hosts;
pub mod run;
pub mod throttle;

use app::domain::AppError;

use crate::db::Db;
use crate::kafka::Clients;
use crate::runner::Runner;
use crate::secrets::SecretBox;

pub use crate::db::internal;

/// Runs blocking work (hashing, librdkafka calls) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| AppError::Internal)
}

/// The services of one server instance, shared by every request.
#[derive(Clone)]
pub struct Services {
    pub db: Db,
    pub secrets: SecretBox,
    pub clients: Clients,
    /// The SQS clients, one per SQS connection.
    pub sqs: Clients<crate::sqs::SqsClient>,
    /// The Service Bus management clients, one per Service Bus connection.
    pub service_bus: Clients<crate::servicebus::ServiceBusAdmin>,
    pub runner: Runner,
    pub secure_cookies: bool,
    pub logins: std::sync::Arc<throttle::LoginGuard>,
    /// The bearer token `/metrics` asks for; unset, `/metrics` is off.
    pub metrics_token: std::sync::Arc<std::sync::OnceLock<String>>,
    /// A session unused this long ends ([`DEFAULT_SESSION_IDLE`] unless set).
    pub session_idle: std::time::Duration,
}

/// How long a session may go unused before it ends.
pub const DEFAULT_SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(8 * 60 * 60);

impl Services {
    pub fn new(db: Db, secrets: SecretBox, secure_cookies: bool) -> anyhow::Result<Self> {
        Ok(Self {
            runner: Runner::new(db.clone(), secrets.clone())?,
            db,
            secrets,
            clients: Clients::default(),
            sqs: Clients::default(),
            service_bus: Clients::default(),
            secure_cookies,
            logins: Default::default(),
            metrics_token: Default::default(),
            session_idle: DEFAULT_SESSION_IDLE,
        })
    }
}
