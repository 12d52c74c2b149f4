//! Writing to Kafka: algorithm outputs to publish topics, failures to
//! dead-letter queues. One producer per broker connection, shared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use app::domain::AppError;

use super::Runner;

/// How long a send may wait for the broker's acknowledgement.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct Producers {
    by_connection: Mutex<HashMap<String, FutureProducer>>,
}

impl Runner {
    /// The shared producer of a broker connection, created on first use.
    pub(crate) async fn producer(&self, connection_id: &str) -> Result<FutureProducer, AppError> {
        if let Some(p) = self
            .inner
            .producers
            .by_connection
            .lock()
            .ok()
            .and_then(|m| m.get(connection_id).cloned())
        {
            return Ok(p);
        }
        let settings = self.settings(connection_id).await?;
        let producer: FutureProducer = settings
            .client_config()
            .set("acks", "all")
            // No duplicates or reordering from librdkafka's own retries.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set(
                "message.max.bytes",
                super::write::MAX_RECORD_BYTES.to_string(),
            )
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
            .create()
            .map_err(|e| AppError::Broker {
                message: format!("could not create a producer: {e}"),
            })?;
        let mut map = self
            .inner
            .producers
            .by_connection
            .lock()
            .map_err(|_| AppError::Internal)?;
        Ok(map
            .entry(connection_id.to_owned())
            .or_insert(producer)
            .clone())
    }

    /// Sends one record and waits for the broker's acknowledgement.
    pub(crate) async fn send(
        &self,
        connection_id: &str,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<(), String> {
        let topic = record.topic.to_owned();
        let producer = self
            .producer(connection_id)
            .await
            .map_err(|e| e.to_string())?;
        producer
            .send(record, SEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("writing to '{topic}' failed: {e}"))
    }

    /// Forgets the producer of a deleted connection.
    pub(crate) fn drop_producer(&self, connection_id: &str) {
        if let Ok(mut map) = self.inner.producers.by_connection.lock() {
            map.remove(connection_id);
        }
    }
}
