//! Flows against a real broker: outputs, dead letters, version changes, and
//! the server-side checks on every flow change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

use app::domain::{FlowStats, GrantedTopic, Role};

use crate::brokers::connect;
use crate::kafka::{bootstrap, produce_keyed, produce_to_partition, unique_topic};
use crate::support::{Reply, TestApp};

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<String>,
    pub value: String,
    pub headers: HashMap<String, String>,
    /// When the record was written (milliseconds since the epoch).
    pub timestamp: i64,
}

/// The integer `field` of each output (a JSON object), in the order read.
pub fn numbers_in(outputs: &[Read], field: &str) -> Vec<i64> {
    outputs
        .iter()
        .map(|r| {
            let value: Value = serde_json::from_str(&r.value).unwrap();
            value[field]
                .as_i64()
                .unwrap_or_else(|| panic!("no number {field} in {}", r.value))
        })
        .collect()
}

/// How many records `topic` holds now, over all its partitions: it is read
/// from the start until each partition reports its end (tansu's high
/// watermark counts batches, not records, so the end offsets it reports
/// cannot be summed). For what must be there, or must not, once a call has
/// answered.
pub async fn records_on(topic: &str) -> usize {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("isolation.level", "read_uncommitted")
            .set("bootstrap.servers", bootstrap())
            .set("group.id", format!("test-counter-{}", server::db::new_id()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            assignment
                .add_partition_offset(&topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        let partitions = assignment.count();
        consumer.assign(&assignment).unwrap();
        let (mut records, mut ended) = (0, std::collections::HashSet::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        while ended.len() < partitions {
            assert!(Instant::now() < deadline, "{topic} was not read to its end");
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(_)) => records += 1,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        records
    })
    .await
    .unwrap()
}

/// Reads `topic` from the beginning until `count` records arrived (or
/// `limit` passed), off the async threads so the runner keeps running.
pub async fn read(topic: &str, count: usize) -> Vec<Read> {
    read_for(topic, count, Duration::from_secs(60)).await
}

pub async fn read_for(topic: &str, count: usize, limit: Duration) -> Vec<Read> {
    read_on(bootstrap(), topic, count, limit).await
}

/// [`read_for`] on another broker.
pub async fn read_on(bootstrap: &str, topic: &str, count: usize, limit: Duration) -> Vec<Read> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, count, limit))
        .await
        .unwrap()
}

fn read_blocking(bootstrap: &str, topic: &str, count: usize, limit: Duration) -> Vec<Read> {
    let consumer = reader_consumer(bootstrap, topic);
    let mut out = Vec::new();
    poll_into(&consumer, &mut out, count, Instant::now() + limit);
    out
}

fn reader_consumer(bootstrap: &str, topic: &str) -> BaseConsumer {
    reader_consumer_with(bootstrap, topic, "read_committed")
}

fn reader_consumer_with(bootstrap: &str, topic: &str, isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("isolation.level", isolation)
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{}", server::db::new_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // As the server's own clients (kafka::BrokerSettings) have it.
        .set("socket.timeout.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Adds what `consumer` reads to `out` until it holds `count` records or
/// `deadline` passed.
fn poll_into(consumer: &BaseConsumer, out: &mut Vec<Read>, count: usize, deadline: Instant) {
    while out.len() < count && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers,
                timestamp: m.timestamp().to_millis().unwrap_or(0),
            });
        }
    }
}

/// A reader that keeps its place: each call adds what arrived since the
/// last one, so a long topic is read once, not again from the start.
pub struct Reader {
    inner: std::sync::Arc<std::sync::Mutex<(BaseConsumer, Vec<Read>)>>,
}

impl Reader {
    /// Reads `topic` from the beginning.
    pub fn new(topic: &str) -> Self {
        Self::on(bootstrap(), topic)
    }

    /// [`Reader::new`], reading past the last stable offset (which tansu
    /// can leave far behind what an idempotent producer wrote).
    pub fn uncommitted(topic: &str) -> Self {
        Self::uncommitted_on(bootstrap(), topic)
    }

    /// [`Reader::uncommitted`] on another broker.
    pub fn uncommitted_on(bootstrap: &str, topic: &str) -> Self {
        let consumer = reader_consumer_with(bootstrap, topic, "read_uncommitted");
        Reader {
            inner: std::sync::Arc::new(std::sync::Mutex::new((consumer, Vec::new()))),
        }
    }

    /// [`Reader::new`] on another broker.
    pub fn on(bootstrap: &str, topic: &str) -> Self {
        let consumer = reader_consumer(bootstrap, topic);
        Reader {
            inner: std::sync::Arc::new(std::sync::Mutex::new((consumer, Vec::new()))),
        }
    }

    /// Reads until `count` records arrived in all or `limit` passed
    /// (off the async threads); returns every record read so far.
    pub async fn read(&self, count: usize, limit: Duration) -> Vec<Read> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap();
            let (consumer, out) = &mut *guard;
            poll_into(consumer, out, count, Instant::now() + limit);
            out.clone()
        })
        .await
        .unwrap()
    }
}

/// Waits until `check` holds (or fails after 60 s).
pub async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// acme/sentiment (1.0.0, 1.1.0), member ana, a broker with topics granted.
pub struct Pipeline {
    pub app: TestApp,
    pub ana: String,
    pub admin: String,
    pub connection: String,
    pub input: String,
    pub output: String,
    pub output_b: String,
    pub dlq: String,
}

pub async fn pipeline() -> Pipeline {
    let app = TestApp::spawn()
        .await
        .with_user("root", "root-password", Role::Admin)
        .await
        .with_user("ana", "ana-password", Role::Member)
        .await
        .with_user("ben", "ben-password", Role::Member)
        .await;
    let s = &app.services;
    for org in ["acme", "globex"] {
        s.add_organization(org).await.unwrap();
    }
    s.add_member("acme", "ana").await.unwrap();
    s.add_member("globex", "ben").await.unwrap();
    for v in ["1.0.0", "1.1.0"] {
        s.add_algorithm_version("acme/sentiment", v, "builtin:sentiment", "")
            .await
            .unwrap();
    }
    s.add_algorithm_version("globex/echo", "1.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let admin = app.login("root", "root-password").await;
    let ana = app.login("ana", "ana-password").await;
    let connection = connect(&app, &admin, "local").await;
    let (input, output, output_b, dlq) = (
        unique_topic("in"),
        unique_topic("out"),
        unique_topic("out-b"),
        unique_topic("dlq"),
    );
    for (topic, partitions) in [(&input, 3), (&output, 1), (&output_b, 1), (&dlq, 1)] {
        let r = app
            .call(
                "create_topic",
                json!({"id": connection, "topic": topic, "partitions": partitions}),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let grant = |topic: &str, subscribe: bool, publish: bool| {
        json!({"id": connection, "topic": topic, "grants": [
            {"algorithm": "acme/sentiment", "access": {"subscribe": subscribe, "publish": publish}}
        ]})
    };
    for (topic, subscribe, publish) in [
        (&input, true, false),
        (&output, false, true),
        (&output_b, false, true),
        (&dlq, false, true),
    ] {
        let r = app
            .call(
                "save_topic_grants",
                grant(topic, subscribe, publish),
                Some(&admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    Pipeline {
        app,
        ana,
        admin,
        connection,
        input,
        output,
        output_b,
        dlq,
    }
}

impl Pipeline {
    /// Runs `version` on `topic` of the connection `connection` (an SQS or
    /// Service Bus one), publishing to the Kafka output topic and dead
    /// letters to `dlq`; the flow's id.
    pub async fn subscribe_on(
        &self,
        connection: &str,
        topic: &str,
        version: &str,
        dlq: Option<&str>,
    ) -> String {
        self.subscribe_with(connection, topic, version, dlq, json!({}))
            .await
    }

    /// As [`Pipeline::subscribe_on`], with more of the flow's settings
    /// (`{"give_back": true}`, say).
    pub async fn subscribe_with(
        &self,
        connection: &str,
        topic: &str,
        version: &str,
        dlq: Option<&str>,
        settings: Value,
    ) -> String {
        self.save(&self.output, "publish", version, None).await;
        let mut request = json!({"request": {"org": "acme", "name": "sentiment",
            "connection_id": connection, "topic": topic, "direction": "Subscribe",
            "version": version, "dlq_topic": dlq}});
        if let Value::Object(settings) = settings {
            request["request"]
                .as_object_mut()
                .expect("a request")
                .extend(settings);
        }
        let reply = self.app.call("save_flow", request, Some(&self.ana)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        self.events()
            .await
            .into_iter()
            .find(|e| e.connection_id == connection && e.topic == topic)
            .and_then(|e| e.flow)
            .expect("the flow is enabled")
            .id
    }

    pub fn flow(&self, topic: &str, direction: &str, version: &str, dlq: Option<&str>) -> Value {
        json!({"request": {
            "org": "acme", "name": "sentiment", "connection_id": self.connection, "topic": topic,
            "direction": if direction == "subscribe" { "Subscribe" } else { "Publish" },
            "version": version, "dlq_topic": dlq
        }})
    }

    pub async fn save(&self, topic: &str, direction: &str, version: &str, dlq: Option<&str>) {
        let reply = self
            .app
            .call(
                "save_flow",
                self.flow(topic, direction, version, dlq),
                Some(&self.ana),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    /// Adds `version` of acme/sentiment on `runtime`, enables it to publish
    /// to the output topic and to subscribe to the input topic (with `dlq`),
    /// and returns the subscribe flow's id.
    pub async fn run_version(&self, version: &str, runtime: &str, dlq: Option<&str>) -> String {
        self.app
            .services
            .add_algorithm_version("acme/sentiment", version, runtime, "")
            .await
            .unwrap();
        self.save(&self.output, "publish", version, None).await;
        self.save(&self.input, "subscribe", version, dlq).await;
        self.subscribe_flow_id().await
    }

    /// Replaces the grants on `topic` as the admin; the reply.
    pub async fn save_grants(&self, connection: &str, topic: &str, grants: Value) -> Reply {
        self.app
            .call(
                "save_topic_grants",
                json!({"id": connection, "topic": topic, "grants": grants}),
                Some(&self.admin),
            )
            .await
    }

    pub async fn events(&self) -> Vec<GrantedTopic> {
        self.app
            .call_as(
                "list_events",
                json!({"org": "acme", "name": "sentiment"}),
                Some(&self.ana),
            )
            .await
    }

    /// The Events tab's row of the input topic.
    pub async fn input_row(&self) -> GrantedTopic {
        self.row(&self.input).await
    }

    /// The Events tab's (first) row of `topic`.
    pub async fn row(&self, topic: &str) -> GrantedTopic {
        self.events()
            .await
            .into_iter()
            .find(|r| r.topic == topic)
            .unwrap_or_else(|| panic!("no row of {topic}"))
    }

    /// A dry run of `version` on the flow's `sample`, as the member asks it.
    pub async fn try_version(&self, flow: &str, version: &str, sample: Value) -> Reply {
        let request = json!({"request": {"flow_id": flow, "version": version, "sample": sample}});
        self.app.call("try_version", request, Some(&self.ana)).await
    }

    pub async fn subscribe_flow_id(&self) -> String {
        self.input_row().await.flow.unwrap().id
    }

    pub async fn stats(&self, flow_id: &str) -> FlowStats {
        self.app
            .call_as(
                "get_flow_stats",
                json!({"flow_id": flow_id}),
                Some(&self.ana),
            )
            .await
    }
}

#[tokio::test]
async fn good_and_bad_messages_give_outputs_and_one_dead_letter_each() {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;

    let mut values = Vec::new();
    for i in 0..24 {
        values.push(match i % 4 {
            0 => json!({"text": format!("I love it {i}")}).to_string(),
            1 => json!({"text": format!("awful {i}")}).to_string(),
            2 => format!("not json {i}"),
            _ => json!({"no_text": i}).to_string(),
        });
    }
    produce_keyed(&p.input, &values).await;

    let outputs = read(&p.output, 12).await;
    let dead = read(&p.dlq, 12).await;
    assert_eq!(outputs.len(), 12, "outputs");
    assert_eq!(dead.len(), 12, "dead letters");
    for out in &outputs {
        let value: Value = serde_json::from_str(&out.value).unwrap();
        assert!(
            ["positive", "negative"].contains(&value["label"].as_str().unwrap()),
            "{value}"
        );
        assert_eq!(out.headers["eventflows-algorithm"], "acme/sentiment");
        assert_eq!(out.headers["eventflows-version"], "1.0.0");
        assert_eq!(out.headers["eventflows-source-topic"], p.input);
        let i: usize = out
            .key
            .as_ref()
            .unwrap()
            .strip_prefix("key-")
            .unwrap()
            .parse()
            .unwrap();
        assert!(i % 4 < 2, "message {i} should have failed");
        assert!(out.headers.contains_key("eventflows-source-partition"));
        assert!(out.headers.contains_key("eventflows-source-offset"));
    }
    for d in &dead {
        let i: usize = d
            .key
            .as_ref()
            .unwrap()
            .strip_prefix("key-")
            .unwrap()
            .parse()
            .unwrap();
        assert!(i % 4 >= 2, "message {i} should have succeeded");
        assert_eq!(d.value, values[i], "the original value");
        assert_eq!(d.headers["eventflows-error-kind"], "bad-input");
        assert!(!d.headers["eventflows-error"].is_empty());
        assert_eq!(d.headers["eventflows-source-topic"], p.input);
        assert_eq!(d.headers["eventflows-algorithm"], "acme/sentiment");
        assert_eq!(d.headers["eventflows-version"], "1.0.0");
        assert_eq!(d.headers["eventflows-attempts"], "1");
        assert!(d.headers["eventflows-failed-at"].parse::<i64>().unwrap() > 0);
        assert!(d.headers["eventflows-source-offset"].parse::<i64>().is_ok());
        assert!(
            d.headers["eventflows-source-partition"]
                .parse::<i32>()
                .is_ok()
        );
    }
    let mut keys: Vec<String> = outputs
        .iter()
        .chain(&dead)
        .map(|r| r.key.clone().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 24, "every input exactly once");

    let flow = p.subscribe_flow_id().await;
    let app = &p.app;
    wait_until("the counters catch up", || async {
        let s = p.stats(&flow).await;
        s.succeeded == 12 && s.dead_lettered == 12
    })
    .await;
    let stats = p.stats(&flow).await;
    assert_eq!(stats.consumed, 24);
    assert_eq!(stats.failed, 12);
    assert_eq!(stats.state, "running");
    // The flow measures its lag every few seconds.
    wait_until("the lag is measured as 0", || async {
        p.stats(&flow).await.lag == Some(0)
    })
    .await;
    assert!(!stats.last_errors.is_empty());
    assert!(!stats.recent_runs.is_empty());

    // /metrics reads the same counters.
    app.services
        .metrics_token
        .set("a-token-for-the-scraper".into())
        .unwrap();
    let reply = app
        .request(
            axum::http::Request::get("/metrics")
                .header("authorization", "Bearer a-token-for-the-scraper")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let samples = parse_prometheus(&reply.text());
    let sample = |name: &str| {
        samples
            .iter()
            .find(|(n, labels, _)| n == name && labels.contains(&format!("flow=\"{flow}\"")))
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("{name} for {flow} missing from {}", reply.text()))
    };
    assert_eq!(sample("eventflows_flow_messages_consumed_total"), 24.0);
    assert_eq!(sample("eventflows_flow_runs_succeeded_total"), 12.0);
    assert_eq!(sample("eventflows_flow_runs_failed_total"), 12.0);
    assert_eq!(sample("eventflows_flow_messages_dead_lettered_total"), 12.0);
    assert_eq!(sample("eventflows_flow_retries_total"), 0.0);
    assert_eq!(sample("eventflows_flow_run_latency_seconds_count"), 24.0);
    assert_eq!(sample("eventflows_flow_consumer_lag"), 0.0);
    assert!(
        samples
            .iter()
            .any(|(n, _, v)| n == "eventflows_process_resident_memory_bytes" && *v > 0.0)
    );
}

/// Parses Prometheus/OpenMetrics text into (name, labels, value), failing
/// on any line that is not a comment or a sample.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels {line:?}")),
            ),
            None => (series, ""),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    samples
}

#[tokio::test]
async fn a_version_change_mid_stream_loses_nothing_and_does_not_rebalance() {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.output_b, "publish", "1.1.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;

    let first: Vec<String> = (0..20)
        .map(|i| json!({"text": format!("good {i}")}).to_string())
        .collect();
    produce_keyed(&p.input, &first).await;
    wait_until("the first messages are processed", || async {
        p.stats(&flow).await.succeeded >= 5
    })
    .await;
    p.save(&p.input, "subscribe", "1.1.0", None).await;
    let second: Vec<String> = (20..40)
        .map(|i| json!({"text": format!("good {i}")}).to_string())
        .collect();
    produce_keyed(&p.input, &second).await;

    wait_until("all 40 are processed", || async {
        p.stats(&flow).await.succeeded == 40
    })
    .await;
    // All 40 are written; read both topics until they hold 40 between them.
    let (old, new) = (Reader::new(&p.output), Reader::new(&p.output_b));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (old, new) = loop {
        let (old, new) = (
            old.read(40, Duration::from_millis(200)).await,
            new.read(40, Duration::from_millis(200)).await,
        );
        if old.len() + new.len() >= 40 || Instant::now() > deadline {
            break (old, new);
        }
    };
    assert_eq!(
        old.len() + new.len(),
        40,
        "every input gave exactly one output"
    );
    assert!(!new.is_empty(), "outputs switched to 1.1.0");
    assert!(
        old.iter()
            .all(|r| r.headers["eventflows-version"] == "1.0.0")
    );
    assert!(
        new.iter()
            .all(|r| r.headers["eventflows-version"] == "1.1.0")
    );
    // After the change, only the new version runs.
    for r in &old {
        let i: usize = r
            .key
            .as_ref()
            .unwrap()
            .strip_prefix("key-")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            i < 20,
            "message {i} was produced after the change but ran on 1.0.0"
        );
    }
    let stats = p.stats(&flow).await;
    assert_eq!(
        stats.assignments, 1,
        "the consumer was not restarted: {stats:?}"
    );
}

#[tokio::test]
async fn disabling_stops_processing_and_enabling_again_resumes_where_it_stopped() {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    let batch: Vec<String> = (0..10)
        .map(|i| json!({"text": format!("ok {i}")}).to_string())
        .collect();
    produce_keyed(&p.input, &batch).await;
    wait_until("10 processed", || async {
        p.stats(&flow).await.succeeded == 10
    })
    .await;

    let reply = p
        .app
        .call(
            "disable_flow",
            json!({"org": "acme", "name": "sentiment", "connection_id": p.connection, "topic": p.input, "direction": "Subscribe"}),
            Some(&p.ana),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(p.stats(&flow).await.state, "stopped");
    let row = p.input_row().await;
    assert!(!row.enabled());

    let more: Vec<String> = (10..15)
        .map(|i| json!({"text": format!("ok {i}")}).to_string())
        .collect();
    produce_keyed(&p.input, &more).await;
    assert_eq!(
        records_on(&p.output).await,
        10,
        "nothing is processed while disabled"
    );

    let enabled_at = server::db::now_ms();
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let outputs = read(&p.output, 15).await;
    let stats = p.stats(&flow).await;
    assert_eq!(
        outputs.len(),
        15,
        "the five waiting messages are processed after enabling: {stats:?}"
    );
    let mut after: Vec<&str> = outputs
        .iter()
        .filter(|o| o.timestamp >= enabled_at)
        .map(|o| o.headers["eventflows-source-offset"].as_str())
        .collect();
    after.sort();
    assert_eq!(
        after.len(),
        5,
        "only the five waiting messages ran after enabling, none while disabled: {after:?}"
    );
    wait_until("the flow counts all fifteen", || async {
        p.stats(&flow).await.succeeded == 15
    })
    .await;
    assert_eq!(records_on(&p.output).await, 15, "nothing ran twice");
}

#[tokio::test]
async fn flow_changes_are_checked_on_the_server() {
    let p = pipeline().await;
    let call = |args: Value, token: String| {
        let app = &p.app;
        async move { app.call("save_flow", args, Some(&token)).await }
    };
    // No grant for subscribe on the output topic.
    let r = call(p.flow(&p.output, "subscribe", "1.0.0", None), p.ana.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    // Unknown version.
    let r = call(p.flow(&p.input, "subscribe", "9.9.9", None), p.ana.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["field"], "version");
    // DLQ equal to the source.
    let r = call(
        p.flow(&p.input, "subscribe", "1.0.0", Some(&p.input)),
        p.ana.clone(),
    )
    .await;
    assert_eq!(r.json()["field"], "dlq_topic", "{}", r.text());
    // DLQ the algorithm may not publish to.
    let r = call(
        p.flow(&p.input, "subscribe", "1.0.0", Some("elsewhere")),
        p.ana.clone(),
    )
    .await;
    assert_eq!(r.json()["field"], "dlq_topic");
    // DLQ on another broker connection, where the algorithm may publish.
    let other = connect(&p.app, &p.admin, "other").await;
    let foreign = unique_topic("foreign-dlq");
    let r = p
        .app
        .call(
            "create_topic",
            json!({"id": other, "topic": foreign, "partitions": 1}),
            Some(&p.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let grants =
        json!([{"algorithm": "acme/sentiment", "access": {"subscribe": false, "publish": true}}]);
    let r = p
        .app
        .call(
            "save_topic_grants",
            json!({"id": other, "topic": foreign, "grants": grants}),
            Some(&p.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        p.flow(&p.input, "subscribe", "1.0.0", Some(&foreign)),
        p.ana.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.json()["field"], "dlq_topic");
    // Another organization's member.
    // (Another organization's algorithm is not found, as if absent.)
    let ben = p.app.login("ben", "ben-password").await;
    let r = call(p.flow(&p.input, "subscribe", "1.0.0", None), ben.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = p
        .app
        .call(
            "list_events",
            json!({"org": "acme", "name": "sentiment"}),
            Some(&ben),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = p.app.call("list_catalog", json!({}), Some(&ben)).await;
    assert_eq!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].clone())
            .collect::<Vec<_>>(),
        vec![json!("echo")]
    );
    // Anonymous.
    let r = p
        .app
        .call(
            "save_flow",
            p.flow(&p.input, "subscribe", "1.0.0", None),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Nothing was saved by any of these.
    let events = p.events().await;
    assert!(events.iter().all(|r| r.flow.is_none()), "{events:?}");
    // An admin may.
    let r = p
        .app
        .call(
            "save_flow",
            p.flow(&p.input, "subscribe", "1.0.0", None),
            Some(&p.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn removing_a_grant_or_the_connection_stops_the_flows_that_used_it() {
    let p = pipeline().await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    assert_eq!(p.stats(&flow).await.state, "running");
    let r = p
        .app
        .call(
            "save_topic_grants",
            json!({"id": p.connection, "topic": p.input, "grants": []}),
            Some(&p.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(p.events().await.iter().all(|r| r.topic != p.input));
    let r = p
        .app
        .call("get_flow_stats", json!({"flow_id": flow}), Some(&p.ana))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the flow is gone");
}

#[tokio::test]
async fn a_run_through_the_rest_api_is_answered_and_published() {
    use axum::body::Body;
    use axum::http::{Request, header};
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.1.0", None).await;
    let run = |version: &str, body: &str, token: Option<&str>| {
        let mut request = Request::post(format!("/v1/algo/acme/sentiment/{version}"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::COOKIE, format!("eventflows_session={token}"));
        }
        p.app
            .request(request.body(Body::from(body.to_owned())).unwrap())
    };
    let ok = run("1.1.0", r#"{"text": "a great day"}"#, Some(&p.ana)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["result"]["label"], "positive");
    let published = read(&p.output, 1).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].headers["eventflows-source"], "api");
    assert_eq!(published[0].headers["eventflows-version"], "1.1.0");

    let bad = run("1.1.0", "not json", Some(&p.ana)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    assert_eq!(
        run("7.0.0", "{}", Some(&p.ana)).await.status,
        StatusCode::NOT_FOUND
    );
    let ben = p.app.login("ben", "ben-password").await;
    assert_eq!(
        run("1.1.0", r#"{"text":"x"}"#, Some(&ben)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        run("1.1.0", r#"{"text":"x"}"#, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Runs of another version are not published to the 1.1.0 flow.
    assert_eq!(
        run("1.0.0", r#"{"text":"fine"}"#, Some(&p.ana))
            .await
            .status,
        StatusCode::OK
    );
    // A run answers once its outputs are written: there would be a second.
    assert_eq!(records_on(&p.output).await, 1);
}

/// A model that echoes its input at once, except inputs of partition 0
/// (`{"p": 0, …}`), which wait until `gate` opens. Every input it was given
/// is recorded in `seen`, in order.
pub async fn gated_model(
    gate: tokio::sync::watch::Receiver<bool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| {
            let (mut gate, seen) = (gate.clone(), seen.clone());
            async move {
                seen.lock().unwrap().push(input.clone());
                if input["p"] == 0 {
                    let _ = gate.wait_for(|open| *open).await;
                }
                Json(input)
            }
        }),
    );
    server::testing::serve_model(app).await.unwrap()
}

#[tokio::test]
async fn a_partition_stuck_on_a_slow_run_does_not_hold_back_the_others() {
    let p = pipeline().await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let model = gated_model(gate, seen.clone()).await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    let inputs = |partition: i32, range: std::ops::Range<usize>| -> Vec<String> {
        range
            .map(|i| json!({"p": partition, "i": i}).to_string())
            .collect()
    };
    // More than the partition's lane holds, so its backlog reaches the consumer loop.
    const BACKLOG: usize = 1000;
    produce_to_partition(&p.input, 0, &inputs(0, 0..BACKLOG)).await;
    p.save(&p.output, "publish", "2.0.0", None).await;
    p.save(&p.input, "subscribe", "2.0.0", None).await;
    wait_until("partition 0's first run is under way", || async {
        !seen.lock().unwrap().is_empty()
    })
    .await;

    // Partition 0 is stuck on its first message; the others go on.
    produce_to_partition(&p.input, 1, &inputs(1, 0..20)).await;
    produce_to_partition(&p.input, 2, &inputs(2, 0..20)).await;
    let others = read(&p.output, 40).await;
    let mut partitions: Vec<String> = others
        .iter()
        .map(|r| r.headers["eventflows-source-partition"].clone())
        .collect();
    partitions.sort();
    partitions.dedup();
    assert_eq!(
        (others.len(), partitions),
        (40, vec!["1".to_owned(), "2".to_owned()]),
        "partitions 1 and 2 are done while partition 0 waits"
    );
    assert_eq!(
        seen.lock().unwrap().iter().filter(|v| v["p"] == 0).count(),
        1,
        "partition 0 is still on its first message"
    );

    // Written while partition 0 is held back: fetched once it catches up.
    produce_to_partition(&p.input, 0, &inputs(0, BACKLOG..BACKLOG + 50)).await;
    open.send(true).unwrap();
    let total = BACKLOG + 50 + 40;
    let outputs = read(&p.output, total).await;
    assert_eq!(outputs.len(), total, "every message has its output");
    let mut last: HashMap<String, i64> = HashMap::new();
    for output in &outputs {
        let partition = output.headers["eventflows-source-partition"].clone();
        let offset: i64 = output.headers["eventflows-source-offset"].parse().unwrap();
        let previous = last.insert(partition.clone(), offset).unwrap_or(-1);
        assert_eq!(
            offset,
            previous + 1,
            "partition {partition}: outputs in order, none missing or repeated"
        );
        let value: Value = serde_json::from_str(&output.value).unwrap();
        assert_eq!(value["i"], offset, "the output is its own input's");
    }
    assert_eq!(last["0"], (BACKLOG + 50 - 1) as i64);
}

#[tokio::test]
async fn a_backlog_of_large_messages_behind_a_slow_run_does_not_stop_the_consumer() {
    let p = pipeline().await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let model = gated_model(gate, seen.clone()).await;
    let flow = p.run_version("2.0.0", &format!("http:{model}"), None).await;
    // Partition 0 is stuck on its first message with 55 MB behind it: more
    // than a flow may hold for a lane that is behind (16 MiB, after the two
    // pieces of at most 256 messages its queue takes).
    const BACKLOG: usize = 800;
    let pad = "x".repeat(70_000);
    let backlog: Vec<String> = (0..BACKLOG)
        .map(|i| json!({"p": 0, "i": i, "pad": pad}).to_string())
        .collect();
    produce_to_partition(&p.input, 0, &backlog[..1]).await;
    wait_until("partition 0's first run is under way", || async {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    produce_to_partition(&p.input, 0, &backlog[1..]).await;

    // The consumer keeps polling: the other partitions go on, and the
    // flow stays in its group (no new assignment).
    let others: Vec<String> = (0..20)
        .map(|i| json!({"p": 1 + i % 2, "i": i / 2}).to_string())
        .collect();
    produce_to_partition(&p.input, 1, &others[..10]).await;
    produce_to_partition(&p.input, 2, &others[10..]).await;
    let done = read_for(&p.output, 20, Duration::from_secs(60)).await;
    assert_eq!(
        done.len(),
        20,
        "partitions 1 and 2 are done while partition 0 waits behind its backlog"
    );
    assert!(
        done.iter()
            .all(|r| r.headers["eventflows-source-partition"] != "0")
    );
    assert_eq!(p.stats(&flow).await.assignments, 1, "no rebalance");

    open.send(true).unwrap();
    let outputs = read(&p.output, BACKLOG + 20).await;
    let zero: Vec<i64> = outputs
        .iter()
        .filter(|r| r.headers["eventflows-source-partition"] == "0")
        .map(|r| r.headers["eventflows-source-offset"].parse().unwrap())
        .collect();
    assert_eq!(
        zero,
        (0..BACKLOG as i64).collect::<Vec<i64>>(),
        "partition 0's backlog is done once, in order"
    );
}

#[tokio::test]
async fn flows_that_lose_their_grant_stop_when_it_is_saved() {
    let p = pipeline().await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    assert_eq!(
        p.app.services.runner.flow_stats(&flow).await.state,
        "running"
    );
    let r = p.save_grants(&p.connection, &p.input, json!([])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Stopped by the time the change is answered, not at the next round.
    assert_eq!(
        p.app.services.runner.flow_stats(&flow).await.state,
        "stopped"
    );
}

#[tokio::test]
async fn taking_publish_access_on_a_dead_letter_queue_away_keeps_failures_instead() {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    let flow = p.subscribe_flow_id().await;
    let r = p.save_grants(&p.connection, &p.dlq, json!([])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let row = p.input_row().await;
    assert_eq!(row.flow.unwrap().dlq_topic, None, "the flow lost its DLQ");
    produce_to_partition(&p.input, 0, &["not json".to_owned()]).await;
    wait_until("the bad message is kept", || async {
        p.stats(&flow).await.failures_kept == 1
    })
    .await;
    assert_eq!(
        records_on(&p.dlq).await,
        0,
        "nothing was written to the topic the algorithm may no longer publish to"
    );
}

#[tokio::test]
async fn access_can_be_taken_away_while_the_broker_is_down_but_not_given() {
    use server::db::brokers::{ConnectionRow, insert_connection, replace_topic_grants};
    let p = pipeline().await;
    // A connection whose broker does not answer, with a grant on a topic.
    p.app
        .services
        .db
        .interact(|c| {
            let algorithm = server::db::algorithms::find(c, "acme", "sentiment")?
                .unwrap()
                .id;
            insert_connection(
                c,
                &ConnectionRow {
                    id: "gone-broker".into(),
                    name: "gone".into(),
                    bootstrap_servers: "127.0.0.1:9".into(),
                    security_protocol: "PLAINTEXT".into(),
                    sasl_mechanism: None,
                    username: None,
                    password_encrypted: None,
                    ca_pem_encrypted: None,
                    created_at: 0,
                    kind: "kafka".into(),
                    region: None,
                    endpoint_url: None,
                },
            )?;
            replace_topic_grants(c, "gone-broker", "t", &[(algorithm, true, false)])
        })
        .await
        .unwrap();
    let granted = || {
        p.app
            .services
            .db
            .interact(|c| server::db::brokers::topic_grants(c, "gone-broker", "t"))
    };
    let more =
        json!([{"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": true}}]);
    let more = p.save_grants("gone-broker", "t", more).await;
    assert_eq!(
        more.status,
        StatusCode::BAD_GATEWAY,
        "giving access needs the broker: {}",
        more.text()
    );
    assert_eq!(granted().await.unwrap().len(), 1, "nothing was saved");
    let removed = p.save_grants("gone-broker", "t", json!([])).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text());
    assert!(granted().await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_saves_of_one_flow_all_succeed_and_make_one_flow() {
    let p = pipeline().await;
    // Eight saves of the same new flow at once, alternating versions.
    let saves = (0..8).map(|i| {
        let version = if i % 2 == 0 { "1.0.0" } else { "1.1.0" };
        p.app.call(
            "save_flow",
            p.flow(&p.input, "subscribe", version, Some(&p.dlq)),
            Some(&p.ana),
        )
    });
    for reply in futures::future::join_all(saves).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let flows = p
        .app
        .services
        .db
        .interact(server::db::flows::active_flows)
        .await
        .unwrap();
    let ours: Vec<_> = flows.iter().filter(|f| f.topic == p.input).collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
}
