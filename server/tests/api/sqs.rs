//! Amazon SQS connections, against a real SQS-compatible server (moto).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::{Value, json};

use app::domain::{AwsRegion, BrokerConnectionDetails, BrokerKind, GrantedTopic, TopicInfo};
use server::db::schema::broker_connections;
use server::sqs::{SqsClient, SqsSettings};
use server::testing::Moto;

use crate::brokers::admin_app;
use crate::kafka::unique_topic;
use crate::support::TestApp;

const SECRET: &str = "canary-secret-3b1f9e";

/// The endpoint of the shared moto server, started once for this binary.
fn endpoint() -> String {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().unwrap()).endpoint()
}

fn sqs_form(name: &str, endpoint: &str) -> Value {
    json!({"connection": {
        "kind": "sqs", "name": name, "region": "us-east-1", "endpoint_url": endpoint,
        "access_key_id": "AKIAEVENTFLOWSTEST", "secret_access_key": SECRET,
        "use_default_credentials": false
    }})
}

async fn connect_sqs(app: &TestApp, token: &str, name: &str) -> String {
    let reply = app
        .call("connect_broker", sqs_form(name, &endpoint()), Some(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json().as_str().unwrap().to_owned()
}

/// The client a test uses to put messages on queues, as another program would.
fn sdk() -> SqsClient {
    SqsClient::new(&SqsSettings {
        region: AwsRegion::parse("us-east-1").unwrap(),
        endpoint_url: Some(endpoint()),
        key: Some(("AKIAEVENTFLOWSTEST".into(), SECRET.into())),
    })
}

async fn connection_count(app: &TestApp) -> i64 {
    app.services
        .db
        .interact(|c| broker_connections::table.count().get_result(c))
        .await
        .unwrap()
}

async fn create_queue(app: &TestApp, token: &str, id: &str, name: &str) {
    let reply = app
        .call(
            "create_topic",
            json!({"id": id, "topic": name, "partitions": 1}),
            Some(token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
}

async fn queue(app: &TestApp, token: &str, id: &str, name: &str) -> TopicInfo {
    let details: BrokerConnectionDetails = app
        .call_as("get_broker_connection", json!({"id": id}), Some(token))
        .await;
    details
        .topics
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no queue {name}"))
}

#[tokio::test]
async fn an_sqs_connection_is_tested_then_saved_with_its_secret_sealed() {
    let (app, token) = admin_app().await;
    let id = connect_sqs(&app, &token, "queues").await;

    let list = app
        .call("list_broker_connections", json!({}), Some(&token))
        .await;
    let row = &list.json()[0];
    assert_eq!(row["kind"], "Sqs");
    assert_eq!(row["status"], "Reachable", "{row}");
    assert_eq!(
        row["bootstrap_servers"],
        format!("us-east-1 at {}", endpoint())
    );
    assert!(row["topic_count"].is_u64());

    let details = app
        .call("get_broker_connection", json!({"id": id}), Some(&token))
        .await;
    let shown: BrokerConnectionDetails = serde_json::from_str(&details.text()).unwrap();
    assert_eq!(shown.kind, BrokerKind::Sqs);
    assert_eq!(shown.region.as_deref(), Some("us-east-1"));
    assert_eq!(shown.endpoint_url.as_deref(), Some(endpoint().as_str()));
    assert_eq!(shown.access_key_id.as_deref(), Some("AKIAEVENTFLOWSTEST"));
    assert!(shown.password_set);
    // The secret never leaves the server, and is sealed at rest.
    for text in [list.text(), details.text()] {
        assert!(!text.contains(SECRET), "{text}");
    }
    let sealed: Option<String> = app
        .services
        .db
        .interact(move |c| {
            broker_connections::table
                .find(&id)
                .select(broker_connections::password_encrypted)
                .first(c)
        })
        .await
        .unwrap();
    let sealed = sealed.expect("the secret access key is stored");
    assert!(!sealed.contains(SECRET));
}

#[tokio::test]
async fn queues_are_created_and_listed_with_their_attributes() {
    let (app, token) = admin_app().await;
    let id = connect_sqs(&app, &token, "queues").await;
    let (standard, dlq) = (unique_topic("orders"), unique_topic("orders-dlq"));
    let fifo = format!("{}.fifo", unique_topic("ordered"));
    for name in [&standard, &dlq, &fifo] {
        create_queue(&app, &token, &id, name).await;
    }

    // Another program puts three messages on the queue and takes one.
    let sqs = sdk();
    let url = sqs.queue_url(&standard).await.unwrap().unwrap();
    for body in ["a", "b", "c"] {
        sqs.sdk()
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let taken = sqs
        .sdk()
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap();
    assert_eq!(taken.messages().len(), 1);
    let dlq_url = sqs.queue_url(&dlq).await.unwrap().unwrap();
    let dlq_arn = sqs
        .sdk()
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    sqs.sdk()
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}).to_string(),
        )
        .send()
        .await
        .unwrap();

    let orders = queue(&app, &token, &id, &standard).await;
    let attributes = orders.queue.expect("an SQS queue has queue attributes");
    assert_eq!((attributes.visible, attributes.in_flight), (2, 1));
    assert_eq!(orders.message_count, 2);
    assert!(!attributes.fifo);
    assert_eq!(attributes.redrive, Some(format!("{dlq} after 3 receives")));
    assert!(queue(&app, &token, &id, &fifo).await.queue.unwrap().fifo);

    // The sidesheet shows the same queue.
    let topic = app
        .call(
            "get_topic",
            json!({"id": id, "topic": standard}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(topic["topic"]["queue"]["in_flight"], 1, "{topic}");

    let again = app
        .call(
            "create_topic",
            json!({"id": id, "topic": standard, "partitions": 1}),
            Some(&token),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text().contains("already exists"), "{}", again.text());
    for bad in ["dots.in.name", "x.fifo.fifo", ".fifo", &"q".repeat(81)] {
        let reply = app
            .call(
                "create_topic",
                json!({"id": id, "topic": bad, "partitions": 1}),
                Some(&token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.json()["field"], "topic", "{bad}");
        assert!(sqs.queue_url(bad).await.unwrap().is_none(), "{bad} created");
    }
}

#[tokio::test]
async fn sqs_forms_are_refused_field_by_field_and_save_nothing() {
    let (app, token) = admin_app().await;
    let form = |patch: Value| {
        let mut base = sqs_form("new one", &endpoint());
        for (k, v) in patch.as_object().unwrap() {
            base["connection"][k] = v.clone();
        }
        base
    };
    let cases = [
        (json!({"kind": "rabbitmq"}), "kind"),
        (json!({"region": ""}), "region"),
        (json!({"region": "US-EAST-1"}), "region"),
        (json!({"region": "useast1"}), "region"),
        (json!({"endpoint_url": "127.0.0.1:4566"}), "endpoint_url"),
        (json!({"endpoint_url": "http://host/path"}), "endpoint_url"),
        (json!({"access_key_id": ""}), "access_key_id"),
        (json!({"access_key_id": "AKIA EXAMPLE"}), "access_key_id"),
        (json!({"secret_access_key": " "}), "secret_access_key"),
    ];
    for (patch, field) in cases {
        let reply = app
            .call("connect_broker", form(patch.clone()), Some(&token))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{patch}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["field"], field, "{patch}");
    }
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn an_sqs_endpoint_that_does_not_answer_fails_in_time_and_saves_nothing() {
    let (app, token) = admin_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let started = Instant::now();
    let reply = app
        .call(
            "connect_broker",
            sqs_form("nowhere", &nowhere),
            Some(&token),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.json()["kind"], "broker");
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&nowhere), "{message}");
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn credentials_the_service_refuses_are_said_so_and_nothing_is_saved() {
    let (app, token) = admin_app().await;
    let strict = Moto::start_checking_credentials().unwrap();
    let reply = app
        .call(
            "connect_broker",
            sqs_form("strict", &strict.endpoint()),
            Some(&token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("refused the credentials") && message.contains("InvalidClientTokenId"),
        "{message}"
    );
    assert!(!message.contains(SECRET), "{message}");
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn queues_can_be_granted_and_flows_on_them_are_refused_with_a_reason() {
    let (app, token) = admin_app().await;
    let id = connect_sqs(&app, &token, "queues").await;
    let name = unique_topic("events");
    create_queue(&app, &token, &id, &name).await;
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
    ]);
    let saved = app
        .call(
            "save_topic_grants",
            json!({"id": id, "topic": name, "grants": grants}),
            Some(&token),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());

    let events: Vec<GrantedTopic> = app
        .call_as(
            "list_events",
            json!({"org": "acme", "name": "sentiment"}),
            Some(&token),
        )
        .await;
    assert!(events.iter().any(|e| e.topic == name), "{events:?}");

    let request = json!({"request": {"org": "acme", "name": "sentiment", "connection_id": id,
        "topic": name, "direction": "Subscribe", "version": "1.0.0", "dlq_topic": null}});
    let refused = app.call("save_flow", request, Some(&token)).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("Amazon SQS"), "{}", refused.text());
    let flows: i64 = app
        .services
        .db
        .interact(|c| server::db::schema::flows::table.count().get_result(c))
        .await
        .unwrap();
    assert_eq!(flows, 0);
}
