//! The `eventflows-` headers every record the runner writes carries: the
//! only place their names are spelled out.

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Every header of ours starts with this; an input's own headers with it are
/// dropped when its output is written, so they never pile up along a chain.
pub const PREFIX: &str = "eventflows-";
/// `org/name` of the algorithm that wrote the record.
pub const ALGORITHM: &str = "eventflows-algorithm";
pub const VERSION: &str = "eventflows-version";
/// Where the input came from: a topic, or `api` for a REST run.
pub const SOURCE: &str = "eventflows-source";
pub const SOURCE_TOPIC: &str = "eventflows-source-topic";
pub const SOURCE_PARTITION: &str = "eventflows-source-partition";
pub const SOURCE_OFFSET: &str = "eventflows-source-offset";
/// On a dead letter: what went wrong, of which kind, after how many
/// attempts, when (milliseconds since the epoch).
pub const ERROR: &str = "eventflows-error";
pub const ERROR_KIND: &str = "eventflows-error-kind";
pub const ATTEMPTS: &str = "eventflows-attempts";
pub const FAILED_AT: &str = "eventflows-failed-at";
/// On a record written by a replay: the dead letter it replays, as
/// `topic/partition/offset` of the Dead Letter Queue record (or `kept/<id>`
/// for a failure the flow kept).
pub const REPLAY_OF: &str = "eventflows-replay-of";
/// On a dead letter whose value was cut to fit the broker's record size:
/// the length of the whole value.
pub const VALUE_TRUNCATED: &str = "eventflows-value-truncated";

/// On a message received from an SQS queue: its message id, and how many
/// times it was received (both as SQS gives them). They travel on with
/// its outputs, as an input's own headers do.
pub const SQS_MESSAGE_ID: &str = "sqs-message-id";
pub const SQS_RECEIVE_COUNT: &str = "sqs-receive-count";

/// On a message received from a Service Bus queue or subscription: its
/// message id, sequence number and delivery count (1 the first time), as
/// Service Bus gives them.
pub const SERVICEBUS_MESSAGE_ID: &str = "servicebus-message-id";
pub const SERVICEBUS_SEQUENCE_NUMBER: &str = "servicebus-sequence-number";
pub const SERVICEBUS_DELIVERY_COUNT: &str = "servicebus-delivery-count";

/// The headers that name a message received from a queue, stable across
/// deliveries (a queue's messages are numbered anew by each reader).
pub const QUEUED_IDS: [&str; 3] = [
    SQS_MESSAGE_ID,
    SERVICEBUS_MESSAGE_ID,
    SERVICEBUS_SEQUENCE_NUMBER,
];

/// The headers that go as an SQS message's attributes, most wanted first:
/// SQS takes at most ten, so the rest are left off.
pub const SQS_ATTRIBUTE_ORDER: [&str; 13] = [
    ERROR_KIND,
    ERROR,
    ATTEMPTS,
    FAILED_AT,
    ALGORITHM,
    VERSION,
    SOURCE_TOPIC,
    REPLAY_OF,
    VALUE_TRUNCATED,
    SQS_MESSAGE_ID,
    SQS_RECEIVE_COUNT,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
];

/// Builds headers: the input's own (minus old `eventflows-` ones), then ours.
pub fn build(original: Option<&OwnedHeaders>, ours: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(
        ours.len() + original.map(|h| h.count()).unwrap_or_default(),
    );
    if let Some(original) = original {
        for header in original.iter() {
            if !header.key.starts_with(PREFIX) {
                out = out.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    for (key, value) in ours {
        out = out.insert(Header {
            key,
            value: Some(*value),
        });
    }
    out
}

/// Bytes the headers take in a record (keys and values; the framing is
/// covered by the margin of [`super::write::MAX_RECORD_BYTES`]).
pub fn size(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 8)
        .sum()
}

/// A record's headers as text, for keeping with a failed message: a JSON
/// array of `[name, value]` pairs (values read as UTF-8, lossily).
pub fn as_json(headers: Option<&OwnedHeaders>) -> String {
    let pairs: Vec<(&str, String)> = headers
        .map(|h| {
            h.iter()
                .map(|header| {
                    let value = header
                        .value
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    (header.key, value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_eventflows_headers_are_replaced_and_others_kept() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "trace-id",
                value: Some(b"abc".as_slice()),
            })
            .insert(Header {
                key: VERSION,
                value: Some(b"0.1.0".as_slice()),
            });
        let built = build(Some(&original), &[(VERSION, b"2.0.0")]);
        let pairs: Vec<(&str, Option<&[u8]>)> = built.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(
            pairs,
            vec![
                ("trace-id", Some(b"abc".as_slice())),
                (VERSION, Some(b"2.0.0".as_slice()))
            ]
        );
        assert_eq!(size(&built), "trace-id".len() + 3 + VERSION.len() + 5 + 16);
    }

    #[test]
    fn headers_kept_with_a_failure_read_as_json_pairs() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace-id",
                value: Some(b"abc".as_slice()),
            })
            .insert(Header {
                key: "raw",
                value: Some([0xff_u8].as_slice()),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        let pairs: Vec<(String, String)> = serde_json::from_str(&as_json(Some(&headers))).unwrap();
        let expected = [("trace-id", "abc"), ("raw", "\u{fffd}"), ("empty", "")];
        assert_eq!(
            pairs,
            expected.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
        assert_eq!(as_json(None), "[]");
    }
}
