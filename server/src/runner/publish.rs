//! Writing to Kafka: algorithm outputs to publish topics, failures to
//! dead-letter queues. One producer per broker connection, shared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use app::domain::AppError;

use super::Runner;

/// How long a send may wait for the broker's acknowledgement.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct Producers {
    by_connection: Mutex<HashMap<String, FutureProducer>>,
}

/// Builds headers: the input's own (minus old `eventflows-` ones), then ours.
pub(crate) fn headers(original: Option<&OwnedHeaders>, ours: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(
        ours.len() + original.map(|h| h.count()).unwrap_or_default(),
    );
    if let Some(original) = original {
        for header in original.iter() {
            if !header.key.starts_with("eventflows-") {
                out = out.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    for (key, value) in ours {
        out = out.insert(Header {
            key,
            value: Some(*value),
        });
    }
    out
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
            .set("linger.ms", "5")
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
