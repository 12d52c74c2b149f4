//! What the server provides to the server functions (through Leptos context):
//! one trait per area, implemented by the server crate's services directly,
//! where the rules, the SQL and the Kafka code live.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    AlgorithmDetails, AlgorithmSummary, ApiKey, AppError, AuditPage, AuditQuery,
    BrokerConnectionDetails, BrokerConnectionSummary, CreatedApiKey, CurrentUser, DeadLetterPage,
    DeadLetterQuery, Direction, DryRun, DryRunRequest, FlowRequest, FlowStats, GrantedTopic,
    ModelHost, NewBrokerConnection, ReplayRequest, Rewind, RewindPlan, TopicDetails, TopicGrant,
    TopicName,
};

/// Name of the HttpOnly cookie that carries the session token.
pub const SESSION_COOKIE: &str = "eventflows_session";
/// The session cookie's name when the server is reached over HTTPS: the
/// `__Host-` prefix makes browsers refuse it unless it is `Secure`, set by
/// this host for every path, with no `Domain`.
pub const SECURE_SESSION_COOKIE: &str = "__Host-eventflows_session";

/// Logging in and out, and whose session a token is.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// The user a session token belongs to, if the session exists and has not expired.
    async fn session_user(&self, token: &str) -> Result<Option<CurrentUser>, AppError>;

    /// Checks the password. On success ends `previous` (if any), starts a new
    /// session and returns its token. Unknown user and wrong password fail
    /// alike; repeated failures for a name or from a `client` address are
    /// refused for a while without checking.
    async fn log_in(
        &self,
        username: &str,
        password: &str,
        previous: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<(CurrentUser, String), AppError>;

    /// Ends the session on the server.
    async fn log_out(&self, token: &str) -> Result<(), AppError>;

    /// The `Set-Cookie` value that stores `token` (or clears the cookie when `None`).
    fn session_cookie(&self, token: Option<&str>) -> String;
}

/// Queue manager: broker connections, topics and topic grants. `by` names
/// the admin, for the audit log.
#[async_trait]
pub trait BrokerAdmin: Send + Sync {
    /// Every broker connection with its live status.
    async fn list_broker_connections(&self) -> Result<Vec<BrokerConnectionSummary>, AppError>;

    /// Tests the connection for real and saves it only when the broker answers.
    /// Returns the new connection's id.
    async fn connect_broker(&self, by: &str, new: NewBrokerConnection) -> Result<String, AppError>;

    /// Settings (secrets only as "set"), live status, topics and flows.
    async fn broker_connection(&self, id: &str) -> Result<BrokerConnectionDetails, AppError>;

    /// Deletes the connection, its topic grants and its flows.
    async fn delete_broker_connection(&self, by: &str, id: &str) -> Result<(), AppError>;

    async fn create_topic(
        &self,
        by: &str,
        id: &str,
        topic: &TopicName,
        partitions: u32,
    ) -> Result<(), AppError>;

    /// A topic with the algorithms that have access to it.
    async fn topic_details(&self, id: &str, topic: &TopicName) -> Result<TopicDetails, AppError>;

    /// Replaces every grant on the topic with `grants`, all at once.
    async fn save_topic_grants(
        &self,
        by: &str,
        id: &str,
        topic: &TopicName,
        grants: Vec<TopicGrant>,
    ) -> Result<(), AppError>;

    /// Every algorithm of every organization, as `org/name`.
    async fn algorithm_names(&self) -> Result<Vec<String>, AppError>;
}

/// Admin → Model hosts.
#[async_trait]
pub trait ModelHostAdmin: Send + Sync {
    /// The model hosts `http:` runtimes may call.
    async fn model_hosts(&self) -> Result<Vec<ModelHost>, AppError>;

    /// Allows a model host (`by`: the admin); the entry as stored.
    async fn allow_model_host(&self, by: &str, entry: &str) -> Result<ModelHost, AppError>;

    async fn remove_model_host(&self, by: &str, entry: &str) -> Result<(), AppError>;
}

/// Admin → Audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// A page of the audit log.
    async fn audit_log(&self, query: AuditQuery) -> Result<AuditPage, AppError>;
}

/// Settings → API keys: each call acts on the caller's own keys.
#[async_trait]
pub trait ApiKeys: Send + Sync {
    /// The caller's own API keys, newest first.
    async fn api_keys(&self, caller: &CurrentUser) -> Result<Vec<ApiKey>, AppError>;

    /// Creates an API key for the caller; the key is in the answer only.
    async fn create_api_key(
        &self,
        caller: &CurrentUser,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> Result<CreatedApiKey, AppError>;

    async fn revoke_api_key(&self, caller: &CurrentUser, id: &str) -> Result<(), AppError>;
}

/// The catalog, algorithm pages and flows: each call is checked against the caller's role and organizations.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The algorithms `caller` can see (all of them for an admin).
    async fn catalog(&self, caller: &CurrentUser) -> Result<Vec<AlgorithmSummary>, AppError>;

    async fn algorithm(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<AlgorithmDetails, AppError>;

    async fn add_version(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
        version: &str,
        runtime: &str,
    ) -> Result<(), AppError>;

    /// The Events tab: one row per granted topic and direction.
    async fn events(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<Vec<GrantedTopic>, AppError>;

    /// Enables a flow, or changes an enabled one (version, Dead Letter Queue).
    async fn save_flow(&self, caller: &CurrentUser, request: FlowRequest) -> Result<(), AppError>;

    /// Disables a flow: in-flight work drains and its offsets are committed.
    async fn disable_flow(
        &self,
        caller: &CurrentUser,
        org: &str,
        name: &str,
        connection_id: &str,
        topic: &str,
        direction: Direction,
    ) -> Result<(), AppError>;

    async fn flow_stats(&self, caller: &CurrentUser, flow_id: &str) -> Result<FlowStats, AppError>;

    /// A page of the flow's dead letters, newest first.
    async fn dead_letters(
        &self,
        caller: &CurrentUser,
        flow_id: &str,
        query: DeadLetterQuery,
    ) -> Result<DeadLetterPage, AppError>;

    /// Replays dead letters of a flow through a version; the replay's id.
    async fn replay_dead_letters(
        &self,
        caller: &CurrentUser,
        request: ReplayRequest,
    ) -> Result<String, AppError>;

    /// Pauses or resumes a subscribe flow.
    async fn pause_flow(
        &self,
        caller: &CurrentUser,
        flow_id: &str,
        paused: bool,
    ) -> Result<(), AppError>;

    /// Runs another version on a sample of the flow's messages, beside its
    /// own; publishes nothing.
    async fn dry_run(
        &self,
        caller: &CurrentUser,
        request: DryRunRequest,
    ) -> Result<DryRun, AppError>;

    /// What rewinding a paused flow does; with `apply`, does it.
    async fn rewind_flow(
        &self,
        caller: &CurrentUser,
        flow_id: &str,
        to: Rewind,
        apply: bool,
    ) -> Result<RewindPlan, AppError>;
}

/// Everything the server provides to the server functions (through Leptos
/// context), one trait per area, each implemented where its rules live.
pub trait Backend:
    Sessions + BrokerAdmin + ModelHostAdmin + AuditLog + ApiKeys + Catalog + 'static
{
}

impl<T> Backend for T where
    T: Sessions + BrokerAdmin + ModelHostAdmin + AuditLog + ApiKeys + Catalog + 'static
{
}

pub type SharedBackend = Arc<dyn Backend>;

pub fn token_from_headers(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SECURE_SESSION_COOKIE || *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_found_among_other_cookies() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "theme=dark; eventflows_session=abc123; other=1"
                .parse()
                .unwrap(),
        );
        assert_eq!(token_from_headers(&headers).as_deref(), Some("abc123"));
        headers.insert(http::header::COOKIE, "eventflows_session=".parse().unwrap());
        assert_eq!(token_from_headers(&headers), None);
    }
}
