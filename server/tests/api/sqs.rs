//! Amazon SQS connections, against a real SQS-compatible server (moto).

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::{Value, json};

use app::api::BrokerAdmin;
use app::domain::{
    Access, AwsRegion, BrokerConnectionDetails, BrokerKind, Direction, NewBrokerConnection,
    ReplayProgress, TopicGrant, TopicInfo, TopicName,
};
use server::db::schema::broker_connections;
use server::sqs::{SqsClient, SqsSettings};
use server::testing::{Moto, model_taking};

use crate::brokers::{admin_app, connection_count, create_topic, refuses_each_field};
use crate::crash::{enable_in_db, model_services, start_server_in};
use crate::faults::flaky_version;
use crate::flows::{Pipeline, Reader, numbers_in, pipeline, read, records_on, wait_until};
use crate::kafka::{bootstrap, unique_topic};
use crate::support::{TestApp, TestDb};

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

async fn create_queue(app: &TestApp, token: &str, id: &str, name: &str) {
    let reply = create_topic(app, token, id, name, 1).await;
    assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
}

/// Gives the queue at `url` a redrive policy: to the queue named `dlq`
/// after 3 receives.
async fn redrive(url: &str, dlq: &str) {
    let sqs = sdk();
    let dlq_url = sqs.queue_url(dlq).await.unwrap().unwrap();
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
        .queue_url(url)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}).to_string(),
        )
        .send()
        .await
        .unwrap();
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
    redrive(&url, &dlq).await;

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

    let again = create_topic(&app, &token, &id, &standard, 1).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text().contains("already exists"), "{}", again.text());
    for bad in ["dots.in.name", "x.fifo.fifo", ".fifo", &"q".repeat(81)] {
        let reply = create_topic(&app, &token, &id, bad, 1).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.json()["field"], "topic", "{bad}");
        assert!(sqs.queue_url(bad).await.unwrap().is_none(), "{bad} created");
    }
}

#[tokio::test]
async fn sqs_forms_are_refused_field_by_field_and_save_nothing() {
    let (app, token) = admin_app().await;
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
    refuses_each_field(&app, &token, sqs_form("new one", &endpoint()), &cases).await;
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

/// A queue on an SQS connection that acme/sentiment may subscribe to, in
/// the flows' pipeline (whose Kafka output topic it publishes to).
struct QueuePipeline {
    p: Pipeline,
    connection: String,
    queue: String,
    url: String,
}

async fn queue_pipeline(fifo: bool) -> QueuePipeline {
    let p = pipeline().await;
    let connection = connect_sqs(&p.app, &p.admin, "queues").await;
    let mut queue = unique_topic("inbox");
    if fifo {
        queue.push_str(".fifo");
    }
    create_queue(&p.app, &p.admin, &connection, &queue).await;
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
    ]);
    let saved = p.save_grants(&connection, &queue, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    let url = sdk().queue_url(&queue).await.unwrap().unwrap();
    QueuePipeline {
        p,
        connection,
        queue,
        url,
    }
}

impl QueuePipeline {
    fn flow(&self, direction: &str, version: &str, dlq: Option<&str>) -> Value {
        json!({"request": {"org": "acme", "name": "sentiment", "connection_id": self.connection,
            "topic": self.queue, "direction": direction, "version": version, "dlq_topic": dlq}})
    }

    /// Runs `version` on the queue, publishing to the Kafka output topic;
    /// the flow's id.
    async fn enable(&self, version: &str) -> String {
        self.enable_with(version, None).await
    }

    /// As [`QueuePipeline::enable`], with a Dead Letter Queue.
    async fn enable_with(&self, version: &str, dlq: Option<&str>) -> String {
        self.p
            .subscribe_on(&self.connection, &self.queue, version, dlq)
            .await
    }

    async fn send(&self, bodies: &[String], group: Option<&str>) {
        for (i, body) in bodies.iter().enumerate() {
            let mut request = sdk()
                .sdk()
                .send_message()
                .queue_url(&self.url)
                .message_body(body);
            if let Some(group) = group {
                request = request
                    .message_group_id(group)
                    .message_deduplication_id(format!("{group}-{i}-{}", server::db::new_id()));
            }
            request.send().await.unwrap();
        }
    }

    /// A new queue that the algorithm may publish to, for a Dead Letter
    /// Queue; its name.
    async fn dead_letter_queue(&self) -> String {
        let dlq = unique_topic("letters");
        create_queue(&self.p.app, &self.p.admin, &self.connection, &dlq).await;
        let grants = json!([
            {"algorithm": "acme/sentiment", "access": {"subscribe": false, "publish": true}},
        ]);
        let saved = self.p.save_grants(&self.connection, &dlq, grants).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
        dlq
    }

    /// Replays `letters` (ids, or a filter) of the flow through 2.0.0,
    /// whose outputs are published; how the replay ended.
    async fn replay_through_2(&self, flow: &str, letters: Value) -> ReplayProgress {
        self.p.save(&self.p.output, "publish", "2.0.0", None).await;
        let mut request = json!({"flow_id": flow, "version": "2.0.0"});
        match letters {
            Value::Array(_) => request["letters"] = letters,
            filter => request["matching"] = filter,
        }
        let started = self.p.replay(request, &self.p.ana).await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.text());
        self.p.replay_done(flow).await
    }

    /// Waits until `count` messages of the queue `name` are visible: none
    /// is hidden by a reader any more.
    async fn wait_visible(&self, name: &str, count: u64) {
        wait_until("the messages are visible", || async {
            let info = queue(&self.p.app, &self.p.admin, &self.connection, name)
                .await
                .queue
                .unwrap();
            info.visible == count
        })
        .await;
    }

    /// Visible plus in-flight messages on the queue.
    async fn left(&self) -> u64 {
        let info = queue(&self.p.app, &self.p.admin, &self.connection, &self.queue)
            .await
            .queue
            .unwrap();
        info.visible + info.in_flight + info.delayed
    }
}

#[tokio::test]
async fn a_flow_on_a_queue_runs_every_message_once_and_then_deletes_it() {
    let q = queue_pipeline(false).await;
    let flow = q.enable("1.0.0").await;
    let good: Vec<String> = (0..20)
        .map(|i| json!({"text": format!("I love it {i}")}).to_string())
        .collect();
    q.send(&good, None).await;
    let bad = ["\"just a string\"".to_owned(), "not json at all".to_owned()];
    q.send(&bad, None).await;

    let outputs = read(&q.p.output, 20).await;
    assert_eq!(outputs.len(), 20);
    wait_until("every message finished", || async {
        let stats = q.p.stats(&flow).await;
        stats.succeeded == 20 && stats.failures_kept == 2
    })
    .await;
    wait_until("the queue is empty", || async { q.left().await == 0 }).await;
    let stats = q.p.stats(&flow).await;
    assert_eq!(stats.consumed, 22, "{stats:?}");
    assert_eq!(records_on(&q.p.output).await, 20, "no message ran twice");
    // The monitor names each run's and each failure's SQS message.
    let ids: HashSet<&str> = stats
        .recent_runs
        .iter()
        .map(|r| {
            let queued = r.queued.as_ref().expect("an SQS message");
            assert_eq!(queued.receive_count, 1, "{r:?}");
            queued.id.as_str()
        })
        .collect();
    assert_eq!(
        ids.len(),
        stats.recent_runs.len(),
        "{:?}",
        stats.recent_runs
    );
    assert_eq!(stats.last_errors.len(), 2);
    assert!(stats.last_errors.iter().all(|e| e.queued.is_some()));
    let kept: Vec<&str> = stats
        .kept_failures
        .iter()
        .map(|f| f.value.as_str())
        .collect();
    for body in ["just a string", "not json at all"] {
        assert!(
            kept.iter().any(|k| k.contains(body)),
            "{body} kept: {kept:?}"
        );
    }
}

#[tokio::test]
async fn a_model_outage_leaves_the_messages_on_the_queue_until_they_ran() {
    let q = queue_pipeline(false).await;
    let (down, calls) = flaky_version(&q.p, "2.0.0").await;
    let flow = q.enable("2.0.0").await;
    let inputs: Vec<String> = (0..5).map(|i| json!({"i": i}).to_string()).collect();
    q.send(&inputs, None).await;

    wait_until("the model has refused six calls", || async {
        calls.load(Ordering::SeqCst) >= 6
    })
    .await;
    let stats = q.p.stats(&flow).await;
    assert_eq!((stats.succeeded, stats.failed), (0, 0), "{stats:?}");
    assert_eq!(q.left().await, 5, "nothing is deleted before it ran");
    wait_until("the monitor shows five messages waiting", || async {
        q.p.stats(&flow).await.lag == Some(5)
    })
    .await;

    down.store(false, Ordering::SeqCst);
    let mut seen = numbers_in(&read(&q.p.output, 5).await, "i");
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    wait_until("the queue is empty", || async { q.left().await == 0 }).await;
    wait_until("the monitor shows none waiting", || async {
        q.p.stats(&flow).await.lag == Some(0)
    })
    .await;
}

#[tokio::test]
async fn a_flow_that_gives_back_returns_a_message_to_the_queue_while_the_model_is_down() {
    let q = queue_pipeline(false).await;
    // It asks for a second's pause each time it refuses.
    let (down, _) = flaky_version(&q.p, "2.0.0").await;
    let flow =
        q.p.subscribe_with(
            &q.connection,
            &q.queue,
            "2.0.0",
            None,
            json!({"give_back": true}),
        )
        .await;
    let row = q.p.row(&q.queue).await;
    assert_eq!(row.connection_kind, BrokerKind::Sqs);
    assert!(row.flow.as_ref().unwrap().give_back, "{row:?}");
    q.send(&[json!({"i": 7}).to_string()], None).await;

    // Each refusal gives the message back: it is received again, once its
    // pause has passed, rather than retried while the flow holds it.
    wait_until("the message was given back twice", || async {
        let stats = q.p.stats(&flow).await;
        stats
            .recent_runs
            .iter()
            .filter(|r| r.outcome == app::domain::RunOutcome::GivenBack)
            .count()
            >= 2
    })
    .await;
    let stats = q.p.stats(&flow).await;
    assert_eq!((stats.succeeded, stats.failed), (0, 0), "{stats:?}");
    assert!(stats.state.contains("model unavailable"), "{}", stats.state);
    let counts: Vec<u32> = stats
        .recent_runs
        .iter()
        .filter_map(|r| r.queued.as_ref().map(|m| m.receive_count))
        .collect();
    assert!(counts.iter().any(|&n| n >= 2), "received again: {counts:?}");
    assert_eq!(q.left().await, 1, "a message given back stays on the queue");

    down.store(false, Ordering::SeqCst);
    assert_eq!(numbers_in(&read(&q.p.output, 1).await, "i"), vec![7]);
    wait_until("the queue is empty", || async { q.left().await == 0 }).await;
    wait_until("the flow runs again", || async {
        q.p.stats(&flow).await.state == "running"
    })
    .await;
    let stats = q.p.stats(&flow).await;
    assert_eq!((stats.succeeded, stats.failed), (1, 0), "{stats:?}");
    assert_eq!(records_on(&q.p.output).await, 1, "it ran once to the end");

    // Only a flow on a queue gives messages back.
    let kafka = q
        .p
        .app
        .call(
            "save_flow",
            json!({"request": {"org": "acme", "name": "sentiment", "connection_id": q.p.connection,
            "topic": q.p.input, "direction": "Subscribe", "version": "1.0.0", "give_back": true}}),
            Some(&q.p.ana),
        )
        .await;
    assert_ne!(kafka.status, StatusCode::OK);
    assert!(
        kafka.text().contains("give messages back"),
        "{}",
        kafka.text()
    );

    // The setting goes with its flow when the connection is deleted.
    let marks = || async {
        let id = flow.clone();
        q.p.app
            .services
            .db
            .interact(move |c| {
                server::db::schema::flow_give_back::table
                    .find(&id)
                    .count()
                    .get_result::<i64>(c)
            })
            .await
            .unwrap()
    };
    assert_eq!(marks().await, 1);
    let deleted =
        q.p.app
            .call(
                "delete_broker_connection",
                json!({"id": q.connection}),
                Some(&q.p.admin),
            )
            .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text());
    assert_eq!(marks().await, 0);
}

#[tokio::test]
async fn a_queue_deleted_under_its_flow_is_the_flows_state_until_it_is_back() {
    let q = queue_pipeline(false).await;
    let flow = q.enable("1.0.0").await;
    q.send(&[json!({"text": "before"}).to_string()], None).await;
    assert_eq!(read(&q.p.output, 1).await.len(), 1);
    wait_until("the flow runs", || async {
        q.p.stats(&flow).await.state == "running"
    })
    .await;

    sdk()
        .sdk()
        .delete_queue()
        .queue_url(&q.url)
        .send()
        .await
        .unwrap();
    let gone = format!("the queue '{}' does not exist", q.queue);
    wait_until("the flow says its queue is gone", || async {
        q.p.stats(&flow).await.state == gone
    })
    .await;

    create_queue(&q.p.app, &q.p.admin, &q.connection, &q.queue).await;
    q.send(&[json!({"text": "after"}).to_string()], None).await;
    let outputs = read(&q.p.output, 2).await;
    assert_eq!(outputs.len(), 2);
    assert_ne!(
        outputs[0].headers["sqs-message-id"], outputs[1].headers["sqs-message-id"],
        "{outputs:?}"
    );
    wait_until("the flow runs again", || async {
        q.p.stats(&flow).await.state == "running"
    })
    .await;
}

#[tokio::test]
async fn a_run_longer_than_the_visibility_timeout_keeps_its_message_hidden() {
    let q = queue_pipeline(false).await;
    q.p.app
        .services
        .runner
        .set_sqs_visibility(Duration::from_secs(1));
    let (model, calls) = counting_slow_model(Duration::from_secs(4)).await;
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "4.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    let flow = q.enable("4.0.0").await;
    q.send(&[json!({"slow": true}).to_string()], None).await;
    wait_until("the message ran", || async {
        q.p.stats(&flow).await.succeeded == 1
    })
    .await;
    wait_until("the queue is empty", || async { q.left().await == 0 }).await;
    // Had the message become visible during its four seconds, the flow
    // would have received it again and run it a second time.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(q.p.stats(&flow).await.consumed, 1);
    assert_eq!(records_on(&q.p.output).await, 1);
}

/// A model server that echoes after `delay`; the counter counts its calls.
pub async fn counting_slow_model(delay: Duration) -> (String, Arc<AtomicUsize>) {
    use axum::{Json, Router, routing::post};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| {
            let calls = counted.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                Json(input)
            }
        }),
    );
    (server::testing::serve_model(app).await.unwrap(), calls)
}

#[tokio::test]
async fn a_fifo_queue_keeps_each_message_group_in_order() {
    let q = queue_pipeline(true).await;
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "3.0.0", "builtin:echo", "")
        .await
        .unwrap();
    // A message given back would lose its place in its group.
    let mut request = q.flow("Subscribe", "3.0.0", None);
    request["request"]["give_back"] = json!(true);
    let refused = q.p.app.call("save_flow", request, Some(&q.p.ana)).await;
    assert_ne!(refused.status, StatusCode::OK);
    assert!(refused.text().contains("FIFO queue"), "{}", refused.text());
    q.enable("3.0.0").await;
    for group in ["a", "b"] {
        let inputs: Vec<String> = (0..15)
            .map(|i| json!({"group": group, "i": i}).to_string())
            .collect();
        q.send(&inputs, Some(group)).await;
    }
    let outputs = read(&q.p.output, 30).await;
    for group in ["a", "b"] {
        let order: Vec<i64> = outputs
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.value).unwrap())
            .filter(|v| v["group"] == group)
            .map(|v| v["i"].as_i64().unwrap())
            .collect();
        assert_eq!(order, (0..15).collect::<Vec<_>>(), "group {group}");
    }
    wait_until("the queue is empty", || async { q.left().await == 0 }).await;
}

#[tokio::test]
async fn bad_messages_go_to_the_flows_dead_letter_queue_and_are_replayed_from_it() {
    let q = queue_pipeline(false).await;
    let dlq = q.dead_letter_queue().await;
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let flow = q.enable_with("1.0.0", Some(&dlq)).await;
    let good: Vec<String> = (0..3)
        .map(|i| json!({"text": format!("fine {i}")}).to_string())
        .collect();
    q.send(&good, None).await;
    q.send(
        &["{\"no_text\": 7}".to_owned(), "not json at all".to_owned()],
        None,
    )
    .await;

    assert_eq!(read(&q.p.output, 3).await.len(), 3);
    wait_until("three outputs and two dead letters", || async {
        let stats = q.p.stats(&flow).await;
        stats.succeeded == 3 && stats.dead_lettered == 2
    })
    .await;
    wait_until("the source queue is empty", || async {
        q.left().await == 0
    })
    .await;
    assert!(q.p.stats(&flow).await.kept_failures.is_empty());

    // The page lists them from the queue, and leaves them there.
    let page = q.p.dead_letters(&flow, json!({})).await;
    assert_eq!(page["dlq_topic"], dlq.as_str());
    let letters = page["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 2, "{page}");
    for letter in &letters {
        assert_eq!(letter["kind"], "bad-input", "{letter}");
        assert_eq!(letter["version"], "1.0.0", "{letter}");
        assert!(
            letter["id"].as_str().unwrap().starts_with("queue:"),
            "{letter}"
        );
        assert!(
            letter["position"].as_str().unwrap().starts_with("message "),
            "{letter}"
        );
    }
    let values: Vec<&str> = letters
        .iter()
        .map(|l| l["value"].as_str().unwrap())
        .collect();
    assert!(values.contains(&"{\n  \"no_text\": 7\n}"), "{values:?}");
    assert!(values.contains(&"not json at all"), "{values:?}");
    let filtered = q.p.dead_letters(&flow, json!({"search": "not JSON"})).await;
    assert_eq!(
        filtered["letters"].as_array().unwrap().len(),
        1,
        "{filtered}"
    );
    let dlq_url = sdk().queue_url(&dlq).await.unwrap().unwrap();
    q.wait_visible(&dlq, 2).await;

    // A consumer of the queue reads the error from the message attributes.
    let received = sdk()
        .sdk()
        .receive_message()
        .queue_url(&dlq_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(0)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let bad = received
        .messages()
        .iter()
        .find(|m| m.body() == Some("not json at all"))
        .expect("the letter is on the queue");
    let attribute = |name: &str| {
        bad.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(attribute("eventflows-error-kind"), "bad-input");
    assert!(
        attribute("eventflows-error").contains("JSON"),
        "{}",
        attribute("eventflows-error")
    );
    assert_eq!(attribute("eventflows-algorithm"), "acme/sentiment");
    assert_eq!(attribute("eventflows-source-topic"), q.queue);

    // Tried first on a letter: echo takes it; a queue's recent messages
    // cannot be sampled.
    let json_letter = letters
        .iter()
        .find(|l| l["value"].as_str().unwrap().contains("no_text"))
        .unwrap();
    let tried =
        q.p.try_version(&flow, "2.0.0", json!({"Letters": [json_letter["id"]]}))
            .await;
    assert_eq!(tried.status, StatusCode::OK, "{}", tried.text());
    assert_eq!(tried.json()["different"], 1, "{}", tried.text());
    // Refused, each with its reason: a dry run on a queue's recent
    // messages, or on a letter of another queue, and a rewind.
    let elsewhere = format!("queue:{}:some-message", q.queue);
    for (call, args, why) in [
        (
            "try_version",
            json!({"request": {"flow_id": flow, "version": "2.0.0", "sample": {"Recent": 5}}}),
            "chosen dead letters",
        ),
        (
            "try_version",
            json!({"request": {"flow_id": flow, "version": "2.0.0",
                "sample": {"Letters": [elsewhere]}}}),
            "not on this flow's Dead Letter Queue",
        ),
        (
            "rewind_flow",
            json!({"flow_id": flow, "to": "Earliest", "apply": false}),
            "cannot be rewound",
        ),
    ] {
        let refused = q.p.app.call(call, args, Some(&q.p.ana)).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text()
        );
        assert!(refused.text().contains(why), "{}", refused.text());
    }

    // Replayed through echo: the JSON one succeeds, the other fails again.
    let ids: Vec<Value> = letters.iter().map(|l| l["id"].clone()).collect();
    let done = q.replay_through_2(&flow, Value::Array(ids)).await;
    assert_eq!(
        (done.succeeded, done.failed, done.left),
        (1, 1, 0),
        "{done:?}"
    );
    let outputs = read(&q.p.output, 4).await;
    let replayed = outputs
        .iter()
        .find(|r| r.value.contains("no_text"))
        .expect("the replayed letter's output");
    assert!(
        replayed.headers["eventflows-replay-of"].starts_with(&format!("{dlq}/")),
        "{replayed:?}"
    );
    assert_eq!(replayed.headers["eventflows-version"], "2.0.0");
    // The one that failed again is a new dead letter on the queue.
    wait_until("the new dead letter", || async {
        let page = q.p.dead_letters(&flow, json!({})).await;
        page["letters"].as_array().unwrap().len() == 3
    })
    .await;
    let page = q.p.dead_letters(&flow, json!({})).await;
    let marks: Vec<&str> = page["letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["replayed"].as_str())
        .collect();
    assert_eq!(marks.len(), 2, "{page}");
    assert!(marks.contains(&"replayed, succeeded"), "{marks:?}");
}

#[tokio::test]
async fn failures_the_dead_letter_queue_could_not_take_are_kept_and_listed_apart() {
    let q = queue_pipeline(false).await;
    let dlq = q.dead_letter_queue().await;
    let flow = q.enable_with("1.0.0", Some(&dlq)).await;
    q.send(&["{\"no_text\": 1}".to_owned()], None).await;
    wait_until("the first dead letter", || async {
        q.p.stats(&flow).await.dead_lettered == 1
    })
    .await;

    // The Dead Letter Queue goes away: the next failure is kept instead.
    let dlq_url = sdk().queue_url(&dlq).await.unwrap().unwrap();
    sdk()
        .sdk()
        .delete_queue()
        .queue_url(&dlq_url)
        .send()
        .await
        .unwrap();
    q.send(&["{\"no_text\": 2}".to_owned()], None).await;
    wait_until("the failure is kept", || async {
        q.p.stats(&flow).await.failures_kept == 1
    })
    .await;
    wait_until("the queue is empty", || async { q.left().await == 0 }).await;
    create_queue(&q.p.app, &q.p.admin, &q.connection, &dlq).await;

    // The page of the (new, empty) queue says one more is kept…
    let page = q.p.dead_letters(&flow, json!({})).await;
    assert_eq!(page["dlq_topic"], dlq.as_str(), "{page}");
    assert_eq!(page["letters"].as_array().unwrap().len(), 0, "{page}");
    assert_eq!(page["kept_besides"], 1, "{page}");
    // …and lists it when asked.
    let kept = q.p.dead_letters(&flow, json!({"kept": true})).await;
    assert_eq!(kept["dlq_topic"], Value::Null, "{kept}");
    assert_eq!(kept["kept"], true, "{kept}");
    let letters = kept["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1, "{kept}");
    assert!(letters[0]["id"].as_str().unwrap().starts_with("kept:"));
    assert!(
        letters[0]["position"]
            .as_str()
            .unwrap()
            .starts_with("message "),
        "{}",
        letters[0]
    );
    assert!(
        letters[0]["message"]
            .as_str()
            .unwrap()
            .contains("the dead letter could not be written either"),
        "{}",
        letters[0]
    );
    assert!(
        letters[0]["value"]
            .as_str()
            .unwrap()
            .contains("\"no_text\": 2")
    );

    // Replaying every kept one that matches takes it alone.
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let done = q.replay_through_2(&flow, json!({"kept": true})).await;
    assert_eq!(
        (done.succeeded, done.failed, done.left),
        (1, 0, 0),
        "{done:?}"
    );
    let outputs = read(&q.p.output, 1).await;
    let value: Value = serde_json::from_str(&outputs[0].value).unwrap();
    assert_eq!(value["no_text"], 2, "{outputs:?}");
}

#[tokio::test]
async fn a_dead_letter_queue_longer_than_is_read_says_so() {
    let q = queue_pipeline(false).await;
    let dlq = q.dead_letter_queue().await;
    let flow = q.enable_with("1.0.0", Some(&dlq)).await;
    let page = q.p.dead_letters(&flow, json!({})).await;
    assert_eq!(page["read_first"], Value::Null, "{page}");

    // Other programs' messages on the queue: more than are read.
    let sqs = sdk();
    let url = sqs.queue_url(&dlq).await.unwrap().unwrap();
    for batch in 0..21 {
        let entries = (0..10)
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(format!("{{\"other\": {}}}", batch * 10 + i))
                    .build()
                    .unwrap()
            })
            .collect();
        sqs.sdk()
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let page = q.p.dead_letters(&flow, json!({})).await;
    assert_eq!(page["read_first"], 200, "{page}");
    assert_eq!(
        page["letters"].as_array().unwrap().len(),
        0,
        "not this flow's"
    );
    q.wait_visible(&dlq, 210).await;
}

#[tokio::test]
async fn a_dead_letter_queue_must_be_a_standard_queue_the_algorithm_may_publish_to() {
    let q = queue_pipeline(false).await;
    let dlq = unique_topic("letters");
    create_queue(&q.p.app, &q.p.admin, &q.connection, &dlq).await;
    let fifo = format!("{}.fifo", unique_topic("letters"));
    create_queue(&q.p.app, &q.p.admin, &q.connection, &fifo).await;
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": false, "publish": true}},
    ]);
    let saved = q.p.save_grants(&q.connection, &fifo, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    // A queue that moves its own messages on after a few receives.
    let redriven = q.dead_letter_queue().await;
    redrive(&sdk().queue_url(&redriven).await.unwrap().unwrap(), &dlq).await;
    for (queue, why) in [
        (&dlq, "may publish to"),
        (&fifo, "FIFO queue"),
        (&redriven, "redrive policy of its own"),
    ] {
        let request = q.flow("Subscribe", "1.0.0", Some(queue));
        let refused = q.p.app.call("save_flow", request, Some(&q.p.ana)).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text()
        );
        assert_eq!(refused.json()["field"], "dlq_topic", "{}", refused.text());
        assert!(refused.text().contains(why), "{}", refused.text());
    }
    let flows: i64 =
        q.p.app
            .services
            .db
            .interact(|c| server::db::schema::flows::table.count().get_result(c))
            .await
            .unwrap();
    assert_eq!(flows, 0);
}

#[tokio::test]
async fn outputs_are_published_to_a_fifo_queue_one_group_per_key_in_order() {
    let q = queue_pipeline(true).await;
    let grants = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": false, "publish": true}},
    ]);
    let saved = q.p.save_grants(&q.connection, &q.queue, grants).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    q.p.app
        .services
        .add_algorithm_version("acme/sentiment", "3.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let publish =
        q.p.app
            .call(
                "save_flow",
                q.flow("Publish", "3.0.0", None),
                Some(&q.p.ana),
            )
            .await;
    assert_eq!(publish.status, StatusCode::OK, "{}", publish.text());
    q.p.save(&q.p.input, "subscribe", "3.0.0", None).await;
    let records: Vec<(Option<String>, String)> = (0..20)
        .map(|i| {
            let key = if i % 2 == 0 { "a" } else { "b" };
            (
                Some(key.to_owned()),
                json!({"key": key, "i": i}).to_string(),
            )
        })
        .collect();
    crate::kafka::produce_keyed_to_partition(&q.p.input, 0, &records).await;

    // Read off the queue as another program would, deleting what it read.
    let sqs = sdk();
    let mut received: Vec<(String, Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "{} of 20 outputs on the queue",
            received.len()
        );
        let answer = sqs
            .sdk()
            .receive_message()
            .queue_url(&q.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .send()
            .await
            .unwrap();
        for message in answer.messages() {
            let group = message
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                })
                .cloned()
                .unwrap_or_default();
            received.push((
                group,
                serde_json::from_str(message.body().unwrap()).unwrap(),
            ));
            sqs.sdk()
                .delete_message()
                .queue_url(&q.url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    for group in ["a", "b"] {
        let order: Vec<i64> = received
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, v)| {
                assert_eq!(v["key"], group, "{v} in group {group}");
                v["i"].as_i64().unwrap()
            })
            .collect();
        let expected: Vec<i64> = (0..20).filter(|i| (i % 2 == 0) == (group == "a")).collect();
        assert_eq!(order, expected, "group {group}");
    }

    // An output SQS cannot take is a failure of its message, said so.
    let big = json!({"key": "a", "text": "x".repeat(300 * 1024)}).to_string();
    crate::kafka::produce_keyed_to_partition(&q.p.input, 0, &[(Some("a".into()), big)]).await;
    let flow = q.p.subscribe_flow_id().await;
    wait_until(
        "the output too large for SQS is kept as a failure",
        || async { q.p.stats(&flow).await.failures_kept == 1 },
    )
    .await;
    let stats = q.p.stats(&flow).await;
    assert!(
        stats.kept_failures[0]
            .message
            .contains("bytes an SQS message may have"),
        "{:?}",
        stats.kept_failures[0]
    );
}

/// Sets up, through the services and with the key file a server process
/// will use, `acme/model` 1.0.0 on `runtime` subscribed to a new SQS queue
/// and publishing to a new Kafka topic. Returns (queue URL, output topic).
async fn seed_queue_flow(db: &TestDb, runtime: &str) -> (String, String) {
    let s = model_services(db, runtime).await;
    let form = serde_json::from_value(sqs_form("queues", &endpoint())["connection"].clone());
    let queues = s.connect_broker("tests", form.unwrap()).await.unwrap();
    let kafka = s
        .connect_broker(
            "tests",
            NewBrokerConnection {
                name: "local".into(),
                bootstrap_servers: bootstrap().into(),
                security_protocol: "PLAINTEXT".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (queue, output) = (unique_topic("inbox"), unique_topic("out"));
    let topics = [(&queues, &queue, true), (&kafka, &output, false)];
    for (connection, topic, subscribe) in topics {
        let name = TopicName::parse(topic).unwrap();
        s.create_topic("tests", connection, &name, 1).await.unwrap();
        let access = Access {
            subscribe,
            publish: !subscribe,
        };
        let grants = vec![TopicGrant {
            algorithm: "acme/model".into(),
            access,
        }];
        s.save_topic_grants("tests", connection, &name, grants)
            .await
            .unwrap();
    }
    // Enabled after the last grant (which starts the enabled flows here).
    enable_in_db(&s, &kafka, &output, Direction::Publish, "partition", 1).await;
    enable_in_db(&s, &queues, &queue, Direction::Subscribe, "partition", 1).await;
    (sdk().queue_url(&queue).await.unwrap().unwrap(), output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_stream_loses_no_message_of_a_queue() {
    let db = TestDb::fresh();
    let model = model_taking(15).await.unwrap();
    let (url, output) = seed_queue_flow(&db, &format!("http:{model}")).await;
    const N: i64 = 400;
    let sqs = sdk();
    for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|n| {
                SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(json!({"n": n}).to_string())
                    .build()
                    .unwrap()
            })
            .collect();
        let sent = sqs
            .sdk()
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(sent.failed().is_empty(), "{:?}", sent.failed());
    }
    // Messages a killed server held come back after this many seconds.
    let settings = [("EVENTFLOWS_SQS_VISIBILITY_SECS", "3")];
    let reader = Reader::new(&output);
    let server = start_server_in(&db, &db.dir, Stdio::null(), &settings).0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while reader.read(50, Duration::from_millis(500)).await.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "the server ran fewer than 50 messages"
        );
    }
    drop(server); // SIGKILL
    let at_kill = reader.read(N as usize, Duration::from_secs(1)).await.len();
    assert!(at_kill < N as usize, "the kill came after the last message");

    let _server = start_server_in(&db, &db.dir, Stdio::null(), &settings).0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let outputs = loop {
        let outputs = reader.read(2 * N as usize, Duration::from_secs(2)).await;
        let seen: HashSet<i64> = numbers_in(&outputs, "n").into_iter().collect();
        if seen.len() == N as usize {
            break outputs;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart only {} of {N} messages have an output ({at_kill} at the kill)",
            seen.len()
        );
    };
    let seen: HashSet<i64> = numbers_in(&outputs, "n").into_iter().collect();
    assert_eq!(seen, (0..N).collect::<HashSet<_>>(), "no message lost");
    println!(
        "killed after {at_kill} of {N} outputs; {} ran twice",
        outputs.len() - seen.len()
    );
    wait_until("the queue is empty", || async {
        sqs.waiting(&url).await.unwrap() == Some(0)
    })
    .await;
}
