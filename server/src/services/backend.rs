//! The server's side of [`app::api::Backend`]: what the server functions may
//! call, each delegating to the service that owns the rule.

use async_trait::async_trait;

use app::api::Backend;
use app::domain::{
    AppError, BrokerConnectionDetails, BrokerConnectionSummary, CurrentUser, NewBrokerConnection,
    TopicDetails, TopicGrant, TopicName,
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
    ) -> Result<(CurrentUser, String), AppError> {
        Services::log_in(self, username, password, previous).await
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

    async fn connect_broker(&self, new: NewBrokerConnection) -> Result<String, AppError> {
        Services::connect_broker(self, new).await
    }

    async fn broker_connection(&self, id: &str) -> Result<BrokerConnectionDetails, AppError> {
        self.connection_details(id).await
    }

    async fn delete_broker_connection(&self, id: &str) -> Result<(), AppError> {
        self.delete_connection(id).await
    }

    async fn create_topic(
        &self,
        id: &str,
        topic: &TopicName,
        partitions: u32,
    ) -> Result<(), AppError> {
        Services::create_topic(self, id, topic, partitions).await
    }

    async fn topic_details(&self, id: &str, topic: &TopicName) -> Result<TopicDetails, AppError> {
        Services::topic_details(self, id, topic).await
    }

    async fn save_topic_grants(
        &self,
        id: &str,
        topic: &TopicName,
        grants: Vec<TopicGrant>,
    ) -> Result<(), AppError> {
        Services::save_topic_grants(self, id, topic, grants).await
    }

    async fn algorithm_names(&self) -> Result<Vec<String>, AppError> {
        Services::algorithm_names(self).await
    }
}
