//! Killing the server mid-stream loses nothing: every input offset ends up
//! as an output (duplicates are allowed, and reported).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use app::api::BrokerAdmin;
use app::domain::{Access, Direction, NewBrokerConnection, TopicGrant, TopicName};
use server::{db::Db, secrets::SecretBox, services::Services};

use server::testing::{Storage, Tansu, model_taking};

use crate::flows::Reader;
use crate::kafka::{bootstrap, produce_keyed, unique_topic};
use crate::support::{TestDb, allow_local_models};

/// A model server that answers after a short pause, so that a run takes time.
async fn slow_model() -> String {
    model_taking(3).await.unwrap()
}

pub struct ServerProcess(pub Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `eventflows serve` on the test's database, with its own data directory.
pub fn start_server(db: &TestDb) -> ServerProcess {
    start_server_in(db, &db.dir, Stdio::null(), &[]).0
}

/// `eventflows serve` on the test's database and secret key with the data
/// directory `data` (so the instance name kept there) and the settings
/// `env`; its log goes to `log`. Returns the process and its HTTP port.
pub fn start_server_in(
    db: &TestDb,
    data: &Path,
    log: Stdio,
    env: &[(&str, &str)],
) -> (ServerProcess, u16) {
    let port = server::testing::free_port().unwrap();
    let key = std::fs::read_to_string(db.dir.join(server::secrets::KEY_FILE)).unwrap();
    std::fs::create_dir_all(data).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_eventflows"))
        .arg("serve")
        .env("EVENTFLOWS_DATABASE_URL", &db.url)
        .env("EVENTFLOWS_DATA_DIR", data)
        .env("EVENTFLOWS_SECRET_KEY", key.trim())
        .env("EVENTFLOWS_DIST_DIR", db.dir.join("no-ui"))
        .env("EVENTFLOWS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (ServerProcess(child), port)
}

/// (partition, offset) of the inputs that produced these outputs.
fn sources(outputs: &[crate::flows::Read]) -> Vec<(i32, i64)> {
    outputs
        .iter()
        .map(|r| {
            (
                r.headers["eventflows-source-partition"].parse().unwrap(),
                r.headers["eventflows-source-offset"].parse().unwrap(),
            )
        })
        .collect()
}

/// How long a restarted server may write no new output before a test
/// calls its inputs lost.
const STALLED: Duration = Duration::from_secs(60);

/// Per partition: how many offsets have an output, the first offset past
/// them, and how many below that have none (lost, not merely not reached).
fn gaps(unique: &HashSet<(i32, i64)>) -> String {
    let mut per: std::collections::BTreeMap<i32, (usize, i64)> = Default::default();
    for &(partition, offset) in unique {
        let entry = per.entry(partition).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(offset + 1);
    }
    per.iter()
        .map(|(partition, (count, end))| {
            let missing = *end as usize - count;
            let first = (0..*end).find(|o| !unique.contains(&(*partition, *o)));
            format!(
                "partition {partition}: {count} done up to offset {end}, {missing} missing below it (first {first:?})"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Services on the test's database with the key file a server process
/// will use, with local model servers allowed, and `acme/model` 1.0.0 on
/// `runtime`.
pub async fn model_services(db: &TestDb, runtime: &str) -> Services {
    let s = services_on(db).await;
    allow_local_models(&s).await;
    s.add_organization("acme").await.unwrap();
    s.add_algorithm_version("acme/model", "1.0.0", runtime, "")
        .await
        .unwrap();
    s
}

/// Services on the test's database, with the key file a server process
/// will use (no flow runs in them until something reconciles).
pub async fn services_on(db: &TestDb) -> Services {
    let url = db.url.clone();
    let pool = tokio::task::spawn_blocking(move || Db::open(&url))
        .await
        .unwrap()
        .unwrap();
    Services::new(pool, SecretBox::load(None, &db.dir).unwrap(), false).unwrap()
}

/// Enables `acme/model` 1.0.0 on `topic` straight in the database, so that
/// no flow starts in this process.
pub async fn enable_in_db(
    s: &Services,
    connection: &str,
    topic: &str,
    direction: Direction,
    ordering: &'static str,
    concurrency: i32,
) {
    let (connection, topic) = (connection.to_owned(), topic.to_owned());
    s.db.interact(move |c| {
        let algorithm = server::db::algorithms::find(c, "acme", "model")?
            .unwrap()
            .id;
        server::db::flows::upsert_flow(
            c,
            &algorithm,
            &connection,
            &topic,
            direction,
            "1.0.0",
            None,
            server::db::flows::RunSettings {
                ordering: app::domain::FlowOrdering::parse(ordering).unwrap(),
                concurrency: concurrency as u32,
                ..Default::default()
            },
        )
    })
    .await
    .unwrap();
}

/// Sets up, through the services and with the key file a server process
/// will use, `acme/model` 1.0.0 on `runtime` subscribed to a new input topic
/// of `partitions` partitions and publishing to a new output topic, both on
/// the broker at `bootstrap`. Returns (input, output).
pub async fn seed(
    db: &TestDb,
    bootstrap: &str,
    runtime: &str,
    partitions: u32,
) -> (String, String) {
    seed_ordered(db, bootstrap, runtime, partitions, "partition", 1).await
}

/// [`seed`] with the subscribe flow's ordering and runs in flight.
pub async fn seed_ordered(
    db: &TestDb,
    bootstrap: &str,
    runtime: &str,
    partitions: u32,
    ordering: &'static str,
    concurrency: i32,
) -> (String, String) {
    let (input, output) = (unique_topic("in"), unique_topic("out"));
    let s = model_services(db, runtime).await;
    let connection = s
        .connect_broker(
            "tests",
            NewBrokerConnection {
                name: "local".into(),
                bootstrap_servers: bootstrap.into(),
                security_protocol: "PLAINTEXT".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for (topic, count, access) in [
        (
            &input,
            partitions,
            Access {
                subscribe: true,
                publish: false,
            },
        ),
        (
            &output,
            1,
            Access {
                subscribe: false,
                publish: true,
            },
        ),
    ] {
        let name = TopicName::parse(topic).unwrap();
        s.create_topic("tests", &connection, &name, count)
            .await
            .unwrap();
        let grants = vec![TopicGrant {
            algorithm: "acme/model".into(),
            access,
        }];
        s.save_topic_grants("tests", &connection, &name, grants)
            .await
            .unwrap();
    }
    // Enabled straight in the database: no consumer may run in this process.
    for (topic, direction) in [
        (&output, Direction::Publish),
        (&input, Direction::Subscribe),
    ] {
        let (ordering, concurrency) = match direction {
            Direction::Subscribe => (ordering, concurrency),
            Direction::Publish => ("partition", 1),
        };
        enable_in_db(&s, &connection, topic, direction, ordering, concurrency).await;
    }
    (input, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_stream_loses_no_message() {
    let db = TestDb::fresh();
    let model = slow_model().await;
    let (input, output) = seed(&db, bootstrap(), &format!("http:{model}"), 3).await;
    const N: usize = 1500;
    let values: Vec<String> = (0..N).map(|i| format!(r#"{{"n": {i}}}"#)).collect();
    produce_keyed(&input, &values).await;
    kill_mid_stream_and_restart(&db, &output, N).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_during_runs_in_flight_per_key_loses_no_message() {
    // The restarted server resumes from committed offsets inside the input's
    // record batches, which tansu's in-memory storage cannot serve (see the
    // README's known limits): this test runs on SQLite storage, as
    // `scripts/run.sh` does.
    let broker = Tansu::start(Storage::Sqlite).unwrap();
    let bootstrap = broker.bootstrap();
    let db = TestDb::fresh();
    // Slow enough that 64 runs at once per partition still take seconds.
    let model = model_taking(30).await.unwrap();
    let runtime = format!("http:{model}");
    let (input, output) = seed_ordered(&db, &bootstrap, &runtime, 3, "key", 64).await;
    const PER_PARTITION: usize = 6000;
    for partition in 0..3 {
        let records: Vec<(Option<String>, String)> = (0..PER_PARTITION)
            .map(|i| (Some(format!("k{}", i % 50)), format!(r#"{{"n": {i}}}"#)))
            .collect();
        crate::kafka::produce_keyed_to_partition_on(&bootstrap, &input, partition, &records).await;
    }
    // Killed well into the stream, once offsets have been committed.
    let reader = Reader::uncommitted_on(&bootstrap, &output);
    let (duplicates, at_kill) = kill_after_and_restart(&db, &reader, 3 * PER_PARTITION, 1500).await;
    // What runs again is what was started, or written but not yet
    // acknowledged or committed (every 100 ms) at the kill. A server that
    // committed nothing would repeat every output it had written.
    let repeated: usize = duplicates.values().sum();
    assert!(
        repeated < at_kill,
        "all {at_kill} outputs written before the kill were written again ({duplicates:?})"
    );
}

/// Starts the server on `db`, kills it once it has written some outputs,
/// starts it again, and checks that each of the `n` inputs has an output.
async fn kill_mid_stream_and_restart(db: &TestDb, output: &str, n: usize) {
    kill_after_and_restart(db, &Reader::new(output), n, 100).await;
}

/// [`kill_mid_stream_and_restart`], killing once `first` outputs are read.
/// Returns the outputs written twice, per input partition, and how many
/// outputs were written before the kill.
/// `reader` reads the output topic, once for the whole test, however long
/// it grows.
async fn kill_after_and_restart(
    db: &TestDb,
    reader: &Reader,
    n: usize,
    first: usize,
) -> (HashMap<i32, usize>, usize) {
    let server = start_server(db);
    let deadline = Instant::now() + Duration::from_secs(90);
    while reader.read(first, Duration::from_millis(500)).await.len() < first {
        assert!(
            Instant::now() < deadline,
            "the server processed fewer than {first} messages"
        );
    }
    drop(server); // SIGKILL
    let at_kill = reader.read(n, Duration::from_secs(2)).await.len();
    assert!(
        at_kill < n,
        "the kill came too late to be mid-stream ({at_kill} of {n} done)"
    );

    // The restarted server's log is shown if it falls short.
    let log_path = db.dir.join("restarted.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _server = start_server_in(db, &db.dir, Stdio::from(log), &[]).0;
    // Waits while outputs keep coming: a loaded machine is slow, but a
    // lost or stuck message stops the count short of `n` for good.
    let mut seen = 0;
    let mut deadline = Instant::now() + STALLED;
    let outputs = loop {
        let outputs = reader.read(n * 2, Duration::from_secs(2)).await;
        let unique: HashSet<_> = sources(&outputs).into_iter().collect();
        if unique.len() >= n {
            break outputs;
        }
        if unique.len() > seen {
            seen = unique.len();
            deadline = Instant::now() + STALLED;
        } else if Instant::now() >= deadline {
            // What is missing first: a runner's log is long, and what shows
            // a failure may keep only its first lines.
            let missing = format!(
                "after the restart only {} of {n} inputs have an output, none new for {STALLED:?} \
                 ({at_kill} at the kill); {}",
                unique.len(),
                gaps(&unique)
            );
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("librdkafka"))
                .rev()
                .take(40)
                .collect();
            eprintln!(
                "{missing}\n--- the restarted server, last lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            panic!("{missing}");
        }
    };
    let all = sources(&outputs);
    let unique: HashSet<_> = all.iter().copied().collect();
    let mut per_partition: HashMap<i32, usize> = HashMap::new();
    for (p, _) in &unique {
        *per_partition.entry(*p).or_default() += 1;
    }
    // Every offset of every partition, none missing.
    for (partition, count) in &per_partition {
        for offset in 0..*count as i64 {
            assert!(
                unique.contains(&(*partition, offset)),
                "partition {partition} offset {offset} was lost"
            );
        }
    }
    assert_eq!(unique.len(), n);
    let mut duplicates: HashMap<i32, usize> = HashMap::new();
    for (partition, _) in &all {
        *duplicates.entry(*partition).or_default() += 1;
    }
    for (partition, count) in per_partition {
        *duplicates.entry(partition).or_default() -= count;
    }
    println!(
        "killed after {} of {n} outputs; {} duplicates after the restart ({duplicates:?} per partition)",
        at_kill,
        all.len() - unique.len()
    );
    (duplicates, at_kill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_during_a_replay_loses_no_dead_letter() {
    use server::db::replays;
    let db = TestDb::fresh();
    let (input, output) = seed(&db, bootstrap(), "builtin:sentiment", 1).await;
    let model = slow_model().await;
    let url = db.url.clone();
    let pool = tokio::task::spawn_blocking(move || Db::open(&url))
        .await
        .unwrap()
        .unwrap();
    // A Dead Letter Queue for the flow, and version 2.0.0 on a model server,
    // whose publish flow writes to the output topic.
    let secrets = SecretBox::load(None, &db.dir).unwrap();
    let s = Services::new(pool.clone(), secrets, false).unwrap();
    s.add_algorithm_version("acme/model", "2.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    let dlq = unique_topic("dlq");
    let connection: String = pool
        .interact(|c| {
            use diesel::prelude::*;
            use server::db::schema::broker_connections;
            broker_connections::table
                .select(broker_connections::id)
                .first(c)
        })
        .await
        .unwrap();
    let name = TopicName::parse(&dlq).unwrap();
    s.create_topic("tests", &connection, &name, 1)
        .await
        .unwrap();
    let grants = vec![TopicGrant {
        algorithm: "acme/model".into(),
        access: Access {
            subscribe: false,
            publish: true,
        },
    }];
    s.save_topic_grants("tests", &connection, &name, grants)
        .await
        .unwrap();
    let dlq_topic = dlq.clone();
    let flow: String = pool
        .interact(move |c| {
            use diesel::prelude::*;
            use server::db::schema::flows;
            diesel::update(flows::table.filter(flows::direction.eq("publish")))
                .set(flows::version.eq("2.0.0"))
                .execute(c)?;
            diesel::update(flows::table.filter(flows::direction.eq("subscribe")))
                .set(flows::dlq_topic.eq(&dlq_topic))
                .execute(c)?;
            flows::table
                .filter(flows::direction.eq("subscribe"))
                .select(flows::id)
                .first(c)
        })
        .await
        .unwrap();

    // 2,000 dead letters of the flow on its Dead Letter Queue, as the
    // runner writes them.
    const LETTERS: usize = 2000;
    {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("message.timeout.ms", "20000")
            .create()
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..LETTERS {
            let (offset, key, value) = (i.to_string(), format!("k{i}"), format!(r#"{{"n": {i}}}"#));
            let mut headers = OwnedHeaders::new();
            for (name, text) in [
                ("eventflows-algorithm", "acme/model"),
                ("eventflows-version", "1.0.0"),
                ("eventflows-source-topic", input.as_str()),
                ("eventflows-source-partition", "0"),
                ("eventflows-source-offset", offset.as_str()),
                (
                    "eventflows-error",
                    "expected a JSON object with a string field \"text\"",
                ),
                ("eventflows-error-kind", "bad-input"),
                ("eventflows-attempts", "1"),
            ] {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(text),
                });
            }
            let record = FutureRecord::to(&dlq)
                .partition(0)
                .key(&key)
                .payload(&value)
                .headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    let letters: Vec<String> = (0..LETTERS)
        .map(|offset| format!("topic:{dlq}:0:{offset}"))
        .collect();
    let (id, chosen) = (flow.clone(), letters.clone());
    pool.interact(move |c| replays::create(c, &id, "2.0.0", "ana", &chosen, 1))
        .await
        .unwrap()
        .unwrap();

    let reader = Reader::uncommitted(&output);
    let log_path = db.dir.join("first.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = start_server_in(&db, &db.dir, Stdio::from(log), &[]).0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while reader.read(300, Duration::from_millis(500)).await.len() < 300 {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let f = flow.clone();
            let progress = pool
                .interact(move |c| replays::progress(c, &f, 1))
                .await
                .unwrap();
            panic!(
                "the replay wrote {} outputs ({:?}); the server's log ends:\n{}",
                reader.read(300, Duration::from_millis(10)).await.len(),
                progress,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    drop(server); // SIGKILL
    let at_kill = reader.read(LETTERS, Duration::from_secs(2)).await.len();
    assert!(at_kill < LETTERS, "the kill came too late ({at_kill} done)");

    // The same data directory: the same instance, which takes its replay up.
    let restart_log = db.dir.join("restarted.log");
    let log = std::fs::File::create(&restart_log).unwrap();
    let _server = start_server_in(&db, &db.dir, Stdio::from(log), &[]).0;
    // Generous: the whole suite runs beside it on two cores.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let state = pool
            .interact(|c| {
                use diesel::prelude::*;
                use server::db::schema::replays as r;
                r::table.select(r::state).first::<String>(c)
            })
            .await
            .unwrap();
        if state == "done" {
            break;
        }
        if Instant::now() >= deadline {
            let f = flow.clone();
            let progress = pool
                .interact(move |c| replays::progress(c, &f, 1))
                .await
                .unwrap();
            let log = std::fs::read_to_string(&restart_log).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("librdkafka"))
                .rev()
                .take(30)
                .collect();
            panic!(
                "the replay did not finish after the restart ({progress:?}); the restarted server's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outputs = reader.read(LETTERS * 2, Duration::from_secs(3)).await;
    let mut per_letter: HashMap<String, usize> = HashMap::new();
    for r in &outputs {
        *per_letter
            .entry(r.headers["eventflows-replay-of"].clone())
            .or_default() += 1;
    }
    for offset in 0..LETTERS {
        let letter = format!("{dlq}/0/{offset}");
        assert!(per_letter.contains_key(&letter), "{letter} has no output");
    }
    assert_eq!(per_letter.len(), LETTERS);
    let duplicates = outputs.len() - per_letter.len();
    println!("replay of {LETTERS} killed after {at_kill} outputs; {duplicates} written twice");
    // At most the chunk under way at the kill runs again.
    assert!(duplicates <= 100, "{duplicates} duplicates");
}
