//! The write step's rules: which write errors can never succeed, and how a
//! record is made to fit the broker's size limit.
//!
//! A retryable error (broker away, leader moving, queue full) is sent again
//! until it succeeds; a permanent one (record too large, topic gone or not
//! authorised, connection deleted) is recorded and the partition moves on.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The largest record the runner writes, as set on its producers
/// (`message.max.bytes`, librdkafka's default): key, value and headers.
pub const MAX_RECORD_BYTES: usize = 1_000_000;
/// Room kept for the record's framing besides key, value and headers.
const FRAMING: usize = 1024;

/// Why a write did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Will never succeed as it is.
    Permanent(String),
    /// Worth sending again.
    Retryable(String),
    /// Worth sending again, through a new producer: the broker did not
    /// acknowledge it in time (an idempotent producer then has to bump its
    /// epoch, which not every broker serves: tansu 0.6.0 fails every later
    /// write of that producer), or the producer is in a fatal state and
    /// fails every write. With the id of the producer that failed (see
    /// [`WriteError::through`]).
    NewProducer(String, u64),
}

impl WriteError {
    /// Sorts a producer or delivery error for a write to `topic`.
    pub fn from_kafka(topic: &str, error: &KafkaError) -> Self {
        let code = error.rdkafka_error_code();
        let message = format!("writing to '{topic}' failed: {error}");
        if code.is_some_and(is_permanent) {
            WriteError::Permanent(message)
        } else if code.is_some_and(spends_the_producer) {
            WriteError::NewProducer(message, 0)
        } else {
            WriteError::Retryable(message)
        }
    }

    pub fn message(&self) -> &str {
        match self {
            WriteError::Permanent(m) | WriteError::Retryable(m) | WriteError::NewProducer(m, _) => {
                m
            }
        }
    }

    /// The error of a write through the producer `id`.
    pub fn through(self, id: u64) -> Self {
        match self {
            WriteError::NewProducer(message, _) => WriteError::NewProducer(message, id),
            other => other,
        }
    }
}

/// Errors after which the producer that gave them is not used again: a
/// timeout, a fatal error (once librdkafka raises one, typically when an
/// idempotent producer can no longer keep its records in order, it fails
/// every later write of that producer with `Fatal`, and those it held with
/// `PurgeQueue`), and the sequence and epoch errors that may come before
/// one. librdkafka recovers from some of those by itself; a new producer
/// costs little either way.
fn spends_the_producer(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as E;
    matches!(
        code,
        E::MessageTimedOut
            | E::Fatal
            | E::PurgeQueue
            | E::OutOfOrderSequenceNumber
            | E::InvalidProducerEpoch
            | E::UnknownProducerId
            | E::ProducerFenced
    )
}

/// Errors that sending the same record again cannot cure. librdkafka has
/// already retried what it could by the time one of these reaches us.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as E;
    matches!(
        code,
        E::MessageSizeTooLarge
            | E::InvalidMessageSize
            | E::MessageBatchTooLarge
            | E::InvalidRecord
            | E::UnknownTopic
            | E::UnknownPartition
            | E::UnknownTopicOrPartition
            | E::InvalidTopic
            | E::TopicAuthorizationFailed
            | E::ClusterAuthorizationFailed
            | E::PolicyViolation
            | E::InvalidArgument
    )
}

/// Whether a record of these sizes may be written.
pub fn fits(key: usize, value: usize, headers: usize) -> bool {
    key + value + headers + FRAMING <= MAX_RECORD_BYTES
}

/// How many bytes of the value fit in a record with this key and headers
/// (`None`: the whole value fits).
pub fn cut_to_fit(key: usize, value: usize, headers: usize) -> Option<usize> {
    if fits(key, value, headers) {
        return None;
    }
    Some(MAX_RECORD_BYTES.saturating_sub(key + headers + FRAMING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_cannot_be_cured_by_resending_are_permanent() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(
            WriteError::from_kafka("out", &too_large),
            WriteError::Permanent(m) if m.contains("'out'")
        ));
        use RDKafkaErrorCode as E;
        let sorted = [
            (E::UnknownTopic, "permanent"),
            (E::UnknownTopicOrPartition, "permanent"),
            (E::TopicAuthorizationFailed, "permanent"),
            (E::MessageTimedOut, "new producer"),
            (E::Fatal, "new producer"),
            (E::PurgeQueue, "new producer"),
            (E::OutOfOrderSequenceNumber, "new producer"),
            (E::QueueFull, "retryable"),
            (E::AllBrokersDown, "retryable"),
            (E::NotEnoughReplicas, "retryable"),
            (E::LeaderNotAvailable, "retryable"),
        ];
        for (code, expected) in sorted {
            let kind = match WriteError::from_kafka("t", &KafkaError::MessageProduction(code)) {
                WriteError::Permanent(_) => "permanent",
                WriteError::NewProducer(_, 0) => "new producer",
                WriteError::NewProducer(..) => "new producer of another id",
                WriteError::Retryable(_) => "retryable",
            };
            assert_eq!(kind, expected, "{code:?}");
        }
    }

    #[test]
    fn a_value_is_cut_only_when_the_record_would_not_fit() {
        assert!(fits(10, 900_000, 200));
        assert_eq!(cut_to_fit(10, 900_000, 200), None);
        let cut = cut_to_fit(10, 1_040_000, 200).unwrap();
        assert!(fits(10, cut, 200));
        assert!(!fits(10, cut + 1, 200));
    }
}
