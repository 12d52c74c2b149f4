//! One subscribe flow: consume, run, publish or dead-letter, then store the
//! offset. Partitions run in parallel, each in order, with bounded queues.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::DeliveryFuture;
use tokio::sync::{mpsc, watch};

use app::domain::{AppError, FlowError, RunRecord};

use super::publish::{Record, headers};
use super::{FlowConfig, RunError, Runner, Stats};
use crate::db::flows::ActiveFlow;
use crate::db::now_ms;
use crate::kafka::BrokerSettings;

/// Messages waiting per partition before the consumer stops fetching.
const PARTITION_QUEUE: usize = 256;
/// Messages per partition whose writes may be unacknowledged at once.
const IN_FLIGHT: usize = 512;
/// Attempts for a transient failure before it counts as failed.
pub const MAX_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Counts partition assignments, so a rebalance is visible in the stats.
pub struct FlowContext {
    stats: Arc<Stats>,
}

impl ClientContext for FlowContext {
    /// Broker outages reach us here (not as consumer errors): the flow shows
    /// them until messages flow again.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        self.stats
            .set_state(format!("waiting for the broker: {reason}"));
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Debug | RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                tracing::trace!(target: "librdkafka", facility, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }
}

impl ConsumerContext for FlowContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            Stats::bump(&self.stats.assignments);
        }
    }
}

/// The consumer group of a flow: the same across version changes, so that
/// offsets carry over.
pub fn group_id(spec: &ActiveFlow) -> String {
    format!(
        "eventflows.{}.{}",
        spec.algorithm.replace('/', "."),
        spec.topic
    )
}

pub fn consumer(
    settings: &BrokerSettings,
    spec: &ActiveFlow,
    instance: Option<&str>,
    stats: Arc<Stats>,
) -> Result<StreamConsumer<FlowContext>, AppError> {
    let mut config: ClientConfig = settings.client_config();
    if let Some(instance) = instance {
        config.set("group.instance.id", format!("{instance}.{}", spec.id));
    }
    let consumer: StreamConsumer<FlowContext> = config
        .set("group.id", group_id(spec))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("enable.partition.eof", "false")
        // The broker may hold a fetch this long when there is nothing new:
        // the bound on the latency of a quiet flow.
        .set("fetch.wait.max.ms", "100")
        .create_with_context(FlowContext { stats })
        .map_err(|e| AppError::Broker {
            message: format!("could not create the consumer: {e}"),
        })?;
    consumer
        .subscribe(&[spec.topic.as_str()])
        .map_err(|e| AppError::Broker {
            message: format!("could not subscribe to '{}': {e}", spec.topic),
        })?;
    Ok(consumer)
}

/// What a partition worker needs.
#[derive(Clone)]
struct Worker {
    runner: Runner,
    spec: Arc<ActiveFlow>,
    consumer: Arc<StreamConsumer<FlowContext>>,
    config: watch::Receiver<FlowConfig>,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
}

pub async fn run(
    runner: Runner,
    spec: ActiveFlow,
    consumer: Arc<StreamConsumer<FlowContext>>,
    config: watch::Receiver<FlowConfig>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let worker = Worker {
        runner,
        spec: Arc::new(spec),
        consumer: consumer.clone(),
        config,
        stop: stop.clone(),
        stats: stats.clone(),
    };
    let mut partitions: HashMap<i32, (mpsc::Sender<OwnedMessage>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                let message = message.detach();
                let partition = message.partition();
                let (queue, _) = partitions.entry(partition).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
                    (tx, tokio::spawn(partition_worker(worker.clone(), rx)))
                });
                // A full queue holds the consumer back (no unbounded buffering).
                tokio::select! {
                    _ = stop.changed() => break,
                    sent = queue.send(message) => if sent.is_err() { break },
                }
                stats.set_state("running");
            }
            Err(error) => {
                stats.set_state(format!("waiting for the broker: {error}"));
                tracing::debug!(flow = %worker.spec.id, %error, "consumer error");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    // Drain: the workers finish what they hold (or give up a retry on stop).
    for (_, (queue, task)) in partitions {
        drop(queue);
        let _ = task.await;
    }
    stats.set_state("stopped");
}

/// Runs one partition in order. Results are handed to the producer without
/// waiting, up to [`IN_FLIGHT`] messages ahead; offsets are stored strictly in
/// order, each only once every write of its message was acknowledged.
async fn partition_worker(worker: Worker, mut queue: mpsc::Receiver<OwnedMessage>) {
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let mut open = true;
    loop {
        while open && in_flight.len() < IN_FLIGHT {
            let next = if in_flight.is_empty() {
                queue.recv().await
            } else {
                match queue.try_recv() {
                    Ok(message) => Some(message),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            match next {
                Some(message) => match worker.begin(message).await {
                    Some(pending) => in_flight.push_back(pending),
                    // Stopped during retries: this and later offsets stay unstored.
                    None => return abandon(&worker, in_flight).await,
                },
                None => open = false,
            }
        }
        let Some(head) = in_flight.pop_front() else {
            return;
        };
        let (topic, partition, offset) = (
            head.message.topic().to_owned(),
            head.message.partition(),
            head.message.offset(),
        );
        if !worker.finish(head).await {
            // Stopped while a write kept failing: leave the offset unstored so
            // the message is consumed again.
            return;
        }
        // librdkafka's rd_kafka_offset_store commits `offset + 1` itself.
        if let Err(error) = worker.consumer.store_offset(&topic, partition, offset) {
            tracing::debug!(flow = %worker.spec.id, %error, partition, offset, "offset not stored");
        }
        worker.stats.processed(partition, offset);
    }
}

/// Lets the writes already started finish, storing no offset.
async fn abandon(worker: &Worker, in_flight: VecDeque<Pending>) {
    for pending in in_flight {
        for (_, _, _, delivery) in pending.writes {
            if let Some(delivery) = delivery {
                let _ = delivery.await;
            }
        }
    }
    tracing::debug!(flow = %worker.spec.id, "partition worker stopped");
}

/// A message whose run is over and whose writes are under way.
struct Pending {
    message: OwnedMessage,
    /// (connection, topic, record, delivery if the producer took it)
    writes: Vec<(String, String, Record, Option<DeliveryFuture>)>,
    version: String,
    started: Instant,
    failure: Option<(RunError, u32)>,
    dead_letter: bool,
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs the algorithm (retrying transient failures) and starts the
    /// writes: outputs to the publish topics, or the dead letter. `None`
    /// when the flow was stopped during retries.
    async fn begin(&self, message: OwnedMessage) -> Option<Pending> {
        let stats = &self.stats;
        stats.consumed.inc();
        let config = self.config.borrow().clone();
        let started = Instant::now();
        let input = message.payload().unwrap_or_default().to_vec();
        let mut attempts = 0u32;
        let result = loop {
            attempts += 1;
            let result = if message.payload().is_none() {
                Err(RunError::BadInput("the message has no value".into()))
            } else {
                self.runner.executor().run(&config.runtime, &input).await
            };
            match result {
                Err(RunError::Transient(_)) if attempts < MAX_ATTEMPTS => {
                    if self.stopping() {
                        return None;
                    }
                    stats.retries.inc();
                    let backoff = (FIRST_BACKOFF * 2u32.pow(attempts - 1)).min(MAX_BACKOFF);
                    tokio::time::sleep(backoff).await;
                }
                other => break other,
            }
        };
        let source = [
            ("eventflows-algorithm", self.spec.algorithm.clone()),
            ("eventflows-version", config.version.clone()),
            ("eventflows-source-topic", message.topic().to_owned()),
            (
                "eventflows-source-partition",
                message.partition().to_string(),
            ),
            ("eventflows-source-offset", message.offset().to_string()),
        ];
        let key = message.key().map(<[u8]>::to_vec);
        let mut writes = Vec::new();
        let mut failure = None;
        let mut dead_letter = false;
        match result {
            Ok(output) => {
                for target in self
                    .runner
                    .targets(&self.spec.algorithm_id, &config.version)
                {
                    let record = Record {
                        key: key.clone(),
                        value: output.clone(),
                        headers: headers(message.headers(), &source),
                    };
                    writes.push((target.connection_id, target.topic, record, None));
                }
            }
            Err(error) => {
                stats.failed.inc();
                if let Some(dlq) = &config.dlq_topic {
                    let mut fields = source.to_vec();
                    fields.extend([
                        ("eventflows-error", error.message().to_owned()),
                        ("eventflows-error-kind", error.kind().to_owned()),
                        ("eventflows-attempts", attempts.to_string()),
                        ("eventflows-failed-at", now_ms().to_string()),
                    ]);
                    let record = Record {
                        key: key.clone(),
                        value: input,
                        headers: headers(message.headers(), &fields),
                    };
                    writes.push((self.spec.connection_id.clone(), dlq.clone(), record, None));
                    dead_letter = true;
                }
                failure = Some((error, attempts));
            }
        }
        for (connection, topic, record, delivery) in &mut writes {
            *delivery = self.runner.start_send(connection, topic, record).await.ok();
        }
        Some(Pending {
            message,
            writes,
            version: config.version,
            started,
            failure,
            dead_letter,
        })
    }

    /// Waits for the writes of a message (retrying any that failed) and
    /// records the outcome; false if the flow was stopped first.
    async fn finish(&self, pending: Pending) -> bool {
        let stats = &self.stats;
        let message = &pending.message;
        let mut writes = pending.writes;
        for (connection, topic, record, delivery) in writes.drain(..) {
            let acked = match delivery {
                Some(delivery) => matches!(delivery.await, Ok(Ok(_))),
                None => false,
            };
            if !acked && !self.send_until_acked(&connection, &topic, &record).await {
                return false;
            }
        }
        let outcome = match pending.failure {
            None => {
                stats.succeeded.inc();
                "succeeded"
            }
            Some((error, _attempts)) => {
                if pending.dead_letter {
                    stats.dead_lettered.inc();
                }
                stats.record_error(FlowError {
                    at_ms: now_ms(),
                    partition: message.partition(),
                    offset: message.offset(),
                    kind: error.kind().to_owned(),
                    message: error.message().to_owned(),
                    dead_lettered: pending.dead_letter,
                });
                tracing::info!(flow = %self.spec.id, partition = message.partition(), offset = message.offset(),
                    kind = error.kind(), dead_lettered = pending.dead_letter, "{}", error.message());
                if pending.dead_letter {
                    "dead-lettered"
                } else {
                    "failed"
                }
            }
        };
        stats.observe_latency(pending.started.elapsed().as_secs_f64());
        stats.record_run(RunRecord {
            at_ms: now_ms(),
            partition: message.partition(),
            offset: message.offset(),
            version: pending.version,
            outcome: outcome.to_owned(),
            latency_ms: pending.started.elapsed().as_millis() as u64,
        });
        true
    }

    /// Retries a write with backoff until the broker acknowledges it; false
    /// if the flow is stopped first (the message is then not acknowledged).
    async fn send_until_acked(&self, connection_id: &str, topic: &str, record: &Record) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.runner.send(connection_id, topic, record).await {
                Ok(()) => return true,
                Err(error) => {
                    self.stats.set_state(format!("cannot write: {error}"));
                    tracing::warn!(flow = %self.spec.id, %error, "write failed; retrying");
                    if self.stopping() {
                        return false;
                    }
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = stop.changed() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Messages on the topic not yet processed: per assigned partition, the high
/// watermark minus the next offset to process. Blocking.
pub fn lag(
    consumer: &StreamConsumer<FlowContext>,
    topic: &str,
    progress: &HashMap<i32, i64>,
) -> Option<u64> {
    let assignment = consumer.assignment().ok()?;
    let mut total = 0u64;
    for element in assignment.elements_for_topic(topic) {
        let partition = element.partition();
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(2))
            .ok()?;
        let next = progress.get(&partition).copied().unwrap_or(low).max(low);
        total += (high - next).max(0) as u64;
    }
    Some(total)
}
