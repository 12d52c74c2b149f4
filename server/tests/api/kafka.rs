//! A real tansu broker for the tests that need one: `EVENTFLOWS_TEST_KAFKA`
//! when set (the test script starts one), otherwise one started here for
//! this test binary and stopped when it exits.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use server::testing::{Storage, Tansu};

/// `host:port` of the shared test broker (PLAINTEXT, no authentication).
pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    static BROKER: OnceLock<Tansu> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(existing) = std::env::var("EVENTFLOWS_TEST_KAFKA") {
            return existing;
        }
        BROKER
            .get_or_init(|| Tansu::start(Storage::Memory).unwrap())
            .bootstrap()
    })
}

/// A broker that requires SASL/SCRAM-SHA-512 and knows one user,
/// `(bootstrap, username, password)`.
pub fn sasl_broker() -> &'static (String, String, String) {
    static BROKER: OnceLock<(Tansu, (String, String, String))> = OnceLock::new();
    &BROKER
        .get_or_init(|| {
            let (user, password) = ("svc".to_owned(), "canary-pw-7f3a9c".to_owned());
            // Once without authentication to create the user, then with it.
            let mut broker = Tansu::start(Storage::Sqlite).unwrap();
            let created = Command::new("tansu")
                .args(["user", "create", "--broker"])
                .arg(format!("tcp://{}", broker.bootstrap()))
                .args(["--mechanism", "scram512", &user, &password])
                .output()
                .unwrap();
            assert!(
                created.status.success(),
                "{}",
                String::from_utf8_lossy(&created.stderr)
            );
            broker.restart_with(&["--authentication"]).unwrap();
            let bootstrap = broker.bootstrap();
            (broker, (bootstrap, user, password))
        })
        .1
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", &server::db::new_id()[..12])
}

/// Produces `values` to `topic` (partition chosen by key) and waits for the acks.
pub async fn produce(topic: &str, values: &[&str]) {
    produce_on(bootstrap(), topic, values).await
}

/// [`produce`] on another broker; keys are `key-0`, `key-1`, …
pub async fn produce_on(bootstrap: &str, topic: &str, values: &[&str]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    for (i, value) in values.iter().enumerate() {
        let key = format!("key-{i}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(*value),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Produces `values` with keys `key-0`, `key-1`, … and waits for the acks.
pub async fn produce_keyed(topic: &str, values: &[String]) {
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    produce(topic, &refs).await;
}

/// Produces `values` to one partition of `topic`, all sends in flight at
/// once, and waits for the acks.
pub async fn produce_to_partition(topic: &str, partition: i32, values: &[String]) {
    let unkeyed: Vec<(Option<String>, String)> = values.iter().map(|v| (None, v.clone())).collect();
    produce_keyed_to_partition(topic, partition, &unkeyed).await
}

/// [`produce_to_partition`] with a key per record.
pub async fn produce_keyed_to_partition(
    topic: &str,
    partition: i32,
    records: &[(Option<String>, String)],
) {
    produce_keyed_to_partition_on(bootstrap(), topic, partition, records).await;
}

/// [`produce_keyed_to_partition`] on another broker.
pub async fn produce_keyed_to_partition_on(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    records: &[(Option<String>, String)],
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for (key, value) in records {
        let mut record = FutureRecord::<str, str>::to(topic)
            .partition(partition)
            .payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}
