//! The write step: hands each run's records to the broker without waiting
//! (its outputs, or its dead letter), and passes messages on to the next
//! step in input order, each once every write of it and of every earlier
//! message is settled.
//!
//! A write that can never succeed ([`super::write`]) turns the message into
//! a dead letter (or a failure kept by the next step) instead of holding the
//! partition. A write worth sending again is sent again, together with every
//! later write to its target, so that each target's records keep input
//! order. The broker side is a [`Sink`]; tests use a fake one.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use tokio::sync::watch;

use super::headers;
use super::write::{self, WriteError};
use super::{Stats, Target};
use crate::db::now_ms;

/// Messages whose writes may be unacknowledged at once (at most
/// [`IN_FLIGHT_BYTES`] of inputs and outputs): enough to cover the broker's
/// acknowledgement time at full speed.
const IN_FLIGHT: usize = 8192;
const IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// Backoff between sends of a write that keeps failing.
pub(super) const FIRST_RESEND: Duration = Duration::from_millis(200);
pub(super) const MAX_RESEND: Duration = Duration::from_secs(5);

/// Where records go.
pub(super) trait Sink {
    /// What sends to a target's broker connection.
    type Producer: Clone;
    /// Resolves with the broker's answer to one record.
    type Delivery: Future<Output = Result<(), WriteError>> + Unpin;
    /// The producer of a target's connection; a deleted connection is a
    /// write that can never succeed.
    async fn producer(&self, target: &Target) -> Result<Self::Producer, WriteError>;
    /// Stops using the producer `id` for the target's connection after a
    /// write through it timed out or it failed: the next
    /// [`Sink::producer`] makes a new one (unless that was done already).
    fn renew(&self, target: &Target, id: u64);
    /// Hands a record to the producer without waiting for the broker.
    fn send(
        &self,
        producer: &Self::Producer,
        target: &Arc<Target>,
        record: Record<'_>,
    ) -> Result<Self::Delivery, WriteError>;
}

/// One record to write.
pub(super) struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: OwnedHeaders,
}

/// Where a message's outputs go: each target with its connection's
/// producer, or why there is none.
pub(super) type Outputs<P> = [(Arc<Target>, Result<P, WriteError>)];

/// Why a message failed: its run, or a write of its output.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub kind: &'static str,
    pub message: String,
    pub attempts: u32,
    pub at_ms: i64,
    /// Whether a dead letter was written for it (once acknowledged).
    pub dead_lettered: bool,
    /// A transient failure of a flow that gives messages back: nothing is
    /// written for it, and once the messages before it are settled it goes
    /// back to its queue, to be delivered again after this long.
    pub given_back: Option<Duration>,
}

impl Failure {
    pub fn now(kind: &'static str, message: String, attempts: u32) -> Self {
        Failure {
            kind,
            message,
            attempts,
            at_ms: now_ms(),
            dead_lettered: false,
            given_back: None,
        }
    }

    /// A transient failure whose message goes back to its queue, to be
    /// delivered again after `after`.
    pub fn given_back(message: String, attempts: u32, after: Duration) -> Self {
        Failure {
            given_back: Some(after),
            ..Failure::now("transient", message, attempts)
        }
    }
}

/// A message whose run is over: what the write step takes.
pub(super) struct Ran {
    pub message: OwnedMessage,
    pub version: Arc<str>,
    /// The flow's dead-letter queue when the message was run.
    pub dlq: Option<Arc<Target>>,
    pub started: Instant,
    /// The output, or why there is none.
    pub result: Result<Vec<u8>, Failure>,
    /// For a replayed dead letter: which one (its records carry it).
    pub replay_of: Option<Arc<str>>,
}

/// A message whose writes are all settled: what the write step hands on.
pub(super) struct Finished {
    pub message: OwnedMessage,
    pub version: Arc<str>,
    pub started: Instant,
    pub failure: Option<Failure>,
}

/// The step after writing.
pub(super) trait Next {
    fn finished(&mut self, message: Finished);
}

/// A message whose writes are under way.
struct Pending<D> {
    message: OwnedMessage,
    /// Bytes of its input and output.
    bytes: usize,
    version: Arc<str>,
    dlq: Option<Arc<Target>>,
    started: Instant,
    output: Option<Vec<u8>>,
    failure: Option<Failure>,
    writes: Vec<Write<D>>,
    replay_of: Option<Arc<str>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Output,
    DeadLetter,
}

struct Write<D> {
    target: Arc<Target>,
    kind: WriteKind,
    state: WriteState<D>,
}

enum WriteState<D> {
    /// Handed to the producer; resolves with the broker's answer.
    Sent(D),
    /// Not taken by the producer, or failed: to be sent again.
    Failed(WriteError),
    Acked,
    /// Could never succeed; recorded with the message's failure.
    GaveUp,
}

/// How the writes of a message stand.
enum Written {
    All,
    UnderWay,
    /// A write to this target failed and is worth sending again.
    Failed(Arc<Target>),
}

/// A write to the target being resent, as [`resend_plan`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    Acked,
    Retryable,
    Permanent,
    Done,
}

impl Resend {
    fn of<D>(state: &WriteState<D>) -> Self {
        match state {
            WriteState::Acked => Resend::Acked,
            WriteState::Failed(WriteError::Retryable(_) | WriteError::NewProducer(..))
            | WriteState::Sent(_) => Resend::Retryable,
            WriteState::Failed(WriteError::Permanent(_)) => Resend::Permanent,
            WriteState::GaveUp => Resend::Done,
        }
    }
}

/// Which writes to send again, in order, as (message, write) indexes:
/// from the first retryable failure on, every write to the target (`Some`)
/// that is not given up; permanent failures are listed to be given up.
fn resend_plan(writes: &[Vec<Option<Resend>>]) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut resending = false;
    for (m, message) in writes.iter().enumerate() {
        for (i, write) in message.iter().enumerate() {
            match write {
                None | Some(Resend::Done) => {}
                Some(Resend::Permanent) => plan.push((m, i)),
                Some(Resend::Retryable) => {
                    resending = true;
                    plan.push((m, i));
                }
                Some(Resend::Acked) => {
                    if resending {
                        plan.push((m, i));
                    }
                }
            }
        }
    }
    plan
}

/// The write step of one partition. See the module's documentation.
pub(super) struct Writer<S: Sink> {
    sink: S,
    /// `org/name` of the flow's algorithm, for the records' headers.
    algorithm: Arc<str>,
    flow: Arc<str>,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
    messages: VecDeque<Pending<S::Delivery>>,
    bytes: usize,
}

impl<S: Sink> Writer<S> {
    pub fn new(
        sink: S,
        algorithm: Arc<str>,
        flow: Arc<str>,
        stop: watch::Receiver<bool>,
        stats: Arc<Stats>,
    ) -> Self {
        Writer {
            sink,
            algorithm,
            flow,
            stop,
            stats,
            messages: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Whether no message's writes are under way.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Starts the writes of a run: its output to each of `outputs`, or its
    /// dead letter. Waits while too much is in flight, and, after a write
    /// the producer did not take, until everything before it is settled.
    /// False if the flow was stopped while a write kept failing.
    pub async fn submit(
        &mut self,
        ran: Ran,
        outputs: &Outputs<S::Producer>,
        next: &mut impl Next,
    ) -> bool {
        let pending = self.start(ran, outputs).await;
        // A write the producer did not take is sent again before anything
        // later, so that outputs stay in order: everything in flight, it
        // included, is settled first.
        let drain = pending
            .writes
            .iter()
            .any(|w| !matches!(w.state, WriteState::Sent(_)));
        self.bytes += pending.bytes;
        self.messages.push_back(pending);
        while !self.messages.is_empty()
            && (drain || self.messages.len() >= IN_FLIGHT || self.bytes >= IN_FLIGHT_BYTES)
        {
            if !self.settle(next, true).await {
                return false;
            }
        }
        true
    }

    /// Hands the messages whose writes are all settled to `next`, in order;
    /// with `wait`, first waits for the oldest one. False if the flow was
    /// stopped while a write kept failing.
    pub async fn settle(&mut self, next: &mut impl Next, mut wait: bool) -> bool {
        while let Some(mut head) = self.messages.pop_front() {
            match self.written(&mut head, wait).await {
                Written::All => {}
                Written::UnderWay => {
                    self.messages.push_front(head);
                    return true;
                }
                Written::Failed(target) => {
                    self.messages.push_front(head);
                    if !self.resend_in_order(&target).await {
                        return false;
                    }
                    continue;
                }
            }
            wait = false;
            self.bytes -= head.bytes;
            next.finished(Finished {
                message: head.message,
                version: head.version,
                started: head.started,
                failure: head.failure,
            });
        }
        true
    }

    /// Waits until the broker has answered every write of the oldest
    /// message under way (at once if there is none), noting the answers for
    /// the next [`Writer::settle`]. Cancel-safe: what is not answered yet
    /// stays as it was.
    pub async fn oldest_answered(&mut self) {
        let Some(head) = self.messages.front_mut() else {
            return;
        };
        for write in head.writes.iter_mut() {
            if let WriteState::Sent(delivery) = &mut write.state {
                write.state = match delivery.await {
                    Ok(()) => WriteState::Acked,
                    Err(error) => WriteState::Failed(error),
                };
            }
        }
    }

    /// Settles everything under way. False if the flow was stopped while a
    /// write kept failing.
    pub async fn join(&mut self, next: &mut impl Next) -> bool {
        while !self.messages.is_empty() {
            if !self.settle(next, true).await {
                return false;
            }
        }
        true
    }

    async fn start(&self, ran: Ran, outputs: &Outputs<S::Producer>) -> Pending<S::Delivery> {
        let mut pending = Pending {
            bytes: ran.message.payload().map_or(0, <[u8]>::len),
            message: ran.message,
            version: ran.version,
            dlq: ran.dlq,
            started: ran.started,
            output: None,
            failure: None,
            writes: Vec::new(),
            replay_of: ran.replay_of,
        };
        match ran.result {
            Ok(output) => {
                pending.bytes += output.len();
                let fits = outputs.is_empty() || self.output_fits(&pending, output.len());
                let len = output.len();
                pending.output = Some(output);
                if fits {
                    for (target, producer) in outputs {
                        let state = match producer {
                            Ok(producer) => {
                                self.send(producer, target, WriteKind::Output, &pending)
                            }
                            Err(error) => WriteState::Failed(error.clone()),
                        };
                        pending.writes.push(Write {
                            target: target.clone(),
                            kind: WriteKind::Output,
                            state,
                        });
                    }
                } else {
                    let topics: Vec<&str> = outputs.iter().map(|(t, _)| t.topic.as_str()).collect();
                    let error = format!(
                        "the output has {len} bytes, more than a record may have ({}); not written to '{}'",
                        write::MAX_RECORD_BYTES,
                        topics.join("', '")
                    );
                    self.fail(&mut pending, Failure::now("write-failed", error, 1))
                        .await;
                }
            }
            // Nothing is written for a message given back.
            Err(failure) if failure.given_back.is_some() => pending.failure = Some(failure),
            Err(failure) => self.fail(&mut pending, failure).await,
        }
        pending
    }

    /// Marks a message failed and starts its dead letter, if the flow has a
    /// dead-letter queue.
    async fn fail(&self, pending: &mut Pending<S::Delivery>, mut failure: Failure) {
        self.stats.failed.inc();
        failure.dead_lettered = pending.dlq.is_some();
        pending.failure = Some(failure);
        if let Some(dlq) = pending.dlq.clone() {
            let state = match self.sink.producer(&dlq).await {
                Ok(producer) => self.send(&producer, &dlq, WriteKind::DeadLetter, pending),
                Err(error) => WriteState::Failed(error),
            };
            pending.writes.push(Write {
                target: dlq,
                kind: WriteKind::DeadLetter,
                state,
            });
        }
    }

    /// Whether an output of `len` bytes fits in a record with the message's
    /// key and headers (exactly computed only when it is close).
    fn output_fits(&self, pending: &Pending<S::Delivery>, len: usize) -> bool {
        const HEADROOM: usize = 64 * 1024;
        let key = pending.message.key().map_or(0, <[u8]>::len);
        key + len + HEADROOM <= write::MAX_RECORD_BYTES
            || write::fits(key, len, headers::size(&self.headers(pending, &[])))
    }

    fn send(
        &self,
        producer: &S::Producer,
        target: &Arc<Target>,
        kind: WriteKind,
        pending: &Pending<S::Delivery>,
    ) -> WriteState<S::Delivery> {
        match self.sink.send(producer, target, self.record(kind, pending)) {
            Ok(delivery) => WriteState::Sent(delivery),
            Err(error) => {
                tracing::debug!(flow = %self.flow, error = error.message(), "the producer did not take a record");
                WriteState::Failed(error)
            }
        }
    }

    /// The record a write sends: the output, or the input as a dead letter
    /// (cut to fit the record size, with a header saying so), with the
    /// input's key.
    fn record<'a>(&self, kind: WriteKind, pending: &'a Pending<S::Delivery>) -> Record<'a> {
        let key = pending.message.key();
        let input = pending.message.payload().unwrap_or_default();
        let (headers, value) = match kind {
            WriteKind::Output => (
                self.headers(pending, &[]),
                pending.output.as_deref().unwrap_or_default(),
            ),
            WriteKind::DeadLetter => {
                let headers = self.headers(pending, &[]);
                let mut length = itoa::Buffer::new();
                let marked = [(
                    headers::VALUE_TRUNCATED,
                    length.format(input.len()).as_bytes(),
                )];
                let extra = headers::VALUE_TRUNCATED.len() + 24;
                let key_len = key.map_or(0, <[u8]>::len);
                match write::cut_to_fit(key_len, input.len(), headers::size(&headers) + extra) {
                    None => (headers, input),
                    Some(cut) => (self.headers(pending, &marked), &input[..cut]),
                }
            }
        };
        Record {
            key,
            value,
            headers,
        }
    }

    /// The `eventflows-` headers of a message's records, then `extra`.
    fn headers(&self, pending: &Pending<S::Delivery>, extra: &[(&str, &[u8])]) -> OwnedHeaders {
        let message = &pending.message;
        let (mut partition, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut fields: Vec<(&str, &[u8])> = vec![
            (headers::ALGORITHM, self.algorithm.as_bytes()),
            (headers::VERSION, pending.version.as_bytes()),
            (headers::SOURCE_TOPIC, message.topic().as_bytes()),
            (
                headers::SOURCE_PARTITION,
                partition.format(message.partition()).as_bytes(),
            ),
            (
                headers::SOURCE_OFFSET,
                offset.format(message.offset()).as_bytes(),
            ),
        ];
        let (mut attempts, mut at) = (itoa::Buffer::new(), itoa::Buffer::new());
        if let Some(failure) = &pending.failure {
            fields.extend([
                (headers::ERROR, failure.message.as_bytes()),
                (headers::ERROR_KIND, failure.kind.as_bytes()),
                (
                    headers::ATTEMPTS,
                    attempts.format(failure.attempts).as_bytes(),
                ),
                (headers::FAILED_AT, at.format(failure.at_ms).as_bytes()),
            ]);
        }
        if let Some(replay_of) = &pending.replay_of {
            fields.push((headers::REPLAY_OF, replay_of.as_bytes()));
        }
        fields.extend_from_slice(extra);
        headers::build(message.headers(), &fields)
    }

    /// Whether every write of `pending` is settled (with `wait`, waits for
    /// them). A write that can never succeed makes the message a dead letter
    /// (or a kept failure); one worth sending again is reported.
    async fn written(&self, pending: &mut Pending<S::Delivery>, wait: bool) -> Written {
        let mut i = 0;
        while i < pending.writes.len() {
            let failed = match &mut pending.writes[i].state {
                WriteState::Acked | WriteState::GaveUp => None,
                WriteState::Failed(error) => Some(error.clone()),
                WriteState::Sent(delivery) => {
                    let answer = if wait {
                        Some(delivery.await)
                    } else {
                        delivery.now_or_never()
                    };
                    match answer {
                        None => return Written::UnderWay,
                        Some(answer) => answer.err(),
                    }
                }
            };
            match failed {
                Some(WriteError::Permanent(message)) => {
                    self.gave_up(i, pending, WriteError::Permanent(message))
                        .await;
                    continue;
                }
                Some(error) => {
                    tracing::debug!(flow = %self.flow, error = error.message(), "a write failed; sending it again");
                    pending.writes[i].state = WriteState::Failed(error);
                    return Written::Failed(pending.writes[i].target.clone());
                }
                None => {
                    if !matches!(pending.writes[i].state, WriteState::GaveUp) {
                        pending.writes[i].state = WriteState::Acked;
                    }
                }
            }
            i += 1;
        }
        Written::All
    }

    /// After a failed write to `target`: lets every write under way settle,
    /// then sends the failed write and every later write to `target` again,
    /// one after another, so that the target's records keep input order
    /// (later ones that were acknowledged are written twice: at least once).
    /// False if the flow is stopped while a write keeps failing.
    async fn resend_in_order(&mut self, target: &Arc<Target>) -> bool {
        for pending in self.messages.iter_mut() {
            for write in pending.writes.iter_mut() {
                if let WriteState::Sent(delivery) = &mut write.state {
                    write.state = match delivery.await {
                        Ok(()) => WriteState::Acked,
                        Err(error) => WriteState::Failed(error),
                    };
                }
            }
        }
        let states: Vec<Vec<Option<Resend>>> = self
            .messages
            .iter()
            .map(|p| {
                p.writes
                    .iter()
                    .map(|w| (*w.target == **target).then(|| Resend::of(&w.state)))
                    .collect()
            })
            .collect();
        // A write that timed out, or whose producer failed, is sent again
        // through a new producer.
        let mut renew = self.messages.iter().find_map(|p| {
            p.writes.iter().find_map(|w| match &w.state {
                WriteState::Failed(WriteError::NewProducer(_, id)) if *w.target == **target => {
                    Some(*id)
                }
                _ => None,
            })
        });
        let mut messages = std::mem::take(&mut self.messages);
        let mut settled = true;
        for (m, i) in resend_plan(&states) {
            let pending = &mut messages[m];
            if let WriteState::Failed(WriteError::Permanent(message)) = &pending.writes[i].state {
                let error = WriteError::Permanent(message.clone());
                self.gave_up(i, pending, error).await;
                continue;
            }
            match self.send_until_settled(i, pending, &mut renew).await {
                None => {
                    settled = false;
                    break;
                }
                Some(Ok(())) => pending.writes[i].state = WriteState::Acked,
                Some(Err(error)) => self.gave_up(i, pending, error).await,
            }
        }
        self.messages = messages;
        settled
    }

    /// A write that can never succeed: an output's failure dead-letters the
    /// message; a dead letter's failure leaves it a failure kept by the next
    /// step.
    async fn gave_up(&self, i: usize, pending: &mut Pending<S::Delivery>, error: WriteError) {
        tracing::warn!(flow = %self.flow, partition = pending.message.partition(),
            offset = pending.message.offset(), "{}", error.message());
        pending.writes[i].state = WriteState::GaveUp;
        match pending.writes[i].kind {
            WriteKind::Output => {
                if pending.failure.is_none() {
                    let message = error.message().to_owned();
                    self.fail(pending, Failure::now("write-failed", message, 1))
                        .await;
                }
            }
            WriteKind::DeadLetter => {
                if let Some(failure) = &mut pending.failure {
                    failure.dead_lettered = false;
                    failure.message = format!(
                        "{}; the dead letter could not be written either: {}",
                        failure.message,
                        error.message()
                    );
                }
            }
        }
    }

    /// Sends write `i` again, with backoff, until the broker acknowledges
    /// it (`Ok`) or answers that it never will (`Err`); `None` if the flow
    /// is stopped first (the message then stays unacknowledged).
    async fn send_until_settled(
        &self,
        i: usize,
        pending: &Pending<S::Delivery>,
        renew: &mut Option<u64>,
    ) -> Option<Result<(), WriteError>> {
        let write = &pending.writes[i];
        let mut backoff = FIRST_RESEND;
        loop {
            if let Some(id) = renew.take() {
                self.sink.renew(&write.target, id);
            }
            let error = match self.sink.producer(&write.target).await {
                Err(error) => error,
                Ok(producer) => {
                    let record = self.record(write.kind, pending);
                    let answer = match self.sink.send(&producer, &write.target, record) {
                        Ok(delivery) => delivery.await,
                        Err(error) => Err(error),
                    };
                    match answer {
                        Ok(()) => {
                            self.stats.written_again();
                            return Some(Ok(()));
                        }
                        Err(error) => {
                            if let WriteError::NewProducer(_, id) = &error {
                                *renew = Some(*id);
                            }
                            error
                        }
                    }
                }
            };
            if matches!(error, WriteError::Permanent(_)) {
                return Some(Err(error));
            }
            self.stats.cannot_write(error.message());
            tracing::warn!(flow = %self.flow, error = error.message(), "write failed; retrying");
            let mut stop = self.stop.clone();
            if self.stopping() {
                return None;
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_RESEND);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::pin::Pin;
    use std::sync::Mutex;

    use futures::channel::oneshot;
    use rdkafka::Timestamp;
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn a_failed_write_is_planned_again_with_every_later_write_to_its_target() {
        use Resend::*;
        // Message 0 went through; message 1's write to the target failed
        // while messages 2 and 3 were acknowledged after it; message 2 also
        // wrote elsewhere (None); message 3's dead letter was given up.
        let writes = vec![
            vec![Some(Acked)],
            vec![Some(Retryable)],
            vec![None, Some(Acked)],
            vec![Some(Acked), Some(Done)],
        ];
        assert_eq!(resend_plan(&writes), vec![(1, 0), (2, 1), (3, 0)]);
        // Nothing failed: nothing to resend.
        assert!(resend_plan(&[vec![Some(Acked)], vec![Some(Acked)]]).is_empty());
        // A permanent failure before the retryable one is given up, in order.
        assert_eq!(
            resend_plan(&[
                vec![Some(Permanent)],
                vec![Some(Retryable)],
                vec![Some(Acked)]
            ]),
            vec![(0, 0), (1, 0), (2, 0)]
        );
    }

    /// What the fake broker answers to a record.
    enum Answer {
        Ack,
        Fail(WriteError),
        /// Answered when the test sends on the channel.
        Later(oneshot::Receiver<Result<(), WriteError>>),
    }

    /// A record the fake broker was sent.
    #[derive(Debug, Clone, PartialEq)]
    struct Sent {
        topic: String,
        value: Vec<u8>,
        headers: HashMap<String, String>,
        /// Which producer sent it: 0 first, one more after each renewal.
        producer: u32,
    }

    /// A broker that answers from a script per topic (acknowledging once the
    /// script is used up) and notes every record it is sent, in order.
    #[derive(Clone, Default)]
    struct FakeSink {
        answers: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
        sent: Arc<Mutex<Vec<Sent>>>,
        /// Topics whose connection is gone.
        gone: Vec<String>,
        /// The producer in use (counts renewals).
        producer: Arc<Mutex<u32>>,
    }

    impl FakeSink {
        fn script(&self, topic: &str, answers: impl IntoIterator<Item = Answer>) {
            self.answers
                .lock()
                .unwrap()
                .entry(topic.to_owned())
                .or_default()
                .extend(answers);
        }

        fn sent(&self) -> Vec<Sent> {
            self.sent.lock().unwrap().clone()
        }

        /// (topic, source offset) of every record sent, in order.
        fn sent_offsets(&self) -> Vec<(String, i64)> {
            self.sent()
                .into_iter()
                .map(|s| {
                    let offset = s.headers[headers::SOURCE_OFFSET].parse().unwrap();
                    (s.topic, offset)
                })
                .collect()
        }
    }

    type FakeDelivery = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send>>;

    impl Sink for FakeSink {
        type Producer = u32;
        type Delivery = FakeDelivery;

        async fn producer(&self, target: &Target) -> Result<u32, WriteError> {
            if self.gone.contains(&target.topic) {
                return Err(WriteError::Permanent(format!(
                    "the connection of '{}' was deleted",
                    target.topic
                )));
            }
            Ok(*self.producer.lock().unwrap())
        }

        fn renew(&self, _: &Target, id: u64) {
            let mut current = self.producer.lock().unwrap();
            if u64::from(*current) == id {
                *current += 1;
            }
        }

        fn send(
            &self,
            producer: &u32,
            target: &Arc<Target>,
            record: Record<'_>,
        ) -> Result<FakeDelivery, WriteError> {
            self.sent.lock().unwrap().push(Sent {
                producer: *producer,
                topic: target.topic.clone(),
                value: record.value.to_vec(),
                headers: record
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect(),
            });
            let answer = self
                .answers
                .lock()
                .unwrap()
                .get_mut(&target.topic)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Answer::Ack);
            Ok(match answer {
                Answer::Ack => Box::pin(async { Ok(()) }),
                Answer::Fail(error) => Box::pin(async move { Err(error) }),
                Answer::Later(answer) => Box::pin(async move {
                    answer
                        .await
                        .unwrap_or(Err(WriteError::Retryable("dropped".into())))
                }),
            })
        }
    }

    /// A next step that notes what it is handed.
    #[derive(Default)]
    struct FakeNext(Vec<Finished>);

    impl Next for FakeNext {
        fn finished(&mut self, message: Finished) {
            self.0.push(message);
        }
    }

    impl FakeNext {
        fn offsets(&self) -> Vec<i64> {
            self.0.iter().map(|f| f.message.offset()).collect()
        }
    }

    fn target(topic: &str) -> Arc<Target> {
        Arc::new(Target {
            connection_id: "c".into(),
            topic: topic.into(),
        })
    }

    fn writer(sink: FakeSink) -> (Writer<FakeSink>, watch::Sender<bool>) {
        let (stop, stopped) = watch::channel(false);
        let writer = Writer::new(
            sink,
            "acme/echo".into(),
            "flow".into(),
            stopped,
            Arc::new(Stats::default()),
        );
        (writer, stop)
    }

    /// A fake broker whose answer to the first record to "out" is sent by
    /// the test; later ones are acknowledged.
    fn first_answered_later() -> (FakeSink, oneshot::Sender<Result<(), WriteError>>) {
        let sink = FakeSink::default();
        let (first, answer) = oneshot::channel();
        sink.script("out", [Answer::Later(answer)]);
        (sink, first)
    }

    /// A writer on `sink` that was handed the outputs of offsets
    /// `0..count` for the topic "out", and the next step it handed to.
    async fn submitted(
        sink: &FakeSink,
        count: i64,
    ) -> (Writer<FakeSink>, watch::Sender<bool>, FakeNext) {
        let (mut writer, stop) = writer(sink.clone());
        let mut next = FakeNext::default();
        let outputs = [(target("out"), Ok(0))];
        for offset in 0..count {
            assert!(writer.submit(output(offset), &outputs, &mut next).await);
        }
        (writer, stop, next)
    }

    fn ran(offset: i64, value: &[u8], result: Result<Vec<u8>, Failure>, dlq: bool) -> Ran {
        Ran {
            message: OwnedMessage::new(
                Some(value.to_vec()),
                Some(b"key".to_vec()),
                "in".into(),
                Timestamp::NotAvailable,
                0,
                offset,
                None,
            ),
            version: "1.0.0".into(),
            dlq: dlq.then(|| target("dlq")),
            started: Instant::now(),
            result,
            replay_of: None,
        }
    }

    fn output(offset: i64) -> Ran {
        ran(
            offset,
            b"in",
            Ok(format!("out {offset}").into_bytes()),
            false,
        )
    }

    fn retryable() -> Answer {
        Answer::Fail(WriteError::Retryable("broker away".into()))
    }

    fn permanent() -> Answer {
        Answer::Fail(WriteError::Permanent("topic deleted".into()))
    }

    #[tokio::test]
    async fn messages_are_handed_on_in_input_order_once_their_writes_are_acknowledged() {
        let (sink, first) = first_answered_later();
        let (mut writer, _stop, mut next) = submitted(&sink, 3).await;
        // Offsets 1 and 2 are acknowledged, 0 is not: nothing is handed on.
        assert!(writer.settle(&mut next, false).await);
        assert!(next.offsets().is_empty());
        first.send(Ok(())).unwrap();
        assert!(writer.settle(&mut next, true).await);
        assert_eq!(next.offsets(), vec![0, 1, 2]);
        assert!(writer.is_empty());
        assert!(next.0.iter().all(|f| f.failure.is_none()));
        let sent = sink.sent();
        assert_eq!(sent[2].value, b"out 2");
        assert_eq!(sent[2].headers[headers::ALGORITHM], "acme/echo");
        assert_eq!(sent[2].headers[headers::SOURCE_TOPIC], "in");
    }

    #[tokio::test]
    async fn waiting_for_the_oldest_answer_can_be_given_up_and_taken_up_again() {
        let (sink, first) = first_answered_later();
        let (mut writer, _stop, mut next) = submitted(&sink, 2).await;
        // The write task gives the wait up when the lane hands on more.
        assert!(writer.oldest_answered().now_or_never().is_none());
        assert!(writer.settle(&mut next, false).await);
        assert!(next.offsets().is_empty(), "offset 0 is still unanswered");
        first.send(Ok(())).unwrap();
        writer.oldest_answered().await;
        assert!(writer.settle(&mut next, false).await);
        assert_eq!(next.offsets(), vec![0, 1]);
        assert_eq!(sink.sent().len(), 2, "nothing was sent twice");
    }

    #[tokio::test]
    async fn a_failure_noted_while_waiting_for_the_oldest_is_sent_again_in_order() {
        let (sink, first) = first_answered_later();
        let (mut writer, _stop, mut next) = submitted(&sink, 2).await;
        first
            .send(Err(WriteError::Retryable("leader moved".into())))
            .unwrap();
        writer.oldest_answered().await;
        assert!(writer.settle(&mut next, false).await);
        let out = |o| ("out".to_owned(), o);
        assert_eq!(sink.sent_offsets(), vec![out(0), out(1), out(0), out(1)]);
        assert_eq!(next.offsets(), vec![0, 1], "each is handed on once");
    }

    #[tokio::test]
    async fn a_failed_write_is_sent_again_with_every_later_write_in_order() {
        let sink = FakeSink::default();
        let (second, answer) = oneshot::channel();
        sink.script("out", [Answer::Ack, Answer::Later(answer), Answer::Ack]);
        let (mut writer, _stop, mut next) = submitted(&sink, 3).await;
        // Offset 1 fails after offset 2 was acknowledged.
        second
            .send(Err(WriteError::Retryable("leader moved".into())))
            .unwrap();
        assert!(writer.join(&mut next).await);
        let out = |o| ("out".to_owned(), o);
        assert_eq!(
            sink.sent_offsets(),
            vec![out(0), out(1), out(2), out(1), out(2)],
            "the failed record and every later one are sent again, in order"
        );
        assert_eq!(next.offsets(), vec![0, 1, 2], "each is handed on once");
        assert!(next.0.iter().all(|f| f.failure.is_none()));
    }

    #[tokio::test]
    async fn a_write_that_timed_out_is_sent_again_through_a_new_producer() {
        let sink = FakeSink::default();
        let timed_out = Answer::Fail(WriteError::NewProducer("no answer in time".into(), 0));
        sink.script("out", [Answer::Ack, timed_out]);
        let (mut writer, _stop, mut next) = submitted(&sink, 3).await;
        assert!(writer.join(&mut next).await);
        let sent: Vec<(i64, u32)> = sink
            .sent()
            .iter()
            .map(|s| {
                (
                    s.headers[headers::SOURCE_OFFSET].parse().unwrap(),
                    s.producer,
                )
            })
            .collect();
        assert_eq!(
            sent,
            vec![(0, 0), (1, 0), (2, 0), (1, 1), (2, 1)],
            "the timed-out record and every later one go again, through producer 1"
        );
        assert_eq!(next.offsets(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn an_output_that_can_never_be_written_becomes_a_dead_letter() {
        let sink = FakeSink::default();
        sink.script("out", [Answer::Ack, permanent()]);
        let (mut writer, _stop) = writer(sink.clone());
        let mut next = FakeNext::default();
        let outputs = [(target("out"), Ok(0))];
        for offset in 0..3 {
            let ran = ran(offset, b"input", Ok(b"output".to_vec()), true);
            assert!(writer.submit(ran, &outputs, &mut next).await);
        }
        assert!(writer.join(&mut next).await);
        assert_eq!(next.offsets(), vec![0, 1, 2], "the partition moves on");
        let failure = next.0[1].failure.as_ref().expect("offset 1 failed");
        assert_eq!(failure.kind, "write-failed");
        assert!(failure.dead_lettered);
        assert!(
            failure.message.contains("topic deleted"),
            "{}",
            failure.message
        );
        let letter = sink.sent().into_iter().find(|s| s.topic == "dlq").unwrap();
        assert_eq!(letter.value, b"input", "the dead letter carries the input");
        assert_eq!(letter.headers[headers::ERROR_KIND], "write-failed");
        assert_eq!(letter.headers[headers::SOURCE_OFFSET], "1");
        assert!(next.0[2].failure.is_none());
    }

    #[tokio::test]
    async fn a_dead_letter_that_cannot_be_written_leaves_a_failure_to_keep() {
        let sink = FakeSink {
            gone: vec!["dlq".into()],
            ..FakeSink::default()
        };
        let (mut writer, _stop) = writer(sink.clone());
        let mut next = FakeNext::default();
        let bad = Failure::now("bad-input", "not JSON".into(), 1);
        assert!(
            writer
                .submit(ran(7, b"{", Err(bad), true), &[], &mut next)
                .await
        );
        assert!(writer.join(&mut next).await);
        let failure = next.0[0].failure.as_ref().unwrap();
        assert!(!failure.dead_lettered);
        assert_eq!(failure.kind, "bad-input");
        assert!(
            failure.message.starts_with("not JSON; the dead letter could not be written either: the connection of 'dlq' was deleted"),
            "{}",
            failure.message
        );
        assert!(sink.sent().is_empty());
    }

    #[tokio::test]
    async fn a_dead_letter_too_large_for_a_record_is_cut_and_says_so() {
        let sink = FakeSink::default();
        let (mut writer, _stop) = writer(sink.clone());
        let mut next = FakeNext::default();
        let input = vec![b'x'; write::MAX_RECORD_BYTES + 100];
        let bad = Failure::now("bad-input", "not JSON".into(), 1);
        assert!(
            writer
                .submit(ran(0, &input, Err(bad), true), &[], &mut next)
                .await
        );
        assert!(writer.join(&mut next).await);
        let letter = &sink.sent()[0];
        assert!(letter.value.len() < write::MAX_RECORD_BYTES);
        assert!(input.starts_with(&letter.value));
        assert_eq!(
            letter.headers[headers::VALUE_TRUNCATED],
            input.len().to_string()
        );
        assert!(next.0[0].failure.as_ref().unwrap().dead_lettered);
    }

    #[tokio::test]
    async fn an_output_too_large_for_a_record_is_dead_lettered_without_a_write() {
        let sink = FakeSink::default();
        let (mut writer, _stop) = writer(sink.clone());
        let mut next = FakeNext::default();
        let big = vec![b'y'; write::MAX_RECORD_BYTES];
        let outputs = [(target("out"), Ok(0))];
        assert!(
            writer
                .submit(ran(0, b"in", Ok(big), true), &outputs, &mut next)
                .await
        );
        assert!(writer.join(&mut next).await);
        let topics: Vec<String> = sink.sent().into_iter().map(|s| s.topic).collect();
        assert_eq!(topics, vec!["dlq"]);
        assert_eq!(next.0[0].failure.as_ref().unwrap().kind, "write-failed");
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_while_a_write_keeps_failing_hands_nothing_on() {
        let sink = FakeSink::default();
        sink.script("out", std::iter::repeat_with(retryable).take(1000));
        let (mut writer, stop) = writer(sink.clone());
        let mut next = FakeNext::default();
        let outputs = [(target("out"), Ok(0))];
        assert!(writer.submit(output(0), &outputs, &mut next).await);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            stop.send(true).unwrap();
        });
        assert!(
            !writer.join(&mut next).await,
            "stopped before it was written"
        );
        assert!(
            next.0.is_empty(),
            "nothing is handed on, so nothing is stored"
        );
        let attempts = sink.sent().len();
        assert!(
            (5..100).contains(&attempts),
            "sent {attempts} times, with backoff"
        );
        assert!(
            writer
                .stats
                .snapshot()
                .state
                .starts_with("cannot write: broker away")
        );
    }
}
