//! Dead letters as the flow's page shows them, and finding them again:
//! the records on a flow's Dead Letter Queue that came from it (told by
//! their `eventflows-` headers), and the failures it keeps in the database.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use app::domain::{AppError, DeadLetter, DeadLetterQuery};

use super::headers;
use super::sqs_flow::Peeked;
use crate::db::failures::Failure;
use crate::kafka::{BrokerSettings, ReadingConsumer, ReadingContext};

/// How a replay names a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LetterId {
    /// A record on a Dead Letter Queue topic.
    Record {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A message on a Dead Letter Queue that is an SQS queue, by its
    /// message id.
    Queued { queue: String, message_id: String },
    /// A failure the flow keeps, by its id.
    Kept(String),
}

impl LetterId {
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(id) = text.strip_prefix("kept:") {
            return (!id.is_empty() && id.len() <= 64).then(|| LetterId::Kept(id.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("queue:") {
            let (queue, message_id) = rest.rsplit_once(':')?;
            let fine = |t: &str| !t.is_empty() && t.len() <= 128;
            return (fine(queue) && fine(message_id)).then(|| LetterId::Queued {
                queue: queue.to_owned(),
                message_id: message_id.to_owned(),
            });
        }
        let rest = text.strip_prefix("topic:")?;
        let mut parts = rest.rsplitn(3, ':');
        let offset = parts.next()?.parse().ok().filter(|o: &i64| *o >= 0)?;
        let partition = parts.next()?.parse().ok().filter(|p: &i32| *p >= 0)?;
        let topic = parts.next().filter(|t| !t.is_empty())?.to_owned();
        Some(LetterId::Record {
            topic,
            partition,
            offset,
        })
    }
}

impl std::fmt::Display for LetterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LetterId::Record {
                topic,
                partition,
                offset,
            } => write!(f, "topic:{topic}:{partition}:{offset}"),
            LetterId::Queued { queue, message_id } => write!(f, "queue:{queue}:{message_id}"),
            LetterId::Kept(id) => write!(f, "kept:{id}"),
        }
    }
}

/// A kept failure as the flow's page shows it: its bytes as pretty-printed
/// JSON, as text, or (not UTF-8) as their length and first bytes in hex.
pub fn from_kept(id: &str, row: Failure) -> DeadLetter {
    let value_bytes = row.value_bytes.max(0) as u64;
    let kept = row.value.as_deref().unwrap_or_default();
    let value_cut = (kept.len() as u64) < value_bytes;
    let value = match row.value.as_deref() {
        None => "(no value)".to_owned(),
        Some(bytes) => shown(bytes, !value_cut),
    };
    let headers: Vec<(String, String)> = serde_json::from_str(&row.headers).unwrap_or_default();
    let named = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.clone())
    };
    let replay_of = named(headers::REPLAY_OF);
    // A message received from SQS is named by its message id.
    let position = named(headers::SQS_MESSAGE_ID)
        .or_else(|| {
            named(headers::SERVICEBUS_SEQUENCE_NUMBER).map(|n| format!("sequence number {n}"))
        })
        .map(|id| format!("message {id}"));
    DeadLetter {
        id: LetterId::Kept(id.to_owned()).to_string(),
        at: super::clock(row.at_ms),
        partition: row.partition,
        offset: row.offset,
        version: row.version,
        kind: row.kind,
        message: row.message,
        attempts: row.attempts.max(0) as u32,
        key: row.key.as_deref().map(|k| shown(k, false)),
        value,
        value_bytes,
        value_cut,
        headers,
        position,
        replay_of,
        replayed: None,
    }
}

/// The text of one of a record's headers.
pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The queue message a record was received as (SQS or Service Bus), by
/// its headers; `None` for a topic's record.
pub fn queued(message: &OwnedMessage) -> Option<app::domain::QueuedMessage> {
    let count = |name: &str| header(message, name).and_then(|n| n.parse().ok());
    if let Some(id) = header(message, headers::SQS_MESSAGE_ID) {
        return Some(app::domain::QueuedMessage {
            id: id.to_owned(),
            receive_count: count(headers::SQS_RECEIVE_COUNT).unwrap_or(1),
        });
    }
    let sequence = header(message, headers::SERVICEBUS_SEQUENCE_NUMBER)?;
    let id = match header(message, headers::SERVICEBUS_MESSAGE_ID) {
        Some(id) => format!("{id}, sequence number {sequence}"),
        None => format!("sequence number {sequence}"),
    };
    Some(app::domain::QueuedMessage {
        id,
        receive_count: count(headers::SERVICEBUS_DELIVERY_COUNT).unwrap_or(1),
    })
}

/// Whether a record on a Dead Letter Queue was written by this flow: its
/// algorithm, from its source topic.
pub fn is_from(message: &OwnedMessage, algorithm: &str, source_topic: &str) -> bool {
    header(message, headers::ALGORITHM) == Some(algorithm)
        && header(message, headers::SOURCE_TOPIC) == Some(source_topic)
        && header(message, headers::ERROR_KIND).is_some()
}

/// Whether a dead-letter record passes a filter.
pub fn record_matches(message: &OwnedMessage, query: &DeadLetterQuery) -> bool {
    query.matches(
        header(message, headers::ERROR_KIND).unwrap_or_default(),
        header(message, headers::VERSION).unwrap_or_default(),
        header(message, headers::ERROR).unwrap_or_default(),
    )
}

/// A record on the Dead Letter Queue as the flow's page shows it.
pub fn from_record(message: &OwnedMessage) -> DeadLetter {
    let text = |name| header(message, name).unwrap_or_default().to_owned();
    let number = |name| header(message, name).and_then(|v| v.parse::<i64>().ok());
    let payload = message.payload();
    let cut_from = number(headers::VALUE_TRUNCATED).map(|n| n.max(0) as u64);
    let value_bytes = cut_from.unwrap_or(payload.map_or(0, |p| p.len() as u64));
    let at_ms = number(headers::FAILED_AT)
        .or_else(|| message.timestamp().to_millis())
        .unwrap_or(0);
    DeadLetter {
        id: LetterId::Record {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        }
        .to_string(),
        at: super::clock(at_ms),
        partition: number(headers::SOURCE_PARTITION).unwrap_or(-1) as i32,
        offset: number(headers::SOURCE_OFFSET).unwrap_or(-1),
        version: text(headers::VERSION),
        kind: text(headers::ERROR_KIND),
        message: text(headers::ERROR),
        attempts: number(headers::ATTEMPTS)
            .unwrap_or(1)
            .clamp(0, u32::MAX as i64) as u32,
        key: message.key().map(|k| shown(k, false)),
        value: match payload {
            None => "(no value)".to_owned(),
            Some(bytes) => shown(bytes, cut_from.is_none()),
        },
        value_bytes,
        value_cut: cut_from.is_some(),
        headers: message
            .headers()
            .map(|h| {
                h.iter()
                    .filter(|h| !h.key.starts_with(headers::PREFIX))
                    .map(|h| {
                        let value = h.value.map(|v| shown(v, false)).unwrap_or_default();
                        (h.key.to_owned(), value)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        position: Some(format!(
            "partition {} offset {}",
            message.partition(),
            message.offset()
        )),
        replay_of: header(message, headers::REPLAY_OF).map(str::to_owned),
        replayed: None,
    }
}

/// A message on a queue's Dead Letter Queue as the flow's page shows it.
pub fn from_peeked(peeked: &Peeked) -> DeadLetter {
    let mut letter = from_record(&peeked.record);
    letter.id = LetterId::Queued {
        queue: peeked.record.topic().to_owned(),
        message_id: peeked.message_id.clone(),
    }
    .to_string();
    letter.position = Some(peeked.position.clone());
    letter
}

/// Bytes for a person to read; `whole` values that are JSON are
/// pretty-printed.
pub(super) fn shown(bytes: &[u8], whole: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            if whole && let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
                return serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.to_owned());
            }
            text.to_owned()
        }
        Err(_) => {
            let hex: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
            format!(
                "({} bytes, not UTF-8 text: {hex}{})",
                bytes.len(),
                if bytes.len() > 32 { "…" } else { "" }
            )
        }
    }
}

/// Records read backwards per step when looking for a page of letters.
const WINDOW: i64 = 500;
/// Records one page request reads per partition at most.
const SCAN_PER_PAGE: i64 = 5_000;
/// How long one read of a Dead Letter Queue may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a read from inside the topic waits for its first record before
/// it starts again further back: a start inside a record batch that the
/// broker skips (see [`TopicReader::read`]) gets no record at all when that
/// batch is the partition's last one, and no end-of-partition either.
const FIRST_RECORD_WAIT: Duration = Duration::from_secs(1);

/// Reads a topic (blocking), most often a Dead Letter Queue: pages of
/// letters newest first, letters by position, the newest records. Commits
/// nothing.
pub struct TopicReader {
    consumer: ReadingConsumer,
    topic: String,
}

impl TopicReader {
    pub fn new(settings: &BrokerSettings, topic: &str) -> Result<Self, AppError> {
        let consumer = settings
            .client_config()
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_uncommitted")
            .set("group.id", "eventflows-dead-letters")
            .create_with_context(ReadingContext)
            .map_err(|e| AppError::Broker {
                message: format!("The topic '{topic}' could not be read: {e}"),
            })?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
        })
    }

    fn unreadable(&self, error: KafkaError) -> AppError {
        AppError::Broker {
            message: format!("The topic '{}' could not be read: {error}", self.topic),
        }
    }

    /// Each partition with its low and high watermarks.
    fn partitions(&self) -> Result<Vec<(i32, i64, i64)>, AppError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), READ_TIMEOUT)
            .map_err(|e| self.unreadable(e))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| AppError::Broker {
                message: format!("The topic '{}' does not exist on the broker.", self.topic),
            })?;
        let mut partitions = Vec::new();
        for p in topic.partitions() {
            let (low, high) =
                crate::kafka::watermarks(&self.consumer, &self.topic, p.id(), READ_TIMEOUT)
                    .map_err(|e| self.unreadable(e))?;
            partitions.push((p.id(), low, high));
        }
        partitions.sort();
        Ok(partitions)
    }

    /// The records of a partition with offsets in `from..to`, in order.
    ///
    /// A fetch from an offset inside a record batch should return that
    /// batch; tansu 0.6 (memory storage) returns only the batches that
    /// start at or after it, skipping the rest of the one it is in. So when
    /// the first record that arrives is past `from`, or none arrives within
    /// [`FIRST_RECORD_WAIT`], the read starts again further back, doubling
    /// the step, until a record at or before `from` arrives or the
    /// partition's start is reached.
    fn read(&self, partition: i32, from: i64, to: i64) -> Result<Vec<OwnedMessage>, AppError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let (mut start, mut step) = (from, WINDOW);
        for _ in 0..16 {
            let (records, first) = self.read_from(partition, start, from, to)?;
            let covered = first.is_some_and(|first| first <= from);
            if covered || start == 0 {
                return Ok(records);
            }
            start = (start - step).max(0);
            step = step.saturating_mul(2);
        }
        Ok(self.read_from(partition, 0, from, to)?.0)
    }

    /// The records in `keep..to` of what a read from `start` returns, and
    /// the offset of the first record that arrived.
    fn read_from(
        &self,
        partition: i32,
        start: i64,
        keep: i64,
        to: i64,
    ) -> Result<(Vec<OwnedMessage>, Option<i64>), AppError> {
        let mut records = Vec::new();
        let mut first = None;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(start))
            .map_err(|e| self.unreadable(e))?;
        self.consumer
            .assign(&list)
            .map_err(|e| self.unreadable(e))?;
        let began = Instant::now();
        let deadline = began + READ_TIMEOUT;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(200)) {
                // Nothing from a start inside the topic: it may be inside
                // a batch the broker skips; the caller reads from further
                // back (from the start, the whole time is waited).
                None if first.is_none() && start > 0 && began.elapsed() >= FIRST_RECORD_WAIT => {
                    break;
                }
                None => continue,
                Some(Ok(message)) => {
                    if message.partition() != partition {
                        continue;
                    }
                    first.get_or_insert(message.offset());
                    if message.offset() < keep {
                        continue;
                    }
                    if message.offset() >= to {
                        break;
                    }
                    let last = message.offset() + 1 >= to;
                    records.push(message.detach());
                    if last {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => {
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) {
                        break;
                    }
                    return Err(self.unreadable(error));
                }
            }
        }
        let _ = self.consumer.unassign();
        Ok((records, first))
    }

    /// A page of `limit` letters that `belongs` accepts, newest first,
    /// starting where `cursor` says (the newest when `None`); with the
    /// cursor of the next page, if there may be one.
    pub fn page(
        &self,
        belongs: impl Fn(&OwnedMessage) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<OwnedMessage>, Option<String>), AppError> {
        let ends = match cursor {
            None => None,
            Some(text) => Some(parse_cursor(text).ok_or_else(|| {
                AppError::validation("cursor", "This page of dead letters is not known.")
            })?),
        };
        // Per partition: its matches newest first, where the scan stopped,
        // where it began, and its low watermark.
        let mut found: Vec<(i32, Vec<OwnedMessage>, i64, i64, i64)> = Vec::new();
        for (partition, low, high) in self.partitions()? {
            let end = match &ends {
                None => high,
                Some(ends) => match ends.get(&partition) {
                    Some(end) => (*end).min(high),
                    None => continue,
                },
            };
            let mut matches = Vec::new();
            let mut start = end;
            while start > low && matches.len() < limit && end - start < SCAN_PER_PAGE {
                let from = (start - WINDOW).max(low);
                let mut records = self.read(partition, from, start)?;
                records.retain(&belongs);
                records.reverse();
                matches.extend(records);
                start = from;
            }
            found.push((partition, matches, start, end, low));
        }
        // Newest first across partitions; each partition's letters are
        // taken newest first, so what is taken of one is a prefix.
        let mut taken: Vec<OwnedMessage> = Vec::new();
        let mut heads = vec![0usize; found.len()];
        while taken.len() < limit {
            let next = found
                .iter()
                .enumerate()
                .filter(|(i, f)| heads[*i] < f.1.len())
                .max_by_key(|(i, f)| {
                    let m = &f.1[heads[*i]];
                    (m.timestamp().to_millis().unwrap_or(0), m.offset())
                })
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            taken.push(found[i].1[heads[i]].clone());
            heads[i] += 1;
        }
        let mut next = BTreeMap::new();
        for (i, (partition, matches, start, end, low)) in found.iter().enumerate() {
            let resume = if heads[i] == matches.len() {
                *start
            } else if heads[i] == 0 {
                *end
            } else {
                matches[heads[i] - 1].offset()
            };
            if resume > *low {
                next.insert(*partition, resume);
            }
        }
        Ok((taken, (!next.is_empty()).then(|| format_cursor(&next))))
    }

    /// The newest `count` records of the topic (at most `count` of each
    /// partition), newest first.
    pub fn latest(&self, count: usize) -> Result<Vec<OwnedMessage>, AppError> {
        let mut records = Vec::new();
        for (partition, low, high) in self.partitions()? {
            let from = (high - count as i64).max(low);
            records.extend(self.read(partition, from, high)?);
        }
        records.sort_by_key(|m| {
            std::cmp::Reverse((m.timestamp().to_millis().unwrap_or(0), m.offset()))
        });
        records.truncate(count);
        Ok(records)
    }

    /// Every letter `belongs` accepts, newest first, at most `max`.
    pub fn all(
        &self,
        belongs: impl Fn(&OwnedMessage) -> bool,
        max: usize,
    ) -> Result<Vec<OwnedMessage>, AppError> {
        let mut letters = Vec::new();
        for (partition, low, high) in self.partitions()? {
            let mut from = low;
            while from < high && letters.len() <= max {
                let to = (from + WINDOW * 4).min(high);
                let mut records = self.read(partition, from, to)?;
                records.retain(&belongs);
                letters.extend(records);
                from = to;
            }
        }
        letters.sort_by_key(|m| std::cmp::Reverse(m.timestamp().to_millis().unwrap_or(0)));
        Ok(letters)
    }

    /// The records at these offsets of these partitions (those that are
    /// still on the topic).
    pub fn fetch(
        &self,
        wanted: &[(i32, i64)],
    ) -> Result<HashMap<(i32, i64), OwnedMessage>, AppError> {
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (partition, offset) in wanted {
            by_partition.entry(*partition).or_default().push(*offset);
        }
        let mut found = HashMap::new();
        for (partition, mut offsets) in by_partition {
            offsets.sort_unstable();
            offsets.dedup();
            // Reads runs of nearby offsets at once.
            let mut i = 0;
            while i < offsets.len() {
                let first = offsets[i];
                let mut last = first;
                let mut j = i + 1;
                while j < offsets.len() && offsets[j] - last <= WINDOW {
                    last = offsets[j];
                    j += 1;
                }
                for record in self.read(partition, first, last + 1)? {
                    if offsets[i..j].binary_search(&record.offset()).is_ok() {
                        found.insert((partition, record.offset()), record);
                    }
                }
                i = j;
            }
        }
        Ok(found)
    }
}

/// `partition:offset` pairs, comma-separated: where each partition's next
/// page ends (exclusive). Partitions left out are read to their start.
fn format_cursor(ends: &BTreeMap<i32, i64>) -> String {
    ends.iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_cursor(text: &str) -> Option<BTreeMap<i32, i64>> {
    let mut ends = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (p, o) = pair.split_once(':')?;
        let (p, o) = (p.parse::<i32>().ok()?, o.parse::<i64>().ok()?);
        if p < 0 || o < 0 {
            return None;
        }
        ends.insert(p, o);
    }
    Some(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: Option<&[u8]>, value_bytes: i64) -> Failure {
        Failure {
            at_ms: 0,
            partition: 1,
            offset: 7,
            version: "1.0.0".into(),
            kind: "bad-input".into(),
            message: "no".into(),
            attempts: 1,
            key: Some(vec![0xff, 0x00]),
            value: value.map(<[u8]>::to_vec),
            value_bytes,
            headers: r#"[["trace","abc"]]"#.into(),
        }
    }

    #[test]
    fn letter_ids_read_back_as_written() {
        for id in [
            LetterId::Record {
                topic: "acme.dlq-1".into(),
                partition: 2,
                offset: 17,
            },
            LetterId::Kept("f00".into()),
            LetterId::Queued {
                queue: "letters.fifo".into(),
                message_id: "5fea7756-0ea4-451a-a703-a558b933e274".into(),
            },
        ] {
            assert_eq!(LetterId::parse(&id.to_string()), Some(id));
        }
        for bad in [
            "",
            "topic:",
            "topic::1:2",
            "topic:t:-1:2",
            "topic:t:1",
            "kept:",
            "queue:",
            "queue:q:",
            "queue::m",
            "x:1",
        ] {
            assert_eq!(LetterId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursors_read_back_and_refuse_what_is_not_one() {
        let ends: BTreeMap<i32, i64> = [(0, 10), (2, 500)].into();
        assert_eq!(parse_cursor(&format_cursor(&ends)), Some(ends));
        assert_eq!(parse_cursor("0:x"), None);
        assert_eq!(parse_cursor("-1:4"), None);
    }

    #[test]
    fn kept_values_are_shown_safely() {
        let json = from_kept("k", row(Some(br#"{"a":1}"#), 7));
        assert_eq!(json.value, "{\n  \"a\": 1\n}");
        assert!(!json.value_cut);
        assert_eq!(json.key.as_deref(), Some("(2 bytes, not UTF-8 text: ff00)"));
        assert_eq!(json.headers, vec![("trace".to_owned(), "abc".to_owned())]);
        assert_eq!(json.at, "1970-01-01 00:00:00 UTC");
        let text = from_kept("k", row(Some(b"not json"), 8));
        assert_eq!(text.value, "not json");
        let cut = from_kept("k", row(Some(br#"{"a":"#), 70_000));
        assert!(cut.value_cut);
        assert_eq!(cut.value, r#"{"a":"#, "a cut value is shown as it is");
        assert_eq!(from_kept("k", row(None, 0)).value, "(no value)");
    }
}
