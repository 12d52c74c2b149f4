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
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName,
};
use rdkafka::Timestamp;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use tokio::sync::{mpsc, watch};

use super::lane::{self, Acks};
use super::write::WriteError;
use super::writer::Record;
use super::{FlowConfig, Runner, Stats};
use super::{Target, headers};
use crate::db::flows::ActiveFlow;
use crate::sqs::SqsClient;
use app::domain::AppError;

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
/// The longest visibility timeout SQS takes: twelve hours.
const MAX_VISIBILITY_SECS: i32 = 12 * 60 * 60;
/// SQS takes at most this many entries in one batch call.
const SQS_BATCH: usize = 10;

/// The messages a flow received and has not finished: their receipt
/// handles, by the number the lane knows them by.
pub struct InFlight {
    client: Arc<SqsClient>,
    url: String,
    flow: Arc<str>,
    handles: Mutex<BTreeMap<i64, String>>,
    /// The deletes and returns under way, awaited when the flow stops.
    settling: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Held across each change of visibility, so that a message given back
    /// is not made invisible again by an extension whose list of handles
    /// was taken before it was given back.
    visibility: Arc<tokio::sync::Mutex<()>>,
}

impl InFlight {
    fn new(client: Arc<SqsClient>, url: String, flow: Arc<str>) -> Self {
        InFlight {
            client,
            url,
            flow,
            handles: Mutex::default(),
            settling: Mutex::default(),
            visibility: Arc::default(),
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
        self.track(task);
    }

    /// The message numbered `number` goes back to the queue: it is made
    /// visible again after `after` (in whole seconds, as SQS counts), as
    /// AWS Lambda does with a message its function failed on.
    pub fn give_back(&self, number: i64, after: Duration) {
        let Some(handle) = self.handles.lock().ok().and_then(|mut h| h.remove(&number)) else {
            return;
        };
        let seconds = after
            .as_secs_f64()
            .ceil()
            .clamp(0.0, MAX_VISIBILITY_SECS as f64) as i32;
        let (client, url, flow) = (self.client.clone(), self.url.clone(), self.flow.clone());
        let visibility = self.visibility.clone();
        let task = tokio::spawn(async move {
            // After any extension under way, which may still name it.
            let _changing = visibility.lock().await;
            set_visibility(&client, &url, &flow, &[handle], seconds).await;
        });
        self.track(task);
    }

    /// Keeps `task` (a delete or a return) to be awaited when the flow
    /// stops.
    fn track(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut settling) = self.settling.lock() {
            settling.retain(|t| !t.is_finished());
            settling.push(task);
        }
    }

    /// Waits, at most `limit`, for the deletes and returns under way.
    async fn settled(&self, limit: Duration) {
        let tasks = self
            .settling
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

    /// Sets the visibility timeout of every message held to `seconds`.
    async fn set_visibility(&self, seconds: i32) {
        let _changing = self.visibility.lock().await;
        set_visibility(&self.client, &self.url, &self.flow, &self.held(), seconds).await;
    }
}

/// Sets the visibility timeout of the messages received with `handles` to
/// `seconds`, all batches at once; `who` (a flow, or a queue read back)
/// names them in the log when SQS refuses.
async fn set_visibility(
    client: &SqsClient,
    url: &str,
    who: &str,
    handles: &[String],
    seconds: i32,
) {
    let calls = handles.chunks(SQS_BATCH).map(|chunk| {
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
        client
            .sdk()
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
    });
    for answer in futures::future::join_all(calls).await {
        match answer {
            Ok(answer) if answer.failed().is_empty() => {}
            Ok(answer) => tracing::warn!(%who, failed = answer.failed().len(),
                "the visibility of some SQS messages could not be changed"),
            Err(error) => tracing::warn!(%who,
                error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                "the visibility of SQS messages could not be changed"),
        }
    }
}

/// Deletes finished messages, trying a few times: a message whose delete
/// never succeeds is received and run again.
async fn delete(client: &SqsClient, url: &str, flow: &str, handles: &[String]) {
    let mut entries: Vec<DeleteMessageBatchRequestEntry> = handles
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
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
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
                // Those SQS failed on its side are tried again; a handle it
                // refuses is not.
                let again: Vec<&str> = answer
                    .failed()
                    .iter()
                    .filter(|f| !f.sender_fault())
                    .map(|f| f.id())
                    .collect();
                if again.len() < answer.failed().len() {
                    tracing::warn!(%flow, refused = answer.failed().len() - again.len(),
                        "SQS refused to delete some finished messages; they will run again");
                }
                entries.retain(|e| again.contains(&e.id()));
                if entries.is_empty() {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(%flow, %error, attempt, "finished SQS messages not deleted yet");
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(BACKOFF * attempt).await;
        }
    }
    tracing::warn!(%flow, count = entries.len(), "finished SQS messages could not be deleted; they will run again");
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
    let topic = spec.topic.clone();
    let (messages, lane) = lane::queue_lane(
        runner,
        spec,
        Acks::Sqs(in_flight.clone()),
        config,
        stop.clone(),
        stats.clone(),
    );
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
    let measurer = tokio::spawn(measure(client.clone(), url.clone(), stats.clone()));
    let mut number: i64 = 0;
    loop {
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
            Err(error) if SqsClient::queue_gone(&error) => {
                // Deleted under the flow: it waits for a queue of that name.
                stats.set_state(gone(&topic));
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(BACKOFF * 2) => continue,
                }
            }
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
        stats.queue_back(&gone(&topic));
        // Every message of the answer is held before any is handed on, so
        // that a stop in between gives them all back.
        let mut batch = Vec::with_capacity(answer.messages().len());
        for message in answer.messages() {
            let Some(handle) = message.receipt_handle() else {
                continue;
            };
            let mut own = OwnedHeaders::new_with_capacity(2);
            if let Some(id) = message.message_id() {
                own = own.insert(Header {
                    key: headers::SQS_MESSAGE_ID,
                    value: Some(id),
                });
            }
            if let Some(count) =
                system(message, MessageSystemAttributeName::ApproximateReceiveCount)
            {
                own = own.insert(Header {
                    key: headers::SQS_RECEIVE_COUNT,
                    value: Some(&count),
                });
            }
            batch.push(record_of(message, &topic, number, own));
            in_flight.received(number, handle.to_owned());
            number += 1;
        }
        if !super::source::hand_on(&messages, batch, &mut stop).await {
            break;
        }
    }
    // The lane finishes the runs under way and settles them; what it had
    // not finished is given back to the queue at once.
    drop(messages);
    let _ = lane.await;
    extender.abort();
    measurer.abort();
    let settle = async {
        in_flight.settled(RELEASE_TIMEOUT / 2).await;
        in_flight.set_visibility(0).await;
    };
    if tokio::time::timeout(RELEASE_TIMEOUT, settle).await.is_err() {
        tracing::warn!(%flow, "unfinished SQS messages were not given back in time; they are received again once their visibility timeout ends");
    }
    stats.set_state("stopped");
}

/// The flow's state while its queue does not exist.
fn gone(queue: &str) -> String {
    format!("the queue '{queue}' does not exist")
}

/// How often the messages waiting on the flow's queue are counted.
const MEASURE_EVERY: Duration = Duration::from_secs(5);

/// Counts the messages waiting on the flow's queue (its lag) every few
/// seconds, until aborted.
async fn measure(client: Arc<SqsClient>, url: String, stats: Arc<Stats>) {
    let mut every = tokio::time::interval(MEASURE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        match client.waiting(&url).await {
            Ok(Some(waiting)) => stats.set_lag(waiting),
            Ok(None) => stats.set_lag(0),
            Err(error) => tracing::debug!(%error, "the queue's messages could not be counted"),
        }
    }
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
            Ok(None) => stats.set_state(gone(name)),
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
    /// Held while the queue is read without taking its messages: a second
    /// reader meanwhile would find them hidden.
    peeking: tokio::sync::Mutex<()>,
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
        let for_good = SqsClient::refused_for_good(&error);
        let message = format!("writing to '{topic}' failed: {}", client.describe(error));
        if for_good {
            WriteError::Permanent(message)
        } else {
            WriteError::Retryable(message)
        }
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
            peeking: tokio::sync::Mutex::default(),
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
        let (body, attributes) = message_of(body, &record.headers).map_err(|size| {
            WriteError::Permanent(format!(
                "a message of {size} bytes (with its attributes) is over the {MAX_MESSAGE_BYTES} bytes an SQS message may have ('{}')",
                target.topic
            ))
        })?;
        let mut request = self
            .client
            .sdk()
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .set_message_attributes(Some(attributes));
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

/// A FIFO deduplication id (or a Service Bus message id): a digest of
/// where the output's input came from (its queue's message id, or its
/// topic position; and the dead letter a replay runs) and of its value.
pub(super) fn deduplication_id(record: &Record<'_>) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    let from_sqs = record
        .headers
        .iter()
        .any(|h| headers::QUEUED_IDS.contains(&h.key));
    for header in record.headers.iter() {
        // A message received from SQS is numbered anew by every process:
        // its message id is what stays the same.
        // A replay's record is a new one, even of the same message.
        let source = header.key == headers::REPLAY_OF
            || if from_sqs {
                header.key == headers::SOURCE_TOPIC || headers::QUEUED_IDS.contains(&header.key)
            } else {
                header.key.starts_with("eventflows-source-")
            };
        if source {
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

type Attributes = std::collections::HashMap<String, MessageAttributeValue>;

/// Bytes SQS counts for attributes: names, types and values.
fn attributes_size(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(name, value)| {
            name.len() + value.data_type().len() + value.string_value().map_or(0, str::len)
        })
        .sum()
}

/// The body and attributes of the message a record is sent as. A dead
/// letter too large for SQS has its body cut to fit, with
/// `eventflows-value-truncated` saying its whole length (as on a topic);
/// anything else too large is `Err(its size)`.
fn message_of<'a>(body: &'a str, record: &OwnedHeaders) -> Result<(&'a str, Attributes), usize> {
    let whole = attributes(record);
    let size = body.len() + attributes_size(&whole);
    let dead_letter = record.iter().any(|h| h.key == headers::ERROR_KIND);
    let cut_already = record.iter().any(|h| h.key == headers::VALUE_TRUNCATED);
    if size <= MAX_MESSAGE_BYTES {
        return Ok((body, whole));
    }
    if !dead_letter || cut_already {
        return Err(size);
    }
    let length = body.len().to_string();
    let marked = attributes(&record.clone().insert(Header {
        key: headers::VALUE_TRUNCATED,
        value: Some(&length),
    }));
    let mut end = MAX_MESSAGE_BYTES
        .saturating_sub(attributes_size(&marked))
        .min(body.len());
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    Ok((&body[..end], marked))
}

/// SQS takes at most this many attributes on a message.
const MAX_ATTRIBUTES: usize = 10;
/// The longest attribute value sent: a long error is cut to this.
const MAX_ATTRIBUTE_BYTES: usize = 2048;

/// A record's headers as SQS message attributes (text): ours in the order
/// of [`headers::SQS_ATTRIBUTE_ORDER`], then the others, at most ten;
/// headers without a value, or whose name SQS does not take, are left off.
fn attributes(record: &OwnedHeaders) -> std::collections::HashMap<String, MessageAttributeValue> {
    let rank = |key: &str| {
        headers::SQS_ATTRIBUTE_ORDER
            .iter()
            .position(|k| *k == key)
            .unwrap_or(headers::SQS_ATTRIBUTE_ORDER.len())
    };
    let mut all: Vec<(&str, &[u8])> = record
        .iter()
        .filter_map(|h| Some((h.key, h.value.filter(|v| !v.is_empty())?)))
        .filter(|(key, _)| attribute_name_ok(key))
        .collect();
    all.sort_by_key(|(key, _)| rank(key));
    all.into_iter()
        .take(MAX_ATTRIBUTES)
        .filter_map(|(key, value)| {
            // SQS takes XML's characters only: the others are replaced.
            let text: String = String::from_utf8_lossy(value)
                .chars()
                .map(|c| {
                    if xml_char(c) {
                        c
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect();
            let mut end = text.len().min(MAX_ATTRIBUTE_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(&text[..end])
                .build()
                .ok()?;
            Some((key.to_owned(), value))
        })
        .collect()
}

/// Whether SQS takes `c` in a message or an attribute (XML 1.0's
/// characters).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{fffe}' | '\u{ffff}'))
}

/// Whether SQS takes `name` as a message attribute's name: letters,
/// digits, `-`, `_` and `.`, not starting with `AWS.` or `Amazon.`.
fn attribute_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.to_ascii_lowercase().starts_with("aws.")
        && !name.to_ascii_lowercase().starts_with("amazon.")
}

/// A message read back from a queue without being taken: as the record it
/// would be on a topic (its attributes as headers), with SQS's own facts.
pub struct Peeked {
    pub record: OwnedMessage,
    pub message_id: String,
    /// Where the message is, as the dead letters page says it.
    pub position: String,
}

/// How long a peeked message stays hidden while the others are read; all
/// are made visible again at once afterwards.
const PEEK_VISIBILITY_SECS: i32 = 20;

impl OutputQueue {
    /// Reads up to `max` of the queue's messages without taking them: each
    /// is received, hidden while the rest are read, then made visible
    /// again. Other readers of the queue miss them meanwhile.
    pub async fn peek(&self, name: &str, max: usize) -> Result<Vec<Peeked>, AppError> {
        let _alone = self.peeking.lock().await;
        let (mut peeked, mut handles) = (Vec::new(), Vec::new());
        let read = self
            .receive_into(name, max, &mut peeked, &mut handles)
            .await;
        set_visibility(&self.client, &self.url, name, &handles, 0).await;
        read.map(|()| peeked)
    }

    /// Receives messages until the queue has none left to give or `max`
    /// are read, keeping every receipt handle (to make them visible again).
    async fn receive_into(
        &self,
        name: &str,
        max: usize,
        peeked: &mut Vec<Peeked>,
        handles: &mut Vec<String>,
    ) -> Result<(), AppError> {
        while peeked.len() < max {
            let answer = self
                .client
                .sdk()
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(SQS_BATCH.min(max - peeked.len()) as i32)
                .wait_time_seconds(1)
                .visibility_timeout(PEEK_VISIBILITY_SECS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|error| self.client.describe(error))?;
            if answer.messages().is_empty() {
                return Ok(());
            }
            for message in answer.messages() {
                if let Some(handle) = message.receipt_handle() {
                    handles.push(handle.to_owned());
                }
                let Some(id) = message.message_id() else {
                    continue;
                };
                if !peeked.iter().any(|p| p.message_id == id) {
                    peeked.push(peeked_of(message, name, peeked.len() as i64));
                }
            }
        }
        Ok(())
    }
}

/// A message read back without being taken: its attributes as headers,
/// with SQS's own facts.
fn peeked_of(message: &Message, queue: &str, position: i64) -> Peeked {
    let mut own = OwnedHeaders::new();
    if let Some(attributes) = message.message_attributes() {
        let mut named: Vec<(&String, &MessageAttributeValue)> = attributes.iter().collect();
        named.sort_by_key(|(name, _)| name.as_str());
        for (name, value) in named {
            if let Some(text) = value.string_value() {
                own = own.insert(Header {
                    key: name.as_str(),
                    value: Some(text),
                });
            }
        }
    }
    Peeked {
        record: record_of(message, queue, position, own),
        message_id: message.message_id().unwrap_or_default().to_owned(),
        // Reading it was a receive too.
        position: format!(
            "message {} ({} receives before this read)",
            message.message_id().unwrap_or_default(),
            system(message, MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
                .saturating_sub(1)
        ),
    }
}

/// One of SQS's own attributes of a received message.
fn system(message: &Message, name: MessageSystemAttributeName) -> Option<String> {
    message.attributes().and_then(|a| a.get(&name)).cloned()
}

/// A message received from the queue `queue` as the record the runner
/// handles: its body, its message group as key, when it was sent, at
/// `position` of partition 0, with `own` headers.
fn record_of(message: &Message, queue: &str, position: i64, own: OwnedHeaders) -> OwnedMessage {
    let sent = system(message, MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i64>().ok());
    OwnedMessage::new(
        message.body().map(|b| b.as_bytes().to_vec()),
        system(message, MessageSystemAttributeName::MessageGroupId).map(String::into_bytes),
        queue.to_owned(),
        sent.map_or(Timestamp::NotAvailable, Timestamp::CreateTime),
        0,
        position,
        Some(own),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dedup(pairs: &[(&str, &str)], value: &[u8]) -> String {
        let mut headers = OwnedHeaders::new();
        for (key, value) in pairs {
            headers = headers.insert(Header {
                key,
                value: Some(*value),
            });
        }
        deduplication_id(&Record {
            key: None,
            value,
            headers,
        })
    }

    #[test]
    fn an_output_of_an_sqs_message_is_deduplicated_by_its_message_id() {
        let from = |id: &str, offset: &str| {
            dedup(
                &[
                    (headers::SOURCE_TOPIC, "inbox"),
                    (headers::SOURCE_PARTITION, "0"),
                    (headers::SOURCE_OFFSET, offset),
                    (headers::SQS_MESSAGE_ID, id),
                    (headers::SQS_RECEIVE_COUNT, offset),
                ],
                b"{}",
            )
        };
        // Received again after a restart: numbered anew, counted again.
        assert_eq!(from("m-1", "3"), from("m-1", "0"));
        assert_ne!(from("m-1", "3"), from("m-2", "3"));
        let replayed = dedup(
            &[
                (headers::SOURCE_TOPIC, "inbox"),
                (headers::SQS_MESSAGE_ID, "m-1"),
                (headers::REPLAY_OF, "letters/m-9"),
            ],
            b"{}",
        );
        assert_ne!(replayed, from("m-1", "3"));
        // From a topic: its position.
        let at = |offset: &str| {
            dedup(
                &[
                    (headers::SOURCE_TOPIC, "in"),
                    (headers::SOURCE_PARTITION, "1"),
                    (headers::SOURCE_OFFSET, offset),
                ],
                b"{}",
            )
        };
        assert_eq!(at("7"), at("7"));
        assert_ne!(at("7"), at("8"));
        assert_ne!(dedup(&[], b"a"), dedup(&[], b"b"));
    }

    #[test]
    fn a_dead_letter_too_large_for_sqs_is_cut_to_fit_and_says_so() {
        let body = "é".repeat(132_000);
        let letter = OwnedHeaders::new()
            .insert(Header {
                key: headers::ERROR_KIND,
                value: Some("bad-input"),
            })
            .insert(Header {
                key: headers::ERROR,
                value: Some("not JSON"),
            });
        let (cut, attributes) = message_of(&body, &letter).unwrap();
        assert!(cut.len() < body.len());
        assert!(cut.len() + attributes_size(&attributes) <= MAX_MESSAGE_BYTES);
        assert!(cut.len() + attributes_size(&attributes) > MAX_MESSAGE_BYTES - 2);
        assert_eq!(
            attributes[headers::VALUE_TRUNCATED].string_value(),
            Some("264000")
        );
        // An output is not cut: it fails.
        let output = OwnedHeaders::new().insert(Header {
            key: headers::VERSION,
            value: Some("1.0.0"),
        });
        assert!(message_of(&body, &output).unwrap_err() > MAX_MESSAGE_BYTES);
        let small = message_of("{}", &output).unwrap();
        assert_eq!(small.0, "{}");
        assert!(!small.1.contains_key(headers::VALUE_TRUNCATED));
    }

    #[test]
    fn headers_go_as_at_most_ten_attributes_ours_first() {
        let mut record = OwnedHeaders::new();
        for i in 0..5 {
            let key = format!("own-{i}");
            record = record.insert(Header {
                key: key.as_str(),
                value: Some("x"),
            });
        }
        let long = "e".repeat(5000);
        for (key, value) in [
            (headers::ALGORITHM, "acme/sentiment"),
            (headers::VERSION, "1.0.0"),
            (headers::SOURCE_TOPIC, "inbox"),
            (headers::SOURCE_PARTITION, "0"),
            (headers::SOURCE_OFFSET, "7"),
            (headers::ERROR, long.as_str()),
            (headers::ERROR_KIND, "bad-input"),
            (headers::ATTEMPTS, "1"),
            (headers::FAILED_AT, "1700000000000"),
            (headers::SQS_MESSAGE_ID, "m-1"),
            ("bad name!", "x"),
            ("empty", ""),
        ] {
            record = record.insert(Header {
                key,
                value: Some(value),
            });
        }
        let sent = attributes(&record);
        assert_eq!(sent.len(), 10);
        let mut names: Vec<&str> = sent.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut expected = vec![
            headers::ALGORITHM,
            headers::VERSION,
            headers::SOURCE_TOPIC,
            headers::SOURCE_PARTITION,
            headers::SOURCE_OFFSET,
            headers::ERROR,
            headers::ERROR_KIND,
            headers::ATTEMPTS,
            headers::FAILED_AT,
            headers::SQS_MESSAGE_ID,
        ];
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(
            sent[headers::ERROR].string_value().unwrap().len(),
            MAX_ATTRIBUTE_BYTES
        );
        assert!(!attribute_name_ok("AWS.trace"));
        let control = OwnedHeaders::new().insert(Header {
            key: headers::ERROR,
            value: Some("red \u{1b}[31m\u{0}\ttab"),
        });
        assert_eq!(
            attributes(&control)[headers::ERROR].string_value(),
            Some("red \u{fffd}[31m\u{fffd}\ttab")
        );
        assert!(attribute_name_ok("own-1"));
    }
}
