//! Trying a version first: a candidate version runs on a sample (the
//! newest messages of the flow's source topic, or chosen dead letters)
//! beside the flow's own version, and nothing is published and no offset
//! moves. The flow's own outputs are read from its output topics where
//! they are there, and run again otherwise.

use std::collections::HashMap;

use rdkafka::message::Message;

use app::domain::{
    AppError, BrokerKind, Comparison, Direction, DryRun, DryRunRequest, DrySample, MAX_DRY_RUN,
    MAX_REPLAY_LETTERS, Runtime,
};

use super::letters::{self, TopicReader};
use super::{Runner, headers};

/// A sample message: its source position and value.
struct Sampled {
    partition: i32,
    offset: i64,
    value: Option<Vec<u8>>,
}

impl Runner {
    /// Runs `request.version` and the flow's own version on the sample and
    /// compares them. Publishes nothing and moves no offset.
    pub async fn dry_run(&self, request: DryRunRequest) -> Result<DryRun, AppError> {
        let flow = self.replay_flow(&request.flow_id).await?;
        if flow.row.direction != Direction::Subscribe {
            return Err(AppError::validation(
                "flow_id",
                "Only a subscribe flow runs a version on its messages.",
            ));
        }
        let candidate = self
            .runtime_of(&flow.row.algorithm_id, &request.version)
            .await?;
        let current_version = flow.row.version.clone();
        let current = self
            .runtime_of(&flow.row.algorithm_id, &current_version)
            .await?;
        let (sample, recent) = match &request.sample {
            DrySample::Recent(count) => {
                if self.connection(&flow.row.connection_id).await?.kind() != BrokerKind::Kafka {
                    return Err(AppError::validation(
                        "sample",
                        "A queue's recent messages cannot be read without taking them from the flow: try the version on chosen dead letters instead.",
                    ));
                }
                if !(1..=MAX_DRY_RUN).contains(count) {
                    return Err(AppError::validation(
                        "sample",
                        format!("A dry run takes 1 to {MAX_DRY_RUN} messages."),
                    ));
                }
                let reader = self.topic_reader(&flow.row, &flow.row.topic).await?;
                let n = *count as usize;
                let records = tokio::task::spawn_blocking(move || reader.latest(n))
                    .await
                    .map_err(|_| AppError::Internal)??;
                let sample = records
                    .iter()
                    .map(|m| Sampled {
                        partition: m.partition(),
                        offset: m.offset(),
                        value: m.payload().map(<[u8]>::to_vec),
                    })
                    .collect::<Vec<_>>();
                (sample, true)
            }
            DrySample::Letters(ids) => {
                if ids.is_empty() || ids.len() > (MAX_DRY_RUN as usize).min(MAX_REPLAY_LETTERS) {
                    return Err(AppError::validation(
                        "sample",
                        format!("A dry run takes 1 to {MAX_DRY_RUN} dead letters."),
                    ));
                }
                let wanted: Vec<(i32, String)> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (i as i32, id.clone()))
                    .collect();
                let found = self.find_letters(&flow, &wanted).await?;
                let mut sample = Vec::new();
                for (_, id) in &wanted {
                    match found.get(id) {
                        Some(Ok((message, ..))) => sample.push(Sampled {
                            partition: message.partition(),
                            offset: message.offset(),
                            value: message.payload().map(<[u8]>::to_vec),
                        }),
                        Some(Err(why)) => {
                            return Err(AppError::validation(
                                "sample",
                                format!("The dead letter {id} cannot be run: {why}."),
                            ));
                        }
                        None => {
                            return Err(AppError::validation(
                                "sample",
                                format!("'{id}' is not a dead letter of this flow."),
                            ));
                        }
                    }
                }
                (sample, false)
            }
        };
        let published = if recent {
            self.published(&flow, &current_version, sample.len())
                .await?
        } else {
            HashMap::new()
        };
        let mut run = DryRun {
            current_version,
            version: request.version.clone(),
            ..DryRun::default()
        };
        for message in sample {
            let input = match &message.value {
                None => "(no value)".to_owned(),
                Some(bytes) => letters::shown(bytes, true),
            };
            let (current, current_published) =
                match published.get(&(message.partition, message.offset)) {
                    Some(output) => (Ok(letters::shown(output, true)), true),
                    None => (
                        self.try_run(&current, message.value.as_deref()).await,
                        false,
                    ),
                };
            let candidate = self.try_run(&candidate, message.value.as_deref()).await;
            let comparison = Comparison {
                partition: message.partition,
                offset: message.offset,
                input,
                current,
                current_published,
                candidate,
            };
            match comparison.verdict() {
                "same" => run.same += 1,
                "failed" => run.failed += 1,
                _ => run.different += 1,
            }
            run.comparisons.push(comparison);
        }
        Ok(run)
    }

    /// One attempt of a run, its output shown as the page shows it.
    async fn try_run(&self, runtime: &Runtime, value: Option<&[u8]>) -> Result<String, String> {
        let Some(value) = value else {
            return Err("the message has no value".into());
        };
        match self.executor().run(runtime, value).await {
            Ok(output) => Ok(letters::shown(&output, true)),
            Err(error) => Err(format!("{}: {}", error.kind(), error.message())),
        }
    }

    /// The outputs the flow's version published for the newest messages
    /// of its topic, by source position, read from its output topics.
    async fn published(
        &self,
        flow: &super::replay::Flow,
        version: &str,
        count: usize,
    ) -> Result<HashMap<(i32, i64), Vec<u8>>, AppError> {
        let mut found = HashMap::new();
        for target in self.targets(&flow.row.algorithm_id, version) {
            let settings = self.settings(&target.connection_id).await?;
            let topic = target.topic.clone();
            let reader = tokio::task::spawn_blocking(move || TopicReader::new(&settings, &topic))
                .await
                .map_err(|_| AppError::Internal)??;
            // Other sources write to the output topic too: look further back.
            let n = count * 4 + 50;
            let records = tokio::task::spawn_blocking(move || reader.latest(n))
                .await
                .map_err(|_| AppError::Internal)??;
            for record in records {
                let from_flow = letters::header(&record, headers::ALGORITHM)
                    == Some(flow.algorithm.as_str())
                    && letters::header(&record, headers::SOURCE_TOPIC) == Some(&flow.row.topic)
                    && letters::header(&record, headers::VERSION) == Some(version)
                    && letters::header(&record, headers::REPLAY_OF).is_none();
                let position = (
                    letters::header(&record, headers::SOURCE_PARTITION)
                        .and_then(|p| p.parse().ok()),
                    letters::header(&record, headers::SOURCE_OFFSET).and_then(|o| o.parse().ok()),
                );
                if let (true, (Some(p), Some(o)), Some(value)) =
                    (from_flow, position, record.payload())
                {
                    found.entry((p, o)).or_insert_with(|| value.to_vec());
                }
            }
        }
        Ok(found)
    }
}
