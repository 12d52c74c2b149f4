//! `cargo run -p server --release --bin bench [-- --smoke] [--json PATH]`
//!
//! Starts its own tansu broker and an in-process Event Flows runner, then
//! measures on the same broker, side by side: a bare rdkafka passthrough
//! (the limit), the same passthrough writing the five `eventflows-` headers
//! a flow's output carries, that one again through an idempotent producer
//! with `acks=all` (as a flow's producer is), and subscribe flows running
//! echo, sentiment and an HTTP model that answers after 5 ms; for 100-byte
//! and 1-KB messages on 1 and 3 partitions. Then flows on model servers (5
//! and 50 ms, 1,000 distinct keys) ordered per partition, per key with 8
//! and 64 runs in flight, and unordered with 64, each against its bound at
//! the model's nominal time and at the time a call to it takes alone. Then
//! the resident memory and threads with 1, 50 and 200 idle flows. `--smoke`
//! runs a few messages and checks outputs equal inputs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use axum::{Json, Router, routing::post};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{Value, json};
use server::runner::headers as header;
use server::testing::{Storage, Tansu, model_taking};

use app::api::{BrokerAdmin, Catalog, ModelHostAdmin};
use app::domain::{
    Access, CurrentUser, Direction, FlowOrdering, FlowRequest, NewBrokerConnection, Role,
    TopicGrant, TopicName,
};
use server::{db::Db, runner::metrics::process_usage, secrets::SecretBox, services::Services};

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

/// Produces `n` messages keyed `{prefix}{i}` (or `{prefix}{i % keys}`)
/// with every send in flight; returns send times by key.
async fn produce(
    bootstrap: &str,
    topic: &str,
    prefix: &str,
    n: usize,
    size: usize,
    pace: Option<Duration>,
    keys: Option<usize>,
) -> anyhow::Result<HashMap<String, i64>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()?;
    // Connected, with the topic's leader known, before the first send time is
    // taken: the producer's own start-up is no part of any message's latency.
    let client = producer.clone();
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(Some(&name), Duration::from_secs(10))
    })
    .await??;
    let mut pending = VecDeque::new();
    let mut sent = HashMap::new();
    for i in 0..n {
        let key = format!("{prefix}{}", keys.map_or(i, |k| i % k));
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

/// One record read back: key, produce (create) timestamp in ms, value.
type Output = (String, i64, Vec<u8>);

/// Reads `n` records from `topic`; returns them and the wall-clock time (ms)
/// at which the last one arrived.
fn read(
    bootstrap: &str,
    topic: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<(Vec<Output>, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{}", server::db::new_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // The reader's own wait adds at most this to the measured time.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} records arrived on {topic}", out.len());
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.timestamp().to_millis().unwrap_or(0),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    Ok((out, now_ms()))
}

/// Messages per second from the first output's produce timestamp (the
/// pipeline's start, its consumer's start-up left out) to the arrival of the
/// last output at the reader (so every write is acknowledged and delivered).
fn pace(outputs: &[Output], last_arrival_ms: i64) -> f64 {
    let first = outputs.iter().map(|o| o.1).min().unwrap_or(0);
    outputs.len() as f64 * 1000.0 / ((last_arrival_ms - first).max(1) as f64)
}

/// The limit: consume, produce the same bytes with sends in flight, store
/// offsets after acknowledgement. Runs until `stop`. With `headers`, each
/// record also carries the five headers a flow's output carries (the
/// `limit+headers` row: what writing them costs, without the runner); with
/// `idempotent` as well, the producer is idempotent with `acks=all`, as a
/// flow's producer is (the `limit+idempotence` row).
async fn passthrough(
    bootstrap: String,
    input: String,
    output: String,
    (headers, idempotent): (bool, bool),
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
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5");
    if idempotent {
        producer
            .set("acks", "all")
            .set("enable.idempotence", "true");
    }
    let producer: FutureProducer = producer.create()?;
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
    let mut messages = consumer.stream();
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            m = messages.next() => m.context("the consumer stream ended")??,
        };
        let mut record = FutureRecord::to(&output).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if headers {
            let (mut partition, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
            let fields: [(&str, &[u8]); 5] = [
                (header::ALGORITHM, b"bench/limit"),
                (header::VERSION, b"1.0.0"),
                (header::SOURCE_TOPIC, input.as_bytes()),
                (
                    header::SOURCE_PARTITION,
                    partition.format(message.partition()).as_bytes(),
                ),
                (
                    header::SOURCE_OFFSET,
                    offset.format(message.offset()).as_bytes(),
                ),
            ];
            let mut all = OwnedHeaders::new_with_capacity(fields.len());
            for (key, value) in fields {
                all = all.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            record = record.headers(all);
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

/// Flows on a model server: (row, model latency in ms, ordering, runs in
/// flight per partition, inputs per batch: above 1 on a model that takes
/// batches).
const MODEL_ROWS: [(&str, u64, FlowOrdering, u32, u32); 7] = [
    ("http", 5, FlowOrdering::Partition, 1, 1),
    ("http-key8", 5, FlowOrdering::Key, 8, 1),
    ("http-key64", 5, FlowOrdering::Key, 64, 1),
    ("http-none64", 5, FlowOrdering::None, 64, 1),
    ("http50-key64", 50, FlowOrdering::Key, 64, 1),
    ("http-batch32", 5, FlowOrdering::Partition, 1, 32),
    ("http-batch32-key64", 5, FlowOrdering::Key, 64, 32),
];
/// Distinct keys of the messages model rows run.
const MODEL_KEYS: usize = 1000;

fn model_row(runtime: &str) -> Option<(u64, FlowOrdering, u32, u32)> {
    MODEL_ROWS
        .iter()
        .find(|r| r.0 == runtime)
        .map(|&(_, millis, ordering, in_flight, batch)| (millis, ordering, in_flight, batch))
}

/// A model server that takes batches (`{"instances": [...]}`) and answers
/// each with its instances as predictions after `millis`.
async fn batch_model(millis: u64) -> anyhow::Result<String> {
    let app = Router::new().route(
        "/predict",
        post(move |Json(body): Json<Value>| async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Json(json!({ "predictions": body["instances"] }))
        }),
    );
    server::testing::serve_model(app).await
}

/// The median time of one call with `body` to a model server on its own,
/// one call at a time (the bench's client; `calls` calls after a tenth as
/// many to warm up).
async fn model_latency(url: &str, body: &Value, calls: usize) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    let warm = calls / 10;
    for i in 0..calls + warm {
        let started = Instant::now();
        let reply = client.post(url).json(body).send().await?;
        ensure!(
            reply.status().is_success(),
            "the model server answered {}",
            reply.status()
        );
        reply.bytes().await?;
        if i >= warm {
            times.push(started.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Requests a second the model server answers on its own, with 256 at once
/// for two seconds.
async fn model_capacity(url: &str) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let window = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut answered = 0u64;
            while started.elapsed() < window {
                let reply = client.post(&url).json(&json!({"text": "x"})).send().await;
                if reply.is_ok_and(|r| r.status().is_success()) {
                    answered += 1;
                }
            }
            answered
        }));
    }
    let mut answered = 0;
    for task in tasks {
        answered += task.await?;
    }
    Ok(answered as f64 / started.elapsed().as_secs_f64())
}

struct Row {
    runtime: &'static str,
    size: usize,
    partitions: u32,
    per_second: f64,
    p50_ms: i64,
    p99_ms: i64,
    /// CPU time per message while the backlog was processed, in µs: this
    /// process (the pipeline and the reader) and the broker.
    cpu_us: f64,
    broker_cpu_us: f64,
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, fields 14 and 15 of the line (11 and 12 after the name), in 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The allocator the `eventflows` binary uses, so that the runner measured
/// here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Throughput rounds per row; the median is reported.
const ROUNDS: usize = 3;

struct Bench {
    services: Services,
    admin: CurrentUser,
    connection: String,
    bootstrap: String,
    broker_pid: u32,
    /// Messages per throughput row (by default 100,000 of 100 bytes or
    /// 50,000 of 1 KB, a tenth of that for http).
    messages: Option<usize>,
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
            .create_topic("bench", &self.connection, &topic, partitions)
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
            .save_topic_grants("bench", &self.connection, &topic, grants)
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
        self.flow_ordered(
            algorithm,
            topic,
            direction,
            enable,
            FlowOrdering::Partition,
            None,
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn flow_ordered(
        &self,
        algorithm: &str,
        topic: &str,
        direction: Direction,
        enable: bool,
        ordering: FlowOrdering,
        concurrency: Option<u32>,
        batch_size: Option<u32>,
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
                        ordering,
                        concurrency,
                        batch_size,
                        batch_wait_ms: None,
                        follows_subscribe_flow: false,
                        give_back: false,
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

    /// The median of [`ROUNDS`] throughput rounds, each over a backlog in
    /// fresh topics; latency is measured in the last round.
    async fn measure(
        &self,
        runtime: &'static str,
        size: usize,
        partitions: u32,
    ) -> anyhow::Result<Row> {
        let n = self
            .messages
            .unwrap_or(if size <= 100 { 100_000 } else { 50_000 });
        // Models answering after 5 or 50 ms are slow by design: fewer messages.
        let n = match model_row(runtime) {
            Some((_, _, 1, 1)) => (n / 10).min(2_000),
            Some((50, _, _, _)) => (n / 10).min(5_000),
            Some(_) => (n / 10).min(10_000),
            None => n,
        };
        let rounds = if self.smoke { 1 } else { ROUNDS };
        let mut results = Vec::new();
        let mut latency = (0, 0);
        for round in 1..=rounds {
            let (result, measured) = self
                .round(runtime, size, partitions, n, round == rounds)
                .await?;
            results.push(result);
            latency = measured.unwrap_or(latency);
        }
        results.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (per_second, cpu_us, broker_cpu_us) = results[results.len() / 2];
        Ok(Row {
            runtime,
            size,
            partitions,
            per_second,
            p50_ms: latency.0,
            p99_ms: latency.1,
            cpu_us,
            broker_cpu_us,
        })
    }

    /// One round: `n` messages produced first, then the pipeline started and
    /// timed until the reader has every output. Returns messages per second
    /// and CPU µs per message (this process, the broker); with `latency`,
    /// then p50 and p99 latency at a steady pace.
    async fn round(
        &self,
        runtime: &'static str,
        size: usize,
        partitions: u32,
        n: usize,
        latency: bool,
    ) -> anyhow::Result<((f64, f64, f64), Option<(i64, i64)>)> {
        // The passthroughs use the topics as the `bench/limit` algorithm would.
        let algorithm = format!("bench/{}", runtime.split('+').next().unwrap_or(runtime));
        let a = algorithm.as_str();
        let input = self.topic("in", partitions, &[(a, true, false)]).await?;
        let output = self.topic("out", 1, &[(a, false, true)]).await?;
        let model = model_row(runtime);
        let keys = model.map(|_| MODEL_KEYS);
        produce(&self.bootstrap, &input, "k", n, size, None, keys).await?;
        let cpu_before = (
            cpu_seconds(std::process::id()),
            cpu_seconds(self.broker_pid),
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limit_task = if runtime.starts_with("limit") {
            Some(tokio::spawn(passthrough(
                self.bootstrap.clone(),
                input.clone(),
                output.clone(),
                (runtime != "limit", runtime == "limit+idempotence"),
                stop_rx,
            )))
        } else {
            let (ordering, in_flight, batch) =
                model.map_or((FlowOrdering::Partition, 1, 1), |m| (m.1, m.2, m.3));
            self.flow(a, &output, Direction::Publish, true).await?;
            self.flow_ordered(
                a,
                &input,
                Direction::Subscribe,
                true,
                ordering,
                Some(in_flight),
                Some(batch),
            )
            .await?;
            None
        };
        let (bootstrap, out) = (self.bootstrap.clone(), output.clone());
        let (backlog, last_arrival) = tokio::task::spawn_blocking(move || {
            read(&bootstrap, &out, n, Duration::from_secs(600))
        })
        .await??;
        let per_second = pace(&backlog, last_arrival);
        let per_message = |before: f64, pid: u32| (cpu_seconds(pid) - before) * 1e6 / n as f64;
        let cpu_us = per_message(cpu_before.0, std::process::id());
        let broker_cpu_us = per_message(cpu_before.1, self.broker_pid);
        if self.smoke {
            // The input's number: in its key, or (for model rows, whose keys
            // repeat) in the text the model echoes.
            let index = |key: &str, output: &Value| -> anyhow::Result<usize> {
                if keys.is_none() {
                    return Ok(key.trim_start_matches('k').parse()?);
                }
                let text = output["text"].as_str().unwrap_or_default();
                Ok(text.split_whitespace().nth(3).unwrap_or_default().parse()?)
            };
            let mut got = Vec::new();
            for (key, _, value) in &backlog {
                let output: Value = serde_json::from_slice(value)?;
                let i = index(key, &output)?;
                got.push(i);
                match runtime {
                    _ if model.is_some() => ensure!(
                        output == serde_json::from_str::<Value>(&payload(i, size))?,
                        "{runtime}: output differs from input {i}"
                    ),
                    "limit" | "limit+headers" | "limit+idempotence" | "echo" => ensure!(
                        output == serde_json::from_str::<Value>(&payload(i, size))?,
                        "{runtime}: output differs from input {i}"
                    ),
                    _ => ensure!(
                        output["label"] == "positive",
                        "{runtime}: unexpected output {output}"
                    ),
                }
            }
            got.sort_unstable();
            got.dedup();
            ensure!(
                got.len() == n,
                "{runtime}: {} distinct outputs for {n} inputs",
                got.len()
            );
        }

        let mut measured = None;
        if latency {
            let l = self.latency_messages;
            // A steady pace the pipeline keeps up with (one partition of the
            // 5-ms model serves ~160 a second), so that latency is not queueing.
            let pace = Duration::from_millis(if model.is_some() { 10 } else { 2 });
            // Keys of their own, so that no backlog output counts as one of these.
            let sent = produce(&self.bootstrap, &input, "l", l, size, Some(pace), None).await?;
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
            measured = Some((percentile(&latencies, 0.5), percentile(&latencies, 0.99)));
        }
        if let Some(task) = limit_task {
            let _ = stop_tx.send(true);
            task.await??;
        } else {
            self.flow(a, &input, Direction::Subscribe, false).await?;
            self.flow(a, &output, Direction::Publish, false).await?;
        }
        Ok(((per_second, cpu_us, broker_cpu_us), measured))
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let json_path = option("--json").unwrap_or_else(|| "target/bench.json".into());
    // Optional filters, for profiling one row: `--only echo,limit`, `--size 100`,
    // `--partitions 1`, `--messages 100000`, `--no-idle`.
    let only: Option<Vec<String>> =
        option("--only").map(|o| o.split(',').map(str::to_owned).collect());
    let sizes: Vec<usize> = match option("--size") {
        Some(size) => vec![size.parse().context("--size takes a number of bytes")?],
        None => vec![100, 1024],
    };
    let partition_counts: Vec<u32> = match option("--partitions") {
        Some(p) => vec![p.parse().context("--partitions takes a number")?],
        None => vec![1, 3],
    };
    let messages: Option<usize> = match option("--messages") {
        Some(m) => Some(m.parse().context("--messages takes a number")?),
        None if smoke => Some(60),
        None => None,
    };
    let broker = Tansu::start(Storage::Memory)?;
    let dir = std::env::temp_dir().join(format!("eventflows-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = dir.join("bench.db").to_string_lossy().into_owned();
    let db = tokio::task::spawn_blocking(move || Db::open(&url)).await??;
    let services = Services::new(db, SecretBox::random()?, false)?;
    services.add_organization("bench").await?;
    // The model servers below listen on this machine.
    services.allow_model_host("bench", "127.0.0.1").await?;
    let (model, model50) = (model_taking(5).await?, model_taking(50).await?);
    let mut algorithms = vec![
        ("limit", "builtin:echo".to_owned()),
        ("echo", "builtin:echo".into()),
        ("sentiment", "builtin:sentiment".into()),
    ];
    let batch_model = batch_model(5).await?;
    for (name, millis, _, _, batch) in MODEL_ROWS {
        let runtime = match (millis, batch) {
            (_, 2..) => format!("http-batch:{batch_model}"),
            (50, _) => format!("http:{model50}"),
            _ => format!("http:{model}"),
        };
        algorithms.push((name, runtime));
    }
    for (name, runtime) in algorithms {
        services
            .add_algorithm_version(&format!("bench/{name}"), "1.0.0", &runtime, "")
            .await?;
    }
    let connection = services
        .connect_broker(
            "bench",
            NewBrokerConnection {
                name: "bench".into(),
                bootstrap_servers: broker.bootstrap(),
                security_protocol: "PLAINTEXT".into(),
                ..Default::default()
            },
        )
        .await?;
    let bench = Bench {
        services,
        admin: CurrentUser {
            username: "bench".into(),
            role: Role::Admin,
            organizations: vec![],
        },
        connection,
        bootstrap: broker.bootstrap(),
        broker_pid: broker.pid().context("the broker is not running")?,
        messages,
        latency_messages: if smoke { 20 } else { 500 },
        smoke,
    };

    let wanted = |runtime: &str| only.as_ref().is_none_or(|o| o.iter().any(|r| r == runtime));
    let mut rows = Vec::new();
    for &partitions in &partition_counts {
        for &size in &sizes {
            for runtime in [
                "limit",
                "limit+headers",
                "limit+idempotence",
                "echo",
                "sentiment",
                "http",
            ] {
                if !wanted(runtime) {
                    continue;
                }
                let row = bench.measure(runtime, size, partitions).await?;
                eprintln!(
                    "{runtime:>9} {size:>5} B {partitions} p: {:>9.0} msg/s  p50 {:>4} ms  p99 {:>4} ms  cpu {:>5.1} µs/msg  broker {:>5.1} µs/msg",
                    row.per_second, row.p50_ms, row.p99_ms, row.cpu_us, row.broker_cpu_us
                );
                rows.push(row);
            }
        }
    }
    // Flows on model servers, with 1,000 distinct keys, beside the echo row.
    let capacity = model_capacity(&model).await?;
    // Each model server's own time for a call, alone: (model ms, batch) → ms.
    let calls = if smoke { 10 } else { 200 };
    let single = json!({"text": "x"});
    let batch32 = json!({ "instances": vec![single.clone(); 32] });
    let latencies: Vec<((u64, u32), f64)> = vec![
        ((5, 1), model_latency(&model, &single, calls).await?),
        ((50, 1), model_latency(&model50, &single, calls / 4).await?),
        ((5, 32), model_latency(&batch_model, &batch32, calls).await?),
    ]
    .into_iter()
    .map(|(row, took)| (row, took.as_secs_f64() * 1000.0))
    .collect();
    let measured = |millis: u64, batch: u32| {
        latencies
            .iter()
            .find(|(row, _)| *row == (millis, batch))
            .map_or(millis as f64, |(_, ms)| *ms)
    };
    eprintln!(
        "the 5-ms model alone answers {capacity:.0} requests a second; a call alone takes {:.2} ms (5 ms), {:.2} ms (50 ms), {:.2} ms (5 ms, batch of 32)",
        measured(5, 1),
        measured(50, 1),
        measured(5, 32)
    );
    let mut model_rows = Vec::new();
    for &partitions in &partition_counts {
        for (runtime, millis, _, _, _) in MODEL_ROWS {
            if runtime == "http" || !wanted(runtime) || (millis == 50 && partitions > 1) {
                continue;
            }
            let row = bench.measure(runtime, 100, partitions).await?;
            eprintln!(
                "{runtime:>12} {partitions} p: {:>7.0} msg/s  p50 {:>4} ms  p99 {:>4} ms  cpu {:>5.1} µs/msg",
                row.per_second, row.p50_ms, row.p99_ms, row.cpu_us
            );
            model_rows.push(row);
        }
    }
    let idle = if args.iter().any(|a| a == "--no-idle") {
        Vec::new()
    } else {
        bench
            .idle_cost(if smoke { &[1, 3] } else { &[1, 50, 200] })
            .await?
    };

    println!(
        "\n| runtime | size | partitions | msg/s | p50 ms | p99 ms | × limit | × limit+headers | × limit+idempotence | CPU µs/msg | broker CPU µs/msg |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut json_rows = Vec::new();
    for row in &rows {
        let limit = |runtime: &str| {
            rows.iter()
                .find(|r| {
                    r.runtime == runtime && r.size == row.size && r.partitions == row.partitions
                })
                .map(|r| r.per_second)
                .unwrap_or(f64::NAN)
        };
        let ratio = row.per_second / limit("limit");
        let ratio_headers = row.per_second / limit("limit+headers");
        let ratio_idempotence = row.per_second / limit("limit+idempotence");
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
            row.runtime,
            row.size,
            row.partitions,
            row.per_second,
            row.p50_ms,
            row.p99_ms,
            ratio,
            ratio_headers,
            ratio_idempotence,
            row.cpu_us,
            row.broker_cpu_us
        );
        json_rows.push(
            json!({"runtime": row.runtime, "size": row.size, "partitions": row.partitions,
            "messages_per_second": row.per_second, "p50_ms": row.p50_ms, "p99_ms": row.p99_ms,
            "ratio_to_limit": ratio, "ratio_to_limit_with_headers": ratio_headers,
            "ratio_to_limit_with_idempotence": ratio_idempotence, "cpu_us_per_message": row.cpu_us,
            "broker_cpu_us_per_message": row.broker_cpu_us}),
        );
    }
    println!(
        "\nThe 5-ms model server alone: {capacity:.0} requests a second; one call at a time, a call takes {:.2} ms (5-ms model), {:.2} ms (50-ms model), {:.2} ms (5-ms model, batch of 32).\n\n| flow | partitions | model ms | ordering | in flight | batch | msg/s | bound | × bound | call ms alone | bound at that | × bound at that | p50 ms | p99 ms | CPU µs/msg |",
        measured(5, 1),
        measured(50, 1),
        measured(5, 32)
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut json_models = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.runtime == "http" && r.size == 100)
        .chain(&model_rows)
    {
        let Some((millis, ordering, in_flight, batch)) = model_row(row.runtime) else {
            continue;
        };
        let echo = rows
            .iter()
            .find(|r| r.runtime == "echo" && r.size == row.size && r.partitions == row.partitions)
            .map_or(f64::INFINITY, |r| r.per_second);
        // The single-input model's own capacity bounds the rows that call it.
        let model_capacity = if millis == 5 && batch == 1 {
            capacity
        } else {
            f64::INFINITY
        };
        // The bound at the model's nominal time, and at the time a call to
        // it takes alone, one at a time (what no client can beat).
        let bound_at = |call_ms: f64| {
            (f64::from(in_flight * batch) * f64::from(row.partitions) * 1000.0 / call_ms)
                .min(model_capacity)
                .min(echo)
        };
        let call_ms = measured(millis, batch);
        let (bound, bound_measured) = (bound_at(millis as f64), bound_at(call_ms));
        println!(
            "| {} | {} | {millis} | {} | {in_flight} | {batch} | {:.0} | {bound:.0} | {:.2} | {call_ms:.2} | {bound_measured:.0} | {:.2} | {} | {} | {:.1} |",
            row.runtime,
            row.partitions,
            ordering.as_str(),
            row.per_second,
            row.per_second / bound,
            row.per_second / bound_measured,
            row.p50_ms,
            row.p99_ms,
            row.cpu_us
        );
        json_models.push(json!({"flow": row.runtime, "partitions": row.partitions, "model_ms": millis,
            "ordering": ordering.as_str(), "in_flight": in_flight, "batch": batch, "messages_per_second": row.per_second,
            "bound": bound, "ratio_to_bound": row.per_second / bound, "call_ms_alone": call_ms,
            "bound_at_call_ms_alone": bound_measured, "ratio_to_bound_at_call_ms_alone": row.per_second / bound_measured}));
    }
    println!("\n| idle flows | resident MiB | threads | MiB per flow | threads per flow |");
    println!("|---:|---:|---:|---:|---:|");
    let (_, base_rss, base_threads) = idle.first().copied().unwrap_or_default();
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
        serde_json::to_string_pretty(
            &json!({"throughput": json_rows, "models": json_models, "idle": json_idle}),
        )?,
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
