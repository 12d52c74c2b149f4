//! One subscribe flow's consume step: the consumer, and the loop that
//! starts a lane ([`super::lane`]: run → write → store offsets) for each
//! partition it is assigned. Partitions run in parallel, each in order.
//!
//! Each assigned partition's fetched messages go to a queue of its own,
//! which its lane reads. A lane that is behind (a slow model) leaves its
//! queue full, and librdkafka then stops fetching that partition only, up
//! to `queued.max.messages.kbytes` of it held. Nothing waits in the
//! consumer loop: it keeps polling the consumer (rebalances, errors, and
//! the group's liveness check), whatever the lanes do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::ffi::CString;
use std::sync::Mutex;

use futures::{FutureExt, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::{Notify, mpsc, watch};

use app::domain::AppError;

use super::lane::{self, Acks, Worker};
use super::revoke::{FinishOnDrop, LaneControl, Lanes, blocking_in_callback};
use super::source::{PartitionQueues, PartitionSource, Source};
use super::{FlowConfig, Runner, Stats};
use crate::db::flows::ActiveFlow;
use crate::kafka::BrokerSettings;

/// What librdkafka may hold of one partition's fetched messages that its
/// lane has not taken yet; past this it stops fetching that partition.
const QUEUED_KBYTES_PER_PARTITION: &str = "8192";
/// How long a partition whose queue is full waits before librdkafka looks
/// at it again (its default, a second, would idle a fast lane).
const FULL_QUEUE_BACKOFF_MS: &str = "20";
/// How often the consumer loop polls the consumer while nothing happens,
/// so that a flow whose lanes are all busy stays in its group.
const LIVENESS_POLL: Duration = Duration::from_secs(1);
/// Liveness polls between two measurements of the flow's lag.
const LAG_EVERY: u32 = 5;

/// Follows the flow's partition assignment: gives each assigned partition
/// a queue of its own, tells the consumer loop which partitions need a
/// lane, and stops the lanes of revoked partitions.
pub struct FlowContext {
    stats: Arc<Stats>,
    topic: String,
    lanes: Arc<Lanes>,
    /// Partitions assigned since the consumer loop last looked.
    assigned: Mutex<Vec<i32>>,
    assigned_changed: Notify,
}

impl ClientContext for FlowContext {
    /// Broker outages reach us here (not as consumer errors): the flow shows
    /// them until messages flow again.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        self.stats.broker_away(reason);
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
        let list = match rebalance {
            Rebalance::Assign(list) => {
                // A consumer that is closing runs nothing more.
                // SAFETY: the handle is this live consumer's.
                let closing = unsafe {
                    rdkafka::bindings::rd_kafka_consumer_closed(consumer.client().native_ptr()) != 0
                };
                if !closing {
                    own_queues(consumer, &self.topic, &partitions_of(list, &self.topic));
                }
                return;
            }
            Rebalance::Revoke(list) => list,
            Rebalance::Error(_) => return,
        };
        let partitions = partitions_of(list, &self.topic);
        if partitions.is_empty() {
            return;
        }
        // An assignment the consumer loop has not acted on yet (assigned and
        // revoked within one poll) starts no lane: such a lane would never
        // be stopped, and would keep the partition from getting a new lane
        // when it is assigned again.
        if let Ok(mut assigned) = self.assigned.lock() {
            assigned.retain(|p| !partitions.contains(p));
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
                if let Ok(mut assigned) = self.assigned.lock() {
                    assigned.extend_from_slice(&partitions);
                }
                self.assigned_changed.notify_one();
            }
            Rebalance::Error(error) => {
                tracing::warn!(topic = %self.topic, %error, "rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// How long a member may send no heartbeat before its group drops it.
const SESSION_TIMEOUT_MS: &str = "30000";

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
        // Stored offsets are committed this often: after a crash, what is
        // run again is what was in flight plus at most about this much
        // work (a commit with nothing new sends nothing).
        .set("auto.commit.interval.ms", "100")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Longer than a restart takes to rejoin (about 6 s on tansu), so
        // that the restarted process's first heartbeat keeps its static
        // member: tansu 0.6.0 expires a rejoined static member by its old
        // session, and a member that rejoins then while a revoke is under
        // way can be left without partitions for good (see the README).
        // On Kafka it is how long a dead instance's partitions wait.
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("enable.partition.eof", "false")
        // The broker may hold a fetch this long when there is nothing new:
        // the bound on the latency of a quiet flow.
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", QUEUED_KBYTES_PER_PARTITION)
        .set("fetch.queue.backoff.ms", FULL_QUEUE_BACKOFF_MS)
        .create_with_context(FlowContext {
            stats,
            topic: spec.topic.clone(),
            lanes: Arc::default(),
            assigned: Mutex::default(),
            assigned_changed: Notify::new(),
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

/// Stops librdkafka from forwarding the partitions' fetched messages to the
/// consumer's queue; each keeps them in a queue of its own, which its lane
/// reads ([`StreamConsumer::split_partition_queue`]). Done before the
/// partitions are assigned, so that none of their messages reaches the
/// consumer's queue; the setting stays with the partition.
fn own_queues(consumer: &BaseConsumer<FlowContext>, topic: &str, partitions: &[i32]) {
    use rdkafka::bindings::{
        rd_kafka_queue_destroy, rd_kafka_queue_forward, rd_kafka_queue_get_partition,
    };
    let Ok(topic) = CString::new(topic) else {
        return;
    };
    let client = consumer.client().native_ptr();
    for &partition in partitions {
        // SAFETY: `client` is this live consumer's handle and `topic` a
        // NUL-terminated string that outlives the call; the queue handle
        // librdkafka returns is ours and released right after use.
        unsafe {
            let queue = rd_kafka_queue_get_partition(client, topic.as_ptr(), partition);
            if !queue.is_null() {
                rd_kafka_queue_forward(queue, std::ptr::null_mut());
                rd_kafka_queue_destroy(queue);
            }
        }
    }
}

/// One partition's lane, seen from the consumer loop.
struct Lane {
    control: Arc<LaneControl>,
    /// Messages of the partition that reached the consumer's queue.
    strays: mpsc::Sender<OwnedMessage>,
    task: tokio::task::JoinHandle<()>,
}

/// Consumes a subscribe flow's topic until `stop`: one lane per assigned
/// partition runs its messages, writes the outputs and stores the offsets.
pub async fn consume(
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
        acks: Acks::Kafka(consumer.clone()),
        config,
        stop: stop.clone(),
        stats: stats.clone(),
        outage: Arc::default(),
    };
    let context = consumer.context().clone();
    let mut lanes: HashMap<i32, Lane> = HashMap::new();
    let mut queues = PartitionQueues::default();
    let mut stream = consumer.stream();
    let mut liveness = tokio::time::interval(LIVENESS_POLL);
    liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Every LAG_EVERY polls the flow measures its lag for /metrics, on the
    // blocking pool, one measurement at a time.
    let mut ticks: u32 = 0;
    let mut measuring: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let next = tokio::select! {
            _ = stop.changed() => break,
            _ = context.assigned_changed.notified() => {
                let assigned = context.assigned.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default();
                // Lanes of revoked partitions are gone; a partition
                // assigned again gets a new lane.
                lanes.retain(|_, lane| !lane.control.stopped());
                for partition in assigned {
                    if lanes.contains_key(&partition) {
                        continue;
                    }
                    match Lane::start(&worker, &consumer, partition, &context.lanes, &mut queues) {
                        Some(lane) => {
                            lanes.insert(partition, lane);
                        }
                        None => stats.set_state(format!("partition {partition} of '{}' cannot be read", worker.spec.topic)),
                    }
                }
                continue;
            }
            // A poll without waiting: the group sees the consumer alive
            // while every lane is busy.
            _ = liveness.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(LAG_EVERY) && measuring.as_ref().is_none_or(|m| m.is_finished()) {
                    let (consumer, topic, stats) = (consumer.clone(), worker.spec.topic.clone(), stats.clone());
                    measuring = Some(tokio::task::spawn_blocking(move || {
                        if let Some(lag) = lag(&consumer, &topic, &stats.progress()) {
                            stats.set_lag(lag);
                            stats.broker_reachable();
                        }
                    }));
                }
                stream.next().now_or_never().flatten()
            }
            next = stream.next() => next,
        };
        match next {
            None => {}
            Some(Ok(message)) => {
                // Only a partition whose queue could not be split off
                // sends its messages here: its lane takes them as well.
                let partition = message.partition();
                let message = message.detach();
                lanes.retain(|_, lane| !lane.control.stopped());
                let lane = match lanes.entry(partition) {
                    std::collections::hash_map::Entry::Occupied(lane) => lane.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        match Lane::start(
                            &worker,
                            &consumer,
                            partition,
                            &context.lanes,
                            &mut queues,
                        ) {
                            Some(lane) => entry.insert(lane),
                            None => continue,
                        }
                    }
                };
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = lane.strays.send(message) => {}
                }
            }
            Some(Err(error)) => {
                stats.broker_away(&error);
                tracing::debug!(flow = %worker.spec.id, %error, "consumer error");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    // Stopping: the lanes finish the run under way, settle the writes they
    // started and store their offsets; what they had not taken yet stays
    // unstored, so it is consumed again later.
    context.lanes.stop_all();
    for (_, lane) in lanes {
        drop(lane.strays);
        let _ = lane.task.await;
    }
    stats.set_state("stopped");
}

impl Lane {
    fn start(
        worker: &Worker,
        consumer: &Arc<StreamConsumer<FlowContext>>,
        partition: i32,
        registry: &Lanes,
        queues: &mut PartitionQueues<FlowContext>,
    ) -> Option<Self> {
        let queue = queues.get(consumer, &worker.spec.topic, partition)?;
        let (strays, stray_receiver) = mpsc::channel(1);
        let (control, stop) = LaneControl::new();
        registry.register(partition, control.clone());
        let mut worker = worker.clone();
        worker.stop = stop;
        let finished = FinishOnDrop(control.clone());
        let source = Source::Partition(PartitionSource::new(
            queue,
            stray_receiver,
            worker.stats.clone(),
            worker.stop.clone(),
        ));
        Some(Lane {
            control,
            strays,
            task: tokio::spawn(async move {
                let _finished = finished;
                lane::lane(worker, source).await
            }),
        })
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

/// The partitions of `topic` assigned to this consumer. Blocking (a
/// request to librdkafka's own thread), but no broker call.
pub fn assigned(consumer: &StreamConsumer<FlowContext>, topic: &str) -> Vec<i32> {
    consumer
        .assignment()
        .map(|assignment| partitions_of(&assignment, topic))
        .unwrap_or_default()
}

/// The messages on the assigned partitions of `topic` not yet processed
/// (the high watermark minus the next offset to process), when every
/// watermark could be read. Blocking: asks the broker.
fn lag(
    consumer: &StreamConsumer<FlowContext>,
    topic: &str,
    progress: &HashMap<i32, i64>,
) -> Option<u64> {
    let mut total = 0u64;
    for partition in assigned(consumer, topic) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(2))
            .ok()?;
        let next = progress.get(&partition).copied().unwrap_or(low).max(low);
        total += (high - next).max(0) as u64;
    }
    Some(total)
}
