//! The server's side of [`app::api::Backend`]: what the server functions may
//! call, each delegating to the service that owns the rule.

use async_trait::async_trait;

use app::api::Backend;
use app::domain::{
    AlgorithmDetails, AlgorithmSummary, ApiKey, AppError, AuditPage, AuditQuery,
    BrokerConnectionDetails, BrokerConnectionSummary, CreatedApiKey, CurrentUser, DeadLetterPage,
    DeadLetterQuery, Direction, DryRun, DryRunRequest, EventRow, FlowRequest, FlowStats, ModelHost,
    NewBrokerConnection, ReplayRequest, Rewind, RewindPlan, TopicDetails, TopicGrant, TopicName,
};

use super::Services;

#[async_trait]
impl Backend for Services {
    async fn session_user(&self, token: &str) -> Result<Option<CurrentUser>, AppError> {
        Services::session_user(self, token).await
    }

    async fn log_in(
        &self,
        username: &str,
        password: &str,
        previous: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<(CurrentUser, String), AppError> {
        Services::log_in(self, username, password, previous, client).await
    }

    async fn log_out(&self, token: &str) -> Result<(), AppError> {
        Services::log_out(self, token).await
    }

    fn session_cookie(&self, token: Option<&str>) -> String {
        Services::session_cookie(self, token)
    }

    async fn list_broker_connections(&self) -> Result<Vec<BrokerConnectionSummary>, AppError> {
        self.list_connections().await
    }

    async fn connect_broker(&self, by: &str, new: NewBrokerConnection) -> Result<String, AppError> {
        Services::connect_broker(self, by, new).await
    }

    async fn broker_connection(&self, id: &str) -> Result<BrokerConnectionDetails, AppError> {
        self.connection_details(id).await
    }

    async fn delete_broker_connection(&self, by: &str, id: &str) -> Result<(), AppError> {
        self.delete_connection(by, id).await
    }

    async fn create_topic(
        &self,
        by: &str,
        id: &str,
        topic: &TopicName,
        partitions: u32,
    ) -> Result<(), AppError> {
        Services::create_topic(self, by, id, topic, partitions).await
    }

    async fn topic_details(&self, id: &str, topic: &TopicName) -> Result<TopicDetails, AppError> {
        Services::topic_details(self, id, topic).await
    }

    async fn save_topic_grants(
        &self,
        by: &str,
        id: &str,
        topic: &TopicName,
        grants: Vec<TopicGrant>,
    ) -> Result<(), AppError> {
        Services::save_topic_grants(self, by, id, topic, grants).await
    }

    async fn algorithm_names(&self) -> Result<Vec<String>, AppError> {
        Services::algorithm_names(self).await
    }

    async fn model_hosts(&self) -> Result<Vec<ModelHost>, AppError> {
        Services::model_hosts(self).await
    }

    async fn allow_model_host(&self, by: &str, entry: &str) -> Result<ModelHost, AppError> {
        Services::allow_model_host(self, by, entry).await
    }

    async fn remove_model_host(&self, by: &str, entry: &str) -> Result<(), AppError> {
        Services::remove_model_host(self, by, entry).await
    }

    async fn audit_log(&self, query: AuditQuery) -> Result<AuditPage, AppError> {
        Services::audit_log(self, query).await
    }

    async fn api_keys(&self, caller: &CurrentUser) -> Result<Vec<ApiKey>, AppError> {
        Services::api_keys(self, caller).await
    }

    async fn create_api_key(
        &self,
        caller: &CurrentUser,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> Result<CreatedApiKey, AppError> {
        Services::create_api_key(self, caller, name, expires_in_days).await
    }

    async fn revoke_api_key(&self, caller: &CurrentUser, id: &str) -> Result<(), AppError> {
        Services::revoke_api_key(self, caller, id).await
    }

    async fn catalog(&self, caller: &CurrentUser) -> Result<Vec<AlgorithmSummary>, AppError> {
        Services::catalog(self, caller).await
    }

    async fn algorithm(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<AlgorithmDetails, AppError> {
        Services::algorithm(self, caller, org, name).await
    }

    async fn add_version(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
        version: &str,
        runtime: &str,
    ) -> Result<(), AppError> {
        self.add_version_as(caller, org, name, version, runtime)
            .await
    }

    async fn events(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<Vec<EventRow>, AppError> {
        Services::events(self, caller, org, name).await
    }

    async fn save_flow(&self, caller: &CurrentUser, request: FlowRequest) -> Result<(), AppError> {
        Services::save_flow(self, caller, request).await
    }

    async fn disable_flow(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
        connection_id: &str,
        topic: &str,
        direction: Direction,
    ) -> Result<(), AppError> {
        Services::disable_flow(self, caller, org, name, connection_id, topic, direction).await
    }

    async fn flow_stats(&self, caller: &CurrentUser, flow_id: &str) -> Result<FlowStats, AppError> {
        Services::flow_stats(self, caller, flow_id).await
    }

    async fn dead_letters(
        &self,
        caller: &CurrentUser,
        flow_id: &str,
        query: DeadLetterQuery,
    ) -> Result<DeadLetterPage, AppError> {
        Services::dead_letters(self, caller, flow_id, query).await
    }

    async fn replay_dead_letters(
        &self,
        caller: &CurrentUser,
        request: ReplayRequest,
    ) -> Result<String, AppError> {
        Services::replay_dead_letters(self, caller, request).await
    }

    async fn pause_flow(
        &self,
        caller: &CurrentUser,
        flow_id: &str,
        paused: bool,
    ) -> Result<(), AppError> {
        Services::pause_flow(self, caller, flow_id, paused).await
    }

    async fn rewind_flow(
        &self,
        caller: &CurrentUser,
        flow_id: &str,
        to: Rewind,
        apply: bool,
    ) -> Result<RewindPlan, AppError> {
        Services::rewind_flow(self, caller, flow_id, to, apply).await
    }

    async fn dry_run(
        &self,
        caller: &CurrentUser,
        request: DryRunRequest,
    ) -> Result<DryRun, AppError> {
        Services::dry_run(self, caller, request).await
    }
}
