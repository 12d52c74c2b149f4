//! Queue manager: broker connections, topics and topic grants. Admins only.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

#[cfg(feature = "ssr")]
use crate::domain::TopicName;
use crate::domain::{
    AppError, BrokerConnectionDetails, BrokerConnectionSummary, NewBrokerConnection, TopicDetails,
    TopicGrant,
};

/// The largest partition count the Create topic form accepts.
pub const MAX_PARTITIONS: u32 = 1000;

#[server(endpoint = "list_broker_connections", input = Json)]
pub async fn list_broker_connections() -> Result<Vec<BrokerConnectionSummary>, AppError> {
    super::for_caller(super::Role::Admin, |_, backend| async move {
        backend.list_broker_connections().await
    })
    .await
}

/// **Connect to Broker**: connects for real, saves only on success.
#[server(endpoint = "connect_broker", input = Json)]
pub async fn connect_broker(connection: NewBrokerConnection) -> Result<String, AppError> {
    super::for_caller(super::Role::Admin, |admin, backend| async move {
        backend.connect_broker(&admin.username, connection).await
    })
    .await
}

#[server(endpoint = "get_broker_connection", input = Json)]
pub async fn get_broker_connection(id: String) -> Result<BrokerConnectionDetails, AppError> {
    super::for_caller(super::Role::Admin, |_, backend| async move {
        backend.broker_connection(&id).await
    })
    .await
}

#[server(endpoint = "delete_broker_connection", input = Json)]
pub async fn delete_broker_connection(id: String) -> Result<(), AppError> {
    super::for_caller(super::Role::Admin, |admin, backend| async move {
        backend.delete_broker_connection(&admin.username, &id).await
    })
    .await
}

#[server(endpoint = "create_topic", input = Json)]
pub async fn create_topic(id: String, topic: String, partitions: u32) -> Result<(), AppError> {
    super::for_caller(super::Role::Admin, |admin, backend| async move {
        let topic = TopicName::parse(&topic)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(AppError::validation(
                "partitions",
                format!("A topic needs between 1 and {MAX_PARTITIONS} partitions."),
            ));
        }
        backend
            .create_topic(&admin.username, &id, &topic, partitions)
            .await
    })
    .await
}

#[server(endpoint = "get_topic", input = Json)]
pub async fn get_topic(id: String, topic: String) -> Result<TopicDetails, AppError> {
    super::for_caller(super::Role::Admin, |_, backend| async move {
        let topic = TopicName::parse(&topic)?;
        backend.topic_details(&id, &topic).await
    })
    .await
}

/// **Save changes** on the topic edit page: the whole access list at once.
#[server(endpoint = "save_topic_grants", input = Json)]
pub async fn save_topic_grants(
    id: String,
    topic: String,
    grants: Vec<TopicGrant>,
) -> Result<(), AppError> {
    super::for_caller(super::Role::Admin, |admin, backend| async move {
        let topic = TopicName::parse(&topic)?;
        backend
            .save_topic_grants(&admin.username, &id, &topic, grants)
            .await
    })
    .await
}

/// Algorithms an admin can give access to (every organization's).
#[server(endpoint = "list_algorithm_names", input = Json)]
pub async fn list_algorithm_names() -> Result<Vec<String>, AppError> {
    super::for_caller(super::Role::Admin, |_, backend| async move {
        backend.algorithm_names().await
    })
    .await
}
