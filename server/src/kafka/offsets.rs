//! A partition's watermarks, as its records show them.

use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// The context of consumers that read a partition to its end: reaching
/// the end is expected, not an error worth logging.
pub struct ReadingContext;

impl ClientContext for ReadingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::warn!(%error, reason, "librdkafka");
    }
}

impl ConsumerContext for ReadingContext {}

/// A consumer that reads partitions to their end.
pub type ReadingConsumer = BaseConsumer<ReadingContext>;

/// The low and high watermarks of a partition. A ListOffsets answer alone
/// is not trusted for the high one: tansu 0.6 with its memory storage
/// answers "latest" with the first offset of the newest record batch plus
/// one. Reading from there to the end of the partition (as a fetch tells
/// it) finds the true end. The consumer must have `enable.partition.eof`
/// set, and read uncommitted records (`isolation.level`): nothing the
/// runner writes is transactional, and tansu's last stable offset can lag
/// far behind what its idempotent producers wrote. It is left unassigned.
/// Blocking.
pub fn watermarks(
    consumer: &ReadingConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    if high <= low {
        return Ok((low, high));
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
    consumer.assign(&list)?;
    let deadline = Instant::now() + timeout;
    let mut end = high;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => end = end.max(m.offset() + 1),
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => {
                let _ = consumer.unassign();
                return Err(error);
            }
            None => {}
        }
    }
    let _ = consumer.unassign();
    Ok((low, end))
}
