//! Algorithms in the catalog, their Events rows, flows and flow statistics.

use serde::{Deserialize, Serialize};

use super::BrokerKind;

/// One card of the ML service catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlgorithmSummary {
    pub org: String,
    pub name: String,
    pub description: String,
    pub latest_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub runtime: String,
    pub created_at_ms: i64,
}

/// The algorithm page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlgorithmDetails {
    pub org: String,
    pub name: String,
    pub description: String,
    /// Newest first.
    pub versions: Vec<VersionInfo>,
}

/// Which way data moves between an algorithm and a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Every message on the topic is an input to the algorithm.
    Subscribe,
    /// Every successful run of the algorithm is written to the topic.
    Publish,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Subscribe => "subscribe",
            Direction::Publish => "publish",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "subscribe" => Some(Direction::Subscribe),
            "publish" => Some(Direction::Publish),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Direction::Subscribe => "Subscribe",
            Direction::Publish => "Publish",
        }
    }
}

/// A direction as the database stores it (`subscribe`, `publish`).
impl TryFrom<String> for Direction {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Direction::parse(&value).ok_or_else(|| format!("no direction is called {value:?}"))
    }
}

/// How a subscribe flow orders the runs of a partition's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowOrdering {
    /// One message of a partition at a time, in offset order.
    #[default]
    Partition,
    /// Messages with the same key in offset order; different keys at once.
    Key,
    /// Any message at any time, up to the concurrency bound.
    None,
}

/// Most runs a flow may have in flight per partition.
pub const MAX_CONCURRENCY: u32 = 256;

impl FlowOrdering {
    pub const ALL: [FlowOrdering; 3] = [
        FlowOrdering::Partition,
        FlowOrdering::Key,
        FlowOrdering::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlowOrdering::Partition => "partition",
            FlowOrdering::Key => "key",
            FlowOrdering::None => "none",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            FlowOrdering::Partition => "Per partition",
            FlowOrdering::Key => "Per key",
            FlowOrdering::None => "None",
        }
    }

    /// One line on what the ordering promises.
    pub fn explain(self) -> &'static str {
        match self {
            FlowOrdering::Partition => "Each partition's messages run one at a time, in order.",
            FlowOrdering::Key => {
                "Messages with the same key run in order; different keys run at the same time."
            }
            FlowOrdering::None => "Messages run at the same time, in any order.",
        }
    }

    /// The ordering with its bound, as the Events tab and the monitor show
    /// it: "Per partition", "Per key, 16 at once".
    pub fn summary(self, concurrency: u32) -> String {
        match self {
            FlowOrdering::Partition => self.label().to_owned(),
            _ => format!("{}, {concurrency} at once", self.label()),
        }
    }

    /// Runs in flight per partition when none is chosen: one for
    /// `partition`, enough to keep a model server busy otherwise.
    pub fn default_concurrency(self) -> u32 {
        match self {
            FlowOrdering::Partition => 1,
            FlowOrdering::Key | FlowOrdering::None => 32,
        }
    }

    /// Whether `concurrency` runs per partition may go with this ordering;
    /// the reason when not.
    pub fn check_concurrency(self, concurrency: u32) -> Result<(), String> {
        if self == FlowOrdering::Partition && concurrency != 1 {
            return Err(
                "With ordering per partition one message runs at a time: concurrent runs must be 1."
                    .into(),
            );
        }
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(format!(
                "Concurrent runs per partition must be between 1 and {MAX_CONCURRENCY}."
            ));
        }
        Ok(())
    }
}

/// Most inputs one batch may have.
pub const MAX_BATCH_SIZE: u32 = 256;
/// Longest a flow waits to fill a batch, in milliseconds.
pub const MAX_BATCH_WAIT_MS: u32 = 1000;
/// Inputs per batch for a model that takes batches, unless chosen.
pub const DEFAULT_BATCH_SIZE: u32 = 32;
/// How long a flow waits to fill a batch, unless chosen.
pub const DEFAULT_BATCH_WAIT_MS: u32 = 20;

/// How a subscribe flow batches its inputs for a model that takes batches:
/// up to `size` messages of a partition in one request, waiting at most
/// `wait_ms` for a batch to fill. A size of 1 sends one input at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Batching {
    pub size: u32,
    pub wait_ms: u32,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            size: 1,
            wait_ms: DEFAULT_BATCH_WAIT_MS,
        }
    }
}

impl Batching {
    /// What a flow of a version whose model takes batches (or not) gets
    /// when nothing is chosen.
    pub fn default_for(takes_batches: bool) -> Self {
        Batching {
            size: if takes_batches { DEFAULT_BATCH_SIZE } else { 1 },
            wait_ms: DEFAULT_BATCH_WAIT_MS,
        }
    }

    /// Whether these bounds may go with a version whose model takes
    /// batches (or not); the field and the reason when not.
    pub fn check(self, takes_batches: bool) -> Result<(), (&'static str, String)> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.size) {
            return Err((
                "batch_size",
                format!("Batch size must be between 1 and {MAX_BATCH_SIZE}."),
            ));
        }
        if self.size > 1 && !takes_batches {
            return Err((
                "batch_size",
                "This version's model takes one input at a time (its runtime is not http-batch:): batch size must be 1."
                    .into(),
            ));
        }
        if self.wait_ms > MAX_BATCH_WAIT_MS {
            return Err((
                "batch_wait_ms",
                format!("Batch wait must be between 0 and {MAX_BATCH_WAIT_MS} ms."),
            ));
        }
        Ok(())
    }

    /// As the Events tab and the monitor show it: "batches of 32 (wait
    /// 20 ms)"; `None` without batches.
    pub fn summary(self) -> Option<String> {
        (self.size > 1).then(|| format!("batches of {} (wait {} ms)", self.size, self.wait_ms))
    }
}

/// A flow as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    pub id: String,
    pub enabled: bool,
    pub version: String,
    pub dlq_topic: Option<String>,
    #[serde(default)]
    pub ordering: FlowOrdering,
    #[serde(default = "one")]
    pub concurrency: u32,
    #[serde(default)]
    pub batching: Batching,
    /// Of a subscribe flow on a queue: a transient failure gives the
    /// message back to the queue, rather than retrying it in place.
    #[serde(default)]
    pub give_back: bool,
    /// Paused: kept as it is, but not running.
    #[serde(default)]
    pub paused: bool,
    /// A publish flow that takes the outputs of whichever version the
    /// algorithm's listeners run (its `version` is then not used).
    #[serde(default)]
    pub follows_subscribe_flow: bool,
}

fn one() -> u32 {
    1
}

/// One row of the **Events** tab: a topic the algorithm has a grant on, in
/// one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedTopic {
    pub connection_id: String,
    pub connection_name: String,
    #[serde(default)]
    pub connection_kind: BrokerKind,
    pub topic: String,
    pub direction: Direction,
    pub flow: Option<FlowState>,
    /// Topics that may serve as this row's Dead Letter Queue: same broker
    /// connection, publish access, never the source topic.
    pub dlq_options: Vec<String>,
}

impl GrantedTopic {
    pub fn enabled(&self) -> bool {
        self.flow.as_ref().is_some_and(|f| f.enabled)
    }
}

/// What **Enable Listener** and **Save Changes** send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRequest {
    pub org: String,
    pub name: String,
    pub connection_id: String,
    pub topic: String,
    pub direction: Direction,
    pub version: String,
    pub dlq_topic: Option<String>,
    /// Of a subscribe flow; `partition` when left out.
    #[serde(default)]
    pub ordering: FlowOrdering,
    /// Runs in flight per partition; the ordering's default when left out.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Inputs per request, for a version whose model takes batches; 32 for
    /// such a version when left out, 1 otherwise.
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// How long to wait for a batch to fill, in milliseconds (20 when left
    /// out).
    #[serde(default)]
    pub batch_wait_ms: Option<u32>,
    /// Of a publish flow: take the outputs of whichever version the
    /// algorithm's listeners run, instead of `version`'s only.
    #[serde(default)]
    pub follows_subscribe_flow: bool,
    /// Of a subscribe flow on a queue (SQS or Service Bus): when the model
    /// fails transiently, give the message back to the queue after a
    /// backoff, as AWS Lambda and Azure Functions do, rather than retry it
    /// in place. Each return counts a delivery, so the queue's own
    /// dead-letter policy moves a message given back too often.
    #[serde(default)]
    pub give_back: bool,
}

/// What a flow on a queue does when its model fails transiently, as the
/// Events tab says it.
pub const GIVE_BACK_HELP: &str = "When the model fails transiently (it restarts, sheds load or times out), the message goes back to the queue after a backoff and is delivered again, as AWS Lambda and Azure Functions do. Each return counts a delivery: the queue's own dead-letter policy moves a message given back too often. Unticked, the flow keeps the message and retries it in place until the model answers.";

/// What SQS says of a message received from a queue, which has no offset
/// that lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: String,
    /// How many times it was received, this time included.
    pub receive_count: u32,
}

impl QueuedMessage {
    /// Where a run's or a failure's message was: its SQS message, or its
    /// partition and offset.
    pub fn position(queued: Option<&Self>, partition: i32, offset: i64) -> String {
        match queued {
            Some(QueuedMessage { id, receive_count }) => {
                format!("message {id} (received {receive_count}×)")
            }
            None => format!("partition {partition} offset {offset}"),
        }
    }
}

/// A failure the debugging view shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowError {
    pub at_ms: i64,
    pub partition: i32,
    pub offset: i64,
    pub kind: String,
    pub message: String,
    pub dead_lettered: bool,
    /// Of a message received from an SQS queue.
    #[serde(default)]
    pub queued: Option<QueuedMessage>,
}

/// A message a flow could not process: a record on its Dead Letter Queue,
/// or (for a flow without one, or when writing there failed) a failure it
/// keeps in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// What a replay names it by: `topic:<dlq topic>:<partition>:<offset>`
    /// or `kept:<id>`.
    #[serde(default)]
    pub id: String,
    /// When it failed, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub at: String,
    /// Where the input came from on the flow's source topic.
    pub partition: i32,
    pub offset: i64,
    pub version: String,
    pub kind: String,
    pub message: String,
    pub attempts: u32,
    /// The key, shown safely (text, or a note on its bytes).
    pub key: Option<String>,
    /// The value, shown safely: pretty-printed JSON, text, or a note on
    /// its bytes; at most the part that was kept.
    pub value: String,
    /// The value's whole length, and whether only its start was kept.
    pub value_bytes: u64,
    pub value_cut: bool,
    pub headers: Vec<(String, String)>,
    /// Where the record is on the Dead Letter Queue topic, as
    /// `partition P offset O`.
    #[serde(default)]
    pub position: Option<String>,
    /// For a message that failed again when replayed: the dead letter it
    /// was a replay of (`topic/partition/offset`).
    #[serde(default)]
    pub replay_of: Option<String>,
    /// "being replayed", "replayed, succeeded" or "replayed, failed again",
    /// after the newest replay that included it.
    #[serde(default)]
    pub replayed: Option<String>,
}

/// The kinds of failure a dead letter may have, for the filter.
pub const FAILURE_KINDS: [&str; 3] = ["bad-input", "transient", "write-failed"];

/// Which dead letters to list (or replay): each filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterQuery {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// Text the error message contains (case-insensitive).
    #[serde(default)]
    pub search: Option<String>,
    /// Where the previous page ended (from [`DeadLetterPage::next`]).
    #[serde(default)]
    pub cursor: Option<String>,
    /// The failures the flow keeps, even when it has a Dead Letter Queue
    /// (those it could not write there).
    #[serde(default)]
    pub kept: bool,
}

impl DeadLetterQuery {
    /// Whether a dead letter passes the filters.
    pub fn matches(&self, kind: &str, version: &str, message: &str) -> bool {
        fn given(f: &Option<String>) -> Option<&str> {
            f.as_deref().map(str::trim).filter(|t| !t.is_empty())
        }
        given(&self.kind).is_none_or(|k| k == kind)
            && given(&self.version).is_none_or(|v| v == version)
            && given(&self.search)
                .is_none_or(|t| message.to_lowercase().contains(&t.to_lowercase()))
    }
}

/// Dead letters per page at most.
pub const DEAD_LETTERS_PER_PAGE: u32 = 20;

/// One page of a flow's dead letters, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPage {
    /// The flow's Dead Letter Queue topic, when the letters come from it;
    /// `None` when they are the failures the flow keeps.
    pub dlq_topic: Option<String>,
    pub letters: Vec<DeadLetter>,
    /// The cursor of the next (older) page, if there may be one.
    pub next: Option<String>,
    /// Of a flow with a Dead Letter Queue: how many failures it keeps
    /// besides, as their dead letters could not be written there (listed
    /// with [`DeadLetterQuery::kept`]).
    #[serde(default)]
    pub kept_besides: u64,
    /// Of an SQS Dead Letter Queue holding more messages than are read
    /// for a page: how many were read (letters further down are not
    /// listed).
    #[serde(default)]
    pub read_first: Option<u32>,
    /// The letters are the failures a flow with a Dead Letter Queue keeps
    /// besides (asked for with [`DeadLetterQuery::kept`]).
    #[serde(default)]
    pub kept: bool,
}

/// What **Replay** sends: the letters by id, or every letter that matches
/// a filter, and the version to run them with (the flow's own when left
/// out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub flow_id: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub letters: Vec<String>,
    #[serde(default)]
    pub matching: Option<DeadLetterQuery>,
}

/// Dead letters one replay takes at most.
pub const MAX_REPLAY_LETTERS: usize = 10_000;

/// How far a replay got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub id: String,
    pub version: String,
    pub by: String,
    /// When it was asked for, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub at: String,
    /// "running", "done" or "stopped".
    pub state: String,
    /// Why it stopped, when it did before the end.
    pub message: Option<String>,
    pub succeeded: u64,
    pub failed: u64,
    pub left: u64,
}

/// How one run of a flow's algorithm on a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Its outputs are written.
    Succeeded,
    /// It failed and the message is in the flow's Dead Letter Queue.
    DeadLettered,
    /// It failed and the message is kept with the flow's failures.
    Failed,
    /// The model failed transiently and the message went back to its queue,
    /// to be delivered again.
    GivenBack,
}

impl RunOutcome {
    /// As the monitor shows it (and as it is sent).
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::DeadLettered => "dead-lettered",
            RunOutcome::Failed => "failed",
            RunOutcome::GivenBack => "given back",
        }
    }
}

/// One run of the flow's algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub at_ms: i64,
    pub partition: i32,
    pub offset: i64,
    pub version: String,
    pub outcome: RunOutcome,
    pub latency_ms: u64,
    /// Of a message received from an SQS queue.
    #[serde(default)]
    pub queued: Option<QueuedMessage>,
}

/// The live numbers of one flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStats {
    /// "running", "stopped", or what keeps it from running.
    pub state: String,
    pub consumed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    /// Partition assignments seen since the flow started.
    pub assignments: u64,
    /// Messages on the topic not yet processed, when known.
    pub lag: Option<u64>,
    pub last_errors: Vec<FlowError>,
    pub recent_runs: Vec<RunRecord>,
    /// The Kafka consumer group the flow reads with, while it runs.
    #[serde(default)]
    pub consumer_group: Option<String>,
    /// The partitions this server instance owns, while the flow runs here.
    #[serde(default)]
    pub partitions: Vec<i32>,
    /// How it orders its runs, and how many run at once per partition,
    /// while it runs.
    #[serde(default)]
    pub ordering: Option<FlowOrdering>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// How it batches inputs for its model, while it runs.
    #[serde(default)]
    pub batching: Option<Batching>,
    /// The newest failed messages the flow keeps, newest first.
    #[serde(default)]
    pub kept_failures: Vec<DeadLetter>,
    /// How many failed messages it keeps, and how many older ones were
    /// dropped to stay within the bound.
    #[serde(default)]
    pub failures_kept: u64,
    #[serde(default)]
    pub failures_dropped: u64,
    /// The flow's replays, newest first.
    #[serde(default)]
    pub replays: Vec<ReplayProgress>,
    /// Whether the flow is paused.
    #[serde(default)]
    pub paused: bool,
}

/// Where a paused flow starts again when it is resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rewind {
    /// The oldest message on each partition.
    Earliest,
    /// After the newest message: what is on the topic now is skipped.
    Latest,
    /// The first message at or after this time (milliseconds since the
    /// epoch), on each partition.
    Timestamp(i64),
    /// These offsets, per partition: `(partition, offset)`.
    Offsets(Vec<(i32, i64)>),
}

/// What a rewind does to one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewindPartition {
    pub partition: i32,
    /// The consumer group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// Where it starts after the rewind.
    pub to: i64,
    /// The partition's end (the offset after its newest message).
    pub end: i64,
}

/// What a rewind does: per partition, and how many messages will be
/// processed (again) from the new position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewindPlan {
    pub partitions: Vec<RewindPartition>,
    pub messages: u64,
    /// Whether the offsets were committed (false for a preview).
    pub applied: bool,
}

/// Which messages a dry run takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrySample {
    /// The newest messages of the flow's source topic.
    Recent(u32),
    /// These dead letters, by id.
    Letters(Vec<String>),
}

/// Messages one dry run takes at most.
pub const MAX_DRY_RUN: u32 = 200;

/// What **Try a version** sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunRequest {
    pub flow_id: String,
    /// The version to try.
    pub version: String,
    pub sample: DrySample,
}

/// One message of a dry run: what the flow's version gave and what the
/// candidate gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    pub partition: i32,
    pub offset: i64,
    /// The input, shown safely.
    pub input: String,
    /// The current version's output (pretty-printed when JSON), or why it
    /// failed.
    pub current: Result<String, String>,
    /// Whether `current` was read from the output topic (else it was run
    /// for this comparison).
    pub current_published: bool,
    pub candidate: Result<String, String>,
}

impl Comparison {
    /// "same", "different" or "failed" (the candidate failed).
    pub fn verdict(&self) -> &'static str {
        match (&self.current, &self.candidate) {
            (_, Err(_)) => "failed",
            (Ok(a), Ok(b)) if a == b => "same",
            _ => "different",
        }
    }
}

/// A dry run's comparisons, newest message first, with the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// The flow's version the candidate is compared with.
    pub current_version: String,
    pub version: String,
    pub comparisons: Vec<Comparison>,
    pub same: u32,
    pub different: u32,
    pub failed: u32,
}

/// Lines of two texts, each marked true where it is not in their longest
/// common subsequence of lines (what differs). Long texts are compared
/// line by line.
pub fn diff_lines(a: &str, b: &str) -> (Vec<(String, bool)>, Vec<(String, bool)>) {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if x.len() * y.len() > 250_000 {
        let mark = |lines: &[&str], other: &[&str]| {
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| (l.to_string(), other.get(i) != Some(l)))
                .collect()
        };
        return (mark(&x, &y), mark(&y, &x));
    }
    // lengths[i][j]: the longest common subsequence of x[i..] and y[j..].
    let mut lengths = vec![vec![0u32; y.len() + 1]; x.len() + 1];
    for i in (0..x.len()).rev() {
        for j in (0..y.len()).rev() {
            lengths[i][j] = if x[i] == y[j] {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let (mut in_x, mut in_y) = (vec![true; x.len()], vec![true; y.len()]);
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i] == y[j] {
            in_x[i] = false;
            in_y[j] = false;
            i += 1;
            j += 1;
        } else if lengths[i + 1][j] >= lengths[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    let marked = |lines: &[&str], changed: &[bool]| {
        lines
            .iter()
            .zip(changed)
            .map(|(l, c)| (l.to_string(), *c))
            .collect()
    };
    (marked(&x, &in_x), marked(&y, &in_y))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The monitor's words are what goes over the wire, both ways.
    #[test]
    fn run_outcomes_are_sent_as_the_monitor_shows_them() {
        for outcome in [
            RunOutcome::Succeeded,
            RunOutcome::DeadLettered,
            RunOutcome::Failed,
        ] {
            let sent = serde_json::to_string(&outcome).unwrap();
            assert_eq!(sent, format!("\"{}\"", outcome.as_str()));
            assert_eq!(serde_json::from_str::<RunOutcome>(&sent).unwrap(), outcome);
        }
        assert_eq!(RunOutcome::DeadLettered.as_str(), "dead-lettered");
    }

    #[test]
    fn dead_letter_filters_apply_only_when_given() {
        let all = DeadLetterQuery::default();
        assert!(all.matches("bad-input", "1.0.0", "anything"));
        let query = DeadLetterQuery {
            kind: Some("bad-input".into()),
            version: Some(" ".into()),
            search: Some("String FIELD".into()),
            cursor: None,
            kept: false,
        };
        assert!(query.matches("bad-input", "2.0.0", "expected a string field \"text\""));
        assert!(!query.matches("transient", "2.0.0", "expected a string field"));
        assert!(!query.matches("bad-input", "2.0.0", "not JSON"));
        let version = DeadLetterQuery {
            version: Some("1.1.0".into()),
            ..Default::default()
        };
        assert!(!version.matches("bad-input", "1.0.0", "x"));
    }

    #[test]
    fn differing_lines_are_marked_on_both_sides() {
        let (a, b) = diff_lines(
            "{\n  \"label\": \"positive\",\n  \"score\": 1.0\n}",
            "{\n  \"label\": \"negative\",\n  \"score\": 1.0\n}",
        );
        let changed = |side: &[(String, bool)]| {
            side.iter()
                .filter(|(_, c)| *c)
                .map(|(l, _)| l.trim().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(changed(&a), vec!["\"label\": \"positive\","]);
        assert_eq!(changed(&b), vec!["\"label\": \"negative\","]);
        let (same, _) = diff_lines("x\ny", "x\ny");
        assert!(same.iter().all(|(_, c)| !c));
        let (_, added) = diff_lines("a", "a\nb");
        assert_eq!(added, vec![("a".to_owned(), false), ("b".to_owned(), true)]);
    }
}
