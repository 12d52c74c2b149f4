//! Runs requested through the REST API (`POST /v1/algo/{org}/{name}/{version}`).
//! A successful run is written to every enabled publish flow of that
//! algorithm version, like a run from a subscribe flow.

use std::time::Instant;

use rdkafka::producer::FutureRecord;

use app::domain::{AppError, CurrentUser, MAX_BATCH_SIZE, Runtime};

use super::Services;
use crate::runner::RunError;
use crate::runner::headers;

/// Why a REST run failed.
pub enum RunFailure {
    App(AppError),
    Run(RunError),
    /// The run succeeded but its result could not be published.
    Publish(String),
}

impl From<AppError> for RunFailure {
    fn from(e: AppError) -> Self {
        RunFailure::App(e)
    }
}

impl Services {
    /// Runs `org/name@version` on `input`; returns the output and the seconds it took.
    pub async fn run_algorithm(
        &self,
        user: &CurrentUser,
        org: &str,
        name: &str,
        version: &str,
        input: &[u8],
    ) -> Result<(Vec<u8>, f64), RunFailure> {
        let algorithm_id = self.visible_algorithm(user, org, name).await?.id;
        let versions = self.versions_of(&algorithm_id).await?;
        let Some(found) = versions.iter().find(|v| v.version == version) else {
            return Err(AppError::not_found(format!("Version {version} of {org}/{name}")).into());
        };
        let runtime = Runtime::parse(&found.runtime)?;
        let started = Instant::now();
        let executor = self.runner.executor();
        // A model that takes batches takes `{"instances": [...]}` here too:
        // the reply is `{"predictions": [...]}`, and each prediction is
        // published as a record of its own.
        let batch = match &runtime {
            Runtime::HttpBatch(url) => batch_of(input)?.map(|instances| (url, instances)),
            _ => None,
        };
        let (output, outputs) = match batch {
            Some((url, instances)) => {
                let outputs = executor
                    .run_batch(url, &instances)
                    .await
                    .map_err(RunFailure::Run)?;
                // Each output is already JSON: the reply is written around
                // them rather than parsed and written again.
                let mut output = b"{\"predictions\":[".to_vec();
                for (i, one) in outputs.iter().enumerate() {
                    if i > 0 {
                        output.push(b',');
                    }
                    output.extend_from_slice(one);
                }
                output.extend_from_slice(b"]}");
                (output, outputs)
            }
            _ => {
                let output = executor
                    .run(&runtime, input)
                    .await
                    .map_err(RunFailure::Run)?;
                (output.clone(), vec![output])
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let algorithm = format!("{org}/{name}");
        let headers = headers::build(
            None,
            &[
                (headers::ALGORITHM, algorithm.as_bytes()),
                (headers::VERSION, version.as_bytes()),
                (headers::SOURCE, b"api"),
            ],
        );
        for target in self.runner.targets(&algorithm_id, version).iter() {
            for one in &outputs {
                let record = FutureRecord::<[u8], [u8]>::to(&target.topic)
                    .payload(one.as_slice())
                    .headers(headers.clone());
                self.runner
                    .send(&target.connection_id, record)
                    .await
                    .map_err(RunFailure::Publish)?;
            }
        }
        Ok((output, seconds))
    }
}

/// The instances of a body in the batch shape `{"instances": [...]}` (no
/// other field), at most [`MAX_BATCH_SIZE`] of them.
fn batch_of(input: &[u8]) -> Result<Option<Vec<serde_json::Value>>, AppError> {
    let Ok(serde_json::Value::Object(mut body)) = serde_json::from_slice(input) else {
        return Ok(None);
    };
    if body.len() != 1 {
        return Ok(None);
    }
    match body.remove("instances") {
        Some(serde_json::Value::Array(instances)) => {
            if instances.is_empty() || instances.len() > MAX_BATCH_SIZE as usize {
                return Err(AppError::validation(
                    "instances",
                    format!("A batch has from 1 to {MAX_BATCH_SIZE} instances."),
                ));
            }
            Ok(Some(instances))
        }
        _ => Ok(None),
    }
}
