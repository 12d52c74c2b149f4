//! A real tansu broker for the tests that need one: `EVENTFLOWS_TEST_KAFKA`
//! when set (the test script starts one), otherwise one started here for
//! this test binary and stopped when it exits.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Starts `tansu broker` on `port` with `extra` arguments; the broker lives
/// as long as this test process (a small shell watches our pid).
fn start_tansu(port: u16, dir: &std::path::Path, extra: &str) {
    let url = format!("tcp://127.0.0.1:{port}");
    let script = format!(
        "cd '{dir}' || exit 1; tansu broker --listener-url {url} --advertised-listener-url {url} {extra} \
         >/dev/null 2>&1 & t=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $t 2>/dev/null; do sleep 1; done; kill $t 2>/dev/null",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("bash is needed to start the tansu broker");
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "the tansu broker did not start (is `tansu` installed? run scripts/setup.sh)"
    );
}

/// `host:port` of the shared test broker (PLAINTEXT, no authentication).
pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(existing) = std::env::var("EVENTFLOWS_TEST_KAFKA") {
            return existing;
        }
        let port = free_port();
        start_tansu(
            port,
            &std::env::temp_dir(),
            "--storage-engine memory://tansu/",
        );
        format!("127.0.0.1:{port}")
    })
}

/// A broker that requires SASL/SCRAM-SHA-512 and knows one user,
/// `(bootstrap, username, password)`.
pub fn sasl_broker() -> &'static (String, String, String) {
    static BROKER: OnceLock<(String, String, String)> = OnceLock::new();
    BROKER.get_or_init(|| {
        let (user, password) = ("svc".to_owned(), "canary-pw-7f3a9c".to_owned());
        let dir = std::env::temp_dir().join(format!("eventflows-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // tansu resolves sqlite:// paths from its working directory.
        let storage = "--storage-engine sqlite://tansu.db";
        // Once without authentication to create the user, then with it.
        let setup_port = free_port();
        let url = format!("tcp://127.0.0.1:{setup_port}");
        let mut setup = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(storage.split(' '))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu must be installed");
        assert!(wait_for_port(setup_port, Duration::from_secs(60)));
        let created = Command::new("tansu")
            .args([
                "user",
                "create",
                "--broker",
                &url,
                "--mechanism",
                "scram512",
                &user,
                &password,
            ])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        setup.kill().unwrap();
        setup.wait().unwrap();
        let port = free_port();
        start_tansu(port, &dir, &format!("{storage} --authentication"));
        crate::outage::index_sqlite_storage(&dir.join("tansu.db"));
        (format!("127.0.0.1:{port}"), user, password)
    })
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
