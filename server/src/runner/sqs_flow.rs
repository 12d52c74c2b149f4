//! A subscribe flow on an SQS queue, read as AWS Lambda's SQS event source
//! reads one: long-polled receives of up to ten messages at a time, run by
//! one lane ([`super::lane`]) as it runs a Kafka partition, numbered in the
//! order received.
//!
//! - A message is deleted only once its outputs, or its kept failure, are
//!   settled: a crash or an outage before that leaves it on the queue, and
//!   it is received again once its visibility timeout ends.
//! - While a message waits or runs, its visibility timeout is extended, so
//!   that no other reader receives it meanwhile.
//! - When the flow stops, the messages it had not finished are made visible
//!   again at once.
//! - On a FIFO queue the message group is the message's key, so that the
//!   flow's ordering setting keeps each group in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use tokio::sync::{mpsc, watch};

use super::Target;
use super::lane::{self, Acks, Worker};
use super::source::{BATCH, Source};
use super::write::WriteError;
use super::writer::Record;
use super::{FlowConfig, Runner, Stats};
use crate::db::flows::ActiveFlow;
use crate::sqs::SqsClient;

/// How long a received message stays invisible to other readers, and how
/// long it is extended by while the flow holds it, unless the runner is
/// told otherwise; extended every third of it.
pub const VISIBILITY_SECS: i32 = 30;
/// How long one receive waits for a message (long polling).
const WAIT_SECS: i32 = 5;
/// How long one call of the flow may take: a receive that waited its
/// whole time still answers within it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(WAIT_SECS as u64 + 10);
/// How long the flow waits after a failed call before the next.
const BACKOFF: Duration = Duration::from_secs(1);
/// How long a stopping flow waits for its deletes and for giving back
/// the messages it did not finish.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// SQS takes at most this many entries in one batch call.
const SQS_BATCH: usize = 10;

/// The messages a flow received and has not finished: their receipt
/// handles, by the number the lane knows them by.
pub struct InFlight {
    client: Arc<SqsClient>,
    url: String,
    flow: Arc<str>,
    handles: Mutex<BTreeMap<i64, String>>,
    /// The deletes under way, awaited when the flow stops.
    deleting: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl InFlight {
    fn new(client: Arc<SqsClient>, url: String, flow: Arc<str>) -> Self {
        InFlight {
            client,
            url,
            flow,
            handles: Mutex::default(),
            deleting: Mutex::default(),
        }
    }

    fn received(&self, number: i64, handle: String) {
        if let Ok(mut handles) = self.handles.lock() {
            handles.insert(number, handle);
        }
    }

    /// Every message up to `last` is finished: they are deleted.
    pub fn finished(&self, last: i64) {
        let done: Vec<String> = match self.handles.lock() {
            Ok(mut handles) => {
                let rest = handles.split_off(&(last + 1));
                std::mem::replace(&mut *handles, rest)
                    .into_values()
                    .collect()
            }
            Err(_) => return,
        };
        if done.is_empty() {
            return;
        }
        let (client, url, flow) = (self.client.clone(), self.url.clone(), self.flow.clone());
        let task = tokio::spawn(async move {
            let chunks = done
                .chunks(SQS_BATCH)
                .map(|chunk| delete(&client, &url, &flow, chunk));
            futures::future::join_all(chunks).await;
        });
        if let Ok(mut deleting) = self.deleting.lock() {
            deleting.retain(|d| !d.is_finished());
            deleting.push(task);
        }
    }

    /// Waits, at most `limit`, for the deletes under way.
    async fn deleted(&self, limit: Duration) {
        let tasks = self
            .deleting
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        if tokio::time::timeout(limit, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(flow = %self.flow, "finished SQS messages were still being deleted when the flow stopped; they may run again");
        }
    }

    fn held(&self) -> Vec<String> {
        self.handles
            .lock()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets the visibility timeout of every message held to `seconds`,
    /// all batches at once.
    async fn set_visibility(&self, seconds: i32) {
        let held = self.held();
        let calls = held.chunks(SQS_BATCH).map(|chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .build()
                        .ok()
                })
                .collect();
            self.client
                .sdk()
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
        });
        for answer in futures::future::join_all(calls).await {
            match answer {
                Ok(answer) if answer.failed().is_empty() => {}
                Ok(answer) => tracing::warn!(flow = %self.flow, failed = answer.failed().len(),
                    "the visibility of some SQS messages could not be changed"),
                Err(error) => tracing::warn!(flow = %self.flow,
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                    "the visibility of SQS messages could not be changed"),
            }
        }
    }
}

/// Deletes finished messages, trying a few times: a message whose delete
/// never succeeds is received and run again.
async fn delete(client: &SqsClient, url: &str, flow: &str, handles: &[String]) {
    let entries: Vec<DeleteMessageBatchRequestEntry> = handles
        .iter()
        .enumerate()
        .filter_map(|(i, handle)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .build()
                .ok()
        })
        .collect();
    for attempt in 1..=3 {
        match client
            .sdk()
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
        {
            Ok(answer) if answer.failed().is_empty() => return,
            Ok(answer) => {
                tracing::warn!(%flow, failed = answer.failed().len(), "some finished SQS messages were not deleted; they will run again");
                return;
            }
            Err(error) => {
                tracing::debug!(%flow, %error, attempt, "finished SQS messages not deleted yet");
                tokio::time::sleep(BACKOFF * attempt).await;
            }
        }
    }
    tracing::warn!(%flow, count = handles.len(), "finished SQS messages could not be deleted; they will run again");
}

/// Runs a subscribe flow on the SQS queue named by its topic until `stop`.
pub async fn consume(
    runner: Runner,
    spec: ActiveFlow,
    client: Arc<SqsClient>,
    config: watch::Receiver<FlowConfig>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let flow: Arc<str> = spec.id.as_str().into();
    let visibility = runner.sqs_visibility();
    let Some(url) = queue_url(&client, &spec.topic, &mut stop, &stats).await else {
        stats.set_state("stopped");
        return;
    };
    let in_flight = Arc::new(InFlight::new(client.clone(), url.clone(), flow.clone()));
    let (messages, received) = mpsc::channel(BATCH);
    let worker = Worker {
        retry: runner.retry_policy(),
        runner,
        spec: Arc::new(spec),
        acks: Acks::Sqs(in_flight.clone()),
        config,
        stop: stop.clone(),
        stats: stats.clone(),
    };
    let topic = worker.spec.topic.clone();
    let lane = tokio::spawn(lane::lane(
        worker,
        Source::Received {
            messages: received,
            stats: stats.clone(),
        },
    ));
    // Extends until the lane has finished, stop or not: a run under way
    // when the flow stops still holds its message.
    let extender = tokio::spawn({
        let in_flight = in_flight.clone();
        async move {
            let third = Duration::from_secs(visibility as u64) / 3;
            let mut every = tokio::time::interval(third.max(Duration::from_millis(300)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            every.tick().await;
            loop {
                every.tick().await;
                in_flight.set_visibility(visibility).await;
            }
        }
    });
    let mut number: i64 = 0;
    'receiving: loop {
        // A receive is not cut short by a stop: what it returns is held,
        // and given back below, instead of staying hidden.
        if *stop.borrow() {
            break;
        }
        let answer = client
            .sdk()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(SQS_BATCH as i32)
            .wait_time_seconds(WAIT_SECS)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let error = client.describe(error);
                tracing::debug!(%flow, %error, "receiving from SQS failed");
                stats.broker_away(error);
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(BACKOFF) => continue,
                }
            }
        };
        stats.broker_reachable();
        // Every message of the answer is held before any is handed on, so
        // that a stop in between gives them all back.
        let mut batch = Vec::with_capacity(answer.messages().len());
        for message in answer.messages() {
            let Some(handle) = message.receipt_handle() else {
                continue;
            };
            let attribute = |name: MessageSystemAttributeName| {
                message.attributes().and_then(|a| a.get(&name)).cloned()
            };
            let sent = attribute(MessageSystemAttributeName::SentTimestamp)
                .and_then(|ms| ms.parse::<i64>().ok());
            batch.push(OwnedMessage::new(
                message.body().map(|b| b.as_bytes().to_vec()),
                attribute(MessageSystemAttributeName::MessageGroupId).map(String::into_bytes),
                topic.clone(),
                sent.map_or(Timestamp::NotAvailable, Timestamp::CreateTime),
                0,
                number,
                None,
            ));
            in_flight.received(number, handle.to_owned());
            number += 1;
        }
        for received in batch {
            tokio::select! {
                _ = stop.changed() => break 'receiving,
                sent = messages.send(received) => if sent.is_err() { break 'receiving },
            }
        }
    }
    // The lane finishes the runs under way and settles them; what it had
    // not finished is given back to the queue at once.
    drop(messages);
    let _ = lane.await;
    extender.abort();
    let settle = async {
        in_flight.deleted(RELEASE_TIMEOUT / 2).await;
        in_flight.set_visibility(0).await;
    };
    if tokio::time::timeout(RELEASE_TIMEOUT, settle).await.is_err() {
        tracing::warn!(%flow, "unfinished SQS messages were not given back in time; they are received again once their visibility timeout ends");
    }
    stats.set_state("stopped");
}

/// The URL of the flow's queue, asked for until it is known or the flow
/// stops; a queue that does not exist is the flow's state meanwhile.
async fn queue_url(
    client: &SqsClient,
    name: &str,
    stop: &mut watch::Receiver<bool>,
    stats: &Stats,
) -> Option<String> {
    loop {
        match client.queue_url(name).await {
            Ok(Some(url)) => {
                stats.set_state("running");
                return Some(url);
            }
            Ok(None) => stats.set_state(format!("the queue '{name}' does not exist")),
            Err(error) => {
                tracing::debug!(queue = %name, %error, "the queue's URL could not be read");
                stats.broker_away(error);
            }
        }
        tokio::select! {
            _ = stop.changed() => return None,
            _ = tokio::time::sleep(BACKOFF * 2) => {}
        }
    }
}

/// An SQS queue that outputs are sent to (a publish flow's target).
pub struct OutputQueue {
    client: Arc<SqsClient>,
    url: String,
    /// A FIFO queue's messages are sent one after another, in the order
    /// written, by one task; a standard queue's all at once.
    in_order: Option<mpsc::UnboundedSender<Sending>>,
}

/// A message to send, and where its answer goes.
type Sending = (
    aws_sdk_sqs::operation::send_message::builders::SendMessageFluentBuilder,
    tokio::sync::oneshot::Sender<Result<(), WriteError>>,
    String,
);

/// The answer to one message sent to an SQS queue.
pub struct Sent(tokio::sync::oneshot::Receiver<Result<(), WriteError>>);

impl std::future::Future for Sent {
    type Output = Result<(), WriteError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| Err(WriteError::Retryable("sending was cancelled".into())))
        })
    }
}

/// Sends one message and answers.
async fn send_one(client: &SqsClient, (request, answer, topic): Sending) {
    let sent = request.send().await.map(|_| ()).map_err(|error| {
        let error = client.describe(error);
        WriteError::Retryable(format!("writing to '{topic}' failed: {error}"))
    });
    let _ = answer.send(sent);
}

/// The largest message SQS takes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

impl OutputQueue {
    pub fn new(client: Arc<SqsClient>, url: String, name: &str) -> Self {
        let in_order = name.ends_with(".fifo").then(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Sending>();
            let client = client.clone();
            tokio::spawn(async move {
                while let Some(sending) = rx.recv().await {
                    send_one(&client, sending).await;
                }
            });
            tx
        });
        OutputQueue {
            client,
            url,
            in_order,
        }
    }

    /// Sends one output. Its body must be text within SQS's size limit.
    /// On a FIFO queue its key is the message group (an output without a
    /// key goes to the group "eventflows"), and the deduplication id is
    /// drawn from where its input came from and what it is, so that an
    /// output written again after a restart is taken once.
    pub(super) fn send(&self, target: &Target, record: Record<'_>) -> Result<Sent, WriteError> {
        let body = std::str::from_utf8(record.value).map_err(|_| {
            WriteError::Permanent(format!(
                "an output that is not UTF-8 text cannot be sent to the SQS queue '{}'",
                target.topic
            ))
        })?;
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(WriteError::Permanent(format!(
                "an output of {} bytes is over the {MAX_MESSAGE_BYTES} bytes an SQS message may have ('{}')",
                body.len(),
                target.topic
            )));
        }
        let mut request = self
            .client
            .sdk()
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        if self.in_order.is_some() {
            let group = record
                .key
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "eventflows".to_owned());
            request = request
                .message_group_id(group)
                .message_deduplication_id(deduplication_id(&record));
        }
        let (answer, sent) = tokio::sync::oneshot::channel();
        let sending = (request, answer, target.topic.clone());
        match &self.in_order {
            Some(queue) => {
                if let Err(unsent) = queue.send(sending) {
                    let _ = unsent.0.1.send(Err(WriteError::Retryable(
                        "the queue's sender has stopped".into(),
                    )));
                }
            }
            None => {
                let client = self.client.clone();
                tokio::spawn(async move { send_one(&client, sending).await });
            }
        }
        Ok(Sent(sent))
    }
}

/// A FIFO deduplication id: a digest of the output's source headers and
/// its value.
fn deduplication_id(record: &Record<'_>) -> String {
    use rdkafka::message::Headers;
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for header in record.headers.iter() {
        if header.key.starts_with("eventflows-source-") {
            digest.update(header.key.as_bytes());
            digest.update(header.value.unwrap_or_default());
        }
    }
    digest.update(record.value);
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
