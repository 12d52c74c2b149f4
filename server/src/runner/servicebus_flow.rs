//! A subscribe flow on a Service Bus queue or topic subscription, read as
//! the Azure Functions Service Bus trigger reads one: peek-lock receives of
//! up to ten messages at a time, run by one lane ([`super::lane`]) as it
//! runs a Kafka partition, numbered in the order received.
//!
//! - A message is completed only once its outputs, or its kept failure, are
//!   settled: a crash or an outage before that leaves it on the entity, and
//!   it is delivered again once its lock ends.
//! - While a message waits or runs, its lock is renewed.
//! - When the flow stops, the messages it had not finished are abandoned,
//!   so that they are delivered again at once.
//! - A message delivered again while the flow still holds it (its lock was
//!   lost with a connection) is not run again: the new delivery takes the
//!   old one's place, and one already run is completed at once.
//! - The message's partition key (or session id) is its key, for the
//!   flow's ordering setting.
//!
//! Outputs, and dead letters to a Dead Letter Queue, are sent to a queue or
//! topic by an [`OutputEntity`]. A flow whose Dead Letter Queue is its
//! entity's own dead-letter subqueue (`…/$deadletterqueue`) dead-letters
//! the failed message itself, with the error as its reason and
//! description and the dead letter's headers as properties.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use azservicebus::receiver::DeadLetterOptions;
use azservicebus::{
    ServiceBusClient, ServiceBusClientOptions, ServiceBusMessage, ServiceBusReceiveMode,
    ServiceBusReceivedMessage, ServiceBusReceiver, ServiceBusReceiverOptions,
    ServiceBusRetryOptions, ServiceBusSender, ServiceBusSenderOptions,
};
use fe2o3_amqp_types::messaging::ApplicationProperties;
use fe2o3_amqp_types::primitives::{OrderedMap, SimpleValue, Value};
use rdkafka::Timestamp;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use tokio::sync::{mpsc, oneshot, watch};

use super::lane::{self, Acks};
use super::write::WriteError;
use super::writer::Record;
use super::{FlowConfig, Runner, Stats, Target, headers};
use crate::db::flows::ActiveFlow;
use crate::servicebus::{DEAD_LETTER_SUFFIX, ServiceBusAdmin, ServiceBusSettings};
use app::domain::{AppError, TopicName};

type Client = ServiceBusClient<azservicebus::core::BasicRetryPolicy>;

/// The most messages one receive asks for.
const RECEIVE_MAX: u32 = 10;
/// How long one receive waits for a message; settlements wait for the
/// receiver meanwhile, so it is short.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// How long one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the flow waits after a failed call before the next.
const BACKOFF: Duration = Duration::from_secs(1);
/// How often the locks of the messages held are looked at: each is renewed
/// once half of its lock has passed.
const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How long a stopping flow waits for its completions and for abandoning
/// the messages it did not finish.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message a standard namespace takes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a Service Bus call failed, with its cause.
fn described(error: &azure_core::Error) -> String {
    crate::servicebus::with_causes(error)
}

/// Whether `error` says the entity does not exist.
fn entity_gone(error: &azure_core::Error) -> bool {
    let text = format!("{error:?}");
    text.contains("not-found") || text.contains("NotFound")
}

/// Whether sending the same message again cannot cure `error`.
fn refused_for_good(error: &azure_core::Error) -> bool {
    let text = format!("{error:?}");
    entity_gone(error)
        || text.contains("message-size-exceeded")
        || text.contains("MessageSizeExceeded")
        || text.contains("unauthorized-access")
}

/// Opens an AMQP connection to the namespace (without TLS to a development
/// endpoint).
pub async fn connect(settings: &ServiceBusSettings) -> Result<Client, AppError> {
    let options = ServiceBusClientOptions {
        retry_options: ServiceBusRetryOptions {
            max_retries: 1,
            try_timeout: CALL_TIMEOUT,
            ..Default::default()
        },
        ..Default::default()
    };
    let connection_string = settings.connection_string();
    let opened = if settings.development.is_some() {
        ServiceBusClient::unsecured()
            .new_from_connection_string(connection_string, options)
            .await
    } else {
        ServiceBusClient::new_from_connection_string(connection_string, options).await
    };
    opened.map_err(|error| AppError::Broker {
        message: format!(
            "Could not open an AMQP connection to Service Bus at {}: {}",
            settings.address(),
            described(&error)
        ),
    })
}

/// Opens and closes an AMQP connection: the namespace answers on AMQP.
pub async fn check(settings: &ServiceBusSettings) -> Result<(), AppError> {
    let client = tokio::time::timeout(CALL_TIMEOUT, connect(settings))
        .await
        .map_err(|_| AppError::Broker {
            message: format!(
                "Service Bus at {} did not answer on AMQP within {} seconds.",
                settings.address(),
                CALL_TIMEOUT.as_secs()
            ),
        })??;
    let _ = client.dispose().await;
    Ok(())
}

/// A peek-lock receiver of the queue or subscription at `path`, or of its
/// dead-letter subqueue (`path` ending in `/$deadletterqueue`).
async fn receiver(
    client: &mut Client,
    path: &str,
) -> Result<ServiceBusReceiver, azure_core::Error> {
    let (path, sub_queue) = match path.strip_suffix(DEAD_LETTER_SUFFIX) {
        Some(entity) => (entity, azservicebus::SubQueue::DeadLetter),
        None => (path, azservicebus::SubQueue::None),
    };
    let options = ServiceBusReceiverOptions {
        prefetch_count: 0,
        receive_mode: ServiceBusReceiveMode::PeekLock,
        sub_queue,
        ..Default::default()
    };
    let subscription = TopicName::parse(path)
        .ok()
        .and_then(|p| p.subscription().map(|(t, s)| (t.to_owned(), s.to_owned())));
    match subscription {
        Some((topic, name)) => {
            client
                .create_receiver_for_subscription(topic, name, options)
                .await
        }
        None => client.create_receiver_for_queue(path, options).await,
    }
}

/// The messages a flow received and has not finished, by the number the
/// lane knows them by, and the receiver that settles them.
pub struct InFlight {
    receiver: tokio::sync::Mutex<Option<ServiceBusReceiver>>,
    flow: Arc<str>,
    /// Locked before the receiver whenever both are.
    held: tokio::sync::Mutex<BTreeMap<i64, Held>>,
    /// The completions under way, awaited when the flow stops.
    settling: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The sequence numbers of messages that ran but could not be
    /// completed: delivered again, they are completed without running.
    ran: Mutex<std::collections::BTreeSet<i64>>,
    /// Messages given back, by number, with when to abandon them; marked
    /// in `held` whenever it is next locked.
    returning: Mutex<BTreeMap<i64, tokio::time::Instant>>,
}

/// A message the flow holds, and how long its lock lasts.
struct Held {
    message: ServiceBusReceivedMessage,
    lock: Duration,
    /// Given back after a transient failure: abandoned at this time, its
    /// lock renewed until then.
    abandon_at: Option<tokio::time::Instant>,
}

impl Held {
    fn new(message: ServiceBusReceivedMessage) -> Self {
        let lock = Self::left(&message).unwrap_or(Duration::from_secs(30));
        Held {
            message,
            lock: lock.max(Duration::from_secs(1)),
            abandon_at: None,
        }
    }

    /// How long the message's lock lasts from now.
    fn left(message: &ServiceBusReceivedMessage) -> Option<Duration> {
        let until = message.locked_until()?.unix_timestamp_nanos();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Some(Duration::from_nanos(
            (until - now).clamp(0, u64::MAX as i128) as u64,
        ))
    }

    /// Whether half of its lock has passed.
    fn due(&self) -> bool {
        Self::left(&self.message).is_none_or(|left| left < self.lock / 2)
    }
}

impl InFlight {
    fn new(flow: Arc<str>) -> Arc<Self> {
        Arc::new(InFlight {
            receiver: tokio::sync::Mutex::new(None),
            flow,
            held: tokio::sync::Mutex::default(),
            settling: Mutex::default(),
            ran: Mutex::default(),
            returning: Mutex::default(),
        })
    }

    /// Holds a message received; `false` when it is not to be run: it is
    /// held already (and the new delivery takes the old one's place), or
    /// it ran already and has been completed now.
    async fn received(&self, number: i64, message: ServiceBusReceivedMessage) -> bool {
        let sequence = message.sequence_number();
        let ran = self.ran.lock().is_ok_and(|ran| ran.contains(&sequence));
        if ran {
            let mut receiver = self.receiver.lock().await;
            if let Some(receiver) = receiver.as_mut()
                && receiver.complete_message(&message).await.is_ok()
                && let Ok(mut ran) = self.ran.lock()
            {
                ran.remove(&sequence);
            }
            return false;
        }
        let mut held = self.held.lock().await;
        self.mark_returning(&mut held);
        if let Some((&old_number, old)) = held
            .iter_mut()
            .find(|(_, h)| h.message.sequence_number() == sequence)
        {
            if old.abandon_at.is_none() {
                *old = Held::new(message);
                return false;
            }
            // Given back, and delivered again before it was abandoned (its
            // lock was lost): this delivery runs.
            held.remove(&old_number);
        }
        held.insert(number, Held::new(message));
        true
    }

    /// The message numbered `number` goes back to its entity after `after`:
    /// it is abandoned then (counting a delivery, so that Service Bus
    /// dead-letters a message given back more often than the entity's
    /// maximum delivery count), as the Azure Functions trigger abandons a
    /// message its function failed on. Its lock is renewed meanwhile.
    pub fn give_back(&self, number: i64, after: Duration) {
        if let Ok(mut returning) = self.returning.lock() {
            returning.insert(number, tokio::time::Instant::now() + after);
        }
    }

    /// Marks the messages given back since the last look, in `held`.
    fn mark_returning(&self, held: &mut BTreeMap<i64, Held>) {
        let Ok(mut returning) = self.returning.lock() else {
            return;
        };
        for (number, at) in std::mem::take(&mut *returning) {
            if let Some(held) = held.get_mut(&number) {
                held.abandon_at = Some(at);
            }
        }
    }

    /// Remembers that these messages ran but were not completed.
    /// At most [`RAN_KEPT`] are remembered, the newest: an older one, if
    /// it comes back, runs again rather than being lost.
    fn not_completed(&self, messages: impl IntoIterator<Item = i64>) {
        if let Ok(mut ran) = self.ran.lock() {
            ran.extend(messages);
            while ran.len() > RAN_KEPT {
                ran.pop_first();
            }
        }
    }

    /// Every message up to `last` is finished: they are completed.
    pub fn finished(self: &Arc<Self>, last: i64) {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let done: Vec<Held> = {
                let mut held = this.held.lock().await;
                this.mark_returning(&mut held);
                let rest = held.split_off(&(last + 1));
                let (given_back, done): (BTreeMap<i64, Held>, BTreeMap<i64, Held>) =
                    std::mem::replace(&mut *held, rest)
                        .into_iter()
                        .partition(|(_, h)| h.abandon_at.is_some());
                held.extend(given_back);
                done.into_values().collect()
            };
            if done.is_empty() {
                return;
            }
            let mut receiver = this.receiver.lock().await;
            let Some(receiver) = receiver.as_mut() else {
                this.not_completed(done.iter().map(|h| h.message.sequence_number()));
                return;
            };
            for Held { message, .. } in &done {
                if let Err(error) = receiver.complete_message(message).await {
                    tracing::debug!(flow = %this.flow, error = %described(&error),
                        sequence = message.sequence_number(),
                        "a finished Service Bus message could not be completed yet");
                    this.not_completed([message.sequence_number()]);
                }
            }
        });
        if let Ok(mut settling) = self.settling.lock() {
            settling.retain(|t| !t.is_finished());
            settling.push(task);
        }
    }

    /// Dead-letters the message numbered `number` to its entity's
    /// dead-letter subqueue: `reason` and `description` as Service Bus'
    /// dead-letter reason and description, `properties` added to its own.
    fn dead_letter(
        self: &Arc<Self>,
        number: i64,
        reason: String,
        description: String,
        properties: OrderedMap<String, Value>,
    ) -> Sent {
        let (answer, sent) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let mut held = this.held.lock().await;
            let Some(Held { message, lock, .. }) = held.remove(&number) else {
                let _ = answer.send(Err(WriteError::Permanent(
                    "the message is no longer held by its flow, so it cannot be dead-lettered"
                        .into(),
                )));
                return;
            };
            let mut receiver = this.receiver.lock().await;
            let result = match receiver.as_mut() {
                Some(receiver) => receiver
                    .dead_letter_message(
                        &message,
                        DeadLetterOptions {
                            dead_letter_reason: Some(reason),
                            dead_letter_error_description: Some(description),
                            properties_to_modify: Some(properties),
                        },
                    )
                    .await
                    .map_err(|error| {
                        WriteError::Retryable(format!(
                            "dead-lettering the message failed: {}",
                            described(&error)
                        ))
                    }),
                None => Err(WriteError::Retryable(
                    "dead-lettering the message failed: the receiver is being opened again".into(),
                )),
            };
            if result.is_err() {
                // Held again, to be tried again or abandoned.
                held.insert(
                    number,
                    Held {
                        message,
                        lock,
                        abandon_at: None,
                    },
                );
            }
            let _ = answer.send(result);
        });
        Sent(sent)
    }

    /// Abandons the messages given back whose time has come, and renews
    /// the lock of every other message held once half of it has passed.
    async fn renew(&self) {
        let mut held = self.held.lock().await;
        self.mark_returning(&mut held);
        if held.is_empty() {
            return;
        }
        let mut receiver = self.receiver.lock().await;
        let Some(receiver) = receiver.as_mut() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let returning: Vec<i64> = held
            .iter()
            .filter(|(_, h)| h.abandon_at.is_some_and(|at| at <= now))
            .map(|(&number, _)| number)
            .collect();
        for number in returning {
            let Some(back) = held.remove(&number) else {
                continue;
            };
            if let Err(error) = receiver.abandon_message(&back.message, None).await {
                // Its lock ends, and Service Bus delivers it again then.
                tracing::debug!(flow = %self.flow, error = %described(&error),
                    sequence = back.message.sequence_number(),
                    "a Service Bus message given back was not abandoned");
            }
        }
        for held in held.values_mut().filter(|h| h.due()) {
            if let Err(error) = receiver.renew_message_lock(&mut held.message).await {
                tracing::debug!(flow = %self.flow, error = %described(&error),
                    sequence = held.message.sequence_number(), "a Service Bus lock was not renewed");
            }
        }
    }

    /// Waits, at most `limit`, for the completions under way, then
    /// abandons what is still held, so that it is delivered again at once.
    async fn release(&self, limit: Duration) {
        let tasks = self
            .settling
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        if tokio::time::timeout(limit, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(flow = %self.flow, "finished Service Bus messages were still being completed when the flow stopped; they may run again");
        }
        let held = std::mem::take(&mut *self.held.lock().await);
        let mut receiver = self.receiver.lock().await;
        if let Some(receiver) = receiver.as_mut() {
            for held in held.values() {
                let _ = receiver.abandon_message(&held.message, None).await;
            }
        }
        if let Some(receiver) = receiver.take() {
            let _ = receiver.dispose().await;
        }
    }
}

/// How many messages that ran but could not be completed a flow remembers
/// (by sequence number, which grows), so that the set stays bounded when
/// another reader takes them.
const RAN_KEPT: usize = 10_000;

/// The flow's state while its entity does not exist.
fn gone(path: &str) -> String {
    format!("the queue or subscription '{path}' does not exist")
}

/// Why the namespace says the flow cannot read `path`: it is gone, or it
/// requires sessions; `None` when it says nothing of the kind.
async fn unreadable(admin: Option<&ServiceBusAdmin>, path: &str) -> Option<String> {
    match admin?.entity(path).await {
        Ok(None) => Some(gone(path)),
        Ok(Some(info)) if info.entity.as_ref().is_some_and(|e| e.requires_session) => {
            Some(format!(
                "the queue or subscription '{path}' requires sessions, which flows do not read"
            ))
        }
        _ => None,
    }
}

/// Runs a subscribe flow on the queue or subscription named by its topic
/// until `stop`.
pub async fn consume(
    runner: Runner,
    spec: ActiveFlow,
    settings: ServiceBusSettings,
    config: watch::Receiver<FlowConfig>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let flow: Arc<str> = spec.id.as_str().into();
    let path = spec.topic.clone();
    let in_flight = InFlight::new(flow.clone());
    let reading_key = (
        spec.connection_id.clone(),
        spec.topic.clone(),
        spec.algorithm.clone(),
    );
    if let Ok(mut reading) = runner.inner.servicebus_reading.lock() {
        reading.insert(reading_key.clone(), Arc::downgrade(&in_flight));
    }
    let worker_runner = runner.clone();
    let (messages, lane) = lane::queue_lane(
        runner,
        spec,
        Acks::ServiceBus(in_flight.clone()),
        config,
        stop.clone(),
        stats.clone(),
    );
    // Renews until the lane has finished, stop or not: a run under way
    // when the flow stops still holds its message.
    let renewer = tokio::spawn({
        let in_flight = in_flight.clone();
        async move {
            let mut every = tokio::time::interval(RENEW_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            every.tick().await;
            loop {
                every.tick().await;
                in_flight.renew().await;
            }
        }
    });
    let measurer = tokio::spawn(measure(settings.clone(), path.clone(), stats.clone()));
    let mut client: Option<Client> = None;
    let admin = ServiceBusAdmin::new(&settings).ok();
    let mut received_once = false;
    let mut number: i64 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        // (Re)connects and (re)opens the receiver when there is none.
        if in_flight.receiver.lock().await.is_none() {
            let opened = async {
                if client.is_none() {
                    client = Some(connect(&settings).await?);
                }
                let Some(open) = client.as_mut() else {
                    return Err(AppError::Internal);
                };
                receiver(open, &path).await.map_err(|error| {
                    if entity_gone(&error) {
                        AppError::not_found(gone(&path))
                    } else {
                        AppError::Broker {
                            message: described(&error),
                        }
                    }
                })
            };
            match tokio::time::timeout(CALL_TIMEOUT, opened).await {
                // The flow runs once a receive got through: Service Bus may
                // take a link to an entity that is gone, then close it.
                Ok(Ok(opened)) => *in_flight.receiver.lock().await = Some(opened),
                outcome => {
                    match outcome {
                        Ok(Err(AppError::NotFound { .. })) => stats.set_state(gone(&path)),
                        Ok(Err(error)) => match unreadable(admin.as_ref(), &path).await {
                            Some(why) => stats.set_state(why),
                            None => {
                                stats.broker_away(error);
                                client = None;
                            }
                        },
                        _ => {
                            stats.broker_away(AppError::Broker {
                                message: format!(
                                    "Service Bus did not answer within {} seconds",
                                    CALL_TIMEOUT.as_secs()
                                ),
                            });
                            client = None;
                        }
                    }
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(BACKOFF * 2) => continue,
                    }
                }
            }
        }
        let answer = {
            let mut guard = in_flight.receiver.lock().await;
            let Some(receiver) = guard.as_mut() else {
                continue;
            };
            tokio::time::timeout(
                CALL_TIMEOUT,
                receiver.receive_messages_with_max_wait_time(RECEIVE_MAX, RECEIVE_WAIT),
            )
            .await
        };
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            failed => {
                let (error, gone_now) = match failed {
                    Ok(Err(error)) => (described(&error), entity_gone(&error)),
                    _ => ("a receive did not answer in time".to_owned(), false),
                };
                // A link to an entity deleted under it may fail with no
                // more than "illegal state": the namespace is asked.
                let why = match gone_now {
                    true => Some(gone(&path)),
                    false => unreadable(admin.as_ref(), &path).await,
                };
                tracing::debug!(%flow, %error, "receiving from Service Bus failed");
                // The receiver (and its connection) are opened anew; what
                // it held is delivered again, and takes its place.
                if let Some(old) = in_flight.receiver.lock().await.take() {
                    drop(old);
                }
                client = None;
                match why {
                    Some(why) => stats.set_state(why),
                    None => stats.broker_away(AppError::Broker { message: error }),
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(BACKOFF) => continue,
                }
            }
        };
        if !received_once {
            received_once = true;
            stats.set_state("running");
        }
        stats.broker_reachable();
        stats.queue_back(&gone(&path));
        let mut batch = Vec::with_capacity(answer.len());
        for message in answer {
            let record = record_of(&message, &path, number);
            if in_flight.received(number, message).await {
                batch.push(record);
                number += 1;
            }
        }
        if !super::source::hand_on(&messages, batch, &mut stop).await {
            break;
        }
    }
    // The lane finishes the runs under way and settles them; what it had
    // not finished is abandoned.
    drop(messages);
    let _ = lane.await;
    renewer.abort();
    measurer.abort();
    if tokio::time::timeout(RELEASE_TIMEOUT, in_flight.release(RELEASE_TIMEOUT / 2))
        .await
        .is_err()
    {
        tracing::warn!(%flow, "unfinished Service Bus messages were not abandoned in time; they are delivered again once their lock ends");
    }
    if let Some(client) = client {
        let _ = client.dispose().await;
    }
    if let Ok(mut reading) = worker_runner.inner.servicebus_reading.lock()
        && reading
            .get(&reading_key)
            .is_some_and(|w| w.ptr_eq(&Arc::downgrade(&in_flight)))
    {
        reading.remove(&reading_key);
    }
    stats.set_state("stopped");
}

/// The subscribe flows reading Service Bus entities now, by connection,
/// entity and algorithm: where a dead letter to an entity's own
/// dead-letter subqueue finds the message it settles.
pub(super) type Reading = Mutex<HashMap<(String, String, String), Weak<InFlight>>>;

/// How often the messages waiting on the flow's entity are counted.
const MEASURE_EVERY: Duration = Duration::from_secs(5);

/// Counts the active messages of the flow's entity (its lag) every few
/// seconds, until aborted.
async fn measure(settings: ServiceBusSettings, path: String, stats: Arc<Stats>) {
    let Ok(admin) = ServiceBusAdmin::new(&settings) else {
        return;
    };
    let mut every = tokio::time::interval(MEASURE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        match admin.entity(&path).await {
            Ok(Some(entity)) => stats.set_lag(entity.message_count),
            Ok(None) => stats.set_lag(0),
            Err(error) => tracing::debug!(%error, "the entity's messages could not be counted"),
        }
    }
}

/// A message received from the entity `path` as the record the runner
/// handles: its body, its partition key (or session id) as key, when it
/// was enqueued, at `position` of partition 0; its message id, sequence
/// number and delivery count as headers.
fn record_of(message: &ServiceBusReceivedMessage, path: &str, position: i64) -> OwnedMessage {
    let mut own = OwnedHeaders::new_with_capacity(3);
    if let Some(id) = message.message_id() {
        own = own.insert(Header {
            key: headers::SERVICEBUS_MESSAGE_ID,
            value: Some(id.as_ref()),
        });
    }
    let sequence = message.sequence_number().to_string();
    own = own.insert(Header {
        key: headers::SERVICEBUS_SEQUENCE_NUMBER,
        value: Some(&sequence),
    });
    if let Some(count) = message.delivery_count() {
        own = own.insert(Header {
            key: headers::SERVICEBUS_DELIVERY_COUNT,
            value: Some(&count.to_string()),
        });
    }
    let key = message.partition_key().or_else(|| message.session_id());
    as_record(
        message.body().ok(),
        key,
        message.enqueued_time().unix_timestamp_nanos(),
        path,
        position,
        own,
    )
}

/// A Service Bus message as a record at `position` of partition 0 of
/// `path`, stamped with when it was enqueued.
fn as_record(
    body: Option<&[u8]>,
    key: Option<&str>,
    enqueued_ns: i128,
    path: &str,
    position: i64,
    own: OwnedHeaders,
) -> OwnedMessage {
    let at_ms = (enqueued_ns / 1_000_000) as i64;
    OwnedMessage::new(
        body.map(<[u8]>::to_vec),
        key.map(|k| k.as_bytes().to_vec()),
        path.to_owned(),
        if at_ms > 0 {
            Timestamp::CreateTime(at_ms)
        } else {
            Timestamp::NotAvailable
        },
        0,
        position,
        Some(own),
    )
}

/// A message to send, and where its answer goes.
type Sending = (ServiceBusMessage, oneshot::Sender<Result<(), WriteError>>);

/// A Service Bus queue or topic that outputs are sent to (a publish flow's
/// target, or a Dead Letter Queue). Its messages are sent in the order
/// written, by one task that holds the sender.
pub struct OutputEntity {
    way: Way,
}

enum Way {
    /// Messages are sent, in order, by one task. What waits is bounded by
    /// what the lanes' writers hold unsettled (`writer::IN_FLIGHT`).
    Send(mpsc::UnboundedSender<Sending>),
    /// The entity's own dead-letter subqueue: a dead letter settles the
    /// message it is of, held by the flow reading `entity`.
    Settle {
        connection_id: String,
        entity: String,
        reading: Arc<Reading>,
    },
}

/// The longest dead-letter description sent, and the longest property.
const MAX_DESCRIPTION_BYTES: usize = 4096;
const MAX_PROPERTY_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The answer to one message sent.
pub struct Sent(oneshot::Receiver<Result<(), WriteError>>);

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

impl OutputEntity {
    /// The dead-letter subqueue `path` (`entity/$deadletterqueue`) of the
    /// connection `connection_id`, whose letters settle the messages of
    /// the flows `reading` the entity.
    pub fn dead_letter_subqueue(connection_id: String, path: &str, reading: Arc<Reading>) -> Self {
        OutputEntity {
            way: Way::Settle {
                connection_id,
                entity: path
                    .strip_suffix(DEAD_LETTER_SUFFIX)
                    .unwrap_or(path)
                    .to_owned(),
                reading,
            },
        }
    }

    /// Starts the sender of the queue or topic `path`.
    pub fn new(settings: ServiceBusSettings, path: String) -> Self {
        let (sending, mut to_send) = mpsc::unbounded_channel::<Sending>();
        tokio::spawn(async move {
            let mut open: Option<(Client, ServiceBusSender)> = None;
            while let Some((message, answer)) = to_send.recv().await {
                if open.is_none() {
                    let opened = async {
                        let mut client = connect(&settings).await.map_err(|e| {
                            WriteError::Retryable(format!("writing to '{path}' failed: {e}"))
                        })?;
                        let sender = client
                            .create_sender(path.clone(), ServiceBusSenderOptions::default())
                            .await
                            .map_err(|error| {
                                let message =
                                    format!("writing to '{path}' failed: {}", described(&error));
                                if entity_gone(&error) {
                                    WriteError::Permanent(message)
                                } else {
                                    WriteError::Retryable(message)
                                }
                            })?;
                        Ok::<_, WriteError>((client, sender))
                    };
                    match tokio::time::timeout(CALL_TIMEOUT, opened).await {
                        Ok(Ok(pair)) => open = Some(pair),
                        Ok(Err(error)) => {
                            let _ = answer.send(Err(error));
                            continue;
                        }
                        Err(_) => {
                            let _ = answer.send(Err(WriteError::Retryable(format!(
                                "writing to '{path}' failed: Service Bus did not answer in time"
                            ))));
                            continue;
                        }
                    }
                }
                let Some((_, sender)) = open.as_mut() else {
                    continue;
                };
                let sent = tokio::time::timeout(CALL_TIMEOUT, sender.send_message(message)).await;
                let result = match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => {
                        let message = format!("writing to '{path}' failed: {}", described(&error));
                        let for_good = refused_for_good(&error);
                        // A sender that failed is opened anew for the next.
                        open = None;
                        Err(if for_good {
                            WriteError::Permanent(message)
                        } else {
                            WriteError::Retryable(message)
                        })
                    }
                    Err(_) => {
                        open = None;
                        Err(WriteError::Retryable(format!(
                            "writing to '{path}' failed: Service Bus did not answer in time"
                        )))
                    }
                };
                let _ = answer.send(result);
            }
            if let Some((client, sender)) = open {
                let _ = sender.dispose().await;
                let _ = client.dispose().await;
            }
        });
        OutputEntity {
            way: Way::Send(sending),
        }
    }

    /// Dead-letters the message `record` is the dead letter of.
    fn settle(
        connection_id: &str,
        entity: &str,
        reading: &Reading,
        record: &Record<'_>,
    ) -> Result<Sent, WriteError> {
        let header = |key: &str| {
            record
                .headers
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let (Some(algorithm), Some(number)) = (
            header(headers::ALGORITHM),
            header(headers::SOURCE_OFFSET).and_then(|n| n.parse::<i64>().ok()),
        ) else {
            return Err(WriteError::Permanent(format!(
                "only a failed message of '{entity}' can go to its dead-letter subqueue"
            )));
        };
        if header(headers::SOURCE_TOPIC).as_deref() != Some(entity)
            || header(headers::REPLAY_OF).is_some()
        {
            return Err(WriteError::Permanent(format!(
                "only a message received from '{entity}' can go to its dead-letter subqueue"
            )));
        }
        let key = (
            connection_id.to_owned(),
            entity.to_owned(),
            algorithm.clone(),
        );
        let in_flight = reading
            .lock()
            .ok()
            .and_then(|r| r.get(&key).and_then(Weak::upgrade))
            .ok_or_else(|| {
                WriteError::Permanent(format!(
                    "no flow of {algorithm} reads '{entity}' now, so its message cannot be dead-lettered"
                ))
            })?;
        let mut properties = OrderedMap::new();
        for h in record.headers.iter() {
            if h.key == headers::ERROR {
                continue;
            }
            if let Some(value) = h.value {
                let text = cut(
                    String::from_utf8_lossy(value).into_owned(),
                    MAX_PROPERTY_BYTES,
                );
                properties.insert(h.key.to_owned(), Value::String(text));
            }
        }
        Ok(in_flight.dead_letter(
            number,
            header(headers::ERROR_KIND).unwrap_or_else(|| "failed".into()),
            cut(
                header(headers::ERROR).unwrap_or_default(),
                MAX_DESCRIPTION_BYTES,
            ),
            properties,
        ))
    }

    /// Sends one output: its value as the body, its headers as application
    /// properties, its key as the partition key, and a message id drawn
    /// from where its input came from (for duplicate detection).
    pub(super) fn send(&self, target: &Target, record: Record<'_>) -> Result<Sent, WriteError> {
        let sending = match &self.way {
            Way::Send(sending) => sending,
            Way::Settle {
                connection_id,
                entity,
                reading,
            } => return Self::settle(connection_id, entity, reading, &record),
        };
        let size = record.value.len() + headers::size(&record.headers);
        if size > MAX_MESSAGE_BYTES {
            return Err(WriteError::Permanent(format!(
                "a message of {size} bytes (with its properties) is over the {MAX_MESSAGE_BYTES} bytes a Service Bus message may have ('{}')",
                target.topic
            )));
        }
        let mut message = ServiceBusMessage::new(record.value.to_vec());
        let mut properties = OrderedMap::new();
        for header in record.headers.iter() {
            if let Some(value) = header.value {
                properties.insert(
                    header.key.to_owned(),
                    SimpleValue::String(String::from_utf8_lossy(value).into_owned()),
                );
            }
        }
        *message.application_properties_mut() = Some(ApplicationProperties(properties));
        let _ = message.set_message_id(super::sqs_flow::deduplication_id(&record));
        if let Some(key) = record.key.filter(|k| !k.is_empty()) {
            let key: String = String::from_utf8_lossy(key).chars().take(128).collect();
            let _ = message.set_partition_key(key);
        }
        let (answer, sent) = oneshot::channel();
        match sending.send((message, answer)) {
            Ok(()) => Ok(Sent(sent)),
            Err(_) => Err(WriteError::Retryable(format!(
                "the sender of '{}' has stopped",
                target.topic
            ))),
        }
    }
}

/// Reads up to `max` messages of the queue `path` without taking them
/// (Service Bus' peek: no lock, no delivery counted), oldest first, each as
/// the record it would be on a topic (its text application properties as
/// headers), named by its sequence number.
pub async fn peek(
    settings: &ServiceBusSettings,
    path: &str,
    max: usize,
) -> Result<Vec<super::sqs_flow::Peeked>, AppError> {
    let mut client = connect(settings).await?;
    let read = async {
        let mut receiver = receiver(&mut client, path)
            .await
            .map_err(|error| peek_failed(path, &error))?;
        let mut peeked = Vec::new();
        let mut from = None;
        while peeked.len() < max {
            let want = (max - peeked.len()).min(100) as u32;
            let page = receiver
                .peek_messages(want, from)
                .await
                .map_err(|error| peek_failed(path, &error))?;
            let Some(last) = page.last().map(|m| m.sequence_number()) else {
                break;
            };
            for message in &page {
                peeked.push(peeked_of(message, path, peeked.len() as i64));
            }
            if page.len() < want as usize {
                break;
            }
            from = Some(last + 1);
        }
        let _ = receiver.dispose().await;
        Ok(peeked)
    };
    let peeked = tokio::time::timeout(CALL_TIMEOUT * 3, read)
        .await
        .unwrap_or_else(|_| {
            Err(AppError::Broker {
                message: format!("Service Bus did not answer in time while '{path}' was read"),
            })
        });
    let _ = client.dispose().await;
    peeked
}

fn peek_failed(path: &str, error: &azure_core::Error) -> AppError {
    if entity_gone(error) {
        AppError::not_found(format!("The queue '{path}'"))
    } else {
        AppError::Broker {
            message: format!("'{path}' could not be read: {}", described(error)),
        }
    }
}

/// A peeked message as a record, with its properties as headers.
fn peeked_of(
    message: &azservicebus::ServiceBusPeekedMessage,
    path: &str,
    position: i64,
) -> super::sqs_flow::Peeked {
    let mut own = OwnedHeaders::new();
    if let Some(properties) = message.application_properties() {
        for (name, value) in properties.0.iter() {
            if let SimpleValue::String(text) = value {
                own = own.insert(Header {
                    key: name.as_str(),
                    value: Some(text.as_str()),
                });
            }
        }
    }
    super::sqs_flow::Peeked {
        record: as_record(
            message.body().ok(),
            message.partition_key(),
            message.enqueued_time().unix_timestamp_nanos(),
            path,
            position,
            own,
        ),
        message_id: message.sequence_number().to_string(),
        position: format!(
            "message sequence number {} (delivered {}×)",
            message.sequence_number(),
            message.delivery_count().unwrap_or(1).saturating_sub(1)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_that_ran_uncompleted_are_remembered_newest_first_within_a_bound() {
        let in_flight = InFlight::new("flow".into());
        in_flight.not_completed(0..(RAN_KEPT as i64 + 5));
        let ran = in_flight.ran.lock().unwrap();
        assert_eq!(ran.len(), RAN_KEPT);
        assert_eq!(ran.first(), Some(&5), "the oldest are forgotten");
        assert!(ran.contains(&(RAN_KEPT as i64 + 4)));
    }
}
