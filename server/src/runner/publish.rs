//! Writing to Kafka: algorithm outputs to publish topics, failures to
//! dead-letter queues. One producer per broker connection, shared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use app::domain::AppError;

use super::Runner;

/// Which producer this is, for as long as it lives.
pub(super) fn producer_id(producer: &FutureProducer) -> u64 {
    producer.client().native_ptr() as usize as u64
}

/// How long a send may wait for the broker's acknowledgement, unless set
/// otherwise; then it fails and the flow sends it again (in order).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a producer is kept at least before a failed write replaces
/// it: an error that every new producer meets at once (the broker refuses
/// idempotent writes, say) makes a new producer this often at most, and
/// its writes are sent again meanwhile.
const KEPT_AT_LEAST: Duration = Duration::from_secs(5);

/// Whether a failed write through the producer `failed` replaces `kept`
/// (a producer and when it was made).
fn renewable((producer, made): &(FutureProducer, Instant), failed: u64) -> bool {
    producer_id(producer) == failed && made.elapsed() >= KEPT_AT_LEAST
}

#[derive(Default)]
pub(crate) struct Producers {
    /// Each connection's producer, and when it was made.
    by_connection: Mutex<HashMap<String, (FutureProducer, Instant)>>,
    /// The producers' `message.timeout.ms`; 0 for [`SEND_TIMEOUT`].
    timeout_ms: AtomicU64,
}

impl Producers {
    fn timeout(&self) -> Duration {
        match self.timeout_ms.load(Ordering::Relaxed) {
            0 => SEND_TIMEOUT,
            ms => Duration::from_millis(ms),
        }
    }
}

impl Runner {
    /// How long a write may wait for the broker's acknowledgement before
    /// it counts as failed and is sent again; for producers created from
    /// now on.
    pub fn set_write_timeout(&self, timeout: Duration) {
        let ms = timeout.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.inner.producers.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The shared producer of a broker connection, created on first use.
    pub(crate) async fn producer(&self, connection_id: &str) -> Result<FutureProducer, AppError> {
        if let Some(p) = self
            .inner
            .producers
            .by_connection
            .lock()
            .ok()
            .and_then(|m| m.get(connection_id).map(|(p, _)| p.clone()))
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
            .set(
                "message.timeout.ms",
                self.inner.producers.timeout().as_millis().to_string(),
            )
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
            .or_insert((producer, Instant::now()))
            .0
            .clone())
    }

    /// The connection's shared producer, if one was created.
    pub(crate) fn current_producer(&self, connection_id: &str) -> Option<FutureProducer> {
        let map = self.inner.producers.by_connection.lock().ok()?;
        map.get(connection_id).map(|(producer, _)| producer.clone())
    }

    /// Forgets the connection's producer if it is still the producer
    /// `failed` ([`producer_id`]) and was made at least [`KEPT_AT_LEAST`]
    /// ago, so that the next write makes a new one, and has every lane take
    /// it up from its next message. The old one is dropped a minute later
    /// on a thread of its own (dropping a producer waits for its threads),
    /// unless a lane still holds it then.
    pub(crate) fn renew_producer(&self, connection_id: &str, failed: u64) {
        let removed = match self.inner.producers.by_connection.lock() {
            Ok(mut map)
                if map
                    .get(connection_id)
                    .is_some_and(|kept| renewable(kept, failed)) =>
            {
                map.remove(connection_id).map(|(producer, _)| producer)
            }
            _ => None,
        };
        if let Some(producer) = removed {
            tracing::info!(
                connection = connection_id,
                "a write timed out or the producer failed; writing through a new producer"
            );
            self.inner
                .publish_generation
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            let _ = std::thread::Builder::new()
                .name("eventflows-producer-drop".into())
                .spawn(move || {
                    std::thread::sleep(Duration::from_secs(60));
                    drop(producer);
                });
        }
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
        let sent = producer.send(record, self.inner.producers.timeout()).await;
        sent.map(|_| ()).map_err(|(error, _)| {
            let error = super::write::WriteError::from_kafka(&topic, &error);
            if matches!(error, super::write::WriteError::NewProducer(..)) {
                self.renew_producer(connection_id, producer_id(&producer));
            }
            error.message().to_owned()
        })
    }

    /// Forgets the producer of a deleted connection.
    pub(crate) fn drop_producer(&self, connection_id: &str) {
        if let Ok(mut map) = self.inner.producers.by_connection.lock() {
            map.remove(connection_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;

    use super::*;

    #[test]
    fn a_producer_is_replaced_only_for_its_own_failure_and_not_too_soon() {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create()
            .unwrap();
        let id = producer_id(&producer);
        let old = Instant::now() - KEPT_AT_LEAST;
        assert!(renewable(&(producer.clone(), old), id));
        assert!(
            !renewable(&(producer.clone(), old), id + 1),
            "another producer failed"
        );
        assert!(!renewable(&(producer, Instant::now()), id), "made just now");
    }
}
