//! Replays of dead letters. Each replayed letter runs like a new message,
//! through the runner's own steps: run (with its retry policy) → write
//! (outputs with the original key and headers plus `eventflows-replay-of`,
//! or a new dead letter with the attempts carried on) → record. A replay's
//! letters and their outcomes are in the database ([`crate::db::replays`]),
//! recorded after their writes are acknowledged, so a replay interrupted
//! by a restart goes on with what was not done (at least once: letters
//! written but not yet recorded when the process died run again).

use std::collections::{HashMap, VecDeque};

use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::Timestamp;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use tokio::sync::watch;

use app::domain::{
    AppError, DeadLetterQuery, Direction, MAX_REPLAY_LETTERS, ReplayProgress, Runtime,
};

use super::commit::{Commit, Offsets};
use super::lane::{DbKeeper, KafkaSink};
use super::letters::{self, LetterId, TopicReader};
use super::retry::{RetryObserver, run_with_retries};
use super::sqs_flow::Peeked;
use super::writer::{Failure, Finished, Next, Ran, Sink, Writer};
use super::{RunError, Runner, Stats, Target};
use crate::db::flows::FlowRow;
use crate::db::replays::{self, LetterOutcome};
use crate::db::{failures, now_ms};

/// Letters run per step of a replay; their outcomes are recorded together.
const CHUNK: i64 = 100;
/// Letters of a step that run at once.
const RUNS_AT_ONCE: usize = 16;
/// Replays a flow's monitor shows.
const SHOWN_REPLAYS: i64 = 5;
/// The most messages read from an SQS Dead Letter Queue to list or find
/// a flow's letters: SQS cannot be read at a position, only received.
const PEEKED_LETTERS: usize = 200;

/// The flow a replay runs through, as it is now.
pub(super) struct Flow {
    pub row: FlowRow,
    /// `org/name`.
    pub algorithm: String,
}

impl Runner {
    /// This instance's name for holding replays.
    fn owner(&self) -> String {
        self.inner
            .instance
            .get()
            .cloned()
            .unwrap_or_else(|| self.inner.anonymous.clone())
    }

    pub(super) async fn replay_flow(&self, flow_id: &str) -> Result<Flow, AppError> {
        let id = flow_id.to_owned();
        let found = self
            .inner
            .db
            .interact(move |c| {
                let Some(row) = crate::db::flows::find_flow(c, &id)? else {
                    return Ok(None);
                };
                let algorithm = crate::db::algorithms::path(c, &row.algorithm_id)?;
                Ok(Some(Flow { row, algorithm }))
            })
            .await?;
        found.ok_or_else(|| AppError::not_found("The flow"))
    }

    /// The runtime of a version of the flow's algorithm.
    pub(super) async fn runtime_of(
        &self,
        algorithm_id: &str,
        version: &str,
    ) -> Result<Runtime, AppError> {
        let (id, v) = (algorithm_id.to_owned(), version.to_owned());
        let versions = self
            .inner
            .db
            .interact(move |c| crate::db::algorithms::versions(c, &[id]))
            .await?;
        let runtime = versions
            .into_iter()
            .find(|row| row.version == v)
            .map(|row| row.runtime)
            .ok_or_else(|| {
                AppError::validation("version", format!("Version {version} does not exist."))
            })?;
        Runtime::parse(&runtime).map_err(|_| {
            AppError::validation("version", format!("Version {version} cannot be run."))
        })
    }

    /// A reader of the flow's Dead Letter Queue topic.
    pub(super) async fn topic_reader(
        &self,
        flow: &FlowRow,
        topic: &str,
    ) -> Result<TopicReader, AppError> {
        let settings = self.settings(&flow.connection_id).await?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || TopicReader::new(&settings, &topic))
            .await
            .map_err(|_| AppError::Internal)?
    }

    /// A page of the flow's dead letters, newest first: the records on its
    /// Dead Letter Queue that came from it, or the failures it keeps.
    pub async fn dead_letters(
        &self,
        flow_id: &str,
        query: DeadLetterQuery,
    ) -> Result<app::domain::DeadLetterPage, AppError> {
        let flow = self.replay_flow(flow_id).await?;
        let limit = app::domain::DEAD_LETTERS_PER_PAGE as usize;
        // The failures it keeps are listed when it has no Dead Letter
        // Queue, or when they are asked for.
        let dlq = flow.row.dlq_topic.clone().filter(|_| !query.kept);
        let queued = match &dlq {
            Some(topic) => self.queued_letters(&flow, topic).await?,
            None => None,
        };
        let mut page = match (dlq, queued) {
            (Some(topic), Some(queued)) => {
                let skip = skip_of(query.cursor.as_deref(), "queued:")?;
                let matching: Vec<_> = queued
                    .letters
                    .iter()
                    .filter(|p| letters::record_matches(&p.record, &query))
                    .collect();
                app::domain::DeadLetterPage {
                    dlq_topic: Some(topic),
                    letters: matching
                        .iter()
                        .skip(skip)
                        .take(limit)
                        .map(|p| letters::from_peeked(p))
                        .collect(),
                    next: (matching.len() > skip + limit)
                        .then(|| format!("queued:{}", skip + limit)),
                    kept_besides: 0,
                    read_first: queued.partial.then_some(PEEKED_LETTERS as u32),
                    kept: false,
                }
            }
            (Some(topic), None) => {
                let reader = self.topic_reader(&flow.row, &topic).await?;
                let (algorithm, source) = (flow.algorithm.clone(), flow.row.topic.clone());
                let filter = query.clone();
                let (records, next) = tokio::task::spawn_blocking(move || {
                    reader.page(
                        |m| {
                            letters::is_from(m, &algorithm, &source)
                                && letters::record_matches(m, &filter)
                        },
                        filter.cursor.as_deref(),
                        limit,
                    )
                })
                .await
                .map_err(|_| AppError::Internal)??;
                app::domain::DeadLetterPage {
                    dlq_topic: Some(topic),
                    letters: records.iter().map(letters::from_record).collect(),
                    next,
                    kept_besides: 0,
                    read_first: None,
                    kept: false,
                }
            }
            (None, _) => {
                let skip = skip_of(query.cursor.as_deref(), "kept:")?;
                let id = flow_id.to_owned();
                let filter = query.clone();
                let (rows, more) = self
                    .inner
                    .db
                    .interact(move |c| {
                        let ids: Vec<String> = failures::summaries(c, &id)?
                            .into_iter()
                            .filter(|(_, kind, version, message)| {
                                filter.matches(kind, version, message)
                            })
                            .map(|(id, ..)| id)
                            .skip(skip)
                            .take(limit + 1)
                            .collect();
                        let more = ids.len() > limit;
                        let wanted: Vec<String> = ids.into_iter().take(limit).collect();
                        let mut rows = failures::find(c, &id, &wanted)?;
                        rows.sort_by_key(|(id, _)| wanted.iter().position(|w| w == id));
                        Ok((rows, more))
                    })
                    .await?;
                app::domain::DeadLetterPage {
                    dlq_topic: None,
                    letters: rows
                        .into_iter()
                        .map(|(id, row)| letters::from_kept(&id, row))
                        .collect(),
                    next: more.then(|| format!("kept:{}", skip + limit)),
                    kept_besides: 0,
                    read_first: None,
                    kept: false,
                }
            }
        };
        if flow.row.dlq_topic.is_some() {
            if query.kept {
                page.kept = true;
            } else {
                let id = flow_id.to_owned();
                page.kept_besides = self
                    .inner
                    .db
                    .interact(move |c| failures::count(c, &id))
                    .await?
                    .max(0) as u64;
            }
        }
        // How the newest replay of each went.
        let ids: Vec<String> = page.letters.iter().map(|l| l.id.clone()).collect();
        let id = flow_id.to_owned();
        let marks = self
            .inner
            .db
            .interact(move |c| replays::marks(c, &id, &ids))
            .await?;
        for letter in &mut page.letters {
            letter.replayed = marks.get(&letter.id).map(|outcome| {
                match outcome {
                    LetterOutcome::Pending => "being replayed",
                    LetterOutcome::Succeeded => "replayed, succeeded",
                    LetterOutcome::Failed => "replayed, failed again",
                }
                .to_owned()
            });
        }
        Ok(page)
    }

    /// The flow's letters on its Dead Letter Queue, newest first, when
    /// that is an SQS queue (read without being taken); `None` for a topic.
    async fn queued_letters(&self, flow: &Flow, queue: &str) -> Result<Option<Queued>, AppError> {
        let target = Target {
            connection_id: flow.row.connection_id.clone(),
            topic: queue.to_owned(),
        };
        // One more than is listed tells whether there are more.
        let mut peeked = match self.output_queue(&target).await? {
            Some(output) => output.peek(queue, PEEKED_LETTERS + 1).await?,
            None => match self.peek_entity(&target, PEEKED_LETTERS + 1).await? {
                Some(peeked) => peeked,
                None => return Ok(None),
            },
        };
        let partial = peeked.len() > PEEKED_LETTERS;
        peeked.truncate(PEEKED_LETTERS);
        let mut queued: Vec<Peeked> = peeked
            .into_iter()
            .filter(|p| letters::is_from(&p.record, &flow.algorithm, &flow.row.topic))
            .collect();
        let failed_at = |p: &Peeked| {
            letters::header(&p.record, super::headers::FAILED_AT)
                .and_then(|at| at.parse::<i64>().ok())
                .unwrap_or(0)
        };
        queued.sort_by_key(|p| std::cmp::Reverse(failed_at(p)));
        Ok(Some(Queued {
            letters: queued,
            partial,
        }))
    }

    /// Starts a replay of the flow's dead letters (by id, or every one that
    /// matches a filter) through `version`; its id. Refused while one of
    /// them is still being replayed.
    pub async fn start_replay(
        &self,
        flow_id: &str,
        version: Option<&str>,
        chosen: &[String],
        matching: Option<DeadLetterQuery>,
        by: &str,
    ) -> Result<String, AppError> {
        let flow = self.replay_flow(flow_id).await?;
        if flow.row.direction != Direction::Subscribe {
            return Err(AppError::validation(
                "flow_id",
                "Only a subscribe flow has dead letters to replay.",
            ));
        }
        let version = version.unwrap_or(&flow.row.version).to_owned();
        self.runtime_of(&flow.row.algorithm_id, &version).await?;
        let letters: Vec<String> = match matching {
            Some(query) => self.matching_letters(&flow, query).await?,
            None => {
                if chosen.len() > MAX_REPLAY_LETTERS {
                    return Err(AppError::validation(
                        "letters",
                        format!("A replay takes at most {MAX_REPLAY_LETTERS} dead letters."),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                let mut letters = Vec::with_capacity(chosen.len());
                for text in chosen {
                    let id = LetterId::parse(text).ok_or_else(|| {
                        AppError::validation("letters", format!("'{text}' is not a dead letter."))
                    })?;
                    if let LetterId::Record { topic, .. } | LetterId::Queued { queue: topic, .. } =
                        &id
                        && flow.row.dlq_topic.as_deref() != Some(topic.as_str())
                    {
                        return Err(AppError::validation(
                            "letters",
                            format!("'{text}' is not on this flow's Dead Letter Queue."),
                        ));
                    }
                    if seen.insert(id.to_string()) {
                        letters.push(id.to_string());
                    }
                }
                letters
            }
        };
        if letters.is_empty() {
            return Err(AppError::validation(
                "letters",
                "No dead letters were chosen to replay.",
            ));
        }
        let (id, v, who, count) = (
            flow_id.to_owned(),
            version.clone(),
            by.to_owned(),
            letters.len(),
        );
        let created = self
            .inner
            .db
            .interact(move |c| replays::create(c, &id, &v, &who, &letters, now_ms()))
            .await?;
        let replay = match created {
            Ok(replay) => replay,
            Err(replays::Refused::Busy(n)) => {
                return Err(AppError::conflict(format!(
                    "{n} of these dead letters are being replayed already; wait for that replay to finish."
                )));
            }
        };
        tracing::info!(flow = flow_id, replay = %replay, version = %version, letters = count, user = by, "replay started");
        self.resume_replays().await;
        Ok(replay)
    }

    /// The ids of every dead letter of the flow that matches `query`.
    async fn matching_letters(
        &self,
        flow: &Flow,
        query: DeadLetterQuery,
    ) -> Result<Vec<String>, AppError> {
        let too_many = || {
            AppError::validation(
                "letters",
                format!("More than {MAX_REPLAY_LETTERS} dead letters match; narrow the filter."),
            )
        };
        let dlq = flow.row.dlq_topic.clone().filter(|_| !query.kept);
        let queued = match &dlq {
            Some(topic) => self.queued_letters(flow, topic).await?,
            None => None,
        };
        let ids: Vec<String> = match (dlq, queued) {
            (Some(_), Some(queued)) => queued
                .letters
                .iter()
                .filter(|p| letters::record_matches(&p.record, &query))
                .map(|p| letters::from_peeked(p).id)
                .collect(),
            (Some(topic), None) => {
                let reader = self.topic_reader(&flow.row, &topic).await?;
                let (algorithm, source) = (flow.algorithm.clone(), flow.row.topic.clone());
                let records = tokio::task::spawn_blocking(move || {
                    reader.all(
                        |m| {
                            letters::is_from(m, &algorithm, &source)
                                && letters::record_matches(m, &query)
                        },
                        MAX_REPLAY_LETTERS,
                    )
                })
                .await
                .map_err(|_| AppError::Internal)??;
                records
                    .iter()
                    .map(|m| {
                        LetterId::Record {
                            topic: topic.clone(),
                            partition: m.partition(),
                            offset: m.offset(),
                        }
                        .to_string()
                    })
                    .collect()
            }
            (None, _) => {
                let id = flow.row.id.clone();
                self.inner
                    .db
                    .interact(move |c| failures::summaries(c, &id))
                    .await?
                    .into_iter()
                    .filter(|(_, kind, version, message)| query.matches(kind, version, message))
                    .map(|(id, ..)| LetterId::Kept(id).to_string())
                    .collect()
            }
        };
        if ids.len() > MAX_REPLAY_LETTERS {
            return Err(too_many());
        }
        // Oldest first, as they failed.
        Ok(ids.into_iter().rev().collect())
    }

    /// Runs the replays this instance holds, taking over those whose holder
    /// went away; each runs as a task of its own until it is done.
    pub async fn resume_replays(&self) {
        if *self.inner.replay_stop.borrow() {
            return;
        }
        let owner = self.owner();
        let held = match self
            .inner
            .db
            .interact(move |c| replays::claim(c, &owner, now_ms()))
            .await
        {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "could not read the replays");
                return;
            }
        };
        let mut tasks = self.inner.replays.lock().await;
        tasks.retain(|_, task| !task.is_finished());
        if *self.inner.replay_stop.borrow() {
            return;
        }
        for replay in held {
            if tasks.contains_key(&replay.id) {
                continue;
            }
            let runner = self.clone();
            let id = replay.id.clone();
            let stop = self.inner.replay_stop.subscribe();
            tasks.insert(
                id,
                tokio::spawn(async move { runner.drive(replay, stop).await }),
            );
        }
    }

    /// Stops the replays running here; their letters not yet recorded are
    /// replayed by whichever instance takes them next.
    pub(crate) async fn stop_replays(&self) {
        let _ = self.inner.replay_stop.send(true);
        let tasks: Vec<_> = self
            .inner
            .replays
            .lock()
            .await
            .drain()
            .map(|(_, t)| t)
            .collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(super::CLOSE_TIMEOUT, all)
            .await
            .is_err()
        {
            tracing::warn!("a replay did not stop in time");
        }
    }

    /// A flow's newest replays with their progress.
    pub(crate) async fn replay_progress(&self, flow_id: &str) -> Vec<ReplayProgress> {
        let id = flow_id.to_owned();
        match self
            .inner
            .db
            .interact(move |c| replays::progress(c, &id, SHOWN_REPLAYS))
            .await
        {
            Ok(rows) => rows
                .into_iter()
                .map(|(row, succeeded, failed, left)| ReplayProgress {
                    id: row.id,
                    version: row.version,
                    by: row.created_by,
                    at: super::clock(row.created_at_ms),
                    state: row.state,
                    message: row.message,
                    succeeded: succeeded.max(0) as u64,
                    failed: failed.max(0) as u64,
                    left: left.max(0) as u64,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(flow = flow_id, %error, "could not read the replays");
                Vec::new()
            }
        }
    }

    /// Runs a replay to its end, a chunk of letters at a time.
    async fn drive(&self, replay: replays::ReplayRow, stop: watch::Receiver<bool>) {
        let owner = self.owner();
        loop {
            if *stop.borrow() {
                return;
            }
            let id = replay.id.clone();
            let next = match self
                .inner
                .db
                .interact(move |c| replays::pending(c, &id, CHUNK))
                .await
            {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(replay = %replay.id, %error, "could not read the replay's letters");
                    return;
                }
            };
            let (state, message) = if next.is_empty() {
                ("done", None)
            } else {
                match self.replay_chunk(&replay, &owner, next, stop.clone()).await {
                    Ok(true) => continue,
                    // Stopped, or taken over by another instance.
                    Ok(false) => return,
                    Err(error) => ("stopped", Some(error.to_string())),
                }
            };
            let id = replay.id.clone();
            let why = message.clone();
            if let Err(error) = self
                .inner
                .db
                .interact(move |c| replays::finish(c, &id, state, why.as_deref(), now_ms()))
                .await
            {
                tracing::warn!(replay = %replay.id, %error, "could not finish the replay");
            }
            tracing::info!(replay = %replay.id, flow = %replay.flow_id, state, message, "replay ended");
            return;
        }
    }

    /// Replays one chunk of letters and records how each ended. False when
    /// stopped, or when another instance holds the replay now.
    async fn replay_chunk(
        &self,
        replay: &replays::ReplayRow,
        owner: &str,
        next: Vec<(i32, String)>,
        stop: watch::Receiver<bool>,
    ) -> Result<bool, AppError> {
        let flow = self.replay_flow(&replay.flow_id).await?;
        let runtime = self
            .runtime_of(&flow.row.algorithm_id, &replay.version)
            .await?;
        let step_started = Instant::now();
        let found = self.find_letters(&flow, &next).await?;
        let read_ms = step_started.elapsed().as_millis() as u64;
        let sink = KafkaSink {
            runner: self.clone(),
        };
        let version: Arc<str> = replay.version.as_str().into();
        let dlq = flow.row.dlq_topic.clone().map(|topic| {
            Arc::new(Target {
                connection_id: flow.row.connection_id.clone(),
                topic,
            })
        });
        let mut outputs = Vec::new();
        for target in self.replay_targets(&flow.row.algorithm_id, &replay.version) {
            let producer = sink.producer(&target).await;
            outputs.push((target, producer));
        }
        let flow_id: Arc<str> = flow.row.id.as_str().into();
        // A replay's counters are its own: the flow's show its stream.
        let stats = Arc::new(Stats::default());
        let mut writer = Writer::new(
            sink,
            flow.algorithm.as_str().into(),
            flow_id.clone(),
            stop.clone(),
            stats.clone(),
        );
        let mut record = Record {
            seqs: VecDeque::new(),
            outcomes: Vec::new(),
            commit: Commit::new(
                NoOffsets,
                DbKeeper {
                    runner: self.clone(),
                    flow: flow_id.clone(),
                },
                flow_id,
                stop.clone(),
                stats,
            ),
        };
        let retry = self.retry_policy();
        let executor = self.executor().clone();
        // The letters that can run, in order; the others count as failed.
        let mut runnable = Vec::new();
        for (seq, letter) in next {
            match found.get(&letter) {
                None => {
                    tracing::warn!(replay = %replay.id, letter, "a dead letter was not found");
                    record.outcomes.push((seq, LetterOutcome::Failed));
                }
                Some(Err(why)) => {
                    tracing::warn!(replay = %replay.id, letter, why, "a dead letter cannot be replayed");
                    record.outcomes.push((seq, LetterOutcome::Failed));
                }
                Some(Ok((message, prior, replay_of))) => {
                    runnable.push((seq, message.clone(), *prior, replay_of.clone()));
                }
            }
        }
        // Up to RUNS_AT_ONCE run at once (model servers take many calls);
        // they are written in order.
        let runtime = &runtime;
        let runs = runnable
            .into_iter()
            .map(|(seq, message, prior, replay_of)| {
                let (retry, stop, executor) = (retry, stop.clone(), executor.clone());
                async move {
                    let started = Instant::now();
                    let ran = run_with_retries(&retry, stop, &Quiet, || async {
                        match message.payload() {
                            None => Err(RunError::BadInput("the message has no value".into())),
                            Some(input) => executor.run(runtime, input).await,
                        }
                    })
                    .await;
                    (seq, message, prior, replay_of, started, ran)
                }
            });
        let mut runs = futures::stream::iter(runs).buffered(RUNS_AT_ONCE);
        // Stopped during a run's retries: what was written is still settled
        // and recorded. Stopped while a write kept failing: nothing more is.
        let (mut stopped, mut write_stopped) = (false, false);
        while let Some((seq, message, prior, replay_of, started, ran)) = runs.next().await {
            let Some(ran) = ran else {
                stopped = true;
                break;
            };
            let attempts = prior.saturating_add(ran.attempts);
            record.seqs.push_back(seq);
            let ran = Ran {
                message,
                version: version.clone(),
                dlq: dlq.clone(),
                started,
                result: ran
                    .result
                    .map_err(|e| Failure::now(e.kind(), e.message().to_owned(), attempts)),
                replay_of: Some(replay_of),
            };
            if !writer.submit(ran, &outputs, &mut record).await {
                write_stopped = true;
                break;
            }
        }
        drop(runs);
        if !write_stopped && !writer.join(&mut record).await {
            write_stopped = true;
        }
        let stopped = stopped || write_stopped;
        record.commit.flush().await;
        let outcomes = std::mem::take(&mut record.outcomes);
        let counts: Vec<LetterOutcome> = outcomes.iter().map(|(_, o)| *o).collect();
        let (id, owner) = (replay.id.clone(), owner.to_owned());
        let held = self
            .inner
            .db
            .interact(move |c| replays::record(c, &id, &owner, &outcomes, now_ms()))
            .await?;
        tracing::info!(replay = %replay.id, letters = counts.len(), held, stopped, read_ms,
            ms = step_started.elapsed().as_millis() as u64, "replay step recorded");
        if held {
            for outcome in counts {
                self.inner
                    .metrics
                    .replayed
                    .get_or_create(&super::metrics::ReplayLabels {
                        flow: replay.flow_id.clone(),
                        outcome: outcome.as_str().to_owned(),
                    })
                    .inc();
            }
        }
        Ok(held && !stopped)
    }

    /// The chunk's letters, each as the message to run again with the
    /// attempts it had and the `eventflows-replay-of` value; or why it
    /// cannot be replayed.
    pub(super) async fn find_letters(
        &self,
        flow: &Flow,
        next: &[(i32, String)],
    ) -> Result<HashMap<String, Result<(OwnedMessage, u32, Arc<str>), String>>, AppError> {
        let mut found = HashMap::new();
        let mut records: HashMap<String, Vec<(i32, i64, String)>> = HashMap::new();
        let mut kept = Vec::new();
        let mut queued: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let dlq = flow.row.dlq_topic.as_deref();
        for (_, text) in next {
            match LetterId::parse(text) {
                // Only the flow's own Dead Letter Queue is read.
                Some(LetterId::Queued { queue: topic, .. } | LetterId::Record { topic, .. })
                    if dlq != Some(topic.as_str()) =>
                {
                    found.insert(
                        text.clone(),
                        Err("not on this flow's Dead Letter Queue".to_owned()),
                    );
                }
                Some(LetterId::Queued { queue, message_id }) => queued
                    .entry(queue)
                    .or_default()
                    .push((message_id, text.clone())),
                Some(LetterId::Record {
                    topic,
                    partition,
                    offset,
                }) => records
                    .entry(topic)
                    .or_default()
                    .push((partition, offset, text.clone())),
                Some(LetterId::Kept(id)) => kept.push((id, text.clone())),
                None => {
                    found.insert(text.clone(), Err("not a dead letter".to_owned()));
                }
            }
        }
        for (topic, wanted) in records {
            let reader = self.topic_reader(&flow.row, &topic).await?;
            let positions: Vec<(i32, i64)> = wanted.iter().map(|(p, o, _)| (*p, *o)).collect();
            let read = tokio::task::spawn_blocking(move || reader.fetch(&positions))
                .await
                .map_err(|_| AppError::Internal)??;
            for (partition, offset, text) in wanted {
                let letter = match read.get(&(partition, offset)) {
                    None => Err("no longer on the Dead Letter Queue".to_owned()),
                    Some(record) if !letters::is_from(record, &flow.algorithm, &flow.row.topic) => {
                        Err("not a dead letter of this flow".to_owned())
                    }
                    Some(record) => message_of_record(
                        record,
                        format!("{topic}/{}/{}", record.partition(), record.offset()).into(),
                    ),
                };
                found.insert(text, letter);
            }
        }
        for (queue, wanted) in queued {
            let on_queue = self
                .queued_letters(flow, &queue)
                .await?
                .map(|q| q.letters)
                .unwrap_or_default();
            for (message_id, text) in wanted {
                let letter = match on_queue.iter().find(|p| p.message_id == message_id) {
                    None => Err(format!(
                        "not among the first {PEEKED_LETTERS} messages read from the Dead Letter Queue (no longer there, or further down)"
                    )),
                    Some(peeked) => {
                        message_of_record(&peeked.record, format!("{queue}/{message_id}").into())
                    }
                };
                found.insert(text, letter);
            }
        }
        if !kept.is_empty() {
            let (id, ids) = (
                flow.row.id.clone(),
                kept.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
            );
            let rows: HashMap<String, failures::Failure> = self
                .inner
                .db
                .interact(move |c| failures::find(c, &id, &ids))
                .await?
                .into_iter()
                .collect();
            for (id, text) in kept {
                let letter = match rows.get(&id) {
                    None => Err("no longer kept".to_owned()),
                    Some(row) => message_of_kept(row, &flow.row.topic, &id),
                };
                found.insert(text, letter);
            }
        }
        Ok(found)
    }
}

/// A Dead Letter Queue record as the message it was: its key, value and
/// own headers, at its source position, with the attempts it had; it is a
/// replay of `replay_of`.
fn message_of_record(
    record: &OwnedMessage,
    replay_of: Arc<str>,
) -> Result<(OwnedMessage, u32, Arc<str>), String> {
    if letters::header(record, super::headers::VALUE_TRUNCATED).is_some() {
        return Err("its value was cut to fit the Dead Letter Queue".into());
    }
    let number = |name| letters::header(record, name).and_then(|v| v.parse::<i64>().ok());
    let source = letters::header(record, super::headers::SOURCE_TOPIC).unwrap_or_default();
    let mut headers = OwnedHeaders::new();
    if let Some(own) = record.headers() {
        for h in own
            .iter()
            .filter(|h| !h.key.starts_with(super::headers::PREFIX))
        {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let message = OwnedMessage::new(
        record.payload().map(<[u8]>::to_vec),
        record.key().map(<[u8]>::to_vec),
        source.to_owned(),
        Timestamp::now(),
        number(super::headers::SOURCE_PARTITION).unwrap_or(-1) as i32,
        number(super::headers::SOURCE_OFFSET).unwrap_or(-1),
        Some(headers.insert(Header {
            key: super::headers::REPLAY_OF,
            value: Some(replay_of.as_bytes()),
        })),
    );
    let attempts = number(super::headers::ATTEMPTS)
        .unwrap_or(0)
        .clamp(0, u32::MAX as i64) as u32;
    Ok((message, attempts, replay_of))
}

/// A kept failure as the message it was.
fn message_of_kept(
    row: &failures::Failure,
    topic: &str,
    id: &str,
) -> Result<(OwnedMessage, u32, Arc<str>), String> {
    let kept = row.value.as_ref().map_or(0, Vec::len) as i64;
    if kept < row.value_bytes {
        return Err("only the start of its value was kept".into());
    }
    let replay_of: Arc<str> = format!("kept/{id}").into();
    let pairs: Vec<(String, String)> = serde_json::from_str(&row.headers).unwrap_or_default();
    let mut headers = OwnedHeaders::new();
    for (key, value) in pairs
        .iter()
        .filter(|(k, _)| !k.starts_with(super::headers::PREFIX))
    {
        headers = headers.insert(Header {
            key: key.as_str(),
            value: Some(value.as_bytes()),
        });
    }
    let message = OwnedMessage::new(
        row.value.clone(),
        row.key.clone(),
        topic.to_owned(),
        Timestamp::now(),
        row.partition,
        row.offset,
        Some(headers.insert(Header {
            key: super::headers::REPLAY_OF,
            value: Some(replay_of.as_bytes()),
        })),
    );
    Ok((message, row.attempts.max(0) as u32, replay_of))
}

/// A flow's letters read from its SQS Dead Letter Queue.
struct Queued {
    letters: Vec<Peeked>,
    /// Whether as many messages were read as may be: there may be more.
    partial: bool,
}

/// How many letters after `prefix` a page cursor skips (none without one).
fn skip_of(cursor: Option<&str>, prefix: &str) -> Result<usize, AppError> {
    match cursor {
        None => Ok(0),
        Some(text) => text
            .strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                AppError::validation("cursor", "This page of dead letters is not known.")
            }),
    }
}

/// A replay stores no consumer offsets.
struct NoOffsets;

impl Offsets for NoOffsets {
    fn store(&self, _partition: i32, _offset: i64) {}

    // A replay retries in place: it gives nothing back.
    fn give_back(&self, _partition: i32, _offset: i64, _after: std::time::Duration) {}
}

/// A replay's retries show nowhere but in its progress.
struct Quiet;

impl RetryObserver for Quiet {
    fn retrying(&self, _error: &RunError, _delay: std::time::Duration) {}
    fn recovered(&self) {}
}

/// The step after writing, for a replay: notes how each letter ended (in
/// the order they were submitted) and keeps the failures of a flow without
/// a Dead Letter Queue.
struct Record {
    seqs: VecDeque<i32>,
    outcomes: Vec<(i32, LetterOutcome)>,
    commit: Commit<NoOffsets, DbKeeper>,
}

impl Next for Record {
    fn finished(&mut self, message: Finished) {
        if let Some(seq) = self.seqs.pop_front() {
            let outcome = if message.failure.is_none() {
                LetterOutcome::Succeeded
            } else {
                LetterOutcome::Failed
            };
            self.outcomes.push((seq, outcome));
        }
        self.commit.finished(message);
    }
}
