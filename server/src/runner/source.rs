//! A lane's source: the queue of fetched messages of its Kafka partition,
//! or the messages an SQS or Service Bus flow received, taken a batch at a
//! time.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
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

pub(super) struct PartitionSource {
    queue: StreamPartitionQueue<FlowContext>,
    /// Messages of the partition that reached the consumer's queue instead
    /// (see `subscribe`); they come first.
    strays: mpsc::Receiver<OwnedMessage>,
    strays_open: bool,
    stats: Arc<Stats>,
}

impl PartitionSource {
    pub fn new(
        queue: StreamPartitionQueue<FlowContext>,
        strays: mpsc::Receiver<OwnedMessage>,
        stats: Arc<Stats>,
    ) -> Self {
        PartitionSource {
            queue,
            strays,
            strays_open: true,
            stats,
        }
    }

    /// The next messages, at most [`BATCH`], waiting for the first.
    pub async fn next(&mut self) -> Vec<OwnedMessage> {
        loop {
            let first = tokio::select! {
                biased;
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
