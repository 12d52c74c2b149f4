//! `cargo run -p server --release --bin bench [-- --smoke] [--json PATH]`
//!
//! Starts its own tansu broker and an in-process Event Flows runner, then
//! measures on the same broker, side by side: a bare rdkafka passthrough
//! (the limit), and subscribe flows running echo, sentiment and an HTTP model
//! that answers after 5 ms; for 100-byte and 1-KB messages on 1 and 3
//! partitions. Then the resident memory and threads with 1, 50 and 200 idle
//! flows. `--smoke` runs a few messages and checks outputs equal inputs.

use std::collections::{HashMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use axum::{Json, Router, routing::post};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use app::domain::{
    Access, CurrentUser, Direction, FlowRequest, NewBrokerConnection, Role, TopicGrant, TopicName,
};
use server::{db::Db, runner::metrics::process_usage, secrets::SecretBox, services::Services};

struct Broker(Child, String);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_tansu() -> anyhow::Result<Broker> {
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("tansu must be installed (scripts/setup.sh)")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Broker(child, format!("127.0.0.1:{port}")))
}

async fn slow_model() -> anyhow::Result<String> {
    let app = Router::new().route(
        "/predict",
        post(|Json(input): Json<Value>| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Json(input)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/predict", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A JSON message of about `size` bytes that every runtime accepts.
fn payload(i: usize, size: usize) -> String {
    let base = format!(r#"{{"text":"great review number {i} ","pad":""}}"#);
    let pad = size.saturating_sub(base.len());
    format!(
        r#"{{"text":"great review number {i} ","pad":"{}"}}"#,
        "x".repeat(pad)
    )
}

/// Produces `n` messages with every send in flight; returns send times by key.
async fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    size: usize,
    pace: Option<Duration>,
) -> anyhow::Result<HashMap<String, i64>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let mut pending = VecDeque::new();
    let mut sent = HashMap::new();
    for i in 0..n {
        let key = format!("k{i}");
        let value = payload(i, size);
        sent.insert(key.clone(), now_ms());
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
        pending.push_back(delivery);
        if pending.len() > 10_000 {
            pending.pop_front().unwrap().await?.map_err(|(e, _)| e)?;
        }
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
    }
    for delivery in pending {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(sent)
}

/// Reads `n` records from `topic`: (key, create timestamp ms, value).
fn read(
    bootstrap: &str,
    topic: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<(Vec<(String, i64, Vec<u8>)>, f64)> {
    read_when_ready(bootstrap, topic, n, limit, None)
}

/// Like [`read`]; tells `ready` once the reader has its partition, so that a
/// pipeline started afterwards is timed as it runs, not as a finished backlog.
fn read_when_ready(
    bootstrap: &str,
    topic: &str,
    n: usize,
    limit: Duration,
    ready: Option<std::sync::mpsc::Sender<()>>,
) -> anyhow::Result<(Vec<(String, i64, Vec<u8>)>, f64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{}", server::db::new_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(n);
    let mut first = None;
    let mut ready = ready;
    while ready.is_some() && out.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "the reader got no partition of {topic}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(50)) {
            let m = m?;
            first = Some(Instant::now());
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.timestamp().to_millis().unwrap_or(0),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
        if consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
        {
            if let Some(tx) = ready.take() {
                let _ = tx.send(());
            }
        }
    }
    while out.len() < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} records arrived on {topic}", out.len());
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            first.get_or_insert_with(Instant::now);
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.timestamp().to_millis().unwrap_or(0),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    let span = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    Ok((out, span))
}

/// The limit: consume, produce the same bytes with sends in flight, store
/// offsets after acknowledgement. Runs until `stop`.
async fn passthrough(
    bootstrap: String,
    input: String,
    output: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let consumer: Arc<StreamConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("bench-limit-{input}"))
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .create()?,
    );
    consumer.subscribe(&[&input])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::channel(10_000);
    let storer = {
        let consumer = consumer.clone();
        let input = input.clone();
        tokio::spawn(async move {
            while let Some((partition, offset, delivery)) = acks_rx.recv().await {
                let delivery: rdkafka::producer::DeliveryFuture = delivery;
                if matches!(delivery.await, Ok(Ok(_))) {
                    let _ = consumer.store_offset(&input, partition, offset);
                }
            }
        })
    };
    let mut stop = stop;
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            m = consumer.recv() => m?,
        };
        let mut record = FutureRecord::to(&output).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
        acks_tx
            .send((message.partition(), message.offset(), delivery))
            .await?;
    }
    drop(acks_tx);
    let _ = storer.await;
    Ok(())
}

struct Row {
    runtime: &'static str,
    size: usize,
    partitions: u32,
    per_second: f64,
    p50_ms: i64,
    p99_ms: i64,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Bench {
    services: Services,
    admin: CurrentUser,
    connection: String,
    bootstrap: String,
    messages: usize,
    latency_messages: usize,
    smoke: bool,
}

impl Bench {
    async fn topic(
        &self,
        prefix: &str,
        partitions: u32,
        grants: &[(&str, bool, bool)],
    ) -> anyhow::Result<String> {
        let name = format!("{prefix}-{}", &server::db::new_id()[..8]);
        let topic = TopicName::parse(&name)?;
        self.services
            .create_topic(&self.connection, &topic, partitions)
            .await?;
        let grants = grants
            .iter()
            .map(|(a, s, p)| TopicGrant {
                algorithm: (*a).into(),
                access: Access {
                    subscribe: *s,
                    publish: *p,
                },
            })
            .collect();
        self.services
            .save_topic_grants(&self.connection, &topic, grants)
            .await?;
        Ok(name)
    }

    async fn flow(
        &self,
        algorithm: &str,
        topic: &str,
        direction: Direction,
        enable: bool,
    ) -> anyhow::Result<()> {
        let (org, name) = algorithm.split_once('/').unwrap();
        if enable {
            self.services
                .save_flow(
                    &self.admin,
                    FlowRequest {
                        org: org.into(),
                        name: name.into(),
                        connection_id: self.connection.clone(),
                        topic: topic.into(),
                        direction,
                        version: "1.0.0".into(),
                        dlq_topic: None,
                    },
                )
                .await?;
        } else {
            self.services
                .disable_flow(&self.admin, org, name, &self.connection, topic, direction)
                .await?;
        }
        Ok(())
    }

    /// Throughput over a backlog (first to last output), then latency at a steady pace.
    async fn measure(
        &self,
        runtime: &'static str,
        size: usize,
        partitions: u32,
    ) -> anyhow::Result<Row> {
        let algorithm = format!("bench/{runtime}");
        let a = algorithm.as_str();
        let input = self.topic("in", partitions, &[(a, true, false)]).await?;
        let output = self.topic("out", 1, &[(a, false, true)]).await?;
        // An HTTP model answering after 5 ms is slow by design: fewer messages.
        let n = if runtime == "http" {
            self.messages / 10
        } else {
            self.messages
        };
        produce(&self.bootstrap, &input, n, size, None).await?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (bootstrap, out) = (self.bootstrap.clone(), output.clone());
        let reader = tokio::task::spawn_blocking(move || {
            read_when_ready(
                &bootstrap,
                &out,
                n,
                Duration::from_secs(600),
                Some(ready_tx),
            )
        });
        tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
            .await?
            .context("the output reader did not get its partition")?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limit_task = if runtime == "limit" {
            Some(tokio::spawn(passthrough(
                self.bootstrap.clone(),
                input.clone(),
                output.clone(),
                stop_rx,
            )))
        } else {
            self.flow(a, &output, Direction::Publish, true).await?;
            self.flow(a, &input, Direction::Subscribe, true).await?;
            None
        };
        let (backlog, span) = reader.await??;
        // From the first output a reader sees to the last: the flow's start-up
        // (group join) is left out, the broker's delivery is included.
        let per_second = (n.saturating_sub(1)) as f64 / span.max(0.001);
        if self.smoke {
            let mut got: Vec<String> = backlog.iter().map(|r| r.0.clone()).collect();
            got.sort();
            got.dedup();
            ensure!(
                got.len() == n,
                "{runtime}: {} distinct outputs for {n} inputs",
                got.len()
            );
            for (key, _, value) in &backlog {
                let i: usize = key.trim_start_matches('k').parse()?;
                let output: Value = serde_json::from_slice(value)?;
                match runtime {
                    "limit" | "echo" | "http" => ensure!(
                        output == serde_json::from_str::<Value>(&payload(i, size))?,
                        "{runtime}: output differs from input {i}"
                    ),
                    _ => ensure!(
                        output["label"] == "positive",
                        "{runtime}: unexpected output {output}"
                    ),
                }
            }
        }

        let l = self.latency_messages;
        let sent = produce(
            &self.bootstrap,
            &input,
            l,
            size,
            Some(Duration::from_millis(2)),
        )
        .await?;
        let (bootstrap, out) = (self.bootstrap.clone(), output.clone());
        let (all, _) = tokio::task::spawn_blocking(move || {
            read(&bootstrap, &out, n + l, Duration::from_secs(600))
        })
        .await??;
        let mut latencies: Vec<i64> = all
            .iter()
            .filter_map(|(key, ts, _)| sent.get(key).map(|s| ts - s))
            .collect();
        latencies.sort();
        if let Some(task) = limit_task {
            let _ = stop_tx.send(true);
            task.await??;
        } else {
            self.flow(a, &input, Direction::Subscribe, false).await?;
            self.flow(a, &output, Direction::Publish, false).await?;
        }
        Ok(Row {
            runtime,
            size,
            partitions,
            per_second,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
        })
    }

    /// Resident memory and threads with `count` idle flows enabled.
    async fn idle_cost(&self, counts: &[usize]) -> anyhow::Result<Vec<(usize, u64, u64)>> {
        let most = *counts.iter().max().unwrap_or(&0);
        for i in 0..most {
            self.services
                .add_algorithm_version(&format!("bench/idle-{i}"), "1.0.0", "builtin:echo", "")
                .await?;
        }
        let grants: Vec<(String, bool, bool)> = (0..most)
            .map(|i| (format!("bench/idle-{i}"), true, false))
            .collect();
        let refs: Vec<(&str, bool, bool)> = grants
            .iter()
            .map(|(a, s, p)| (a.as_str(), *s, *p))
            .collect();
        let topic = self.topic("idle", 1, &refs).await?;
        let mut out = Vec::new();
        let mut enabled = 0;
        let (base_rss, base_threads) = process_usage().unwrap_or((0, 0));
        out.push((0, base_rss, base_threads));
        for &count in counts {
            while enabled < count {
                self.flow(
                    &format!("bench/idle-{enabled}"),
                    &topic,
                    Direction::Subscribe,
                    true,
                )
                .await?;
                enabled += 1;
            }
            // Wait until the clients have settled (thread count stops growing).
            let mut last = 0;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (_, threads) = process_usage().unwrap_or((0, 0));
                if threads == last {
                    break;
                }
                last = threads;
            }
            let (rss, threads) = process_usage().unwrap_or((0, 0));
            out.push((count, rss, threads));
        }
        Ok(out)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "target/bench.json".into());
    let broker = start_tansu()?;
    let dir = std::env::temp_dir().join(format!("eventflows-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = dir.join("bench.db").to_string_lossy().into_owned();
    let db = tokio::task::spawn_blocking(move || Db::open(&url)).await??;
    let services = Services::new(db, SecretBox::random()?, false)?;
    services.add_organization("bench").await?;
    let model = slow_model().await?;
    for (name, runtime) in [
        ("limit", "builtin:echo".to_owned()),
        ("echo", "builtin:echo".into()),
        ("sentiment", "builtin:sentiment".into()),
        ("http", format!("http:{model}")),
    ] {
        services
            .add_algorithm_version(&format!("bench/{name}"), "1.0.0", &runtime, "")
            .await?;
    }
    let connection = services
        .connect_broker(NewBrokerConnection {
            name: "bench".into(),
            bootstrap_servers: broker.1.clone(),
            security_protocol: "PLAINTEXT".into(),
            ..Default::default()
        })
        .await?;
    let bench = Bench {
        services,
        admin: CurrentUser {
            username: "bench".into(),
            role: Role::Admin,
            organizations: vec![],
        },
        connection,
        bootstrap: broker.1.clone(),
        messages: if smoke { 60 } else { 30_000 },
        latency_messages: if smoke { 20 } else { 500 },
        smoke,
    };

    let mut rows = Vec::new();
    for partitions in [1, 3] {
        for size in [100, 1024] {
            for runtime in ["limit", "echo", "sentiment", "http"] {
                let row = bench.measure(runtime, size, partitions).await?;
                eprintln!(
                    "{runtime:>9} {size:>5} B {partitions} p: {:>9.0} msg/s  p50 {:>4} ms  p99 {:>4} ms",
                    row.per_second, row.p50_ms, row.p99_ms
                );
                rows.push(row);
            }
        }
    }
    let idle = bench
        .idle_cost(if smoke { &[1, 3] } else { &[1, 50, 200] })
        .await?;

    println!("\n| runtime | size | partitions | msg/s | p50 ms | p99 ms | × limit |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut json_rows = Vec::new();
    for row in &rows {
        let limit = rows
            .iter()
            .find(|r| r.runtime == "limit" && r.size == row.size && r.partitions == row.partitions)
            .map(|r| r.per_second)
            .unwrap_or(f64::NAN);
        let ratio = row.per_second / limit;
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {:.2} |",
            row.runtime, row.size, row.partitions, row.per_second, row.p50_ms, row.p99_ms, ratio
        );
        json_rows.push(json!({"runtime": row.runtime, "size": row.size, "partitions": row.partitions,
            "messages_per_second": row.per_second, "p50_ms": row.p50_ms, "p99_ms": row.p99_ms, "ratio_to_limit": ratio}));
    }
    println!("\n| idle flows | resident MiB | threads | MiB per flow | threads per flow |");
    println!("|---:|---:|---:|---:|---:|");
    let (_, base_rss, base_threads) = idle[0];
    let mut json_idle = Vec::new();
    for &(count, rss, threads) in &idle {
        let per = |total: u64, base: u64| {
            if count == 0 {
                0.0
            } else {
                (total as f64 - base as f64) / count as f64
            }
        };
        println!(
            "| {count} | {:.1} | {threads} | {:.2} | {:.1} |",
            rss as f64 / 1048576.0,
            per(rss, base_rss) / 1048576.0,
            per(threads, base_threads)
        );
        json_idle.push(json!({"idle_flows": count, "resident_bytes": rss, "threads": threads}));
    }
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json!({"throughput": json_rows, "idle": json_idle}))?,
    )?;
    eprintln!("\nwritten to {json_path}");
    if smoke {
        println!("bench smoke: every output matched its input");
    }
    bench.services.runner.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(broker);
    Ok(())
}
