//! One subscribe flow: consume, run, publish or dead-letter, then store the
//! offset. Partitions run in parallel, each in order, with bounded queues.
//!
//! The consumer loop takes whatever the consumer has ready (up to [`BATCH`]
//! messages at once) and hands each partition its share. Each partition has
//! a lane: a task that runs its messages in order, hands the results to the
//! producer without waiting for them (up to [`IN_FLIGHT`] messages ahead),
//! and stores offsets in order once every write of a message is
//! acknowledged. Messages for a lane that is behind (a slow model) wait in
//! the consumer loop, so that the other partitions go on; only past a bound
//! on the bytes waiting does the loop wait for that lane.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{Notify, mpsc, watch};

use app::domain::{AppError, FlowError, RunRecord, Runtime};

use super::publish::headers;
use super::stats::KEEP_RUNS;
use super::{FlowConfig, RunError, Runner, Stats, Target};
use crate::db::flows::ActiveFlow;
use crate::db::now_ms;
use crate::kafka::BrokerSettings;

/// Messages taken from the consumer at once.
const BATCH: usize = 256;
/// Batches waiting in a lane's queue.
const LANE_QUEUE: usize = 2;
/// Bytes of messages a flow may hold for lanes whose queue is full; past
/// this the consumer loop waits for the lane (and so stops fetching). Held
/// messages move to the lane's queue in one piece, so a lane holds at most
/// [`LANE_QUEUE`] such pieces, the batch it runs and [`IN_FLIGHT_BYTES`].
const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;
/// Messages per partition whose writes may be unacknowledged at once (at
/// most [`IN_FLIGHT_BYTES`] of inputs and outputs): enough to cover the
/// broker's acknowledgement time at full speed.
const IN_FLIGHT: usize = 8192;
const IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
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

/// What the consumer loop and the lanes of a flow share.
#[derive(Clone)]
struct Worker {
    runner: Runner,
    spec: Arc<ActiveFlow>,
    consumer: Arc<StreamConsumer<FlowContext>>,
    config: watch::Receiver<FlowConfig>,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
}

/// One partition's lane, seen from the consumer loop.
struct Lane {
    queue: mpsc::Sender<Vec<OwnedMessage>>,
    task: tokio::task::JoinHandle<()>,
    /// Messages the lane had no room for yet, in order.
    held: Vec<OwnedMessage>,
    held_bytes: usize,
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
    // A lane that takes a batch makes room: the loop then offers it what it holds.
    let room = Arc::new(Notify::new());
    let mut lanes: HashMap<i32, Lane> = HashMap::new();
    let mut stream = consumer.stream();
    'consume: loop {
        let holding = lanes.values().any(|lane| !lane.held.is_empty());
        let first = tokio::select! {
            _ = stop.changed() => break,
            _ = room.notified(), if holding => {
                for lane in lanes.values_mut() {
                    lane.release();
                }
                continue;
            }
            next = stream.next() => next,
        };
        // Whatever else is ready, without waiting: one hand-over per
        // partition and batch instead of one per message.
        let mut batch: Vec<(i32, Vec<OwnedMessage>)> = Vec::new();
        let mut taken = 0;
        let mut failure = None;
        let mut next = first;
        while let Some(result) = next.take() {
            match result {
                Ok(message) => {
                    let partition = message.partition();
                    let message = message.detach();
                    match batch.iter_mut().find(|(p, _)| *p == partition) {
                        Some((_, messages)) => messages.push(message),
                        None => batch.push((partition, vec![message])),
                    }
                    taken += 1;
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
            if taken < BATCH {
                next = stream.next().now_or_never().flatten();
            }
        }
        if taken > 0 {
            stats.set_running();
        }
        for (partition, messages) in batch {
            let lane = lanes
                .entry(partition)
                .or_insert_with(|| Lane::start(worker.clone(), room.clone()));
            lane.offer(messages);
        }
        // Past the bound: wait for the lanes, as plain bounded queues would.
        while lanes.values().map(|lane| lane.held_bytes).sum::<usize>() > MAX_HELD_BYTES {
            let Some(lane) = lanes.values_mut().max_by_key(|lane| lane.held_bytes) else {
                break;
            };
            let held = std::mem::take(&mut lane.held);
            lane.held_bytes = 0;
            tokio::select! {
                _ = stop.changed() => break 'consume,
                _ = lane.queue.send(held) => {}
            }
        }
        if let Some(error) = failure {
            stats.set_state(format!("waiting for the broker: {error}"));
            tracing::debug!(flow = %worker.spec.id, %error, "consumer error");
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    // Stopping: held messages are dropped unprocessed (their offsets stay
    // unstored, so they are consumed again later); the lanes finish the
    // messages they started and store their offsets.
    for (_, lane) in lanes {
        drop(lane.queue);
        let _ = lane.task.await;
    }
    stats.set_state("stopped");
}

impl Lane {
    fn start(worker: Worker, room: Arc<Notify>) -> Self {
        let (queue, receiver) = mpsc::channel(LANE_QUEUE);
        Lane {
            queue,
            task: tokio::spawn(lane(worker, receiver, room)),
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Queues messages for the lane, or holds them while its queue is full.
    fn offer(&mut self, messages: Vec<OwnedMessage>) {
        if self.held.is_empty() {
            match self.queue.try_send(messages) {
                Ok(()) => return,
                Err(TrySendError::Full(messages)) => self.hold(messages),
                // The lane has ended: the flow is stopping.
                Err(TrySendError::Closed(_)) => {}
            }
        } else {
            self.hold(messages);
        }
    }

    fn hold(&mut self, messages: Vec<OwnedMessage>) {
        // What a message takes besides its key and value (topic, headers,
        // bookkeeping), so that empty messages count too.
        const OVERHEAD: usize = 256;
        self.held_bytes += messages
            .iter()
            .map(|m| OVERHEAD + m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len))
            .sum::<usize>();
        if self.held.is_empty() {
            self.held = messages;
        } else {
            self.held.extend(messages);
        }
    }

    /// Hands the held messages to the lane if it has room.
    fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        match self.queue.try_send(std::mem::take(&mut self.held)) {
            Ok(()) => self.held_bytes = 0,
            Err(TrySendError::Full(messages)) => self.held = messages,
            Err(TrySendError::Closed(_)) => self.held_bytes = 0,
        }
    }
}

/// Runs one partition in order. See the module's documentation.
async fn lane(mut worker: Worker, mut queue: mpsc::Receiver<Vec<OwnedMessage>>, room: Arc<Notify>) {
    let mut in_flight = InFlight::default();
    let mut done = Done::default();
    while !worker.stopping() {
        let batch = if in_flight.messages.is_empty() {
            match queue.recv().await {
                Some(batch) => batch,
                None => break,
            }
        } else {
            match queue.try_recv() {
                Ok(batch) => batch,
                Err(TryRecvError::Empty) => {
                    // Nothing new: wait for the oldest message's writes.
                    if !worker.settle(&mut in_flight, &mut done, true).await {
                        return worker.report(&mut done);
                    }
                    worker.report(&mut done);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        };
        room.notify_one();
        let mut setup = worker.setup().await;
        for (i, message) in batch.into_iter().enumerate() {
            if worker.stopping() {
                break;
            }
            // A long piece (held while the lane was behind) stores its
            // offsets every BATCH messages, not only at its end; a piece of
            // one batch or less reports once, after the loop.
            if i > 0 && i % BATCH == 0 {
                if !worker.settle(&mut in_flight, &mut done, false).await {
                    return worker.report(&mut done);
                }
                worker.report(&mut done);
            }
            // A new version or new publish targets apply from the next message.
            if worker.config.has_changed().unwrap_or(false)
                || setup.generation != worker.runner.publish_generation()
            {
                setup = worker.setup().await;
            }
            let Some(pending) = worker.begin(&setup, message).await else {
                // Stopped during retries: this offset and later ones stay unstored.
                break;
            };
            // A write the producer did not take (its queue is full) is sent
            // again before anything later, so that outputs stay in order:
            // everything in flight, it included, is settled first.
            let drain = pending
                .writes
                .iter()
                .any(|w| matches!(w.state, WriteState::Unsent));
            in_flight.bytes += pending.bytes;
            in_flight.messages.push_back(pending);
            while !in_flight.messages.is_empty()
                && (drain
                    || in_flight.messages.len() >= IN_FLIGHT
                    || in_flight.bytes >= IN_FLIGHT_BYTES)
            {
                if !worker.settle(&mut in_flight, &mut done, true).await {
                    return worker.report(&mut done);
                }
            }
        }
        if !worker.settle(&mut in_flight, &mut done, false).await {
            return worker.report(&mut done);
        }
        worker.report(&mut done);
    }
    // Finish what was started, then store its offsets.
    while !in_flight.messages.is_empty() {
        if !worker.settle(&mut in_flight, &mut done, true).await {
            break;
        }
    }
    worker.report(&mut done);
}

/// What a batch runs with: the flow's configuration when the batch began.
struct Setup {
    generation: u64,
    runtime: Runtime,
    version: Arc<str>,
    dlq: Option<Arc<Target>>,
    /// Where outputs go, each with its connection's producer when it could be had.
    targets: Vec<(Arc<Target>, Option<FutureProducer>)>,
}

/// The messages of a lane whose writes are under way, oldest first.
#[derive(Default)]
struct InFlight {
    messages: VecDeque<Pending>,
    /// Bytes of their inputs and outputs.
    bytes: usize,
}

/// A message whose run is over and whose writes are under way.
struct Pending {
    message: OwnedMessage,
    bytes: usize,
    version: Arc<str>,
    started: Instant,
    /// The output, or why the run failed.
    result: Result<Vec<u8>, Failure>,
    writes: Vec<Write>,
}

struct Failure {
    error: RunError,
    attempts: u32,
    at_ms: i64,
    dead_letter: bool,
}

struct Write {
    target: Arc<Target>,
    state: WriteState,
}

enum WriteState {
    /// Handed to the producer; resolves with the broker's answer.
    Sent(DeliveryFuture),
    /// The producer did not take it (or there was none): to be sent again.
    Unsent,
    Acked,
}

/// Messages finished since the last report.
#[derive(Default)]
struct Done {
    /// The last finished offset.
    offset: Option<(i32, i64)>,
    /// The newest runs, oldest first.
    runs: VecDeque<(i32, i64, Arc<str>, &'static str, u64)>,
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn setup(&mut self) -> Setup {
        let generation = self.runner.publish_generation();
        let config = self.config.borrow_and_update().clone();
        let mut targets = Vec::new();
        for target in self
            .runner
            .targets(&self.spec.algorithm_id, &config.version)
        {
            let producer = self.runner.producer(&target.connection_id).await.ok();
            targets.push((target, producer));
        }
        Setup {
            generation,
            runtime: config.runtime,
            version: config.version.into(),
            dlq: config.dlq_topic.map(|topic| {
                Arc::new(Target {
                    connection_id: self.spec.connection_id.clone(),
                    topic,
                })
            }),
            targets,
        }
    }

    /// Runs the algorithm (retrying transient failures) and starts the
    /// writes: outputs to the publish topics, or the dead letter. `None`
    /// when the flow was stopped during retries.
    async fn begin(&self, setup: &Setup, message: OwnedMessage) -> Option<Pending> {
        let stats = &self.stats;
        stats.consumed.inc();
        let started = Instant::now();
        let mut attempts = 0u32;
        let result = loop {
            attempts += 1;
            let result = match message.payload() {
                None => Err(RunError::BadInput("the message has no value".into())),
                Some(input) => self.runner.executor().run(&setup.runtime, input).await,
            };
            match result {
                Err(RunError::Transient(_)) if attempts < MAX_ATTEMPTS => {
                    if self.stopping() {
                        return None;
                    }
                    stats.retries.inc();
                    let backoff = (FIRST_BACKOFF * 2u32.pow(attempts - 1)).min(MAX_BACKOFF);
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = stop.changed() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
                other => break other,
            }
        };
        let mut pending = Pending {
            bytes: message.payload().map_or(0, <[u8]>::len),
            message,
            version: setup.version.clone(),
            started,
            result: Ok(Vec::new()),
            writes: Vec::new(),
        };
        let mut writes = Vec::new();
        match result {
            Ok(output) => {
                pending.bytes += output.len();
                pending.result = Ok(output);
                for (target, producer) in &setup.targets {
                    let state = self.start(producer.as_ref(), target, &pending);
                    writes.push(Write {
                        target: target.clone(),
                        state,
                    });
                }
            }
            Err(error) => {
                stats.failed.inc();
                pending.result = Err(Failure {
                    error,
                    attempts,
                    at_ms: now_ms(),
                    dead_letter: setup.dlq.is_some(),
                });
                if let Some(dlq) = &setup.dlq {
                    let producer = self.runner.producer(&dlq.connection_id).await.ok();
                    let state = self.start(producer.as_ref(), dlq, &pending);
                    writes.push(Write {
                        target: dlq.clone(),
                        state,
                    });
                }
            }
        }
        pending.writes = writes;
        Some(pending)
    }

    /// Hands a record to the producer without waiting for the broker.
    fn start(
        &self,
        producer: Option<&FutureProducer>,
        target: &Target,
        pending: &Pending,
    ) -> WriteState {
        let Some(producer) = producer else {
            return WriteState::Unsent;
        };
        match producer.send_result(self.record(target, pending)) {
            Ok(delivery) => WriteState::Sent(delivery),
            Err((error, _)) => {
                tracing::debug!(flow = %self.spec.id, %error, "the producer did not take a record");
                WriteState::Unsent
            }
        }
    }

    /// The record a message's outcome writes to `target`: the output, or the
    /// input as a dead letter; the input's key; `eventflows-` headers.
    fn record<'a>(&self, target: &'a Target, pending: &'a Pending) -> FutureRecord<'a, [u8], [u8]> {
        let message = &pending.message;
        let value = match &pending.result {
            Ok(output) => output.as_slice(),
            Err(_) => message.payload().unwrap_or_default(),
        };
        let mut record = FutureRecord::to(&target.topic)
            .payload(value)
            .headers(self.headers(pending));
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        record
    }

    fn headers(&self, pending: &Pending) -> OwnedHeaders {
        let message = &pending.message;
        let (mut partition, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let source: [(&str, &[u8]); 5] = [
            ("eventflows-algorithm", self.spec.algorithm.as_bytes()),
            ("eventflows-version", pending.version.as_bytes()),
            ("eventflows-source-topic", message.topic().as_bytes()),
            (
                "eventflows-source-partition",
                partition.format(message.partition()).as_bytes(),
            ),
            (
                "eventflows-source-offset",
                offset.format(message.offset()).as_bytes(),
            ),
        ];
        let Err(failure) = &pending.result else {
            return headers(message.headers(), &source);
        };
        let (mut attempts, mut at) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut fields = source.to_vec();
        fields.extend([
            ("eventflows-error", failure.error.message().as_bytes()),
            ("eventflows-error-kind", failure.error.kind().as_bytes()),
            (
                "eventflows-attempts",
                attempts.format(failure.attempts).as_bytes(),
            ),
            ("eventflows-failed-at", at.format(failure.at_ms).as_bytes()),
        ]);
        headers(message.headers(), &fields)
    }

    /// Takes the messages whose writes are all acknowledged off the front of
    /// `in_flight`, in order; with `wait`, first waits for the oldest one.
    /// False if the flow was stopped while a write kept failing.
    async fn settle(&self, in_flight: &mut InFlight, done: &mut Done, mut wait: bool) -> bool {
        while let Some(head) = in_flight.messages.front_mut() {
            match self.written(head, wait).await {
                Some(true) => {}
                Some(false) => return true,
                None => return false,
            }
            wait = false;
            if let Some(pending) = in_flight.messages.pop_front() {
                in_flight.bytes -= pending.bytes;
                self.finished(pending, done);
            }
        }
        true
    }

    /// Whether every write of `pending` is acknowledged: `Some(false)` while
    /// one is under way (and `wait` is false). A failed write is sent again
    /// until it succeeds; `None` if the flow is stopped first.
    async fn written(&self, pending: &mut Pending, wait: bool) -> Option<bool> {
        for i in 0..pending.writes.len() {
            let acked = match &mut pending.writes[i].state {
                WriteState::Acked => continue,
                WriteState::Unsent => false,
                WriteState::Sent(delivery) => {
                    let answer = if wait {
                        Some(delivery.await)
                    } else {
                        delivery.now_or_never()
                    };
                    match answer {
                        None => return Some(false),
                        Some(Ok(Ok(_))) => true,
                        Some(Ok(Err((error, _)))) => {
                            tracing::debug!(flow = %self.spec.id, %error, "a write failed");
                            false
                        }
                        Some(Err(_)) => false,
                    }
                }
            };
            if !acked {
                let target = pending.writes[i].target.clone();
                if !self.send_until_acked(&target, pending).await {
                    return None;
                }
            }
            pending.writes[i].state = WriteState::Acked;
        }
        Some(true)
    }

    /// Records the outcome of a message whose writes are all acknowledged.
    fn finished(&self, pending: Pending, done: &mut Done) {
        let stats = &self.stats;
        let message = &pending.message;
        let (partition, offset) = (message.partition(), message.offset());
        let outcome = match &pending.result {
            Ok(_) => {
                stats.succeeded.inc();
                "succeeded"
            }
            Err(failure) => {
                let (error, dead_lettered) = (&failure.error, failure.dead_letter);
                if dead_lettered {
                    stats.dead_lettered.inc();
                }
                stats.record_error(FlowError {
                    at_ms: failure.at_ms,
                    partition,
                    offset,
                    kind: error.kind().to_owned(),
                    message: error.message().to_owned(),
                    dead_lettered,
                });
                tracing::info!(flow = %self.spec.id, partition, offset, kind = error.kind(),
                    attempts = failure.attempts, dead_lettered, "{}", error.message());
                if dead_lettered {
                    "dead-lettered"
                } else {
                    "failed"
                }
            }
        };
        let latency = pending.started.elapsed();
        stats.observe_latency(latency.as_secs_f64());
        done.offset = Some((partition, offset));
        if done.runs.len() == KEEP_RUNS {
            done.runs.pop_front();
        }
        done.runs.push_back((
            partition,
            offset,
            pending.version,
            outcome,
            latency.as_millis() as u64,
        ));
    }

    /// Stores the last finished offset and publishes the recent runs.
    fn report(&self, done: &mut Done) {
        if let Some((partition, offset)) = done.offset.take() {
            // librdkafka's rd_kafka_offset_store commits `offset + 1` itself.
            if let Err(error) = self
                .consumer
                .store_offset(&self.spec.topic, partition, offset)
            {
                tracing::debug!(flow = %self.spec.id, %error, partition, offset, "offset not stored");
            }
            self.stats.processed(partition, offset);
        }
        if !done.runs.is_empty() {
            let at_ms = now_ms();
            self.stats.record_runs(done.runs.drain(..).map(
                |(partition, offset, version, outcome, latency_ms)| RunRecord {
                    at_ms,
                    partition,
                    offset,
                    version: version.to_string(),
                    outcome: outcome.to_owned(),
                    latency_ms,
                },
            ));
        }
    }

    /// Sends a write again, with backoff, until the broker acknowledges it;
    /// false if the flow is stopped first (the message then stays unacknowledged).
    async fn send_until_acked(&self, target: &Target, pending: &Pending) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let record = self.record(target, pending);
            match self.runner.send(&target.connection_id, record).await {
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
