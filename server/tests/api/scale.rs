//! Scale-out: several server processes on one PostgreSQL database and one
//! broker share a flow's partitions through Kafka's consumer group. One is
//! killed mid-stream and a fourth takes its place; every input still gets
//! its output, and no input runs on two instances at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use app::domain::Role;

use crate::crash::{ServerProcess, seed, start_server_in};
use crate::flows::Reader;
use crate::kafka::{bootstrap, produce_keyed};
use crate::support::TestDb;

/// Per input `i`: (runs, under way now, most under way at once).
pub type Runs = Arc<Mutex<HashMap<i64, (usize, usize, usize)>>>;

/// The inputs whose (runs, under way now, most under way at once) match.
pub fn inputs_where(runs: &Runs, matches: impl Fn(&(usize, usize, usize)) -> bool) -> Vec<i64> {
    let mut inputs: Vec<i64> = runs
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, r)| matches(r))
        .map(|(i, _)| *i)
        .collect();
    inputs.sort_unstable();
    inputs
}

/// Counts one run as under way until dropped, also when the caller goes
/// away mid-run (a killed instance).
struct UnderWay(Runs, i64);

impl Drop for UnderWay {
    fn drop(&mut self) {
        if let Some(entry) = self.0.lock().unwrap().get_mut(&self.1) {
            entry.1 -= 1;
        }
    }
}

/// A model that echoes `{"i": …}` after `pause`, counting the runs of each input.
pub async fn counting_model(pause: Duration, runs: Runs) -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| {
            let runs = runs.clone();
            async move {
                let i = input["i"].as_i64().unwrap_or(-1);
                {
                    let mut map = runs.lock().unwrap();
                    let entry = map.entry(i).or_default();
                    entry.0 += 1;
                    entry.1 += 1;
                    entry.2 = entry.2.max(entry.1);
                }
                let _under_way = UnderWay(runs.clone(), i);
                tokio::time::sleep(pause).await;
                Json(input)
            }
        }),
    );
    server::testing::serve_model(app).await.unwrap()
}

/// A server process with the data directory `n` (so the instance name kept
/// there); `log` names its log file.
fn start_instance(db: &TestDb, n: usize, log: &str) -> (ServerProcess, u16) {
    let log = std::fs::File::create(db.dir.join(format!("{log}.log"))).unwrap();
    start_server_in(db, &db.dir.join(format!("instance-{n}")), log.into(), &[])
}

/// The partitions an instance's flow monitor says it owns (`None` while it
/// does not answer yet).
async fn owned(client: &reqwest::Client, port: u16, flow: &str) -> Option<Vec<i64>> {
    let base = format!("http://127.0.0.1:{port}/api");
    let login = client
        .post(format!("{base}/login"))
        .json(&json!({"username": "root", "password": "root-password"}))
        .send()
        .await
        .ok()?;
    if login.status() != StatusCode::OK {
        return None;
    }
    let cookie = login
        .headers()
        .get("set-cookie")?
        .to_str()
        .ok()?
        .split(';')
        .next()?
        .to_owned();
    let stats: Value = client
        .post(format!("{base}/get_flow_stats"))
        .header("cookie", cookie)
        .json(&json!({"flow_id": flow}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        stats["partitions"]
            .as_array()?
            .iter()
            .filter_map(Value::as_i64)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_stream_and_replaced_loses_nothing_and_never_runs_an_input_twice_at_once()
 {
    let db = TestDb::postgres();
    let runs: Runs = Arc::default();
    let model = counting_model(Duration::from_millis(50), runs.clone()).await;
    let (input, output) = seed(&db, bootstrap(), &format!("http:{model}"), 6).await;
    let flow = {
        let s = crate::crash::services_on(&db).await;
        s.add_user("root", "root-password", Role::Admin)
            .await
            .unwrap();
        let input = input.clone();
        s.db.interact(move |c| {
            let flows = server::db::flows::active_flows(c)?;
            Ok(flows.into_iter().find(|f| f.topic == input).unwrap().id)
        })
        .await
        .unwrap()
    };

    const N: usize = 1200;
    let values: Vec<String> = (0..N).map(|i| json!({"i": i}).to_string()).collect();
    let producing = tokio::spawn({
        let input = input.clone();
        async move { produce_keyed(&input, &values).await }
    });
    let mut instances: Vec<Option<(ServerProcess, u16)>> = (0..3)
        .map(|n| Some(start_instance(&db, n, &format!("instance-{n}"))))
        .collect();
    let ran = |count: usize| {
        let runs = runs.clone();
        move || {
            let runs = runs.clone();
            async move { runs.lock().unwrap().len() >= count }
        }
    };
    crate::flows::wait_until("a quarter of the inputs have run", ran(N / 4)).await;
    instances[0] = None; // SIGKILL
    // A fourth process takes the killed one's place, as a restarted
    // container with the same volume would: the same instance name, so the
    // same static group membership. (tansu 0.6.0 does not hand a dead
    // member's partitions to the others when a new member joins instead;
    // see the README's limits of the test broker.)
    instances.push(Some(start_instance(&db, 0, "instance-3")));
    producing.await.unwrap();

    // Every input offset ends with an output.
    let deadline = Instant::now() + Duration::from_secs(240);
    let reader = Reader::new(&output);
    let outputs = loop {
        let outputs = reader.read(N * 2, Duration::from_secs(3)).await;
        let sources: HashSet<(String, String)> = outputs
            .iter()
            .map(|r| {
                (
                    r.headers["eventflows-source-partition"].clone(),
                    r.headers["eventflows-source-offset"].clone(),
                )
            })
            .collect();
        if sources.len() >= N {
            break outputs;
        }
        if Instant::now() >= deadline {
            for n in 0..4 {
                let log = std::fs::read_to_string(db.dir.join(format!("instance-{n}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains("librdkafka"))
                    .rev()
                    .take(30)
                    .collect();
                eprintln!(
                    "--- instance {n}, last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            let mut per: HashMap<&str, usize> = HashMap::new();
            for (partition, _) in &sources {
                *per.entry(partition.as_str()).or_default() += 1;
            }
            panic!(
                "only {} of {N} inputs have an output (per partition {per:?})",
                sources.len()
            );
        }
    };
    let mut per_partition: HashMap<String, HashSet<i64>> = HashMap::new();
    for r in &outputs {
        per_partition
            .entry(r.headers["eventflows-source-partition"].clone())
            .or_default()
            .insert(r.headers["eventflows-source-offset"].parse().unwrap());
    }
    let mut total = 0;
    for (partition, offsets) in &per_partition {
        let count = offsets.len() as i64;
        assert!(
            (0..count).all(|o| offsets.contains(&o)),
            "partition {partition}: an offset has no output"
        );
        total += offsets.len();
    }
    assert_eq!(total, N, "every input offset has an output");
    assert_eq!(per_partition.len(), 6);

    let at_once = inputs_where(&runs, |r| r.2 > 1);
    assert!(
        at_once.is_empty(),
        "inputs run on two instances at once: {at_once:?}"
    );
    let duplicates: usize = runs.lock().unwrap().values().map(|r| r.0 - 1).sum();
    println!(
        "scale-out: {N} inputs, {} outputs, {duplicates} inputs run again after the kill",
        outputs.len()
    );

    // Each live instance's monitor names the partitions it owns: together
    // all six, none twice.
    let client = reqwest::Client::new();
    let ports: Vec<u16> = instances.iter().flatten().map(|(_, port)| *port).collect();
    crate::flows::wait_until("the live instances split the six partitions", || {
        let (client, ports, flow) = (&client, &ports, &flow);
        async move {
            let mut all = Vec::new();
            for port in ports {
                match owned(client, *port, flow).await {
                    Some(partitions) => all.extend(partitions),
                    None => return false,
                }
            }
            all.sort();
            all == (0..6).collect::<Vec<i64>>()
        }
    })
    .await;
}
