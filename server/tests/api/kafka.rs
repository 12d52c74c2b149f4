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

/// `host:port` of the shared test broker.
pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(existing) = std::env::var("EVENTFLOWS_TEST_KAFKA") {
            return existing;
        }
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // The broker lives as long as this test process: a small shell
        // watches our pid and stops tansu when we are gone.
        let script = format!(
            "tansu broker --listener-url {url} --advertised-listener-url {url} \
             --storage-engine memory://tansu/ >/dev/null 2>&1 & t=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $t",
            pid = std::process::id()
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
        format!("127.0.0.1:{port}")
    })
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", &server::db::new_id()[..12])
}

/// Produces `values` to `topic` (partition chosen by key) and waits for the acks.
pub async fn produce(topic: &str, values: &[&str]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
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
