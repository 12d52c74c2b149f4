//! Runs requested through the REST API (`POST /v1/algo/{org}/{name}/{version}`).
//! A successful run is written to every enabled publish flow of that
//! algorithm version, like a run from a subscribe flow.

use std::time::Instant;

use rdkafka::producer::FutureRecord;

use app::domain::{AppError, CurrentUser, Runtime};

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
        let (algorithm_id, ..) = self.visible_algorithm(user, org, name).await?;
        let versions = self.versions_of(&algorithm_id).await?;
        let Some(found) = versions.iter().find(|v| v.version == version) else {
            return Err(AppError::not_found(format!("Version {version} of {org}/{name}")).into());
        };
        let runtime = Runtime::parse(&found.runtime)?;
        let started = Instant::now();
        let output = self
            .runner
            .executor()
            .run(&runtime, input)
            .await
            .map_err(RunFailure::Run)?;
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
            let record = FutureRecord::<[u8], [u8]>::to(&target.topic)
                .payload(output.as_slice())
                .headers(headers.clone());
            self.runner
                .send(&target.connection_id, record)
                .await
                .map_err(RunFailure::Publish)?;
        }
        Ok((output, seconds))
    }
}
