//! Pausing a flow and resetting where it starts again: the consumer
//! group's committed offsets are moved to the earliest or latest offset, to
//! a time, or to given offsets, as `kafka-consumer-groups --reset-offsets`
//! does. Only a paused flow may be rewound, so that no member of its group
//! is reading while its offsets move.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use app::domain::{AppError, BrokerKind, Direction, Rewind, RewindPartition, RewindPlan};

use super::Runner;
use crate::db::flows::{FlowRow, consumer_group, find_flow, is_paused};
use crate::db::now_ms;
use crate::kafka::{BrokerSettings, ReadingConsumer, ReadingContext};

const TIMEOUT: Duration = Duration::from_secs(10);

impl Runner {
    /// What rewinding the paused flow to `to` does, and with `apply`,
    /// does it: commits the new offsets for the flow's consumer group.
    pub async fn rewind(
        &self,
        flow_id: &str,
        to: Rewind,
        apply: bool,
    ) -> Result<RewindPlan, AppError> {
        let id = flow_id.to_owned();
        let (flow, paused) = self
            .inner
            .db
            .interact(move |c| Ok((find_flow(c, &id)?, is_paused(c, &id)?)))
            .await?;
        let flow = flow.ok_or_else(|| AppError::not_found("The flow"))?;
        if flow.direction != Direction::Subscribe || !flow.enabled {
            return Err(AppError::validation(
                "flow_id",
                "Only an enabled subscribe flow can be rewound.",
            ));
        }
        let kind = self.connection(&flow.connection_id).await?.kind();
        if kind != BrokerKind::Kafka {
            return Err(AppError::validation(
                "flow_id",
                format!(
                    "A flow on {} queue cannot be rewound: a queue's messages are deleted once processed. Replay its dead letters instead.",
                    match kind {
                        BrokerKind::ServiceBus => "a Service Bus",
                        _ => "an SQS",
                    }
                ),
            ));
        }
        if !paused {
            return Err(AppError::conflict("Pause the flow before you rewind it."));
        }
        if self.inner.flows.lock().await.contains_key(flow_id) {
            return Err(AppError::conflict(
                "The flow is still stopping; try again in a moment.",
            ));
        }
        if let Rewind::Timestamp(ms) = to
            && ms > now_ms()
        {
            return Err(AppError::validation(
                "to",
                "That time is in the future: there are no messages after it yet.",
            ));
        }
        let settings = self.settings(&flow.connection_id).await?;
        let plan = tokio::task::spawn_blocking(move || plan(&settings, &flow, &to, apply))
            .await
            .map_err(|_| AppError::Internal)??;
        if apply {
            tracing::info!(flow = flow_id, messages = plan.messages, "flow rewound");
        }
        Ok(plan)
    }
}

fn broker_error(topic: &str, error: KafkaError) -> AppError {
    AppError::Broker {
        message: format!("The offsets of '{topic}' could not be read or set: {error}"),
    }
}

/// Works out (and with `apply`, commits) the new offsets. Blocking.
fn plan(
    settings: &BrokerSettings,
    flow: &FlowRow,
    to: &Rewind,
    apply: bool,
) -> Result<RewindPlan, AppError> {
    let topic = flow.topic.as_str();
    let group = flow
        .consumer_group
        .clone()
        .unwrap_or_else(|| consumer_group(&flow.algorithm_id, &flow.connection_id, &flow.topic));
    let consumer: ReadingConsumer = settings
        .client_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_uncommitted")
        .create_with_context(ReadingContext)
        .map_err(|e| broker_error(topic, e))?;
    let fail = |e| broker_error(topic, e);
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(fail)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .filter(|p: &Vec<i32>| !p.is_empty())
        .ok_or_else(|| AppError::Broker {
            message: format!("The topic '{topic}' does not exist on the broker."),
        })?;
    let mut all = TopicPartitionList::new();
    for p in &partitions {
        all.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(all, TIMEOUT).map_err(fail)?;
    let by_time = match to {
        Rewind::Timestamp(ms) => {
            let mut wanted = TopicPartitionList::new();
            for p in &partitions {
                wanted
                    .add_partition_offset(topic, *p, Offset::Offset(*ms))
                    .map_err(fail)?;
            }
            Some(consumer.offsets_for_times(wanted, TIMEOUT).map_err(fail)?)
        }
        _ => None,
    };
    let given: std::collections::HashMap<i32, i64> = match to {
        Rewind::Offsets(offsets) => {
            for (p, _) in offsets {
                if !partitions.contains(p) {
                    return Err(AppError::validation(
                        "to",
                        format!("'{topic}' has no partition {p}."),
                    ));
                }
            }
            offsets.iter().copied().collect()
        }
        _ => Default::default(),
    };
    let mut plan = RewindPlan::default();
    let mut commit = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = crate::kafka::watermarks(&consumer, topic, p, TIMEOUT).map_err(fail)?;
        let committed = committed
            .find_partition(topic, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0);
        let target = match to {
            Rewind::Earliest => low,
            Rewind::Latest => high,
            Rewind::Timestamp(ms) => {
                let found = by_time
                    .as_ref()
                    .and_then(|t| t.find_partition(topic, p))
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= low && *o < high);
                match found {
                    // A broker answers "nothing after it" in different ways:
                    // the record found must be at or after the time.
                    Some(offset) if first_at_or_after(&consumer, topic, p, offset, *ms) => offset,
                    _ => high,
                }
            }
            Rewind::Offsets(_) => match given.get(&p) {
                None => committed.unwrap_or(low),
                Some(offset) if (low..=high).contains(offset) => *offset,
                Some(offset) => {
                    return Err(AppError::validation(
                        "to",
                        format!(
                            "Offset {offset} is outside partition {p}, which holds offsets {low} to {high}."
                        ),
                    ));
                }
            },
        };
        plan.messages += (high - target).max(0) as u64;
        plan.partitions.push(RewindPartition {
            partition: p,
            committed,
            to: target,
            end: high,
        });
        commit
            .add_partition_offset(topic, p, Offset::Offset(target))
            .map_err(fail)?;
    }
    if apply {
        consumer.assign(&commit).map_err(fail)?;
        consumer
            .commit(&commit, CommitMode::Sync)
            .map_err(|e| AppError::Conflict {
                message: format!(
                    "The consumer group '{group}' did not take the new offsets ({e}); if the flow runs on another server too, wait a few seconds after pausing and try again."
                ),
            })?;
        plan.applied = true;
    }
    Ok(plan)
}

/// Whether the record at `offset` was written at or after `ms`.
fn first_at_or_after(
    consumer: &ReadingConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    ms: i64,
) -> bool {
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .is_err()
        || consumer.assign(&list).is_err()
    {
        return false;
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut at_or_after = false;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.offset() >= offset => {
                at_or_after = m.timestamp().to_millis().is_some_and(|t| t >= ms);
                break;
            }
            Some(Err(_)) => break,
            _ => {}
        }
    }
    let _ = consumer.unassign();
    at_or_after
}
