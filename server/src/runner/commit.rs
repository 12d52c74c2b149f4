//! The commit step: records the outcome of each finished message, keeps
//! the failures that went to no dead-letter queue, and only then stores the
//! partition's offset (librdkafka commits stored offsets in the background).
//!
//! While failures cannot be kept, the offset waits: if the lane is stopped
//! first, nothing is stored and those messages run again later. The
//! consumer's offsets and the database are behind [`Offsets`] and
//! [`Keeper`]; tests use fakes.

use std::collections::VecDeque;
use std::sync::Arc;

use rdkafka::message::Message;
use tokio::sync::watch;

use app::domain::{FlowError, QueuedMessage, RunOutcome, RunRecord};

use super::Stats;
use super::headers;
use super::stats::KEEP_RUNS;
use super::writer::{FIRST_RESEND, Finished, MAX_RESEND, Next};
use crate::db::failures::Failure as KeptFailure;
use crate::db::now_ms;

/// Where a partition's progress is stored.
pub(super) trait Offsets {
    /// Stores `offset` as the last one processed on `partition`.
    fn store(&self, partition: i32, offset: i64);

    /// Gives the message at `offset` back to its queue, to be delivered
    /// again after `after`; a later [`Offsets::store`] leaves it there.
    /// Only a flow on a queue gives messages back.
    fn give_back(&self, partition: i32, offset: i64, after: std::time::Duration);
}

/// Where failed messages are kept.
pub(super) trait Keeper {
    async fn keep(&self, failures: &[KeptFailure]) -> Result<(), String>;
}

/// Messages finished since the last flush.
#[derive(Default)]
struct Done {
    /// The last finished offset.
    offset: Option<(i32, i64)>,
    failures: Vec<KeptFailure>,
    /// The newest runs, oldest first.
    runs: VecDeque<DoneRun>,
}

/// A run finished since the last flush, as the monitor will show it.
struct DoneRun {
    partition: i32,
    offset: i64,
    version: Arc<str>,
    outcome: RunOutcome,
    latency_ms: u64,
    queued: Option<QueuedMessage>,
}

/// The commit step of one partition. See the module's documentation.
pub(super) struct Commit<O, K> {
    offsets: O,
    keeper: K,
    flow: Arc<str>,
    stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
    done: Done,
    /// The messages come from an SQS queue, and are named by their SQS
    /// message (a topic's records may carry those headers too, from
    /// upstream).
    from_queue: bool,
}

impl<O: Offsets, K: Keeper> Next for Commit<O, K> {
    /// Records the outcome of a message whose writes are all settled.
    fn finished(&mut self, finished: Finished) {
        let stats = &self.stats;
        let message = &finished.message;
        let (partition, offset) = (message.partition(), message.offset());
        let queued = self
            .from_queue
            .then(|| super::letters::queued(message))
            .flatten();
        let outcome = match &finished.failure {
            Some(failure) if failure.given_back.is_some() => {
                let after = failure.given_back.unwrap_or_default();
                tracing::debug!(flow = %self.flow, partition, offset, ?after,
                    "{}; given back to the queue", failure.message);
                self.offsets.give_back(partition, offset, after);
                RunOutcome::GivenBack
            }
            None => {
                stats.succeeded.inc();
                RunOutcome::Succeeded
            }
            Some(failure) => {
                let dead_lettered = failure.dead_lettered;
                stats.record_error(FlowError {
                    at_ms: failure.at_ms,
                    partition,
                    offset,
                    kind: failure.kind.to_owned(),
                    message: failure.message.clone(),
                    dead_lettered,
                    queued: queued.clone(),
                });
                tracing::info!(flow = %self.flow, partition, offset, kind = failure.kind,
                    attempts = failure.attempts, dead_lettered, "{}", failure.message);
                if dead_lettered {
                    stats.dead_lettered.inc();
                    RunOutcome::DeadLettered
                } else {
                    let (value, value_bytes) = KeptFailure::value_kept(message.payload());
                    self.done.failures.push(KeptFailure {
                        at_ms: failure.at_ms,
                        partition,
                        offset,
                        version: finished.version.to_string(),
                        kind: failure.kind.to_owned(),
                        message: failure.message.clone(),
                        attempts: failure.attempts.min(i32::MAX as u32) as i32,
                        key: message.key().map(<[u8]>::to_vec),
                        value,
                        value_bytes,
                        headers: headers::as_json(message.headers()),
                    });
                    RunOutcome::Failed
                }
            }
        };
        let latency = finished.started.elapsed();
        stats.observe_latency(latency.as_secs_f64());
        let done = &mut self.done;
        done.offset = Some((partition, offset));
        if done.runs.len() == KEEP_RUNS {
            done.runs.pop_front();
        }
        done.runs.push_back(DoneRun {
            partition,
            offset,
            version: finished.version,
            outcome,
            latency_ms: latency.as_millis() as u64,
            queued,
        });
    }
}

impl<O: Offsets, K: Keeper> Commit<O, K> {
    pub fn new(
        offsets: O,
        keeper: K,
        flow: Arc<str>,
        stop: watch::Receiver<bool>,
        stats: Arc<Stats>,
    ) -> Self {
        Commit {
            offsets,
            keeper,
            flow,
            stop,
            stats,
            done: Done::default(),
            from_queue: false,
        }
    }

    /// For messages received from an SQS queue.
    pub fn reading_a_queue(mut self) -> Self {
        self.from_queue = true;
        self
    }

    /// Keeps the failures finished since the last flush, then stores the
    /// last finished offset and publishes the recent runs. While failures
    /// cannot be kept, retries with backoff; if the lane is stopped first,
    /// the offset is not stored.
    pub async fn flush(&mut self) {
        let mut backoff = FIRST_RESEND;
        while !self.done.failures.is_empty() {
            match self.keeper.keep(&self.done.failures).await {
                Ok(()) => {
                    self.done.failures.clear();
                    break;
                }
                Err(error) => {
                    tracing::warn!(flow = %self.flow, %error, "could not keep failed messages; retrying");
                    self.stats
                        .set_state(format!("cannot keep failed messages: {error}"));
                }
            }
            let mut stop = self.stop.clone();
            if *stop.borrow() {
                self.done.offset = None;
                return;
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => {
                    self.done.offset = None;
                    return;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_RESEND);
        }
        if let Some((partition, offset)) = self.done.offset.take() {
            self.offsets.store(partition, offset);
            self.stats.processed(partition, offset);
        }
        if !self.done.runs.is_empty() {
            let at_ms = now_ms();
            self.stats
                .record_runs(self.done.runs.drain(..).map(|run| RunRecord {
                    at_ms,
                    partition: run.partition,
                    offset: run.offset,
                    version: run.version.to_string(),
                    outcome: run.outcome,
                    latency_ms: run.latency_ms,
                    queued: run.queued,
                }));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::super::writer::Failure;
    use super::*;

    /// What the fakes saw, in order.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Log {
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Offsets for Log {
        fn store(&self, partition: i32, offset: i64) {
            self.push(format!("store {partition}/{offset}"));
        }

        fn give_back(&self, partition: i32, offset: i64, after: Duration) {
            self.push(format!("give back {partition}/{offset} after {after:?}"));
        }
    }

    /// Fails its first `failing` calls.
    struct FakeKeeper {
        log: Log,
        failing: Mutex<usize>,
    }

    impl Keeper for FakeKeeper {
        async fn keep(&self, failures: &[KeptFailure]) -> Result<(), String> {
            let mut failing = self.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                self.log.push("keep refused".into());
                return Err("database is down".into());
            }
            let offsets: Vec<String> = failures.iter().map(|f| f.offset.to_string()).collect();
            self.log.push(format!("keep {}", offsets.join(",")));
            Ok(())
        }
    }

    fn commit(failing: usize) -> (Commit<Log, FakeKeeper>, Log, watch::Sender<bool>) {
        let log = Log::default();
        let (stop, stopped) = watch::channel(false);
        let keeper = FakeKeeper {
            log: log.clone(),
            failing: Mutex::new(failing),
        };
        let commit = Commit::new(
            log.clone(),
            keeper,
            "flow".into(),
            stopped,
            Arc::new(Stats::default()),
        );
        (commit, log, stop)
    }

    fn finished(offset: i64, failure: Option<(&'static str, bool)>) -> Finished {
        Finished {
            message: OwnedMessage::new(
                Some(format!("value {offset}").into_bytes()),
                None,
                "in".into(),
                Timestamp::NotAvailable,
                2,
                offset,
                None,
            ),
            version: "1.0.0".into(),
            started: Instant::now(),
            failure: failure.map(|(kind, dead_lettered)| Failure {
                dead_lettered,
                ..Failure::now(kind, format!("{kind} at {offset}"), 3)
            }),
        }
    }

    #[tokio::test]
    async fn only_a_queues_messages_are_named_by_their_sqs_message() {
        let from_sqs = |offset: i64| {
            let mut done = finished(offset, None);
            let own = rdkafka::message::OwnedHeaders::new()
                .insert(rdkafka::message::Header {
                    key: headers::SQS_MESSAGE_ID,
                    value: Some("m-1"),
                })
                .insert(rdkafka::message::Header {
                    key: headers::SQS_RECEIVE_COUNT,
                    value: Some("2"),
                });
            done.message = OwnedMessage::new(
                None,
                None,
                "in".into(),
                Timestamp::NotAvailable,
                0,
                offset,
                Some(own),
            );
            done
        };
        // A topic's record carrying the headers of an upstream SQS message.
        let (mut topic, _, _stop) = commit(0);
        topic.finished(from_sqs(0));
        topic.flush().await;
        let runs = topic.stats.snapshot().recent_runs;
        assert_eq!(runs[0].queued, None);
        let (queue, _, _stop) = commit(0);
        let mut queue = queue.reading_a_queue();
        queue.finished(from_sqs(0));
        queue.flush().await;
        let runs = queue.stats.snapshot().recent_runs;
        assert_eq!(
            runs[0].queued,
            Some(QueuedMessage {
                id: "m-1".into(),
                receive_count: 2
            })
        );
    }

    #[tokio::test]
    async fn the_last_offset_is_stored_once_the_failures_are_kept() {
        let (mut commit, log, _stop) = commit(0);
        commit.finished(finished(10, None));
        commit.finished(finished(11, Some(("bad-input", false))));
        commit.finished(finished(12, Some(("bad-input", true))));
        commit.finished(finished(13, None));
        commit.flush().await;
        assert_eq!(log.lines(), vec!["keep 11", "store 2/13"]);
        let stats = commit.stats.snapshot();
        assert_eq!((stats.succeeded, stats.dead_lettered), (2, 1));
        let runs = &stats.recent_runs;
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[0].offset, 13, "newest first");
        assert_eq!(runs[1].outcome, RunOutcome::DeadLettered);
        assert_eq!(runs[2].outcome, RunOutcome::Failed);
        assert_eq!(stats.last_errors.len(), 2);
        // Nothing new: nothing stored again.
        commit.flush().await;
        assert_eq!(log.lines().len(), 2);
    }

    #[tokio::test]
    async fn a_message_given_back_is_neither_failed_nor_kept() {
        let (mut commit, log, _stop) = commit(0);
        commit.finished(finished(20, None));
        let mut back = finished(21, None);
        back.failure = Some(Failure::given_back(
            "the model server failed (503)".into(),
            1,
            Duration::from_secs(2),
        ));
        commit.finished(back);
        commit.finished(finished(22, None));
        commit.flush().await;
        // Given back at once; the later store leaves it to its queue.
        assert_eq!(log.lines(), vec!["give back 2/21 after 2s", "store 2/22"]);
        let stats = commit.stats.snapshot();
        assert_eq!((stats.succeeded, stats.failed), (2, 0));
        assert!(stats.last_errors.is_empty(), "{:?}", stats.last_errors);
        assert_eq!(stats.recent_runs[1].outcome, RunOutcome::GivenBack);
    }

    #[tokio::test(start_paused = true)]
    async fn the_offset_waits_while_failures_cannot_be_kept() {
        let (mut commit, log, _stop) = commit(3);
        commit.finished(finished(5, Some(("crashed", false))));
        commit.flush().await;
        assert_eq!(
            log.lines(),
            vec![
                "keep refused",
                "keep refused",
                "keep refused",
                "keep 5",
                "store 2/5"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_stopped_before_its_failures_are_kept_stores_nothing() {
        let (mut commit, log, stop) = commit(usize::MAX);
        commit.finished(finished(5, Some(("crashed", false))));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.send(true).unwrap();
        });
        commit.flush().await;
        let lines = log.lines();
        assert!(lines.len() > 3, "{lines:?}");
        assert!(lines.iter().all(|l| l == "keep refused"), "{lines:?}");
        assert!(
            commit
                .stats
                .snapshot()
                .state
                .starts_with("cannot keep failed messages: database is down")
        );
    }
}
