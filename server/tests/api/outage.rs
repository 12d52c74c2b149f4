//! The broker goes away and comes back under a running flow: the flow reports
//! it, waits, and then processes everything, losing nothing.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use app::domain::Role;

use server::testing::{Storage, Tansu};

use crate::flows::wait_until;
use crate::kafka::produce_on;
use crate::support::TestApp;

/// Produces `{"text": "good {i}"}` for i in `from..to`.
async fn produce_to(bootstrap: &str, topic: &str, from: usize, to: usize) {
    let values: Vec<String> = (from..to)
        .map(|i| json!({"text": format!("good {i}")}).to_string())
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    produce_on(bootstrap, topic, &refs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_waits_out_a_broker_outage_and_loses_nothing() {
    let mut broker = Tansu::start(Storage::Sqlite).unwrap();
    let app = TestApp::spawn()
        .await
        .with_user("root", "root-password", Role::Admin)
        .await;
    app.services.add_organization("acme").await.unwrap();
    app.services
        .add_algorithm_version("acme/sentiment", "1.0.0", "builtin:sentiment", "")
        .await
        .unwrap();
    let admin = app.login("root", "root-password").await;
    let form = json!({"connection": {"name": "own", "bootstrap_servers": broker.bootstrap(),
        "security_protocol": "PLAINTEXT", "sasl_mechanism": "", "username": "", "password": "", "ca_pem": ""}});
    let id = app
        .call("connect_broker", form, Some(&admin))
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    for (topic, s, p) in [("in", true, false), ("out", false, true)] {
        let r = app
            .call(
                "create_topic",
                json!({"id": id, "topic": topic, "partitions": 1}),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let grants =
            json!([{"algorithm": "acme/sentiment", "access": {"subscribe": s, "publish": p}}]);
        app.call(
            "save_topic_grants",
            json!({"id": id, "topic": topic, "grants": grants}),
            Some(&admin),
        )
        .await;
    }
    for (topic, direction) in [("out", "Publish"), ("in", "Subscribe")] {
        let request = json!({"request": {"org": "acme", "name": "sentiment", "connection_id": id, "topic": topic,
            "direction": direction, "version": "1.0.0", "dlq_topic": null}});
        let r = app.call("save_flow", request, Some(&admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let events = app
        .call(
            "list_events",
            json!({"org": "acme", "name": "sentiment"}),
            Some(&admin),
        )
        .await
        .json();
    let flow = events
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["topic"] == "in")
        .unwrap()["flow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stats = || app.call("get_flow_stats", json!({"flow_id": flow}), Some(&admin));

    produce_to(&broker.bootstrap(), "in", 0, 10).await;
    wait_until("the first 10 are processed", || async {
        stats().await.json()["succeeded"] == 10
    })
    .await;

    broker.down();
    wait_until("the flow reports the outage", || async {
        stats().await.json()["state"]
            .as_str()
            .unwrap_or("")
            .starts_with("waiting for the broker")
    })
    .await;
    broker.up().unwrap();
    produce_to(&broker.bootstrap(), "in", 10, 20).await;
    wait_until("all 20 are processed after the broker is back", || async {
        let s = stats().await.json();
        s["succeeded"] == 20 && s["state"] == "running"
    })
    .await;
    // Stop the flow while its broker is still there to say goodbye to.
    app.services.runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_group_reads_a_backlog_of_outputs_from_sqlite_storage() {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = Tansu::start(Storage::Sqlite).unwrap();
    let topic = crate::kafka::unique_topic("out");
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    // What a flow writes: keyed records with the five `eventflows-` headers.
    const N: usize = 6540;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..N {
        let (key, value) = (
            format!("key-{i}"),
            json!({"label": "positive", "score": 0.75, "i": i}).to_string(),
        );
        let mut headers = OwnedHeaders::new();
        for name in [
            "algorithm",
            "version",
            "source-topic",
            "source-partition",
            "source-offset",
        ] {
            headers = headers.insert(Header {
                key: &format!("eventflows-{name}"),
                value: Some("acme/sentiment-1.0.0"),
            });
        }
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    let read = crate::flows::read_on(&broker.bootstrap(), &topic, N, Duration::from_secs(60)).await;
    assert_eq!(read.len(), N, "a new group reads every record");
}
