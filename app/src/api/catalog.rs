//! The ML service catalog, algorithm pages and the Events tab. Any logged-in
//! user may call these; the server checks organization membership.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::domain::{
    AlgorithmDetails, AlgorithmSummary, AppError, DeadLetterPage, DeadLetterQuery, Direction,
    DryRun, DryRunRequest, FlowRequest, FlowStats, GrantedTopic, ReplayRequest, Rewind, RewindPlan,
};

#[server(endpoint = "list_catalog", input = Json)]
pub async fn list_catalog() -> Result<Vec<AlgorithmSummary>, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.catalog(&user).await
    })
    .await
}

#[server(endpoint = "get_algorithm", input = Json)]
pub async fn get_algorithm(org: String, name: String) -> Result<AlgorithmDetails, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.algorithm(&user, &org, &name).await
    })
    .await
}

/// Adds a version (semver, runtime `builtin:…`, `http:…` or `http-batch:…`)
/// to an algorithm.
#[server(endpoint = "add_version", input = Json)]
pub async fn add_version(
    org: String,
    name: String,
    version: String,
    runtime: String,
) -> Result<(), AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend
            .add_version(&user, &org, &name, &version, &runtime)
            .await
    })
    .await
}

#[server(endpoint = "list_events", input = Json)]
pub async fn list_events(org: String, name: String) -> Result<Vec<GrantedTopic>, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.events(&user, &org, &name).await
    })
    .await
}

/// **Enable Listener** / **Save Changes**.
#[server(endpoint = "save_flow", input = Json)]
pub async fn save_flow(request: FlowRequest) -> Result<(), AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.save_flow(&user, request).await
    })
    .await
}

/// **Disable**, after the confirmation dialog.
#[server(endpoint = "disable_flow", input = Json)]
pub async fn disable_flow(
    org: String,
    name: String,
    connection_id: String,
    topic: String,
    direction: Direction,
) -> Result<(), AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend
            .disable_flow(&user, &org, &name, &connection_id, &topic, direction)
            .await
    })
    .await
}

/// The live numbers of a flow, for the debugging view.
#[server(endpoint = "get_flow_stats", input = Json)]
pub async fn get_flow_stats(flow_id: String) -> Result<FlowStats, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.flow_stats(&user, &flow_id).await
    })
    .await
}

/// A page of a flow's dead letters, newest first, for its monitor.
#[server(endpoint = "list_dead_letters", input = Json)]
pub async fn list_dead_letters(
    flow_id: String,
    query: DeadLetterQuery,
) -> Result<DeadLetterPage, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.dead_letters(&user, &flow_id, query).await
    })
    .await
}

/// Replays dead letters of a flow through a version; the replay's id.
#[server(endpoint = "replay_dead_letters", input = Json)]
pub async fn replay_dead_letters(request: ReplayRequest) -> Result<String, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.replay_dead_letters(&user, request).await
    })
    .await
}

/// Pauses (`paused: true`) or resumes a subscribe flow.
#[server(endpoint = "pause_flow", input = Json)]
pub async fn pause_flow(flow_id: String, paused: bool) -> Result<(), AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.pause_flow(&user, &flow_id, paused).await
    })
    .await
}

/// What rewinding a paused flow does (`apply: false`), or does it.
#[server(endpoint = "rewind_flow", input = Json)]
pub async fn rewind_flow(flow_id: String, to: Rewind, apply: bool) -> Result<RewindPlan, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.rewind_flow(&user, &flow_id, to, apply).await
    })
    .await
}

/// Runs another version on a sample of a flow's messages beside its own;
/// publishes nothing and moves no offset.
#[server(endpoint = "try_version", input = Json)]
pub async fn try_version(request: DryRunRequest) -> Result<DryRun, AppError> {
    super::for_caller(super::Role::Member, |user, backend| async move {
        backend.dry_run(&user, request).await
    })
    .await
}
