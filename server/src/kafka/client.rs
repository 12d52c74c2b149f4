use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use app::domain::{AppError, TopicInfo, TopicName};

use super::settings::BrokerSettings;

/// Remembers the last error librdkafka reported, so that a failed call can
/// say why (connection refused, authentication failed, TLS handshake …).
#[derive(Default)]
pub struct Context {
    last_error: Mutex<Option<String>>,
}

impl Context {
    fn take_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }
}

impl Context {
    fn remember(&self, reason: &str) {
        // "[thrd:host:port/bootstrap]: host:port/bootstrap: Connect to … failed: …"
        let reason = match reason.strip_prefix("[thrd:") {
            Some(rest) => rest.split_once("]: ").map_or(rest, |(_, r)| r),
            None => reason,
        };
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.trim().to_owned());
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::debug!(target: "librdkafka", facility, "{message}");
                self.remember(message);
            }
            _ => tracing::trace!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        self.remember(reason);
    }
}

impl ConsumerContext for Context {}

/// The clients of one broker connection: a consumer for metadata and
/// watermarks, an admin client for topics.
pub struct BrokerClient {
    bootstrap: String,
    consumer: BaseConsumer<Context>,
    admin: AdminClient<Context>,
}

impl BrokerClient {
    /// Creates the clients (no network yet). Fails on settings librdkafka
    /// refuses, such as a CA certificate it cannot load.
    pub fn new(settings: &BrokerSettings) -> Result<Self, AppError> {
        let config = settings.client_config();
        let refuse = |e: KafkaError| {
            let text = e.to_string();
            if text.contains("ssl.ca") {
                AppError::validation(
                    "ca_pem",
                    format!("The CA certificate could not be loaded: {text}"),
                )
            } else {
                AppError::Broker {
                    message: format!("The client could not be set up: {text}"),
                }
            }
        };
        let consumer = config
            .clone()
            .set("enable.auto.commit", "false")
            .set("group.id", "eventflows-metadata")
            .create_with_context(Context::default())
            .map_err(refuse)?;
        let admin = config
            .create_with_context(Context::default())
            .map_err(refuse)?;
        Ok(Self {
            bootstrap: settings.bootstrap_servers.to_string(),
            consumer,
            admin,
        })
    }

    fn describe(&self, error: &KafkaError, context: &Context, timeout: Duration) -> AppError {
        let code = error.rdkafka_error_code();
        let message = match (context.take_error(), code) {
            (Some(reason), _) => format!("Could not connect to {}: {reason}", self.bootstrap),
            (None, Some(RDKafkaErrorCode::OperationTimedOut)) => format!(
                "No broker at {} answered within {} seconds.",
                self.bootstrap,
                timeout.as_secs()
            ),
            (None, _) => format!(
                "The broker at {} answered with an error: {error}",
                self.bootstrap
            ),
        };
        AppError::Broker { message }
    }

    /// The cluster's topics (internal `__` topics left out), with partition
    /// count, replication factor and message count. Blocking.
    pub fn topics(&self, timeout: Duration) -> Result<Vec<TopicInfo>, AppError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| self.describe(&e, self.consumer.context(), timeout))?;
        let mut topics = Vec::new();
        for topic in metadata.topics() {
            if topic.name().starts_with("__") || topic.error().is_some() {
                continue;
            }
            let mut message_count = 0u64;
            for partition in topic.partitions() {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(topic.name(), partition.id(), timeout)
                    .map_err(|e| self.describe(&e, self.consumer.context(), timeout))?;
                message_count += (high - low).max(0) as u64;
            }
            topics.push(TopicInfo {
                name: topic.name().to_owned(),
                partitions: topic.partitions().len() as u32,
                replication_factor: topic
                    .partitions()
                    .iter()
                    .map(|p| p.replicas().len() as u32)
                    .max()
                    .unwrap_or(0),
                message_count,
                queue: None,
                entity: None,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Asks the broker for its metadata: `Ok(number of topics)` when it answers.
    pub fn check(&self, timeout: Duration) -> Result<u32, AppError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| self.describe(&e, self.consumer.context(), timeout))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
            .count() as u32)
    }

    pub async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), AppError> {
        name.check_kafka()?;
        let timeout = Duration::from_secs(10);
        let topic = NewTopic::new(name.as_str(), partitions as i32, TopicReplication::Fixed(1));
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = self
            .admin
            .create_topics([&topic], &options)
            .await
            .map_err(|e| self.describe(&e, self.admin.inner().context(), timeout))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Err(AppError::Validation {
                field: "topic".into(),
                message: format!("The topic '{name}' already exists."),
            }),
            Some(Err((_, code))) => Err(AppError::Broker {
                message: format!("The broker refused to create '{name}': {code}"),
            }),
            None => Err(AppError::Broker {
                message: format!("The broker did not answer the request to create '{name}'."),
            }),
        }
    }
}

/// One shared client per broker connection id: a [`BrokerClient`] unless
/// told otherwise.
pub struct Clients<C = BrokerClient> {
    by_connection: Arc<Mutex<HashMap<String, Arc<C>>>>,
}

impl<C> Clone for Clients<C> {
    fn clone(&self) -> Self {
        Self {
            by_connection: Arc::clone(&self.by_connection),
        }
    }
}

impl<C> Default for Clients<C> {
    fn default() -> Self {
        Self {
            by_connection: Default::default(),
        }
    }
}

impl<C> Clients<C> {
    /// The cached client, or a new one made by `make` and cached.
    pub fn get_or_try_insert(
        &self,
        connection_id: &str,
        make: impl FnOnce() -> Result<C, AppError>,
    ) -> Result<Arc<C>, AppError> {
        if let Some(client) = self.get(connection_id) {
            return Ok(client);
        }
        let client = Arc::new(make()?);
        let mut map = self.by_connection.lock().map_err(|_| AppError::Internal)?;
        Ok(map
            .entry(connection_id.to_owned())
            .or_insert(client)
            .clone())
    }

    pub fn get(&self, connection_id: &str) -> Option<Arc<C>> {
        self.by_connection
            .lock()
            .ok()
            .and_then(|m| m.get(connection_id).cloned())
    }

    pub fn remove(&self, connection_id: &str) {
        if let Ok(mut map) = self.by_connection.lock() {
            map.remove(connection_id);
        }
    }
}
