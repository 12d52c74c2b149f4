//! A lane's source: the queue of fetched messages of its Kafka partition,
//! or the messages an SQS or Service Bus flow received, taken a batch at a
//! time.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use tokio::sync::{mpsc, watch};

use super::Stats;
use super::subscribe::FlowContext;

/// Most messages a lane takes at once: it stores its offsets at least this
/// often.
pub(super) const BATCH: usize = 256;

pub(super) enum Source {
    Partition(PartitionSource),
    /// Messages received from a queue (see `sqs_flow` and
    /// `servicebus_flow`), in the order received; none more once the
    /// receiver stops.
    Received {
        messages: mpsc::Receiver<OwnedMessage>,
        stats: Arc<Stats>,
    },
}

/// Hands messages a queue's receiver took on to its lane, in order;
/// `false` once the flow stops or the lane is gone.
pub(super) async fn hand_on(
    lane: &mpsc::Sender<OwnedMessage>,
    received: Vec<OwnedMessage>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    for message in received {
        tokio::select! {
            _ = stop.changed() => return false,
            sent = lane.send(message) => if sent.is_err() { return false },
        }
    }
    true
}

impl Source {
    /// The next messages, at most [`BATCH`], waiting for the first.
    pub async fn next(&mut self) -> Vec<OwnedMessage> {
        match self {
            Source::Partition(source) => source.next().await,
            Source::Received { messages, stats } => match messages.recv().await {
                Some(first) => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match messages.try_recv() {
                            Ok(message) => batch.push(message),
                            Err(_) => break,
                        }
                    }
                    stats.set_running();
                    batch
                }
                // The lane ends on its stop signal.
                None => std::future::pending().await,
            },
        }
    }

    /// The messages ready now, at most [`BATCH`]; empty if there are none.
    pub fn ready(&mut self) -> Vec<OwnedMessage> {
        match self {
            Source::Partition(source) => source.ready(),
            Source::Received { messages, .. } => {
                let mut batch = Vec::new();
                while batch.len() < BATCH {
                    match messages.try_recv() {
                        Ok(message) => batch.push(message),
                        Err(_) => break,
                    }
                }
                batch
            }
        }
    }
}

/// The queue of each partition a flow's lanes read, shared by the lanes of
/// one partition: a lane still finishing after its partition was revoked,
/// and the new lane of the partition assigned again, read through the same
/// queue.
///
/// Every queue split off for a partition is a handle on the partition's
/// one fetch queue, and dropping a handle switches off the wake-ups of that
/// fetch queue: a new lane with a queue of its own would never be woken
/// again once the old lane dropped its queue, and its partition would stop.
pub(super) struct PartitionQueues<C: ConsumerContext + 'static>(
    HashMap<i32, Weak<StreamPartitionQueue<C>>>,
);

impl<C: ConsumerContext + 'static> Default for PartitionQueues<C> {
    fn default() -> Self {
        PartitionQueues(HashMap::new())
    }
}

impl<C: ConsumerContext + 'static> PartitionQueues<C> {
    /// The queue of `partition` of `topic`: the one a lane still holds, or
    /// a new one split off the consumer (`None` if that cannot be done).
    pub fn get(
        &mut self,
        consumer: &Arc<StreamConsumer<C>>,
        topic: &str,
        partition: i32,
    ) -> Option<Arc<StreamPartitionQueue<C>>> {
        self.0.retain(|_, queue| queue.strong_count() > 0);
        if let Some(queue) = self.0.get(&partition).and_then(Weak::upgrade) {
            return Some(queue);
        }
        let queue = Arc::new(consumer.split_partition_queue(topic, partition)?);
        self.0.insert(partition, Arc::downgrade(&queue));
        Some(queue)
    }
}

pub(super) struct PartitionSource<C: ConsumerContext + 'static = FlowContext> {
    queue: Arc<StreamPartitionQueue<C>>,
    /// Messages of the partition that reached the consumer's queue instead
    /// (see `subscribe`); they come first.
    strays: mpsc::Receiver<OwnedMessage>,
    strays_open: bool,
    stats: Arc<Stats>,
    /// The lane's stop signal: a stopped lane takes nothing more from the
    /// queue, which the partition's next lane may share.
    stop: watch::Receiver<bool>,
}

impl<C: ConsumerContext + 'static> PartitionSource<C> {
    pub fn new(
        queue: Arc<StreamPartitionQueue<C>>,
        strays: mpsc::Receiver<OwnedMessage>,
        stats: Arc<Stats>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        PartitionSource {
            queue,
            strays,
            strays_open: true,
            stats,
            stop,
        }
    }

    /// The next messages, at most [`BATCH`], waiting for the first; none
    /// once the lane is stopped.
    pub async fn next(&mut self) -> Vec<OwnedMessage> {
        let mut stop = self.stop.clone();
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return Vec::new(),
                stray = self.strays.recv(), if self.strays_open => match stray {
                    Some(message) => Ok(message),
                    None => {
                        self.strays_open = false;
                        continue;
                    }
                },
                next = self.queue.recv() => next.map(|m| m.detach()),
            };
            match first {
                Ok(message) => {
                    let mut batch = vec![message];
                    self.fill(&mut batch);
                    return batch;
                }
                Err(error) => self.failed(error),
            }
        }
    }

    /// The messages ready now, at most [`BATCH`]; empty if there are none.
    pub fn ready(&mut self) -> Vec<OwnedMessage> {
        let mut batch = Vec::new();
        self.fill(&mut batch);
        batch
    }

    fn fill(&mut self, batch: &mut Vec<OwnedMessage>) {
        if *self.stop.borrow() {
            return;
        }
        while batch.len() < BATCH {
            match self.strays.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let mut stream = self.queue.stream();
        while batch.len() < BATCH {
            match stream.next().now_or_never().flatten() {
                Some(Ok(message)) => batch.push(message.detach()),
                Some(Err(error)) => {
                    self.failed(error);
                    break;
                }
                None => break,
            }
        }
        if !batch.is_empty() {
            self.stats.set_running();
        }
    }

    /// Errors of the partition's fetches (librdkafka retries them itself).
    fn failed(&self, error: KafkaError) {
        tracing::debug!(%error, "partition fetch error");
        self.stats.broker_away(error);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::consumer::{Consumer, DefaultConsumerContext};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;

    /// A mock cluster with the one-partition topic "in", its bootstrap
    /// servers, and a consumer assigned the partition from the beginning.
    fn one_partition() -> (
        MockCluster<'static, DefaultProducerContext>,
        String,
        Arc<StreamConsumer<DefaultConsumerContext>>,
    ) {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("in", 1, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let consumer: Arc<StreamConsumer<DefaultConsumerContext>> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "lanes")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap(),
        );
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("in", 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        (cluster, bootstrap, consumer)
    }

    async fn produce(bootstrap: &str, value: &str) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
        producer
            .send(
                FutureRecord::<(), _>::to("in").payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_lane_leaves_its_partitions_messages_to_the_next_lane() {
        let (_cluster, bootstrap, consumer) = one_partition();
        let mut queues = PartitionQueues::default();
        let mut source = |stop| {
            let (_, strays) = mpsc::channel(1);
            let stats = Arc::new(Stats::default());
            PartitionSource::new(queues.get(&consumer, "in", 0).unwrap(), strays, stats, stop)
        };
        let (stop_old, stopped) = watch::channel(false);
        let mut old = source(stopped);
        stop_old.send(true).unwrap();
        let (_running, running) = watch::channel(false);
        let mut new = source(running);
        produce(&bootstrap, "m").await;

        let taken = tokio::time::timeout(Duration::from_secs(10), old.next()).await;
        assert!(
            taken.is_ok_and(|batch| batch.is_empty()),
            "the stopped lane took a message"
        );
        assert!(old.ready().is_empty());
        let batch = tokio::time::timeout(Duration::from_secs(10), new.next())
            .await
            .expect("the next lane gets the message");
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_lane_is_woken_after_the_old_lane_of_its_partition_lets_go() {
        let (_cluster, bootstrap, consumer) = one_partition();
        let mut queues = PartitionQueues::default();
        // A lane still finishing after a revoke, and the partition's new lane.
        let old = queues.get(&consumer, "in", 0).unwrap();
        let new = queues.get(&consumer, "in", 0).unwrap();
        drop(old);

        // The new lane waits for a message before there is one.
        let mut next = std::pin::pin!(new.recv());
        assert!(futures::poll!(&mut next).is_pending());
        produce(&bootstrap, "m").await;
        // Only a wake-up counts: when the time is up the queue is not read.
        let woken = tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_secs(10)) => None,
            message = &mut next => Some(message),
        };
        assert!(
            matches!(woken, Some(Ok(_))),
            "the new lane is woken for the message"
        );
    }
}
