//! The runner under faults: a model server that goes away, writes that can
//! never succeed, look-alike names, and a server stopped while its broker is
//! gone. Each test shows a fault that once lost, skipped or stuck messages.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use diesel::RunQueryDsl;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use app::domain::FlowStats;
use server::testing::{Storage, Tansu};

use crate::crash::{seed, start_server};
use crate::flows::{pipeline, read, read_on, wait_until};
use crate::kafka::{bootstrap, produce_keyed, produce_on, produce_to_partition, unique_topic};
use crate::scale::{Runs, counting_model, inputs_where};
use crate::support::TestDb;

/// A model server that answers 503 with `Retry-After: 1` while `down` is
/// set and echoes its input otherwise; `calls` counts every request.
pub async fn flaky_model(down: Arc<AtomicBool>, calls: Arc<AtomicUsize>) -> String {
    use axum::response::IntoResponse;
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| {
            let (down, calls) = (down.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if down.load(Ordering::SeqCst) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "1")],
                        "model is loading",
                    )
                        .into_response()
                } else {
                    Json(input).into_response()
                }
            }
        }),
    );
    server::testing::serve_model(app).await.unwrap()
}

/// A model server that refuses while `down` (at first), as `version` of
/// acme/sentiment: whether it is down, and the calls it had.
pub async fn flaky_version(
    p: &crate::flows::Pipeline,
    version: &str,
) -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    let (down, calls) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let model = flaky_model(down.clone(), calls.clone()).await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", version, &format!("http:{model}"), "")
        .await
        .unwrap();
    (down, calls)
}

#[tokio::test]
async fn a_model_outage_is_retried_until_it_ends_and_loses_nothing() {
    let p = pipeline().await;
    let (down, calls) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let model = flaky_model(down.clone(), calls.clone()).await;
    // No dead-letter queue: a message given up on would be skipped.
    let flow = p.run_version("2.0.0", &format!("http:{model}"), None).await;
    let inputs: Vec<String> = (0..5).map(|i| json!({"i": i}).to_string()).collect();
    produce_to_partition(&p.input, 0, &inputs).await;

    // Longer than the four attempts a message once had.
    wait_until("the model has refused six calls", || async {
        calls.load(Ordering::SeqCst) >= 6
    })
    .await;
    let stats = p.stats(&flow).await;
    assert_eq!(stats.failed, 0, "an outage is not a failure: {stats:?}");
    assert_eq!(stats.succeeded, 0, "{stats:?}");
    let state = stats.state.clone();
    assert!(
        state.starts_with("model unavailable since ") && state.ends_with("retrying"),
        "the flow says why it waits: {state}"
    );

    down.store(false, Ordering::SeqCst);
    let outputs = read(&p.output, 5).await;
    let order = crate::flows::numbers_in(&outputs, "i");
    assert_eq!(order, vec![0, 1, 2, 3, 4], "every message, in order");
    wait_until("the flow is running again", || async {
        let stats = p.stats(&flow).await;
        stats.state == "running" && stats.succeeded == 5
    })
    .await;
    let stats = p.stats(&flow).await;
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(stats.retries >= 5, "{stats:?}");
}

#[tokio::test]
async fn an_output_too_large_to_write_is_dead_lettered_cut_to_fit_and_the_partition_moves_on() {
    let p = pipeline().await;
    let flow = p.run_version("3.0.0", "builtin:echo", Some(&p.dlq)).await;

    // Accepted as input (at most 1 MiB) but over the 1,000,000 bytes a
    // record may have when written back.
    let big = format!("\"{}\"", "x".repeat(1_040_000));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    for value in [big.as_str(), r#"{"after": true}"#] {
        producer
            .send(
                FutureRecord::<(), str>::to(&p.input)
                    .partition(0)
                    .payload(value),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let outputs = read(&p.output, 1).await;
    assert_eq!(outputs.len(), 1, "the message after the big one is written");
    assert_eq!(outputs[0].value, r#"{"after": true}"#);
    let dead = read(&p.dlq, 1).await;
    assert_eq!(dead.len(), 1, "the big one is dead-lettered");
    let headers = &dead[0].headers;
    assert_eq!(
        headers["eventflows-error-kind"], "write-failed",
        "{headers:?}"
    );
    assert!(
        headers["eventflows-error"].contains(&p.output),
        "the error names the topic: {headers:?}"
    );
    assert_eq!(headers["eventflows-source-offset"], "0");
    assert_eq!(headers["eventflows-value-truncated"], big.len().to_string());
    assert!(dead[0].value.len() < 1_000_000 && dead[0].value.len() > 900_000);
    assert!(big.starts_with(&dead[0].value), "a prefix of the input");
    wait_until("the counters show it", || async {
        let s = p.stats(&flow).await;
        s.succeeded == 1 && s.dead_lettered == 1 && s.state == "running"
    })
    .await;
}

/// Sets up an organization `org` with algorithm `name` (echo) subscribed to
/// `input` and publishing to `output`.
async fn echo_flow(p: &crate::flows::Pipeline, org: &str, name: &str, input: &str, output: &str) {
    let s = &p.app.services;
    // The pipeline's own organization may be the one asked for.
    let _ = s.add_organization(org).await;
    s.add_algorithm_version(&format!("{org}/{name}"), "1.0.0", "builtin:echo", "")
        .await
        .unwrap();
    for (topic, subscribe, publish) in [(input, true, false), (output, false, true)] {
        let mut grants: Vec<Value> = p
            .app
            .call(
                "get_topic",
                json!({"id": p.connection, "topic": topic}),
                Some(&p.admin),
            )
            .await
            .json()["grants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        grants.push(json!({"algorithm": format!("{org}/{name}"),
            "access": {"subscribe": subscribe, "publish": publish}}));
        let r = p
            .app
            .call(
                "save_topic_grants",
                json!({"id": p.connection, "topic": topic, "grants": grants}),
                Some(&p.admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    for (topic, direction) in [(output, "Publish"), (input, "Subscribe")] {
        let request = json!({"request": {"org": org, "name": name, "connection_id": p.connection,
            "topic": topic, "direction": direction, "version": "1.0.0", "dlq_topic": null}});
        let r = p.app.call("save_flow", request, Some(&p.admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
}

#[tokio::test]
async fn algorithms_whose_names_look_alike_get_consumer_groups_of_their_own() {
    let p = pipeline().await;
    let (out_a, out_b) = (unique_topic("out-a"), unique_topic("out-b"));
    for topic in [&out_a, &out_b] {
        let r = p
            .app
            .call(
                "create_topic",
                json!({"id": p.connection, "topic": topic, "partitions": 1}),
                Some(&p.admin),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    // Once both "eventflows.acme.ml.x.<topic>".
    echo_flow(&p, "acme.ml", "x", &p.input, &out_a).await;
    echo_flow(&p, "acme", "ml.x", &p.input, &out_b).await;
    let values: Vec<String> = (0..30).map(|i| json!({"i": i}).to_string()).collect();
    produce_keyed(&p.input, &values).await;
    for out in [&out_a, &out_b] {
        let outputs = read(out, 30).await;
        assert_eq!(
            outputs.len(),
            30,
            "each flow sees every message of the topic"
        );
    }

    let mut groups = Vec::new();
    for (org, name) in [("acme.ml", "x"), ("acme", "ml.x")] {
        let events = p
            .app
            .call(
                "list_events",
                json!({"org": org, "name": name}),
                Some(&p.admin),
            )
            .await
            .json();
        let flow = events
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["topic"] == p.input.as_str())
            .unwrap()["flow"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let stats: FlowStats = p
            .app
            .call_as("get_flow_stats", json!({"flow_id": flow}), Some(&p.admin))
            .await;
        groups.push(stats.consumer_group.unwrap());
    }
    assert_ne!(groups[0], groups[1], "{groups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_exits_on_sigterm_while_its_broker_is_gone() {
    let mut broker = Tansu::start(Storage::Sqlite).unwrap();
    let db = TestDb::fresh();
    let (input, output) = seed(&db, &broker.bootstrap(), "builtin:echo", 3).await;
    produce_on(
        &broker.bootstrap(),
        &input,
        &[r#"{"a": 1}"#, r#"{"a": 2}"#, r#"{"a": 3}"#],
    )
    .await;
    let mut server = start_server(&db);
    let outputs = read_on(&broker.bootstrap(), &output, 3, Duration::from_secs(90)).await;
    assert_eq!(outputs.len(), 3, "the flow runs");

    broker.down();
    let pid = server.0.id().to_string();
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break Some(status);
        }
        if sent.elapsed() > Duration::from_secs(40) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = sent.elapsed();
    assert!(
        status.is_some() && took < Duration::from_secs(15),
        "the server still ran {took:?} after SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_takes_partitions_over_without_running_them_twice() {
    let p = pipeline().await;
    let runs = Runs::default();
    let model = counting_model(Duration::from_millis(50), runs.clone()).await;
    let flow = p.run_version("2.0.0", &format!("http:{model}"), None).await;
    const N: usize = 600;
    let values: Vec<String> = (0..N).map(|i| json!({"i": i}).to_string()).collect();
    produce_keyed(&p.input, &values).await;
    wait_until("the first instance is under way", || async {
        runs.lock().unwrap().len() >= 60
    })
    .await;

    // A second instance on the same database joins the consumer group.
    let url = p.app.db.url.clone();
    let pool = tokio::task::spawn_blocking(move || server::db::Db::open(&url))
        .await
        .unwrap()
        .unwrap();
    let second =
        server::services::Services::new(pool, p.app.services.secrets.clone(), false).unwrap();
    second.runner.reconcile().await.unwrap();
    wait_until("every input has run", || async {
        runs.lock().unwrap().len() >= N
    })
    .await;
    let outputs = read(&p.output, N).await;
    assert_eq!(outputs.len(), N);
    wait_until("both instances own partitions, none twice", || async {
        let a = p.app.services.runner.flow_stats(&flow).await.partitions;
        let b = second.runner.flow_stats(&flow).await.partitions;
        let mut all = [a.clone(), b.clone()].concat();
        all.sort();
        !a.is_empty() && !b.is_empty() && all == vec![0, 1, 2]
    })
    .await;
    let taken_over = second.runner.flow_stats(&flow).await.succeeded;
    assert!(taken_over > 0, "the second instance ran part of the stream");
    let twice = inputs_where(&runs, |r| r.0 > 1);
    let at_once = inputs_where(&runs, |r| r.2 > 1);
    assert!(
        at_once.is_empty(),
        "inputs run by both instances at once: {at_once:?}"
    );
    assert!(
        twice.is_empty(),
        "inputs run twice after the rebalance: {twice:?}"
    );
    second.runner.shutdown().await;
    p.app.services.runner.shutdown().await;
}

#[tokio::test]
async fn flows_enabled_before_consumer_groups_were_stored_keep_their_group() {
    let p = pipeline().await;
    let s = &p.app.services;
    s.add_organization("acme.ml").await.unwrap();
    s.add_algorithm_version("acme.ml/x", "1.0.0", "builtin:echo", "")
        .await
        .unwrap();
    // Back to before the consumer_groups migration (and the ones after it).
    let db = s.db.clone();
    let reverted = tokio::task::spawn_blocking(move || {
        let mut reverted = 1;
        while !db.revert_last_migration()?.contains("000003") {
            reverted += 1;
        }
        anyhow::Ok(reverted)
    })
    .await
    .unwrap()
    .unwrap();
    let (connection, topic) = (p.connection.clone(), p.input.clone());
    s.db.interact(move |c| {
        let algorithm = server::db::algorithms::find(c, "acme.ml", "x")?.unwrap().id;
        diesel::sql_query(format!(
            "INSERT INTO flows (id, algorithm_id, connection_id, topic, direction, version, \
             dlq_topic, enabled, created_at, updated_at) VALUES ('old-flow', '{algorithm}', \
             '{connection}', '{topic}', 'subscribe', '1.0.0', NULL, false, 0, 0)"
        ))
        .execute(c)
    })
    .await
    .unwrap();
    let db = s.db.clone();
    let applied = tokio::task::spawn_blocking(move || db.migrate())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied, reverted);
    let (connection, topic) = (p.connection.clone(), p.input.clone());
    let (old, new) =
        s.db.interact(move |c| {
            use server::db::algorithms::find as find_algorithm;
            use server::db::flows::{find_flow, upsert_flow};
            let algorithm = find_algorithm(c, "acme", "sentiment")?.unwrap().id;
            let id = upsert_flow(
                c,
                &algorithm,
                &connection,
                &topic,
                app::domain::Direction::Subscribe,
                "1.0.0",
                None,
                Default::default(),
            )?;
            Ok((
                find_flow(c, "old-flow")?.unwrap().consumer_group,
                (find_flow(c, &id)?.unwrap().consumer_group, algorithm),
            ))
        })
        .await
        .unwrap();
    assert_eq!(old, Some(format!("eventflows.acme.ml.x.{}", p.input)));
    let (group, algorithm) = new;
    assert_eq!(
        group,
        Some(format!(
            "eventflows.{algorithm}.{}.{}",
            p.connection, p.input
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_in_a_fatal_state_is_replaced_and_no_output_is_lost() {
    // librdkafka puts an idempotent producer in a fatal state when it can
    // no longer keep its records in order (an epoch it cannot bump, a
    // sequence the broker refuses); from then on every write through it
    // fails. The flow must write through a new producer.
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    let text = |i: usize| json!({"text": format!("good {i}")}).to_string();
    produce_to_partition(&p.input, 0, &(0..10).map(text).collect::<Vec<_>>()).await;
    assert_eq!(read(&p.output, 10).await.len(), 10, "outputs before");

    assert!(
        server::testing::make_producer_fatal(&p.app.services.runner, &p.connection),
        "the connection has a producer"
    );
    const N: usize = 60;
    produce_to_partition(&p.input, 0, &(10..N).map(text).collect::<Vec<_>>()).await;
    let reader = crate::flows::Reader::new(&p.output);
    let mut written = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while written.len() < N && Instant::now() < deadline {
        written = reader
            .read(2 * N, Duration::from_secs(1))
            .await
            .iter()
            .map(|r| {
                r.headers["eventflows-source-offset"]
                    .parse::<i64>()
                    .unwrap()
            })
            .collect();
    }
    assert_eq!(
        written.len(),
        N,
        "every input has an output after the producer failed (state: {})",
        p.stats(&flow).await.state
    );
    wait_until("the flow runs on", || async {
        let s = p.stats(&flow).await;
        s.state == "running" && s.succeeded == N as u64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_fail_while_their_broker_is_away_are_sent_again_in_input_order() {
    // Outputs go to a broker of their own, which goes away while the input's
    // broker stays: the flow keeps running messages, and their writes fail
    // for real (the producer's timeout, shortened here).
    let mut outputs_broker = Tansu::start(Storage::Sqlite).unwrap();
    let p = pipeline().await;
    p.app
        .services
        .runner
        .set_write_timeout(Duration::from_secs(2));
    let reply = p
        .app
        .call(
            "connect_broker",
            crate::brokers::plaintext("outputs", &outputs_broker.bootstrap()),
            Some(&p.admin),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let outputs = reply.json().as_str().unwrap().to_owned();
    let r = p
        .app
        .call(
            "create_topic",
            json!({"id": outputs, "topic": "out", "partitions": 1}),
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
            json!({"id": outputs, "topic": "out", "grants": grants}),
            Some(&p.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let publish = json!({"request": {"org": "acme", "name": "sentiment", "connection_id": outputs,
        "topic": "out", "direction": "Publish", "version": "1.0.0", "dlq_topic": null}});
    let r = p.app.call("save_flow", publish, Some(&p.ana)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;

    let text = |i: usize| json!({"text": format!("good {i}")}).to_string();
    produce_to_partition(&p.input, 0, &(0..20).map(text).collect::<Vec<_>>()).await;
    let before = read_on(
        &outputs_broker.bootstrap(),
        "out",
        20,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        before.len(),
        20,
        "the flow writes while its broker is there"
    );

    outputs_broker.down();
    const N: usize = 300;
    produce_to_partition(&p.input, 0, &(20..N).map(text).collect::<Vec<_>>()).await;
    wait_until("the flow shows its writes failing", || async {
        p.stats(&flow).await.state.starts_with("cannot write")
    })
    .await;
    outputs_broker.up().unwrap();

    // Read until every input has an output (or a minute passed).
    let reader = crate::flows::Reader::on(&outputs_broker.bootstrap(), "out");
    let deadline = Instant::now() + Duration::from_secs(60);
    let offsets: Vec<i64> = loop {
        let offsets: Vec<i64> = reader
            .read(2 * N, Duration::from_secs(1))
            .await
            .iter()
            .map(|r| r.headers["eventflows-source-offset"].parse().unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = offsets.iter().collect();
        if distinct.len() >= N || Instant::now() >= deadline {
            break offsets;
        }
    };
    // Each input once at least, and the first write of each in input order:
    // a write sent again comes with every later one, so nothing overtakes.
    let mut firsts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for offset in &offsets {
        if seen.insert(*offset) {
            firsts.push(*offset);
        }
    }
    assert_eq!(
        firsts,
        (0..N as i64).collect::<Vec<_>>(),
        "every input has an output, first written in input order ({} written)",
        offsets.len()
    );
    // After a resend, the records continue from the failed one in order.
    for pair in offsets.windows(2) {
        assert!(
            pair[1] == pair[0] + 1 || pair[1] <= pair[0],
            "no input was skipped over: {} then {}",
            pair[0],
            pair[1]
        );
    }
    wait_until("the flow runs again", || async {
        let s = p.stats(&flow).await;
        s.state == "running" && s.succeeded == N as u64
    })
    .await;
    println!("{} outputs for {N} inputs", offsets.len());
}
