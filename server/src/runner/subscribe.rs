//! One subscribe flow's consume step: the consumer, and the loop that hands
//! each partition's messages to its lane ([`super::lane`]: run → write →
//! store offsets). Partitions run in parallel, each in order.
//!
//! The consumer loop takes whatever the consumer has ready (up to [`BATCH`]
//! messages at once) and hands each partition its share. Messages for a lane that is behind (a slow model) wait in
//! the consumer loop, so that the other partitions go on; only past a bound
//! on the bytes waiting does the loop wait for that lane.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};

use app::domain::AppError;

use super::lane::{self, BATCH, Worker};
use super::revoke::{FinishOnDrop, LaneControl, Lanes, blocking_in_callback};
use super::{FlowConfig, Runner, Stats};
use crate::db::flows::ActiveFlow;
use crate::kafka::BrokerSettings;

/// Batches waiting in a lane's queue.
const LANE_QUEUE: usize = 2;
/// Bytes of messages a flow may hold for lanes whose queue is full; past
/// this the consumer loop waits for the lane (and so stops fetching). Held
/// messages move to the lane's queue in one piece, so a lane holds at most
/// [`LANE_QUEUE`] such pieces, the batch it runs and what it has in flight.
const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// Counts partition assignments, so a rebalance is visible in the stats.
pub struct FlowContext {
    stats: Arc<Stats>,
    topic: String,
    lanes: Arc<Lanes>,
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
    /// Partitions taken away stop here before the rebalance completes:
    /// their lanes finish what they wrote and their offsets are committed.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = partitions_of(list, &self.topic);
        if partitions.is_empty() {
            return;
        }
        // Waiting for the lanes and the synchronous commit both block.
        let finished = blocking_in_callback(|can_wait| {
            let finished = self.lanes.revoke(&partitions, can_wait);
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(topic = %self.topic, %error, "nothing committed on revoke");
            }
            finished
        });
        if !finished {
            tracing::warn!(topic = %self.topic, ?partitions,
                "revoked partitions did not finish in time; their last messages may run again elsewhere");
        }
        tracing::info!(topic = %self.topic, ?partitions, "partitions revoked");
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                Stats::bump(&self.stats.assignments);
                let partitions = partitions_of(list, &self.topic);
                tracing::info!(topic = %self.topic, ?partitions, "partitions assigned");
            }
            Rebalance::Error(error) => {
                tracing::warn!(topic = %self.topic, %error, "rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
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
        .set("group.id", &spec.consumer_group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("enable.partition.eof", "false")
        // The broker may hold a fetch this long when there is nothing new:
        // the bound on the latency of a quiet flow.
        .set("fetch.wait.max.ms", "100")
        .create_with_context(FlowContext {
            stats,
            topic: spec.topic.clone(),
            lanes: Arc::default(),
        })
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

/// One partition's lane, seen from the consumer loop.
struct Lane {
    control: Arc<LaneControl>,
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
        retry: runner.retry_policy(),
        runner,
        spec: Arc::new(spec),
        consumer: consumer.clone(),
        config,
        stop: stop.clone(),
        stats: stats.clone(),
    };
    // A lane that takes a batch makes room: the loop then offers it what it holds.
    let room = Arc::new(Notify::new());
    let registry = consumer.context().lanes.clone();
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
        // Lanes of revoked partitions are gone with what they held; a
        // partition assigned again gets a new lane.
        lanes.retain(|_, lane| !lane.control.stopped());
        for (partition, messages) in batch {
            let lane = lanes
                .entry(partition)
                .or_insert_with(|| Lane::start(worker.clone(), room.clone(), partition, &registry));
            lane.offer(messages);
        }
        // Past the bound: wait for the lanes, as plain bounded queues would.
        // (Pausing the partitions instead would keep the loop polling, but
        // a resume fetches from inside a record batch, which tansu 0.6.0's
        // in-memory storage answers by skipping the rest of that batch.)
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
    // unstored, so they are consumed again later); the lanes finish the run
    // under way, settle the writes they started and store their offsets.
    registry.stop_all();
    for (_, lane) in lanes {
        drop(lane.queue);
        let _ = lane.task.await;
    }
    stats.set_state("stopped");
}

impl Lane {
    fn start(mut worker: Worker, room: Arc<Notify>, partition: i32, registry: &Lanes) -> Self {
        let (queue, receiver) = mpsc::channel(LANE_QUEUE);
        let (control, stop) = LaneControl::new();
        registry.register(partition, control.clone());
        worker.stop = stop;
        let finished = FinishOnDrop(control.clone());
        Lane {
            control,
            queue,
            task: tokio::spawn(async move {
                let _finished = finished;
                lane::lane(worker, receiver, room).await
            }),
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

/// The partitions of `topic` in a list, in order.
fn partitions_of(list: &TopicPartitionList, topic: &str) -> Vec<i32> {
    let mut partitions: Vec<i32> = list
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    partitions.sort_unstable();
    partitions
}

/// The partitions of `topic` assigned to this consumer, and the messages on
/// them not yet processed (the high watermark minus the next offset to
/// process, when every watermark could be read). Blocking.
pub fn position(
    consumer: &StreamConsumer<FlowContext>,
    topic: &str,
    progress: &HashMap<i32, i64>,
) -> (Vec<i32>, Option<u64>) {
    let Ok(assignment) = consumer.assignment() else {
        return (Vec::new(), None);
    };
    let partitions = partitions_of(&assignment, topic);
    let mut total = Some(0u64);
    for &partition in &partitions {
        let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(2))
        else {
            total = None;
            break;
        };
        let next = progress.get(&partition).copied().unwrap_or(low).max(low);
        total = total.map(|t| t + (high - next).max(0) as u64);
    }
    (partitions, total)
}
