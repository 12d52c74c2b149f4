//! Azure Service Bus connections, against the Service Bus test peer
//! (`support::servicebus_peer`), and, when `EVENTFLOWS_TEST_SERVICEBUS`
//! holds a namespace's connection string, against that namespace.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::{Value, json};

use app::domain::{BrokerConnectionDetails, BrokerKind, EntityKind, TopicInfo};
use server::db::schema::broker_connections;
use server::servicebus::{ServiceBusAdmin, ServiceBusSettings};

use crate::brokers::{admin_app, connection_count, create_topic, refuses_each_field};
use crate::faults::flaky_version;
use crate::flows::{Pipeline, numbers_in, pipeline, read, records_on, wait_until};
use crate::kafka::unique_topic;
use crate::support::TestApp;
use crate::support::servicebus_peer::{self, ServiceBusPeer};

fn form(name: &str, connection_string: &str) -> Value {
    json!({"connection": {"kind": "servicebus", "name": name, "connection_string": connection_string}})
}

async fn connect_bus(app: &TestApp, token: &str, peer: &ServiceBusPeer) -> String {
    let reply = app
        .call(
            "connect_broker",
            form("bus", &peer.connection_string()),
            Some(token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json().as_str().unwrap().to_owned()
}

async fn entity(app: &TestApp, token: &str, id: &str, name: &str) -> TopicInfo {
    let details: BrokerConnectionDetails = app
        .call_as("get_broker_connection", json!({"id": id}), Some(token))
        .await;
    details
        .topics
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no entity {name}"))
}

#[tokio::test]
async fn a_service_bus_connection_is_tested_then_saved_with_its_key_sealed() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("orders");
    let (app, token) = admin_app().await;
    let id = connect_bus(&app, &token, &peer).await;

    let list = app
        .call("list_broker_connections", json!({}), Some(&token))
        .await;
    let row = &list.json()[0];
    assert_eq!(row["kind"], "ServiceBus");
    assert_eq!(row["status"], "Reachable", "{row}");
    assert_eq!(row["topic_count"], 1);
    let address = row["bootstrap_servers"].as_str().unwrap();
    assert!(
        address.starts_with(&format!("sb://{}", peer.host())),
        "{address}"
    );

    let details = app
        .call("get_broker_connection", json!({"id": id}), Some(&token))
        .await;
    let shown: BrokerConnectionDetails = serde_json::from_str(&details.text()).unwrap();
    assert_eq!(shown.kind, BrokerKind::ServiceBus);
    assert_eq!(shown.username.as_deref(), Some(peer.key_name()));
    assert!(shown.password_set);
    for text in [list.text(), details.text()] {
        assert!(!text.contains(peer.key()), "{text}");
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
    assert!(!sealed.expect("the key is stored").contains(peer.key()));
}

#[tokio::test]
async fn queues_topics_and_subscriptions_are_listed_with_their_counts() {
    let peer = ServiceBusPeer::start().await;
    peer.create_topic("events");
    peer.create_subscription("events", "scoring");
    let (app, token) = admin_app().await;
    let id = connect_bus(&app, &token, &peer).await;
    let reply = create_topic(&app, &token, &id, "orders", 1).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // Created through the management API: the peer has it.
    for body in [b"a".as_slice(), b"b", b"c"] {
        peer.send("orders", body);
    }
    peer.send("events", b"fanned out");

    let orders = entity(&app, &token, &id, "orders").await;
    let info = orders.entity.expect("a Service Bus entity");
    assert_eq!(
        (info.kind, info.active, info.dead_letter),
        (EntityKind::Queue, 3, 0)
    );
    assert_eq!(orders.message_count, 3);
    let sub = entity(&app, &token, &id, "events/subscriptions/scoring").await;
    assert_eq!(sub.entity.as_ref().unwrap().kind, EntityKind::Subscription);
    assert_eq!(sub.entity.unwrap().active, 1);
    let topic = entity(&app, &token, &id, "events").await;
    assert_eq!(topic.entity.unwrap().kind, EntityKind::Topic);

    // The sidesheet shows a subscription too.
    let shown = app
        .call(
            "get_topic",
            json!({"id": id, "topic": "events/subscriptions/scoring"}),
            Some(&token),
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());

    let again = create_topic(&app, &token, &id, "orders", 1).await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        again.text()
    );
    assert!(again.text().contains("already exists"), "{}", again.text());
    for bad in ["-leading", "with space", "a/b"] {
        let reply = create_topic(&app, &token, &id, bad, 1).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.json()["field"], "topic", "{bad}");
    }
}

#[tokio::test]
async fn service_bus_forms_are_refused_field_by_field_and_save_nothing() {
    let (app, token) = admin_app().await;
    let fields = json!({"connection": {"kind": "servicebus", "name": "bus",
        "namespace": "acme", "key_name": "RootManageSharedAccessKey", "key": "secret"}});
    let cases = [
        (json!({"namespace": ""}), "connection_string"),
        (json!({"namespace": "not a host"}), "namespace"),
        (json!({"key_name": ""}), "key_name"),
        (json!({"key": " "}), "key"),
        (
            json!({"connection_string": "Endpoint=sb://acme.servicebus.windows.net/"}),
            "connection_string",
        ),
        (
            json!({"connection_string": "Endpoint=sb://a.b/;SharedAccessKeyName=k;SharedAccessKey=s;EntityPath=q"}),
            "connection_string",
        ),
    ];
    refuses_each_field(&app, &token, fields, &cases).await;
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn a_key_the_namespace_refuses_is_said_so_and_nothing_is_saved() {
    let peer = ServiceBusPeer::start().await;
    let (app, token) = admin_app().await;
    let wrong = peer
        .connection_string()
        .replace(peer.key(), "d3Jvbmcta2V5LXRoYXQtaXMtbm90LXRoZS1wZWVycw==");
    let reply = app
        .call("connect_broker", form("bus", &wrong), Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("refused the key"), "{message}");
    assert!(!message.contains("d3Jvbmc"), "{message}");
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn a_namespace_that_does_not_answer_fails_in_time_and_saves_nothing() {
    let (app, token) = admin_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = format!(
        "Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true"
    );
    let started = Instant::now();
    let reply = app
        .call("connect_broker", form("nowhere", &nowhere), Some(&token))
        .await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("Could not reach Service Bus"), "{message}");
    assert_eq!(connection_count(&app).await, 0);
}

/// A queue on a Service Bus connection that acme/sentiment may subscribe
/// to, in the flows' pipeline (whose Kafka output topic it publishes to).
struct BusPipeline {
    p: Pipeline,
    peer: ServiceBusPeer,
    connection: String,
    queue: String,
}

async fn bus_pipeline() -> BusPipeline {
    let peer = ServiceBusPeer::start().await;
    let p = pipeline().await;
    let connection = connect_bus(&p.app, &p.admin, &peer).await;
    let queue = unique_topic("inbox");
    peer.create_queue(&queue);
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
    ]);
    let saved = p.save_grants(&connection, &queue, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    BusPipeline {
        p,
        peer,
        connection,
        queue,
    }
}

impl BusPipeline {
    fn flow(&self, topic: &str, direction: &str, version: &str, dlq: Option<&str>) -> Value {
        json!({"request": {"org": "acme", "name": "sentiment", "connection_id": self.connection,
            "topic": topic, "direction": direction, "version": version, "dlq_topic": dlq}})
    }

    /// Runs `version` on the queue, publishing to the Kafka output topic
    /// (and dead letters to `dlq`); the flow's id.
    async fn enable(&self, version: &str, dlq: Option<&str>) -> String {
        self.p
            .subscribe_on(&self.connection, &self.queue, version, dlq)
            .await
    }

    /// Runs a version that returns its input (3.0.0) on the queue; the
    /// flow's id.
    async fn enable_echo(&self) -> String {
        self.p
            .app
            .services
            .add_algorithm_version("acme/sentiment", "3.0.0", "builtin:echo", "")
            .await
            .unwrap();
        self.enable("3.0.0", None).await
    }

    /// Runs echo on the queue until a message came through, then deletes
    /// the queue and waits until the flow says it is gone; the flow's id.
    async fn echo_then_delete(&self) -> String {
        let flow = self.enable_echo().await;
        self.send(&[json!({"i": 0}).to_string()]);
        assert_eq!(read(&self.p.output, 1).await.len(), 1);
        self.peer.delete_entity(&self.queue);
        let gone = format!("the queue or subscription '{}' does not exist", self.queue);
        wait_until("the flow says its queue is gone", || async {
            self.p.stats(&flow).await.state == gone
        })
        .await;
        flow
    }

    /// A new queue acme/sentiment may publish to; its name.
    async fn publish_queue(&self, prefix: &str) -> String {
        let name = unique_topic(prefix);
        self.peer.create_queue(&name);
        let grants = json!([
            {"algorithm": "acme/sentiment", "access": {"subscribe": false, "publish": true}},
        ]);
        let saved = self.p.save_grants(&self.connection, &name, grants).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
        name
    }

    fn send(&self, bodies: &[String]) {
        for body in bodies {
            self.peer.send(&self.queue, body.as_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_on_a_queue_runs_every_message_once_and_then_completes_it() {
    let q = bus_pipeline().await;
    let flow = q.enable("1.0.0", None).await;
    let good: Vec<String> = (0..12)
        .map(|i| json!({"text": format!("I love it {i}")}).to_string())
        .collect();
    q.send(&good);
    q.send(&["not json at all".to_owned()]);

    assert_eq!(read(&q.p.output, 12).await.len(), 12);
    wait_until("every message finished", || async {
        let stats = q.p.stats(&flow).await;
        stats.succeeded == 12 && stats.failures_kept == 1
    })
    .await;
    wait_until("every message is completed", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
    assert_eq!(records_on(&q.p.output).await, 12, "no message ran twice");
    assert!(q.peer.dead_letters(&q.queue).is_empty());
    let stats = q.p.stats(&flow).await;
    assert_eq!(stats.consumed, 13, "{stats:?}");
    // The monitor names each run's message by its sequence number.
    for run in &stats.recent_runs {
        let queued = run.queued.as_ref().expect("a Service Bus message");
        assert!(queued.id.contains("sequence number"), "{queued:?}");
        assert_eq!(queued.receive_count, 1, "{run:?}");
    }
    assert!(stats.last_errors.iter().all(|e| e.queued.is_some()));
    let outputs = read(&q.p.output, 12).await;
    assert!(
        outputs
            .iter()
            .all(|o| o.headers.contains_key("servicebus-sequence-number")),
        "{outputs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_outage_leaves_the_messages_on_the_queue_until_they_ran() {
    let q = bus_pipeline().await;
    let (down, calls) = flaky_version(&q.p, "2.0.0").await;
    let flow = q.enable("2.0.0", None).await;
    let inputs: Vec<String> = (0..5).map(|i| json!({"i": i}).to_string()).collect();
    q.send(&inputs);

    wait_until("the model has refused six calls", || async {
        calls.load(Ordering::SeqCst) >= 6
    })
    .await;
    let stats = q.p.stats(&flow).await;
    assert_eq!((stats.succeeded, stats.failed), (0, 0), "{stats:?}");
    assert_eq!(
        q.peer.active(&q.queue).len(),
        5,
        "nothing is completed before it ran"
    );
    wait_until("the monitor shows five messages waiting", || async {
        q.p.stats(&flow).await.lag == Some(5)
    })
    .await;

    down.store(false, Ordering::SeqCst);
    let mut seen = numbers_in(&read(&q.p.output, 5).await, "i");
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    wait_until("the queue is empty", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_that_gives_back_abandons_until_service_bus_dead_letters() {
    let q = bus_pipeline().await;
    // It asks for a second's pause each time it refuses.
    let (down, calls) = flaky_version(&q.p, "2.0.0").await;
    let flow =
        q.p.subscribe_with(
            &q.connection,
            &q.queue,
            "2.0.0",
            None,
            json!({"give_back": true}),
        )
        .await;
    q.send(&[json!({"i": 1}).to_string()]);

    // Each refusal abandons the message after its pause, which counts a
    // delivery; past the queue's maximum, Service Bus dead-letters it.
    wait_until("Service Bus has dead-lettered the message", || async {
        !q.peer.dead_letters(&q.queue).is_empty()
    })
    .await;
    let letters = q.peer.dead_letters(&q.queue);
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
    assert_eq!(letters[0].body, json!({"i": 1}).to_string().as_bytes());
    let refused = calls.load(Ordering::SeqCst);
    assert_eq!(
        refused,
        servicebus_peer::MAX_DELIVERY_COUNT as usize,
        "one run per delivery"
    );
    let stats = q.p.stats(&flow).await;
    assert_eq!((stats.succeeded, stats.failed), (0, 0), "{stats:?}");
    let given_back: Vec<u32> = stats
        .recent_runs
        .iter()
        .filter(|r| r.outcome == app::domain::RunOutcome::GivenBack)
        .filter_map(|r| r.queued.as_ref().map(|m| m.receive_count))
        .collect();
    assert!(given_back.len() >= 2, "{:?}", stats.recent_runs);

    // Once the model answers, a message runs once and is completed.
    down.store(false, Ordering::SeqCst);
    q.send(&[json!({"i": 2}).to_string()]);
    assert_eq!(numbers_in(&read(&q.p.output, 1).await, "i"), vec![2]);
    wait_until("the queue is empty", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
    assert_eq!(records_on(&q.p.output).await, 1);
    assert_eq!(q.peer.dead_letters(&q.queue).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_the_lock_keeps_its_message_locked() {
    let q = bus_pipeline().await;
    q.peer.set_lock_duration(Duration::from_secs(4));
    let (model, calls) = crate::sqs::counting_slow_model(Duration::from_secs(7)).await;
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "4.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    q.enable("4.0.0", None).await;
    q.send(&[json!({"slow": true}).to_string()]);

    assert_eq!(read(&q.p.output, 1).await.len(), 1);
    wait_until("the message is completed", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the message ran once");
    assert_eq!(q.peer.lost_lock_settlements(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_go_to_a_dead_letter_queue_and_outputs_to_a_queue() {
    let q = bus_pipeline().await;
    let dlq = q.publish_queue("letters").await;
    let outbox = q.publish_queue("outbox").await;
    // Outputs go to a Service Bus queue besides the Kafka topic.
    let reply =
        q.p.app
            .call(
                "save_flow",
                q.flow(&outbox, "Publish", "1.0.0", None),
                Some(&q.p.ana),
            )
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let flow = q.enable("1.0.0", Some(&dlq)).await;
    q.send(&[
        json!({"text": "good"}).to_string(),
        "not json at all".to_owned(),
    ]);

    wait_until("the output and the dead letter are sent", || async {
        q.peer.active(&outbox).len() == 1 && q.peer.active(&dlq).len() == 1
    })
    .await;
    assert_eq!(q.peer.active(&dlq)[0], b"not json at all");
    wait_until("the queue is empty", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;

    // The dead letters page reads the queue without taking its messages.
    let page = q.p.dead_letters(&flow, json!({})).await;
    let letters = page["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0]["message"].as_str().unwrap().len() > 3);
    assert_eq!(q.peer.active(&dlq).len(), 1, "the letter stays");
    // A publish flow on a subscription is refused.
    q.peer.create_topic("events");
    q.peer.create_subscription("events", "s");
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": true}},
    ]);
    let saved =
        q.p.save_grants(&q.connection, "events/subscriptions/s", grants)
            .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    let refused =
        q.p.app
            .call(
                "save_flow",
                q.flow("events/subscriptions/s", "Publish", "1.0.0", None),
                Some(&q.p.ana),
            )
            .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_goes_away_loses_no_message() {
    let q = bus_pipeline().await;
    let flow = q.enable_echo().await;
    q.send(&[json!({"i": 0}).to_string()]);
    assert_eq!(read(&q.p.output, 1).await.len(), 1);

    q.peer.set_down(true);
    wait_until("the flow says the broker is away", || async {
        q.p.stats(&flow)
            .await
            .state
            .starts_with("waiting for the broker")
    })
    .await;
    let more: Vec<String> = (1..4).map(|i| json!({"i": i}).to_string()).collect();
    q.send(&more);
    q.peer.set_down(false);

    let mut seen = numbers_in(&read(&q.p.output, 4).await, "i");
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3]);
    wait_until("the queue is empty", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
    assert_eq!(records_on(&q.p.output).await, 4, "no message ran twice");
}

/// Against a real namespace, when `EVENTFLOWS_TEST_SERVICEBUS` holds its
/// connection string: the connection is tested, listed and saved, and a
/// flow runs a message through its queue `eventflows-round-trip` (created
/// when missing, and left empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_namespace_is_connected_when_one_is_given() {
    let Ok(connection_string) = std::env::var("EVENTFLOWS_TEST_SERVICEBUS") else {
        eprintln!("EVENTFLOWS_TEST_SERVICEBUS is not set: the real namespace is not tried");
        return;
    };
    round_trip(&connection_string).await;
}

/// What the test against a real namespace does, here against the test
/// peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_namespace_round_trip_runs_on_the_test_peer() {
    let peer = ServiceBusPeer::start().await;
    round_trip(&peer.connection_string()).await;
    assert!(peer.active(ROUND_TRIP).is_empty());
}

/// The queue a round trip runs through.
const ROUND_TRIP: &str = "eventflows-round-trip";

/// Connects the namespace of `connection_string`, runs an echo flow on its
/// queue [`ROUND_TRIP`] into the Kafka output topic, sends a message there
/// as another program would, and waits for its output and an empty queue.
async fn round_trip(connection_string: &str) {
    let p = pipeline().await;
    let reply = p
        .app
        .call(
            "connect_broker",
            form("azure", connection_string),
            Some(&p.admin),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let id = reply.json().as_str().unwrap().to_owned();
    let details: BrokerConnectionDetails = p
        .app
        .call_as("get_broker_connection", json!({"id": id}), Some(&p.admin))
        .await;
    assert_eq!(details.status, app::domain::ConnectionStatus::Reachable);
    if !details.topics.iter().any(|t| t.name == ROUND_TRIP) {
        let created = create_topic(&p.app, &p.admin, &id, ROUND_TRIP, 1).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    }
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
    ]);
    let saved = p.save_grants(&id, ROUND_TRIP, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "3.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let flow = p.subscribe_on(&id, ROUND_TRIP, "3.0.0", None).await;
    let marker = server::db::new_id();
    server::testing::servicebus_send(
        connection_string,
        ROUND_TRIP,
        json!({"marker": marker}).to_string().as_bytes(),
    )
    .await
    .unwrap();
    let out = read(&p.output, 1).await;
    assert_eq!(out.len(), 1);
    assert!(out[0].value.contains(&marker), "{:?}", out[0].value);
    wait_until("the queue is empty", || async {
        entity(&p.app, &p.admin, &id, ROUND_TRIP)
            .await
            .entity
            .is_some_and(|e| e.active == 0)
    })
    .await;
    let stats = p.stats(&flow).await;
    assert_eq!((stats.succeeded, stats.failed), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_may_dead_letter_to_its_queues_own_dead_letter_subqueue() {
    let q = bus_pipeline().await;
    let own = format!("{}/$deadletterqueue", q.queue);
    let row = q.p.row(&q.queue).await;
    assert_eq!(row.dlq_options.first(), Some(&own), "{row:?}");
    let flow = q.enable("1.0.0", Some(&own)).await;
    q.send(&[
        json!({"text": "good"}).to_string(),
        "not json at all".to_owned(),
    ]);

    wait_until("the bad message is dead-lettered", || async {
        q.peer.dead_letters(&q.queue).len() == 1
    })
    .await;
    let letter = &q.peer.dead_letters(&q.queue)[0];
    assert_eq!(letter.body, b"not json at all");
    assert_eq!(letter.reason.as_deref(), Some("bad-input"), "{letter:?}");
    assert!(!letter.description.as_deref().unwrap_or_default().is_empty());
    assert_eq!(
        letter
            .application_properties
            .get("eventflows-algorithm")
            .map(String::as_str),
        Some("acme/sentiment"),
        "{letter:?}"
    );
    assert_eq!(read(&q.p.output, 1).await.len(), 1);
    wait_until("the queue is empty", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
    let stats = q.p.stats(&flow).await;
    assert_eq!(stats.failures_kept, 0, "{stats:?}");

    // The dead letters page peeks the subqueue, which keeps the letter.
    let page = q.p.dead_letters(&flow, json!({})).await;
    let letters = page["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{page}");
    assert_eq!(letters[0]["kind"], "bad-input", "{page}");
    assert_eq!(q.peer.dead_letters(&q.queue).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_deleted_under_its_flow_is_the_flows_state_until_it_is_back() {
    let q = bus_pipeline().await;
    let flow = q.echo_then_delete().await;

    q.peer.create_queue(&q.queue);
    q.send(&[json!({"i": 1}).to_string()]);
    let mut seen = numbers_in(&read(&q.p.output, 2).await, "i");
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1]);
    wait_until("the flow runs again", || async {
        q.p.stats(&flow).await.state == "running"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_that_requires_sessions_is_refused_with_the_reason() {
    let q = bus_pipeline().await;
    let sessions = unique_topic("sessions");
    q.peer.create_session_queue(&sessions);
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
    ]);
    let saved = q.p.save_grants(&q.connection, &sessions, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    let info = entity(&q.p.app, &q.p.admin, &q.connection, &sessions)
        .await
        .entity
        .unwrap();
    assert!(info.requires_session, "{info:?}");
    assert_eq!(info.kind_label(), "queue (sessions)");

    // A listener on it is refused, and nothing is saved.
    let reply =
        q.p.app
            .call(
                "save_flow",
                q.flow(&sessions, "Subscribe", "1.0.0", None),
                Some(&q.p.ana),
            )
            .await;
    assert_ne!(reply.status, StatusCode::OK);
    assert!(
        reply.text().contains("requires sessions"),
        "{}",
        reply.text()
    );
    let row = q.p.row(&sessions).await;
    assert!(row.flow.is_none(), "{row:?}");

    // A queue that comes to require sessions under its flow is the flow's
    // state.
    let flow = q.echo_then_delete().await;
    q.peer.create_session_queue(&q.queue);
    let state = format!(
        "the queue or subscription '{}' requires sessions, which flows do not read",
        q.queue
    );
    wait_until("the flow says its queue requires sessions", || async {
        q.p.stats(&flow).await.state == state
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_on_a_service_bus_queue_are_tried_and_replayed_through_another_version() {
    let q = bus_pipeline().await;
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let dlq = q.publish_queue("letters").await;
    let flow = q.enable("1.0.0", Some(&dlq)).await;
    q.send(&[
        json!({"no_text": true}).to_string(),
        "not json at all".to_owned(),
    ]);
    wait_until("both are dead letters", || async {
        q.peer.active(&dlq).len() == 2
    })
    .await;
    let page = q.p.dead_letters(&flow, json!({})).await;
    let letters = page["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 2, "{page}");
    for letter in &letters {
        assert!(
            letter["id"].as_str().unwrap().starts_with("queue:"),
            "{letter}"
        );
        assert!(
            letter["position"]
                .as_str()
                .unwrap()
                .starts_with("message sequence number"),
            "{letter}"
        );
    }

    // Tried first on the JSON letter: echo takes it.
    let json_letter = letters
        .iter()
        .find(|l| l["value"].as_str().unwrap().contains("no_text"))
        .unwrap();
    let tried =
        q.p.try_version(&flow, "2.0.0", json!({"Letters": [json_letter["id"]]}))
            .await;
    assert_eq!(tried.status, StatusCode::OK, "{}", tried.text());
    assert_eq!(tried.json()["different"], 1, "{}", tried.text());

    // Replayed through echo: the JSON one succeeds, the other fails again.
    q.p.save(&q.p.output, "publish", "2.0.0", None).await;
    let ids: Vec<Value> = letters.iter().map(|l| l["id"].clone()).collect();
    let started =
        q.p.replay(
            json!({"flow_id": flow, "version": "2.0.0", "letters": ids}),
            &q.p.ana,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let done = q.p.replay_done(&flow).await;
    assert_eq!(
        (done.succeeded, done.failed, done.left),
        (1, 1, 0),
        "{done:?}"
    );
    let replayed = read(&q.p.output, 1).await;
    assert!(replayed[0].value.contains("no_text"), "{replayed:?}");
    assert!(
        replayed[0].headers["eventflows-replay-of"].starts_with(&format!("{dlq}/")),
        "{replayed:?}"
    );
    // The letters stay on the queue, and the one that failed again is a
    // new letter.
    wait_until("the new dead letter", || async {
        q.peer.active(&dlq).len() == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_go_to_a_topic_and_one_too_large_fails_with_the_reason() {
    let q = bus_pipeline().await;
    q.peer.create_topic("scored");
    q.peer.create_subscription("scored", "audit");
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": false, "publish": true}},
    ]);
    let saved = q.p.save_grants(&q.connection, "scored", grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    // Returns its input, or an output too large for Service Bus when
    // asked for one.
    let model = server::testing::serve_model(axum::Router::new().route(
        "/predict",
        axum::routing::post(|axum::Json(input): axum::Json<Value>| async move {
            axum::Json(if input["large"] == true {
                json!({"pad": "x".repeat(300 * 1024)})
            } else {
                input
            })
        }),
    ))
    .await
    .unwrap();
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "5.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    let reply =
        q.p.app
            .call(
                "save_flow",
                q.flow("scored", "Publish", "5.0.0", None),
                Some(&q.p.ana),
            )
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let flow = q.enable("5.0.0", None).await;
    q.send(&[
        json!({"i": 0}).to_string(),
        json!({"large": true}).to_string(),
    ]);

    wait_until("the output reaches the topic's subscription", || async {
        q.peer.active("scored/subscriptions/audit").len() == 1
    })
    .await;
    let sent = &q.peer.active("scored/subscriptions/audit")[0];
    assert_eq!(
        serde_json::from_slice::<Value>(sent).unwrap()["i"],
        0,
        "{}",
        String::from_utf8_lossy(sent)
    );
    wait_until("the large output failed its message", || async {
        q.p.stats(&flow).await.failures_kept == 1
    })
    .await;
    let stats = q.p.stats(&flow).await;
    assert!(
        stats.last_errors[0]
            .message
            .contains("bytes a Service Bus message may have"),
        "{:?}",
        stats.last_errors
    );
    wait_until("the queue is empty", || async {
        q.peer.active(&q.queue).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_reads_a_topic_subscription() {
    let q = bus_pipeline().await;
    q.peer.create_topic("reviews");
    q.peer.create_subscription("reviews", "scoring");
    let path = "reviews/subscriptions/scoring";
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
    ]);
    let saved = q.p.save_grants(&q.connection, path, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    for i in 0..3 {
        let body = json!({"text": format!("great {i}")}).to_string();
        q.peer.send("reviews", body.as_bytes());
    }
    // What the flow measures its lag by: the one entity, asked alone.
    let admin = ServiceBusAdmin::new(
        &ServiceBusSettings::parse_connection_string(&q.peer.connection_string()).unwrap(),
    )
    .unwrap();
    let waiting = admin.entity(path).await.unwrap().expect("the subscription");
    let info = waiting.entity.unwrap();
    assert_eq!((info.kind, info.active), (EntityKind::Subscription, 3));
    assert_eq!(
        admin
            .entity("reviews")
            .await
            .unwrap()
            .unwrap()
            .entity
            .unwrap()
            .kind,
        EntityKind::Topic
    );
    assert!(
        admin
            .entity("reviews/subscriptions/none")
            .await
            .unwrap()
            .is_none()
    );
    assert!(admin.entity("nothing").await.unwrap().is_none());
    let flow = q.p.subscribe_on(&q.connection, path, "1.0.0", None).await;

    assert_eq!(read(&q.p.output, 3).await.len(), 3);
    wait_until("the subscription is empty", || async {
        q.peer.active(path).is_empty()
    })
    .await;
    wait_until("the monitor shows none waiting", || async {
        q.p.stats(&flow).await.lag == Some(0)
    })
    .await;
    assert_eq!(q.p.stats(&flow).await.state, "running");
}
