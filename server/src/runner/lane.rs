//! One partition's lane, composed of the runner's steps:
//! consume ([`super::source`]) → run ([`super::retry`]) → write
//! ([`super::writer`]) → commit offsets ([`super::commit`]).
//!
//! A lane takes batches of its partition's messages from its source and
//! runs each with the flow's current version; a write task of its own
//! takes the results in offset order, hands them to the write step (which
//! writes without waiting for the broker and hands messages on in order
//! once acknowledged), and lets the commit step keep failures and store
//! the offset after every batch. This file also connects the steps to
//! Kafka and the database.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use app::domain::{AppError, Batching, FlowOrdering, Runtime};

use super::commit::{Commit, Keeper, Offsets};
use super::retry::{RetryObserver, RetryPolicy, run_with_retries};
use super::runs::Runs;
use super::source::{BATCH, Source};
use super::subscribe::FlowContext;
use super::write::WriteError;
use super::writer::{Failure, Ran, Record, Sink, Writer};
use super::{Executor, FlowConfig, RunError, Runner, Stats, Target};
use crate::db::failures::{self, Failure as KeptFailure};
use crate::db::flows::ActiveFlow;

/// What the consumer loop and the lanes of a flow share.
#[derive(Clone)]
pub(super) struct Worker {
    pub runner: Runner,
    pub spec: Arc<ActiveFlow>,
    /// Where the lane's progress goes.
    pub acks: Acks,
    pub config: watch::Receiver<FlowConfig>,
    /// The lane's own stop: the flow stops, or its partition is revoked.
    pub stop: watch::Receiver<bool>,
    pub stats: Arc<Stats>,
    pub retry: RetryPolicy,
    /// Of a flow that gives messages back: how its runs wait while the
    /// model keeps failing.
    pub outage: Arc<Outage>,
}

/// Messages a flow gave back in a row, and how long its next run waits.
///
/// A queue's poller backs off while its function fails (as AWS Lambda
/// does): each message given back makes the next run of the lane wait as
/// long as a retry in place would, so that an outage does not spend the
/// deliveries of every message on the queue, one after another. A run
/// that gets through, or fails for good, ends the wait.
#[derive(Default)]
pub(super) struct Outage(std::sync::Mutex<(u32, Duration)>);

impl Outage {
    /// How long the next run waits.
    fn pause(&self) -> Duration {
        self.0.lock().map_or(Duration::ZERO, |o| o.1)
    }

    /// Notes how a run ended: given back after a transient failure (with
    /// the pause the model asked for, if it did), or not.
    fn ran(&self, retry: &RetryPolicy, given_back: Option<Option<Duration>>) {
        if let Ok(mut outage) = self.0.lock() {
            *outage = match given_back {
                Some(retry_after) => {
                    let in_a_row = outage.0.saturating_add(1);
                    (in_a_row, retry.delay(in_a_row, retry_after))
                }
                None => (0, Duration::ZERO),
            };
        }
    }
}

type KafkaCommit = Commit<ConsumerOffsets, DbKeeper>;

/// Starts the one lane of a flow on a queue (SQS or Service Bus): what its
/// receiver sends on the returned channel is run in that order, and
/// settled through `acks`.
pub(super) fn queue_lane(
    runner: Runner,
    spec: ActiveFlow,
    acks: Acks,
    config: watch::Receiver<FlowConfig>,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> (mpsc::Sender<OwnedMessage>, tokio::task::JoinHandle<()>) {
    let (messages, received) = mpsc::channel(BATCH);
    let worker = Worker {
        retry: runner.retry_policy(),
        runner,
        spec: Arc::new(spec),
        acks,
        config,
        stop,
        stats: stats.clone(),
        outage: Arc::default(),
    };
    let source = Source::Received {
        messages: received,
        stats,
    };
    (messages, tokio::spawn(lane(worker, source)))
}

/// Runs one partition in order. See the module's documentation.
///
/// The lane is two tasks: this one takes messages and runs them; the write
/// task ([`write_task`]) writes what they returned, settles the writes and
/// stores offsets, so that a fast algorithm's runs and the producer's work
/// go on at the same time. The lane ends once the write task has settled
/// and stored everything handed to it.
pub(super) async fn lane(mut worker: Worker, mut source: Source) {
    let flow: Arc<str> = worker.spec.id.as_str().into();
    let sink = KafkaSink {
        runner: worker.runner.clone(),
    };
    let writer = Writer::new(
        sink.clone(),
        worker.spec.algorithm.as_str().into(),
        flow.clone(),
        worker.stop.clone(),
        worker.stats.clone(),
    );
    let mut commit: KafkaCommit = Commit::new(
        ConsumerOffsets {
            acks: worker.acks.clone(),
            topic: worker.spec.topic.clone(),
            flow: flow.clone(),
        },
        DbKeeper {
            runner: worker.runner.clone(),
            flow: flow.clone(),
        },
        flow.clone(),
        worker.stop.clone(),
        worker.stats.clone(),
    );
    if worker.acks.reads_a_queue() {
        commit = commit.reading_a_queue();
    }
    let (handoff, handed) = mpsc::channel(HANDOFFS);
    let writes = tokio::spawn(write_task(writer, commit, handed));
    let mut out = Handoff::new(handoff);
    // A panic in a run goes on only once the write task has finished, so
    // that the lane is not seen as finished while it still stores offsets.
    let ran = std::panic::AssertUnwindSafe(run_messages(&mut worker, &mut source, &sink, &mut out))
        .catch_unwind()
        .await;
    // Whatever was run and not handed on yet goes to the write task, which
    // then settles everything and stores the offsets.
    // (If the write task has stopped, there is nothing left to hand on to.)
    let _ = out.send().await;
    drop(out);
    if let Err(error) = writes.await {
        tracing::error!(%flow, %error, "the write task of a lane failed");
    }
    if let Err(panic) = ran {
        std::panic::resume_unwind(panic);
    }
}

/// Runs handed to the write task at once, at most: each holds up to a
/// batch of the source's messages.
const HANDOFFS: usize = 4;

/// What the lane hands the write task at once: runs over, in offset order,
/// with the setup they ran with (whose outputs they are written to).
type Handed = (Vec<Ran>, Arc<Setup>);

/// The lane's side of the write task: runs over, in offset order, gathered
/// while they ran with one setup and handed on together.
struct Handoff {
    tx: mpsc::Sender<Handed>,
    gathered: Vec<Ran>,
    setup: Option<Arc<Setup>>,
}

impl Handoff {
    fn new(tx: mpsc::Sender<Handed>) -> Self {
        Handoff {
            tx,
            gathered: Vec::new(),
            setup: None,
        }
    }

    /// Gathers runs over, handed on at the next [`Handoff::send`] (or now,
    /// if they ran with another setup than those gathered).
    async fn push(&mut self, ran: Vec<Ran>, setup: &Arc<Setup>) -> Result<(), Halt> {
        if self.setup.as_ref().is_some_and(|s| !Arc::ptr_eq(s, setup)) {
            self.send().await?;
        }
        self.setup.get_or_insert_with(|| setup.clone());
        self.gathered.extend(ran);
        if self.gathered.len() >= BATCH {
            self.send().await?;
        }
        Ok(())
    }

    /// Hands what was gathered to the write task. `Err` once the write
    /// task has stopped (the flow stopped while a write kept failing).
    async fn send(&mut self) -> Result<(), Halt> {
        let Some(setup) = self.setup.take() else {
            return Ok(());
        };
        let ran = std::mem::take(&mut self.gathered);
        self.tx
            .send((ran, setup))
            .await
            .map_err(|_| Halt::WriteStopped)
    }
}

/// Awaits `work`; if it cannot finish at once, first hands on what was
/// gathered, so that no result waits behind a run or a batch that is under
/// way. `Err` once the write task has stopped.
async fn unless_ready<T>(out: &mut Handoff, work: impl Future<Output = T>) -> Result<T, Halt> {
    let mut work = std::pin::pin!(work);
    if let Some(done) = (&mut work).now_or_never() {
        return Ok(done);
    }
    // The work goes on while the write task takes what was gathered.
    let (sent, done) = tokio::join!(out.send(), work);
    sent.map(|()| done)
}

/// The lane's own work: takes its partition's messages and runs them, and
/// hands what they returned to the write task, in offset order, until the
/// lane stops.
async fn run_messages(
    worker: &mut Worker,
    source: &mut Source,
    sink: &KafkaSink,
    out: &mut Handoff,
) {
    // Runs in flight at once, for flows on model servers that allow it.
    let mut runs: Runs<Running> = Runs::new(FlowOrdering::Partition, 1);
    let mut stopped = false;
    while !worker.stopping() && !stopped {
        let batch = if runs.is_empty() {
            let mut stop = worker.stop.clone();
            tokio::select! {
                batch = source.next() => batch,
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        } else {
            let batch = source.ready();
            if batch.is_empty() {
                // Nothing new: wait for the oldest run.
                match hand_oldest(&mut runs, out).await {
                    Ok(()) => {}
                    Err(Halt::WriteStopped) => return,
                    Err(Halt::RunStopped) => stopped = true,
                }
                if out.send().await.is_err() {
                    return;
                }
                continue;
            }
            batch
        };
        let mut setup = Arc::new(worker.setup(sink).await);
        let mut queue: VecDeque<OwnedMessage> = batch.into();
        while let Some(message) = queue.pop_front() {
            if worker.stopping() {
                break;
            }
            // A new version, new publish targets or a new ordering apply
            // from the next message.
            if worker.config.has_changed().unwrap_or(false)
                || setup.generation != worker.runner.publish_generation()
            {
                setup = Arc::new(worker.setup(sink).await);
            }
            let (ordering, limit) = setup.runs();
            let changed = (ordering, limit) != (runs.ordering(), runs.limit());
            let inline = limit == 1 && setup.batches().is_none();
            // Runs started under another ordering, or before a run inline,
            // finish first; when as many are started as may be, the oldest
            // makes room.
            while !runs.is_empty() && (changed || inline || runs.is_full()) {
                match hand_oldest(&mut runs, out).await {
                    Ok(()) => {}
                    Err(Halt::WriteStopped) => return,
                    Err(Halt::RunStopped) => {
                        stopped = true;
                        break;
                    }
                }
            }
            if stopped {
                break;
            }
            if changed {
                runs = Runs::new(ordering, limit);
            }
            if let Some((url, batching)) = setup.batches() {
                // Up to a batch of this partition's messages in one request,
                // waiting at most the batch wait for it to fill.
                queue.push_front(message);
                let filling = fill(&mut queue, source, &worker.stop, batching);
                if unless_ready(out, filling).await.is_err() {
                    return;
                }
                if worker.stopping() {
                    // Nothing more starts: these messages stay unprocessed.
                    break;
                }
                let take = queue.len().min(batching.size as usize);
                let chunk: Vec<OwnedMessage> = queue.drain(..take).collect();
                let offset = chunk[0].offset();
                let keys: Vec<Option<Vec<u8>>> =
                    chunk.iter().map(|m| m.key().map(<[u8]>::to_vec)).collect();
                let bytes = chunk.iter().map(input_bytes).sum();
                let run = worker.run_batch_owned(setup.clone(), url, chunk);
                runs.push_batch(keys.iter().map(Option::as_deref), offset, bytes, run);
                continue;
            }
            if inline {
                let Ok(ran) = unless_ready(out, worker.run(&setup, message)).await else {
                    return;
                };
                let Some(ran) = ran else {
                    // Stopped during retries: this offset and later ones stay unstored.
                    stopped = true;
                    break;
                };
                if out.push(vec![ran], &setup).await.is_err() {
                    return;
                }
                continue;
            }
            let (key, offset) = (message.key().map(<[u8]>::to_vec), message.offset());
            let bytes = input_bytes(&message);
            let run = worker.run_owned(setup.clone(), message);
            runs.push(key.as_deref(), offset, bytes, run);
        }
        if out.send().await.is_err() {
            return;
        }
    }
    // Finish what was started and hand it on. After a run that was stopped
    // during retries, later runs are dropped unwritten.
    if !stopped {
        while !runs.is_empty() {
            match hand_oldest(&mut runs, out).await {
                Ok(()) => {}
                Err(Halt::WriteStopped | Halt::RunStopped) => break,
            }
        }
    }
}

/// The write task of a lane: writes what the lane's runs returned (outputs
/// or dead letters), hands messages to the commit step in offset order once
/// their writes are settled, and stores offsets after each handoff. Once
/// the lane hands nothing more, settles everything and stores the last
/// offsets; if the flow is stopped while a write keeps failing, stops
/// there, storing nothing after it.
async fn write_task(
    mut writer: Writer<KafkaSink>,
    mut commit: KafkaCommit,
    mut handed: mpsc::Receiver<Handed>,
) {
    loop {
        // The next handoff, or `None` once the oldest message's writes are
        // answered: what the lane hands on is taken as soon as it comes.
        let next = if writer.is_empty() {
            Some(handed.recv().await)
        } else {
            tokio::select! {
                biased;
                handoff = handed.recv() => Some(handoff),
                () = writer.oldest_answered() => None,
            }
        };
        match next {
            Some(None) => break,
            Some(Some((ran, setup))) => {
                for ran in ran {
                    if !writer.submit(ran, &setup.outputs, &mut commit).await {
                        return commit.flush().await;
                    }
                }
            }
            None => {}
        }
        let settled = writer.settle(&mut commit, false).await;
        commit.flush().await;
        if !settled {
            return;
        }
    }
    writer.join(&mut commit).await;
    commit.flush().await;
}

/// A run in flight (of one message, or of a batch): its results, in offset
/// order, with what it ran with, or `None` if the lane was stopped during
/// its retries.
type Running = Option<Handed>;

/// Why a lane cannot go on.
enum Halt {
    /// A run was stopped during retries: it and the runs after it stay
    /// unwritten, so their offsets are not stored.
    RunStopped,
    /// The flow was stopped while a write kept failing.
    WriteStopped,
}

/// The bytes of a message's value.
fn input_bytes(message: &OwnedMessage) -> usize {
    message.payload().map_or(0, <[u8]>::len)
}

/// Hands the oldest run in flight, once over, to the write task.
async fn hand_oldest(runs: &mut Runs<Running>, out: &mut Handoff) -> Result<(), Halt> {
    match unless_ready(out, runs.next()).await? {
        None => Ok(()),
        Some(None) => Err(Halt::RunStopped),
        Some(Some((ran, setup))) => out.push(ran, &setup).await,
    }
}

/// What a batch runs with: the flow's configuration when the batch began.
struct Setup {
    generation: u64,
    runtime: Runtime,
    ordering: FlowOrdering,
    concurrency: u32,
    batching: Batching,
    /// A transient failure gives the message back to its queue.
    give_back: bool,
    outage: Arc<Outage>,
    version: Arc<str>,
    dlq: Option<Arc<Target>>,
    outputs: Vec<(Arc<Target>, Result<Producer, WriteError>)>,
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

impl Setup {
    /// In a flow that gives messages back, waits before a run while the
    /// model keeps failing (see [`Outage`]). False if the lane was stopped
    /// meanwhile: the run does not start.
    async fn back_off(&self, stop: &watch::Receiver<bool>) -> bool {
        let pause = if self.give_back {
            self.outage.pause()
        } else {
            Duration::ZERO
        };
        if pause.is_zero() {
            return true;
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => false,
            () = tokio::time::sleep(pause) => true,
        }
    }

    /// Notes, in a flow that gives messages back, how a run ended.
    fn ran<T>(&self, retry: &RetryPolicy, result: &Result<T, RunError>) {
        if self.give_back {
            let given_back = match result {
                Err(RunError::Transient(_, retry_after)) => Some(*retry_after),
                _ => None,
            };
            self.outage.ran(retry, given_back);
        }
    }

    /// The flow's retry policy, for runs with this setup.
    fn retry(&self, policy: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            give_back: self.give_back,
            ..*policy
        }
    }

    /// The ordering and the number of runs in flight: built-in algorithms
    /// run inline, one at a time, which is fastest for them.
    fn runs(&self) -> (FlowOrdering, usize) {
        match self.runtime {
            Runtime::Builtin(_) => (FlowOrdering::Partition, 1),
            Runtime::Http(_) | Runtime::HttpBatch(_)
                if self.ordering == FlowOrdering::Partition =>
            {
                (self.ordering, 1)
            }
            Runtime::Http(_) | Runtime::HttpBatch(_) => {
                (self.ordering, self.concurrency.max(1) as usize)
            }
        }
    }

    /// The model's URL and the batch bounds, when runs go in batches.
    fn batches(&self) -> Option<(Arc<str>, Batching)> {
        match &self.runtime {
            Runtime::HttpBatch(url) if self.batching.size > 1 => {
                Some((url.as_str().into(), self.batching))
            }
            _ => None,
        }
    }
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn setup(&mut self, sink: &KafkaSink) -> Setup {
        let generation = self.runner.publish_generation();
        let config = self.config.borrow_and_update().clone();
        let mut outputs = Vec::new();
        for target in self
            .runner
            .targets(&self.spec.algorithm_id, &config.version)
        {
            let producer = sink.producer(&target).await;
            outputs.push((target, producer));
        }
        Setup {
            generation,
            runtime: config.runtime,
            ordering: config.ordering,
            concurrency: config.concurrency,
            batching: config.batching,
            // Only a queue takes a message back: a Kafka partition's
            // messages are retried in place.
            give_back: config.give_back && self.acks.reads_a_queue(),
            outage: self.outage.clone(),
            version: config.version.into(),
            dlq: config.dlq_topic.map(|topic| {
                Arc::new(Target {
                    connection_id: self.spec.connection_id.clone(),
                    topic,
                })
            }),
            outputs,
        }
    }

    /// The run step, inline. `None` when the lane was stopped during
    /// retries.
    async fn run(&self, setup: &Setup, message: OwnedMessage) -> Option<Ran> {
        run_step(
            self.runner.executor(),
            &self.retry,
            self.stop.clone(),
            &self.stats,
            setup,
            message,
        )
        .await
    }

    /// What a run step needs, owned, for a task of its own.
    fn for_a_task(&self) -> (Executor, RetryPolicy, watch::Receiver<bool>, Arc<Stats>) {
        (
            self.runner.executor().clone(),
            self.retry,
            self.stop.clone(),
            self.stats.clone(),
        )
    }

    /// The run step as a task of its own, for runs in flight at once.
    fn run_owned(
        &self,
        setup: Arc<Setup>,
        message: OwnedMessage,
    ) -> impl std::future::Future<Output = Running> + Send + 'static {
        let (executor, retry, stop, stats) = self.for_a_task();
        async move {
            let ran = run_step(&executor, &retry, stop, &stats, &setup, message).await?;
            Some((vec![ran], setup))
        }
    }

    /// The run step for a batch of messages, as a task of its own.
    fn run_batch_owned(
        &self,
        setup: Arc<Setup>,
        url: Arc<str>,
        messages: Vec<OwnedMessage>,
    ) -> impl std::future::Future<Output = Running> + Send + 'static {
        let (executor, retry, stop, stats) = self.for_a_task();
        async move {
            let ran =
                run_batch_step(&executor, &retry, stop, &stats, &setup, &url, messages).await?;
            Some((ran, setup))
        }
    }
}

/// The run step: runs the algorithm on a message, retrying transient
/// failures. `None` when `stop` turned true during retries.
async fn run_step(
    executor: &Executor,
    retry: &RetryPolicy,
    stop: watch::Receiver<bool>,
    stats: &Stats,
    setup: &Setup,
    message: OwnedMessage,
) -> Option<Ran> {
    // A run whose turn comes after the lane stopped does not start: it and
    // the runs after it stay unwritten, so the partition's next owner runs
    // them.
    if *stop.borrow() {
        return None;
    }
    let retry = setup.retry(retry);
    if !setup.back_off(&stop).await {
        return None;
    }
    stats.consumed.inc();
    let started = Instant::now();
    let ran = run_with_retries(&retry, stop, &ModelState(stats), || async {
        match message.payload() {
            None => Err(RunError::BadInput("the message has no value".into())),
            Some(input) => executor.run(&setup.runtime, input).await,
        }
    })
    .await?;
    setup.ran(&retry, &ran.result);
    Some(Ran {
        result: ran
            .result
            .map_err(|e| failure(&retry, &message, e, ran.attempts)),
        message,
        version: setup.version.clone(),
        dlq: setup.dlq.clone(),
        started,
        replay_of: None,
    })
}

/// Why a run failed: for good, or, in a flow that gives messages back, a
/// transient failure after which the message goes back to its queue, for
/// a pause that grows with its deliveries (or that the model asked for).
fn failure(retry: &RetryPolicy, message: &OwnedMessage, error: RunError, attempts: u32) -> Failure {
    match error {
        RunError::Transient(reason, retry_after) if retry.give_back => {
            let deliveries = super::letters::queued(message).map_or(1, |q| q.receive_count);
            let after = retry.delay(deliveries.max(1), retry_after);
            Failure::given_back(reason, attempts, after)
        }
        error => Failure::now(error.kind(), error.message().to_owned(), attempts),
    }
}

/// Adds to `queue` the partition's messages that arrive until it holds a
/// batch, waiting at most the batch wait (or until the lane stops).
async fn fill(
    queue: &mut VecDeque<OwnedMessage>,
    source: &mut Source,
    stop: &watch::Receiver<bool>,
    batching: Batching,
) {
    let size = batching.size as usize;
    queue.extend(source.ready());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(batching.wait_ms.into());
    let mut stop = stop.clone();
    while queue.len() < size {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = tokio::time::sleep_until(deadline) => break,
            more = source.next() => queue.extend(more),
        }
    }
}

/// The run step for a batch: inputs that are not JSON fail at once; the
/// rest go to the model in one request, retried as one while the model
/// fails transiently. When the model refuses the batch as bad input, it is
/// split in halves and each half runs on its own, down to single messages,
/// so that only the messages at fault fail. `None` when `stop` turned true
/// during retries. The results are in the messages' order.
async fn run_batch_step(
    executor: &Executor,
    retry: &RetryPolicy,
    stop: watch::Receiver<bool>,
    stats: &Stats,
    setup: &Setup,
    url: &str,
    messages: Vec<OwnedMessage>,
) -> Option<Vec<Ran>> {
    // As in run_step: no batch starts after the lane stopped.
    if *stop.borrow() {
        return None;
    }
    if !setup.back_off(&stop).await {
        return None;
    }
    let started = Instant::now();
    let mut results: Vec<Option<Result<Vec<u8>, Failure>>> = Vec::with_capacity(messages.len());
    let mut inputs = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        stats.consumed.inc();
        let input = match message.payload() {
            None => Err(RunError::BadInput("the message has no value".into())),
            Some(payload) => Executor::input(payload),
        };
        match input {
            Ok(value) => {
                results.push(None);
                inputs.push((i, value));
            }
            Err(e) => results.push(Some(Err(Failure::now(e.kind(), e.message().to_owned(), 1)))),
        }
    }
    // Parts still to run, the next one last.
    let mut parts = vec![inputs];
    let retry = setup.retry(retry);
    while let Some(mut part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let values: Vec<serde_json::Value> = part.iter().map(|(_, v)| v.clone()).collect();
        let ran = run_with_retries(&retry, stop.clone(), &ModelState(stats), || {
            executor.run_batch(url, &values)
        })
        .await?;
        setup.ran(&retry, &ran.result);
        match ran.result {
            Ok(outputs) => {
                for ((i, _), output) in part.iter().zip(outputs) {
                    results[*i] = Some(Ok(output));
                }
            }
            Err(RunError::BadInput(_)) if part.len() > 1 => {
                let second = part.split_off(part.len() / 2);
                parts.push(second);
                parts.push(part);
            }
            Err(error) => {
                for (i, _) in &part {
                    results[*i] = Some(Err(failure(
                        &retry,
                        &messages[*i],
                        error.clone(),
                        ran.attempts,
                    )));
                }
            }
        }
    }
    Some(
        messages
            .into_iter()
            .zip(results)
            .map(|(message, result)| Ran {
                message,
                version: setup.version.clone(),
                dlq: setup.dlq.clone(),
                started,
                result: result.unwrap_or_else(|| {
                    Err(Failure::now(
                        "bad-input",
                        "the message was not run".into(),
                        0,
                    ))
                }),
                replay_of: None,
            })
            .collect(),
    )
}

/// Writes to Kafka through the runner's shared producers, and to SQS
/// queues through the runner's SQS clients.
#[derive(Clone)]
pub(super) struct KafkaSink {
    pub runner: Runner,
}

/// The broker's answer to a record written to a target.
pub(super) struct KafkaDelivery {
    target: Arc<Target>,
    /// The producer it was sent through.
    producer: u64,
    delivery: DeliveryFuture,
}

impl std::future::Future for KafkaDelivery {
    type Output = Result<(), WriteError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.delivery)
            .poll(cx)
            .map(|answer| match answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => {
                    Err(WriteError::from_kafka(&self.target.topic, &error).through(self.producer))
                }
                Err(_) => Err(WriteError::Retryable(format!(
                    "writing to '{}' was cancelled",
                    self.target.topic
                ))),
            })
    }
}

/// What writes to one target: a Kafka producer, an SQS queue, or a
/// Service Bus queue or topic.
#[derive(Clone)]
pub(super) enum Producer {
    Kafka(FutureProducer),
    Sqs(Arc<super::sqs_flow::OutputQueue>),
    #[cfg(feature = "servicebus")]
    ServiceBus(Arc<super::servicebus_flow::OutputEntity>),
}

/// The broker's answer to one record.
pub(super) enum Delivery {
    Kafka(KafkaDelivery),
    Sqs(super::sqs_flow::Sent),
    #[cfg(feature = "servicebus")]
    ServiceBus(super::servicebus_flow::Sent),
}

impl std::future::Future for Delivery {
    type Output = Result<(), WriteError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Delivery::Kafka(delivery) => std::pin::Pin::new(delivery).poll(cx),
            Delivery::Sqs(sent) => std::pin::Pin::new(sent).poll(cx),
            #[cfg(feature = "servicebus")]
            Delivery::ServiceBus(sent) => std::pin::Pin::new(sent).poll(cx),
        }
    }
}

impl Sink for KafkaSink {
    type Producer = Producer;
    type Delivery = Delivery;

    async fn producer(&self, target: &Target) -> Result<Producer, WriteError> {
        let refused = |error: AppError| {
            let message = format!("writing to '{}' failed: {error}", target.topic);
            match error {
                AppError::NotFound { .. } => WriteError::Permanent(message),
                _ => WriteError::Retryable(message),
            }
        };
        if let Some(queue) = self.runner.output_queue(target).await.map_err(refused)? {
            return Ok(Producer::Sqs(queue));
        }
        #[cfg(feature = "servicebus")]
        if let Some(entity) = self.runner.output_entity(target).await.map_err(refused)? {
            return Ok(Producer::ServiceBus(entity));
        }
        self.runner
            .producer(&target.connection_id)
            .await
            .map(Producer::Kafka)
            .map_err(refused)
    }

    fn renew(&self, target: &Target, id: u64) {
        self.runner.renew_producer(&target.connection_id, id);
    }

    fn send(
        &self,
        producer: &Producer,
        target: &Arc<Target>,
        record: Record<'_>,
    ) -> Result<Delivery, WriteError> {
        let producer = match producer {
            Producer::Kafka(producer) => producer,
            Producer::Sqs(queue) => return queue.send(target, record).map(Delivery::Sqs),
            #[cfg(feature = "servicebus")]
            Producer::ServiceBus(entity) => {
                return entity.send(target, record).map(Delivery::ServiceBus);
            }
        };
        let mut kafka = FutureRecord::to(&target.topic)
            .payload(record.value)
            .headers(record.headers);
        if let Some(key) = record.key {
            kafka = kafka.key(key);
        }
        match producer.send_result(kafka) {
            Ok(delivery) => Ok(Delivery::Kafka(KafkaDelivery {
                target: target.clone(),
                producer: super::publish::producer_id(producer),
                delivery,
            })),
            Err((error, _)) => Err(WriteError::from_kafka(&target.topic, &error)
                .through(super::publish::producer_id(producer))),
        }
    }
}

/// Where a flow's progress goes: offsets stored in its Kafka consumer
/// (committed in the background), SQS messages deleted, or Service Bus
/// messages completed.
#[derive(Clone)]
pub(super) enum Acks {
    Kafka(Arc<StreamConsumer<FlowContext>>),
    Sqs(Arc<super::sqs_flow::InFlight>),
    #[cfg(feature = "servicebus")]
    ServiceBus(Arc<super::servicebus_flow::InFlight>),
}

impl Acks {
    /// Whether the flow reads a queue, whose messages are named by their
    /// message id rather than their position.
    fn reads_a_queue(&self) -> bool {
        !matches!(self, Acks::Kafka(_))
    }
}

/// Acknowledges what a lane finished.
struct ConsumerOffsets {
    acks: Acks,
    topic: String,
    flow: Arc<str>,
}

impl Offsets for ConsumerOffsets {
    fn store(&self, partition: i32, offset: i64) {
        match &self.acks {
            // librdkafka's rd_kafka_offset_store commits `offset + 1` itself.
            Acks::Kafka(consumer) => {
                if let Err(error) = consumer.store_offset(&self.topic, partition, offset) {
                    tracing::debug!(flow = %self.flow, %error, partition, offset, "offset not stored");
                }
            }
            Acks::Sqs(in_flight) => in_flight.finished(offset),
            #[cfg(feature = "servicebus")]
            Acks::ServiceBus(in_flight) => in_flight.finished(offset),
        }
    }

    fn give_back(&self, partition: i32, offset: i64, after: Duration) {
        match &self.acks {
            // Never asked (see `Setup::give_back`): a partition's offset
            // cannot pass a message by.
            Acks::Kafka(_) => {
                tracing::error!(flow = %self.flow, partition, offset,
                    "a Kafka message cannot be given back");
            }
            Acks::Sqs(in_flight) => in_flight.give_back(offset, after),
            #[cfg(feature = "servicebus")]
            Acks::ServiceBus(in_flight) => in_flight.give_back(offset, after),
        }
    }
}

/// Keeps failed messages in the database.
pub(super) struct DbKeeper {
    pub runner: Runner,
    pub flow: Arc<str>,
}

impl Keeper for DbKeeper {
    async fn keep(&self, failures: &[KeptFailure]) -> Result<(), String> {
        let (failures, flow) = (failures.to_vec(), self.flow.clone());
        self.runner
            .inner
            .db
            .interact(move |c| failures::keep(c, &flow, &failures))
            .await
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_makes_each_next_run_wait_longer_until_one_gets_through() {
        let (retry, outage) = (RetryPolicy::default(), Outage::default());
        assert_eq!(outage.pause(), Duration::ZERO);
        outage.ran(&retry, Some(None));
        assert_eq!(outage.pause(), Duration::from_millis(200));
        outage.ran(&retry, Some(None));
        assert_eq!(outage.pause(), Duration::from_millis(400));
        // The model's Retry-After is honoured.
        outage.ran(&retry, Some(Some(Duration::from_secs(5))));
        assert_eq!(outage.pause(), Duration::from_secs(5));
        outage.ran(&retry, None);
        assert_eq!(outage.pause(), Duration::ZERO);
        outage.ran(&retry, Some(None));
        assert_eq!(outage.pause(), Duration::from_millis(200), "counted anew");
    }
}
