//! One partition's lane: run → write → store offsets, in order.
//!
//! A lane takes batches of its partition's messages from its source,
//! runs each (the run step, [`super::retry`]), hands the results to the
//! producer without waiting (up to [`IN_FLIGHT`] messages ahead), and
//! stores an offset only once every write of that message and of every
//! earlier one is acknowledged. A write that can never succeed
//! ([`super::write`]) turns the message into a dead letter (or a recorded
//! failure) instead of holding the partition.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::watch;

use app::domain::{AppError, FlowError, RunRecord, Runtime};

use super::headers;
use super::publish::SEND_TIMEOUT;
use super::retry::{RetryObserver, RetryPolicy, run_with_retries};
use super::source::Source;
use super::stats::KEEP_RUNS;
use super::subscribe::FlowContext;
use super::write::{self, WriteError};
use super::{FlowConfig, RunError, Runner, Stats, Target};
use crate::db::failures::{self, Failure as KeptFailure};
use crate::db::flows::ActiveFlow;
use crate::db::now_ms;

/// Messages per partition whose writes may be unacknowledged at once (at
/// most [`IN_FLIGHT_BYTES`] of inputs and outputs): enough to cover the
/// broker's acknowledgement time at full speed.
const IN_FLIGHT: usize = 8192;
const IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// Backoff between sends of a write that keeps failing.
const FIRST_RESEND: Duration = Duration::from_millis(200);
const MAX_RESEND: Duration = Duration::from_secs(5);

/// What the consumer loop and the lanes of a flow share.
#[derive(Clone)]
pub(super) struct Worker {
    pub runner: Runner,
    pub spec: Arc<ActiveFlow>,
    pub consumer: Arc<StreamConsumer<FlowContext>>,
    pub config: watch::Receiver<FlowConfig>,
    /// The lane's own stop: the flow stops, or its partition is revoked.
    pub stop: watch::Receiver<bool>,
    pub stats: Arc<Stats>,
    pub retry: RetryPolicy,
}

/// Runs one partition in order. See the module's documentation.
pub(super) async fn lane(mut worker: Worker, mut source: Source) {
    let mut in_flight = InFlight::default();
    let mut done = Done::default();
    while !worker.stopping() {
        let batch = if in_flight.messages.is_empty() {
            let mut stop = worker.stop.clone();
            tokio::select! {
                batch = source.next() => batch,
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        } else {
            let batch = source.ready();
            if batch.is_empty() {
                // Nothing new: wait for the oldest message's writes.
                if !worker.settle(&mut in_flight, &mut done, true).await {
                    return worker.report(&mut done).await;
                }
                worker.report(&mut done).await;
                continue;
            }
            batch
        };
        let mut setup = worker.setup().await;
        for message in batch {
            if worker.stopping() {
                break;
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
            // A write the producer did not take is sent again before
            // anything later, so that outputs stay in order: everything in
            // flight, it included, is settled first.
            let drain = pending.writes.iter().any(|w| !w.is_sent());
            in_flight.bytes += pending.bytes;
            in_flight.messages.push_back(pending);
            while !in_flight.messages.is_empty()
                && (drain
                    || in_flight.messages.len() >= IN_FLIGHT
                    || in_flight.bytes >= IN_FLIGHT_BYTES)
            {
                if !worker.settle(&mut in_flight, &mut done, true).await {
                    return worker.report(&mut done).await;
                }
            }
        }
        if !worker.settle(&mut in_flight, &mut done, false).await {
            return worker.report(&mut done).await;
        }
        worker.report(&mut done).await;
    }
    // Finish what was started, then store its offsets.
    while !in_flight.messages.is_empty() {
        if !worker.settle(&mut in_flight, &mut done, true).await {
            break;
        }
    }
    worker.report(&mut done).await;
}

/// What a batch runs with: the flow's configuration when the batch began.
struct Setup {
    generation: u64,
    runtime: Runtime,
    version: Arc<str>,
    dlq: Option<Arc<Target>>,
    /// Where outputs go, each with its connection's producer (or why there
    /// is none).
    targets: Vec<(Arc<Target>, Result<FutureProducer, WriteError>)>,
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
    /// The flow's dead-letter queue when the message was run.
    dlq: Option<Arc<Target>>,
    started: Instant,
    /// The run's output, when it succeeded.
    output: Option<Vec<u8>>,
    /// Why the message failed: its run, or a write of its output.
    failure: Option<Failure>,
    writes: Vec<Write>,
}

struct Failure {
    kind: &'static str,
    message: String,
    attempts: u32,
    at_ms: i64,
    /// Whether a dead letter was written for it (once acknowledged).
    dead_lettered: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Output,
    DeadLetter,
}

struct Write {
    target: Arc<Target>,
    kind: WriteKind,
    state: WriteState,
}

impl Write {
    fn is_sent(&self) -> bool {
        matches!(self.state, WriteState::Sent(_))
    }
}

enum WriteState {
    /// Handed to the producer; resolves with the broker's answer.
    Sent(DeliveryFuture),
    /// Not taken by the producer, or failed: to be sent again.
    Failed(WriteError),
    Acked,
    /// Could never succeed; recorded with the message's failure.
    GaveUp,
}

/// What the broker answered to a write to `topic`.
fn delivered(
    topic: &str,
    answer: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<(), WriteError> {
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(WriteError::from_kafka(topic, &error)),
        Err(_) => Err(WriteError::Retryable(format!(
            "writing to '{topic}' was cancelled"
        ))),
    }
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
    fn of(state: &WriteState) -> Self {
        match state {
            WriteState::Acked => Resend::Acked,
            WriteState::Failed(WriteError::Retryable(_)) | WriteState::Sent(_) => Resend::Retryable,
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

/// Messages finished since the last report.
#[derive(Default)]
struct Done {
    /// The last finished offset.
    offset: Option<(i32, i64)>,
    /// Failed messages that went to no Dead Letter Queue: kept in the
    /// database before their offsets are stored.
    failures: Vec<KeptFailure>,
    /// The newest runs, oldest first.
    runs: VecDeque<(i32, i64, Arc<str>, &'static str, u64)>,
}

/// Shows a model outage as the flow's state while its runs are retried.
struct ModelState<'a>(&'a Stats);

impl RetryObserver for ModelState<'_> {
    fn retrying(&self, error: &RunError, _delay: Duration) {
        self.0.retries.inc();
        self.0.model_unavailable(error.message());
    }

    fn recovered(&self) {
        self.0.model_available();
    }
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
            let producer = self.producer_for(&target).await;
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
        let executor = self.runner.executor();
        let ran = run_with_retries(
            &self.retry,
            self.stop.clone(),
            &ModelState(stats),
            || async {
                match message.payload() {
                    None => Err(RunError::BadInput("the message has no value".into())),
                    Some(input) => executor.run(&setup.runtime, input).await,
                }
            },
        )
        .await?;
        let mut pending = Pending {
            bytes: message.payload().map_or(0, <[u8]>::len),
            message,
            version: setup.version.clone(),
            dlq: setup.dlq.clone(),
            started,
            output: None,
            failure: None,
            writes: Vec::new(),
        };
        match ran.result {
            Ok(output) => {
                pending.bytes += output.len();
                if !setup.targets.is_empty() && !self.output_fits(&pending, output.len()) {
                    let topics: Vec<&str> = setup
                        .targets
                        .iter()
                        .map(|(t, _)| t.topic.as_str())
                        .collect();
                    let error = format!(
                        "the output has {} bytes, more than a record may have ({}); not written to '{}'",
                        output.len(),
                        write::MAX_RECORD_BYTES,
                        topics.join("', '")
                    );
                    pending.output = Some(output);
                    self.fail(&mut pending, "write-failed", error, 1).await;
                } else {
                    pending.output = Some(output);
                    for (target, producer) in &setup.targets {
                        let state = match producer {
                            Ok(producer) => {
                                self.start(producer, target, WriteKind::Output, &pending)
                            }
                            Err(error) => WriteState::Failed(error.clone()),
                        };
                        pending.writes.push(Write {
                            target: target.clone(),
                            kind: WriteKind::Output,
                            state,
                        });
                    }
                }
            }
            Err(error) => {
                let kind = error.kind();
                self.fail(&mut pending, kind, error.message().to_owned(), ran.attempts)
                    .await;
            }
        }
        Some(pending)
    }

    /// Marks a message failed and starts its dead letter, if the flow has a
    /// dead-letter queue.
    async fn fail(
        &self,
        pending: &mut Pending,
        kind: &'static str,
        message: String,
        attempts: u32,
    ) {
        self.stats.failed.inc();
        pending.failure = Some(Failure {
            kind,
            message,
            attempts,
            at_ms: now_ms(),
            dead_lettered: pending.dlq.is_some(),
        });
        if let Some(dlq) = pending.dlq.clone() {
            let state = match self.producer_for(&dlq).await {
                Ok(producer) => self.start(&producer, &dlq, WriteKind::DeadLetter, pending),
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
    fn output_fits(&self, pending: &Pending, len: usize) -> bool {
        const HEADROOM: usize = 64 * 1024;
        let key = pending.message.key().map_or(0, <[u8]>::len);
        key + len + HEADROOM <= write::MAX_RECORD_BYTES
            || write::fits(key, len, headers::size(&self.headers(pending)))
    }

    /// The producer of a target's connection; a deleted connection is a
    /// write that can never succeed.
    async fn producer_for(&self, target: &Target) -> Result<FutureProducer, WriteError> {
        self.runner
            .producer(&target.connection_id)
            .await
            .map_err(|error| {
                let message = format!("writing to '{}' failed: {error}", target.topic);
                match error {
                    AppError::NotFound { .. } => WriteError::Permanent(message),
                    _ => WriteError::Retryable(message),
                }
            })
    }

    /// Hands a record to the producer without waiting for the broker.
    fn start(
        &self,
        producer: &FutureProducer,
        target: &Target,
        kind: WriteKind,
        pending: &Pending,
    ) -> WriteState {
        let (headers, value) = self.record_parts(kind, pending);
        match producer.send_result(self.record(target, pending, headers, value)) {
            Ok(delivery) => WriteState::Sent(delivery),
            Err((error, _)) => {
                tracing::debug!(flow = %self.spec.id, %error, "the producer did not take a record");
                WriteState::Failed(WriteError::from_kafka(&target.topic, &error))
            }
        }
    }

    /// The headers and value a write carries: the output, or the input as a
    /// dead letter (cut to fit the record size, with a header saying so).
    fn record_parts<'a>(&self, kind: WriteKind, pending: &'a Pending) -> (OwnedHeaders, &'a [u8]) {
        let input = pending.message.payload().unwrap_or_default();
        match kind {
            WriteKind::Output => (
                self.headers(pending),
                pending.output.as_deref().unwrap_or_default(),
            ),
            WriteKind::DeadLetter => {
                let headers = self.headers(pending);
                let key = pending.message.key().map_or(0, <[u8]>::len);
                let mut length = itoa::Buffer::new();
                let marked = [(
                    headers::VALUE_TRUNCATED,
                    length.format(input.len()).as_bytes(),
                )];
                let extra = headers::VALUE_TRUNCATED.len() + 24;
                match write::cut_to_fit(key, input.len(), headers::size(&headers) + extra) {
                    None => (headers, input),
                    Some(cut) => (self.headers_with(pending, &marked), &input[..cut]),
                }
            }
        }
    }

    /// The record a write sends to `target`, with the input's key.
    fn record<'a>(
        &self,
        target: &'a Target,
        pending: &'a Pending,
        headers: OwnedHeaders,
        value: &'a [u8],
    ) -> FutureRecord<'a, [u8], [u8]> {
        let mut record = FutureRecord::to(&target.topic)
            .payload(value)
            .headers(headers);
        if let Some(key) = pending.message.key() {
            record = record.key(key);
        }
        record
    }

    fn headers(&self, pending: &Pending) -> OwnedHeaders {
        self.headers_with(pending, &[])
    }

    /// The `eventflows-` headers of a message's records, then `extra`.
    fn headers_with(&self, pending: &Pending, extra: &[(&str, &[u8])]) -> OwnedHeaders {
        let message = &pending.message;
        let (mut partition, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut fields: Vec<(&str, &[u8])> = vec![
            (headers::ALGORITHM, self.spec.algorithm.as_bytes()),
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
        fields.extend_from_slice(extra);
        headers::build(message.headers(), &fields)
    }

    /// Takes the messages whose writes are all settled off the front of
    /// `in_flight`, in order; with `wait`, first waits for the oldest one.
    /// False if the flow was stopped while a write kept failing.
    async fn settle(&self, in_flight: &mut InFlight, done: &mut Done, mut wait: bool) -> bool {
        while let Some(head) = in_flight.messages.front_mut() {
            match self.written(head, wait).await {
                Written::All => {}
                Written::UnderWay => return true,
                Written::Failed(target) => {
                    if !self.resend_in_order(in_flight, &target).await {
                        return false;
                    }
                    continue;
                }
            }
            wait = false;
            if let Some(pending) = in_flight.messages.pop_front() {
                in_flight.bytes -= pending.bytes;
                self.finished(pending, done);
            }
        }
        true
    }

    /// Whether every write of `pending` is settled (with `wait`, waits for
    /// them). A write that can never succeed makes the message a dead letter
    /// (or a recorded failure); one worth sending again is reported.
    async fn written(&self, pending: &mut Pending, wait: bool) -> Written {
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
                        Some(answer) => delivered(&pending.writes[i].target.topic, answer).err(),
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
                    tracing::debug!(flow = %self.spec.id, error = error.message(), "a write failed; sending it again");
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
    async fn resend_in_order(&self, in_flight: &mut InFlight, target: &Arc<Target>) -> bool {
        for pending in in_flight.messages.iter_mut() {
            for write in pending.writes.iter_mut() {
                if let WriteState::Sent(delivery) = &mut write.state {
                    write.state = match delivered(&write.target.topic, delivery.await) {
                        Ok(()) => WriteState::Acked,
                        Err(error) => WriteState::Failed(error),
                    };
                }
            }
        }
        let states: Vec<Vec<Option<Resend>>> = in_flight
            .messages
            .iter()
            .map(|p| {
                p.writes
                    .iter()
                    .map(|w| (*w.target == **target).then(|| Resend::of(&w.state)))
                    .collect()
            })
            .collect();
        for (m, i) in resend_plan(&states) {
            let pending = &mut in_flight.messages[m];
            if let WriteState::Failed(WriteError::Permanent(message)) = &pending.writes[i].state {
                let error = WriteError::Permanent(message.clone());
                self.gave_up(i, pending, error).await;
                continue;
            }
            match self.send_until_settled(i, pending).await {
                None => return false,
                Some(Ok(())) => pending.writes[i].state = WriteState::Acked,
                Some(Err(error)) => self.gave_up(i, pending, error).await,
            }
        }
        true
    }

    /// A write that can never succeed: an output's failure dead-letters the
    /// message; a dead letter's failure is recorded in the flow's error log.
    async fn gave_up(&self, i: usize, pending: &mut Pending, error: WriteError) {
        tracing::warn!(flow = %self.spec.id, partition = pending.message.partition(),
            offset = pending.message.offset(), "{}", error.message());
        pending.writes[i].state = WriteState::GaveUp;
        match pending.writes[i].kind {
            WriteKind::Output => {
                if pending.failure.is_none() {
                    let message = error.message().to_owned();
                    self.fail(pending, "write-failed", message, 1).await;
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
        pending: &Pending,
    ) -> Option<Result<(), WriteError>> {
        let write = &pending.writes[i];
        let mut backoff = FIRST_RESEND;
        loop {
            let error = match self.producer_for(&write.target).await {
                Err(error) => error,
                Ok(producer) => {
                    let (headers, value) = self.record_parts(write.kind, pending);
                    let record = self.record(&write.target, pending, headers, value);
                    match producer.send(record, SEND_TIMEOUT).await {
                        Ok(_) => return Some(Ok(())),
                        Err((error, _)) => WriteError::from_kafka(&write.target.topic, &error),
                    }
                }
            };
            if matches!(error, WriteError::Permanent(_)) {
                return Some(Err(error));
            }
            self.stats
                .set_state(format!("cannot write: {}", error.message()));
            tracing::warn!(flow = %self.spec.id, error = error.message(), "write failed; retrying");
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

    /// Records the outcome of a message whose writes are all settled.
    fn finished(&self, pending: Pending, done: &mut Done) {
        let stats = &self.stats;
        let message = &pending.message;
        let (partition, offset) = (message.partition(), message.offset());
        let outcome = match &pending.failure {
            None => {
                stats.succeeded.inc();
                "succeeded"
            }
            Some(failure) => {
                let dead_lettered = failure.dead_lettered;
                if dead_lettered {
                    stats.dead_lettered.inc();
                }
                stats.record_error(FlowError {
                    at_ms: failure.at_ms,
                    partition,
                    offset,
                    kind: failure.kind.to_owned(),
                    message: failure.message.clone(),
                    dead_lettered,
                });
                tracing::info!(flow = %self.spec.id, partition, offset, kind = failure.kind,
                    attempts = failure.attempts, dead_lettered, "{}", failure.message);
                if !dead_lettered {
                    let (value, value_bytes) = KeptFailure::value_kept(message.payload());
                    done.failures.push(KeptFailure {
                        at_ms: failure.at_ms,
                        partition,
                        offset,
                        version: pending.version.to_string(),
                        kind: failure.kind.to_owned(),
                        message: failure.message.clone(),
                        attempts: failure.attempts.min(i32::MAX as u32) as i32,
                        key: message.key().map(<[u8]>::to_vec),
                        value,
                        value_bytes,
                        headers: headers::as_json(message.headers()),
                    });
                }
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

    /// Keeps the failed messages that went to no Dead Letter Queue, then
    /// stores the last finished offset and publishes the recent runs. While
    /// the database cannot keep them, the offset waits (retried with
    /// backoff); if the lane is stopped first, it is not stored, so those
    /// messages run again later.
    async fn report(&self, done: &mut Done) {
        if !done.failures.is_empty() {
            let mut backoff = FIRST_RESEND;
            loop {
                let failures = done.failures.clone();
                let flow = self.spec.id.clone();
                match self
                    .runner
                    .inner
                    .db
                    .run(move |c| failures::keep(c, &flow, &failures))
                    .await
                {
                    Ok(()) => {
                        done.failures.clear();
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(flow = %self.spec.id, %error, "could not keep failed messages; retrying");
                        self.stats
                            .set_state(format!("cannot keep failed messages: {error}"));
                    }
                }
                let mut stop = self.stop.clone();
                if self.stopping() {
                    done.offset = None;
                    return;
                }
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => {
                        done.offset = None;
                        return;
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_RESEND);
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_is_resent_with_every_later_write_to_its_target() {
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
}
