//! Ordering and concurrent runs per partition: a flow on a model server
//! runs different keys at the same time and each key in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use app::domain::{Batching, FlowOrdering};

use crate::flows::{pipeline, read};
use crate::kafka::produce_keyed_to_partition;

/// What the model saw: each call's start and end, in the order they
/// happened, and the most calls it had at once.
#[derive(Default)]
struct ModelLog {
    events: Vec<(bool, String, i64)>,
    running: usize,
    most: usize,
}

/// A model that answers `{"k": …, "i": …}` with its input after a delay
/// that varies per message, noting every call in `log`.
async fn logging_model(log: Arc<Mutex<ModelLog>>) -> String {
    server::testing::serve_model(logging_app(log))
        .await
        .unwrap()
}

fn logging_app(log: Arc<Mutex<ModelLog>>) -> axum::Router {
    use axum::{Json, Router, routing::post};
    Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| {
            let log = log.clone();
            async move {
                let (key, i) = (
                    input["k"].as_str().unwrap().to_owned(),
                    input["i"].as_i64().unwrap(),
                );
                {
                    let mut log = log.lock().unwrap();
                    log.events.push((true, key.clone(), i));
                    log.running += 1;
                    log.most = log.most.max(log.running);
                }
                tokio::time::sleep(Duration::from_millis((i * 37 % 23) as u64)).await;
                {
                    let mut log = log.lock().unwrap();
                    log.events.push((false, key, i));
                    log.running -= 1;
                }
                Json(input)
            }
        }),
    )
}

#[tokio::test]
async fn with_key_ordering_keys_run_at_the_same_time_and_each_in_order() {
    let p = pipeline().await;
    let log = Arc::new(Mutex::new(ModelLog::default()));
    let model = logging_model(log.clone()).await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    const N: i64 = 200;
    let records: Vec<(Option<String>, String)> = (0..N)
        .map(|i| {
            let key = format!("k{}", i % 20);
            (Some(key.clone()), json!({"k": key, "i": i}).to_string())
        })
        .collect();
    produce_keyed_to_partition(&p.input, 0, &records).await;
    p.save(&p.output, "publish", "2.0.0", None).await;
    let mut request = p.flow(&p.input, "subscribe", "2.0.0", None);
    request["request"]["ordering"] = json!("key");
    request["request"]["concurrency"] = json!(16);
    let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let outputs = read(&p.output, N as usize).await;
    assert_eq!(outputs.len(), N as usize, "every message has its output");
    let offsets: Vec<i64> = outputs
        .iter()
        .map(|o| o.headers["eventflows-source-offset"].parse().unwrap())
        .collect();
    assert_eq!(
        offsets,
        (0..N).collect::<Vec<_>>(),
        "outputs are written in input order, each once"
    );

    let log = log.lock().unwrap();
    // Per key, each call starts only after the previous call ended.
    let mut open: HashMap<&str, Option<i64>> = HashMap::new();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (start, key, i) in &log.events {
        let running = open.entry(key).or_default();
        if *start {
            assert_eq!(*running, None, "key {key}: {i} started while another ran");
            let previous = last.insert(key, *i).unwrap_or(-1);
            assert!(*i > previous, "key {key}: {i} ran after {previous}");
            *running = Some(*i);
        } else {
            assert_eq!(*running, Some(*i));
            *running = None;
        }
    }
    assert_eq!(log.events.len(), 2 * N as usize, "each message ran once");
    assert!(
        log.most > 1,
        "different keys ran at the same time (at most {} at once)",
        log.most
    );
    assert!(log.most <= 16, "no more than 16 at once ({})", log.most);
    drop(log);

    let flow = p.subscribe_flow_id().await;
    let stats = p.stats(&flow).await;
    assert_eq!(
        (stats.ordering, stats.concurrency),
        (Some(FlowOrdering::Key), Some(16))
    );
    let row = p.input_row().await;
    let flow = row.flow.unwrap();
    assert_eq!((flow.ordering, flow.concurrency), (FlowOrdering::Key, 16));
}

#[tokio::test]
async fn ordering_and_concurrency_are_checked_on_the_server() {
    let p = pipeline().await;
    let cases = [
        ("subscribe", json!("key"), json!(0), "between 1 and 256"),
        ("subscribe", json!("none"), json!(257), "between 1 and 256"),
        ("subscribe", json!("partition"), json!(4), "must be 1"),
        (
            "publish",
            json!("key"),
            json!(8),
            "only to a subscribe flow",
        ),
    ];
    for (direction, ordering, concurrency, says) in cases {
        let topic = if direction == "publish" {
            &p.output
        } else {
            &p.input
        };
        let mut request = p.flow(topic, direction, "1.0.0", None);
        request["request"]["ordering"] = ordering.clone();
        request["request"]["concurrency"] = concurrency.clone();
        let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{ordering} × {concurrency}"
        );
        assert!(
            reply.text().contains(says),
            "{ordering} × {concurrency}: {}",
            reply.text()
        );
    }
    let events = p.events().await;
    assert!(events.iter().all(|r| r.flow.is_none()), "nothing was saved");
    // An unknown ordering is refused as well.
    let mut request = p.flow(&p.input, "subscribe", "1.0.0", None);
    request["request"]["ordering"] = json!("random");
    let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
    assert!(
        reply.status.is_client_error(),
        "{} {}",
        reply.status,
        reply.text()
    );
    // Left out, a key ordering gets its default bound.
    let mut request = p.flow(&p.input, "subscribe", "1.0.0", None);
    request["request"]["ordering"] = json!("key");
    let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let row = p.input_row().await;
    let flow = row.flow.unwrap();
    assert_eq!((flow.ordering, flow.concurrency), (FlowOrdering::Key, 32));
}

#[tokio::test]
async fn calls_to_one_model_server_are_bounded_and_keep_their_connections() {
    use axum::serve::ListenerExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let p = pipeline().await;
    const BOUND: usize = 6;
    p.app.services.runner.set_model_connections_per_host(BOUND);
    let log = Arc::new(Mutex::new(ModelLog::default()));
    let connections = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model = format!("http://{}/predict", listener.local_addr().unwrap());
    let counted = connections.clone();
    let listener = listener.tap_io(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let app = logging_app(log.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    // Three partitions, unordered, 64 runs in flight each: far more runs
    // may be in flight than the bound lets through.
    const PER_PARTITION: i64 = 100;
    for partition in 0..3 {
        let records: Vec<(Option<String>, String)> = (0..PER_PARTITION)
            .map(|i| {
                let key = format!("p{partition}-{i}");
                (Some(key.clone()), json!({"k": key, "i": i}).to_string())
            })
            .collect();
        produce_keyed_to_partition(&p.input, partition, &records).await;
    }
    p.save(&p.output, "publish", "2.0.0", None).await;
    let mut request = p.flow(&p.input, "subscribe", "2.0.0", None);
    request["request"]["ordering"] = json!("none");
    request["request"]["concurrency"] = json!(64);
    let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let n = 3 * PER_PARTITION as usize;
    let outputs = read(&p.output, n).await;
    assert_eq!(outputs.len(), n, "every message has its output");
    let log = log.lock().unwrap();
    assert_eq!(log.events.len(), 2 * n, "each message ran once");
    assert!(
        log.most <= BOUND,
        "at most {BOUND} calls at once to the model server ({})",
        log.most
    );
    assert!(log.most > 1, "calls still ran side by side ({})", log.most);
    let opened = connections.load(Ordering::SeqCst);
    assert!(
        opened <= BOUND,
        "{n} calls reused at most {BOUND} connections ({opened} opened)"
    );
}

/// A model that takes batches (`{"instances": [...]}` → `{"predictions":
/// [...]}`), refusing with 400 any batch that holds an instance with
/// `"poison": true`; `batches` notes the size of every call.
async fn batch_model(batches: Arc<Mutex<Vec<usize>>>) -> String {
    use axum::{Json, Router, http::StatusCode, routing::post};
    let app = Router::new().route(
        "/predict",
        post(move |Json(body): Json<Value>| {
            let batches = batches.clone();
            async move {
                let instances = body["instances"].as_array().cloned().unwrap_or_default();
                batches.lock().unwrap().push(instances.len());
                if instances.iter().any(|i| i["poison"] == true) {
                    return Err(StatusCode::BAD_REQUEST);
                }
                let predictions: Vec<Value> =
                    instances.iter().map(|i| json!({"seen": i["i"]})).collect();
                Ok(Json(json!({ "predictions": predictions })))
            }
        }),
    );
    server::testing::serve_model(app).await.unwrap()
}

/// acme/sentiment 3.0.0 on a [`batch_model`]; returns the batch sizes it
/// is called with.
async fn batch_version(p: &crate::flows::Pipeline) -> Arc<Mutex<Vec<usize>>> {
    let batches = Arc::new(Mutex::new(Vec::new()));
    add_batch_version(p, &batch_model(batches.clone()).await).await;
    batches
}

/// The `"seen"` field of each output of a batch model.
fn seen(outputs: &[crate::flows::Read]) -> Vec<i64> {
    crate::flows::numbers_in(outputs, "seen")
}

/// acme/sentiment 3.0.0 on the batch model server at `model`.
async fn add_batch_version(p: &crate::flows::Pipeline, model: &str) {
    p.app
        .services
        .add_algorithm_version(
            "acme/sentiment",
            "3.0.0",
            &format!("http-batch:{model}"),
            "",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_with_one_poison_message_is_split_until_only_that_one_fails() {
    let p = pipeline().await;
    let batches = batch_version(&p).await;
    const N: i64 = 64;
    const POISON: i64 = 40;
    let values: Vec<String> = (0..N)
        .map(|i| json!({"i": i, "poison": i == POISON}).to_string())
        .collect();
    // Written before the flow starts, so that batches fill at once.
    crate::kafka::produce_to_partition(&p.input, 0, &values).await;
    p.save(&p.output, "publish", "3.0.0", None).await;
    let mut request = p.flow(&p.input, "subscribe", "3.0.0", Some(&p.dlq));
    request["request"]["batch_size"] = json!(32);
    request["request"]["batch_wait_ms"] = json!(200);
    let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let outputs = read(&p.output, (N - 1) as usize).await;
    let offsets: Vec<i64> = outputs
        .iter()
        .map(|o| o.headers["eventflows-source-offset"].parse().unwrap())
        .collect();
    assert_eq!(
        offsets,
        (0..N).filter(|&i| i != POISON).collect::<Vec<_>>(),
        "every good message has its output, in input order"
    );
    let seen = seen(&outputs);
    assert_eq!(seen, offsets, "each output is its own message's prediction");
    let dead = read(&p.dlq, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].headers["eventflows-source-offset"],
        POISON.to_string()
    );
    assert_eq!(dead[0].headers["eventflows-error-kind"], "bad-input");
    assert!(
        dead[0].headers["eventflows-error"].contains("refused the input (400"),
        "{:?}",
        dead[0].headers
    );
    let calls = batches.lock().unwrap().clone();
    assert_eq!(calls[0], 32, "the first call is a full batch: {calls:?}");
    // The batch holding the poison message is halved down to it: 32, 16,
    // 8, 4, 2, 1 on the way (and their good halves).
    assert!(calls.contains(&1), "split down to one message: {calls:?}");
    assert_eq!(
        calls.iter().filter(|&&n| n == 1).count(),
        2,
        "the last split runs the poison message and its neighbour alone: {calls:?}"
    );
    let row = p.input_row().await;
    assert_eq!(
        row.flow.unwrap().batching,
        Batching {
            size: 32,
            wait_ms: 200
        }
    );
    let flow = p.subscribe_flow_id().await;
    assert_eq!(
        p.stats(&flow).await.batching,
        Some(Batching {
            size: 32,
            wait_ms: 200
        })
    );
}

#[tokio::test]
async fn batch_bounds_are_checked_on_the_server() {
    let p = pipeline().await;
    p.app
        .services
        .add_algorithm_version(
            "acme/sentiment",
            "3.0.0",
            "http-batch:http://127.0.0.1:9/predict",
            "",
        )
        .await
        .unwrap();
    let cases = [
        ("1.0.0", json!(8), json!(null), "takes one input at a time"),
        ("3.0.0", json!(0), json!(null), "between 1 and 256"),
        ("3.0.0", json!(257), json!(null), "between 1 and 256"),
        ("3.0.0", json!(32), json!(1001), "between 0 and 1000 ms"),
    ];
    for (version, size, wait, says) in cases {
        let mut request = p.flow(&p.input, "subscribe", version, None);
        request["request"]["batch_size"] = size.clone();
        request["request"]["batch_wait_ms"] = wait.clone();
        let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{version} {size} {wait}"
        );
        assert!(
            reply.text().contains(says),
            "{size} {wait}: {}",
            reply.text()
        );
    }
    assert!(p.input_row().await.flow.is_none(), "nothing was saved");
    // Left out, a version that takes batches gets batches of 32.
    p.save(&p.input, "subscribe", "3.0.0", None).await;
    assert_eq!(
        p.input_row().await.flow.unwrap().batching,
        Batching {
            size: 32,
            wait_ms: 20
        }
    );
}

#[tokio::test]
async fn the_rest_route_runs_a_batch_on_a_model_that_takes_batches() {
    use axum::body::Body;
    use axum::http::{Request, header};
    let p = pipeline().await;
    let batches = batch_version(&p).await;
    p.save(&p.output, "publish", "3.0.0", None).await;
    let run = |body: String| {
        let request = Request::post("/v1/algo/acme/sentiment/3.0.0")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, format!("eventflows_session={}", p.ana));
        p.app.request(request.body(Body::from(body)).unwrap())
    };
    let batch = json!({"instances": [{"i": 1}, {"i": 2}, {"i": 3}]}).to_string();
    let reply = run(batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json()["result"],
        json!({"predictions": [{"seen": 1}, {"seen": 2}, {"seen": 3}]})
    );
    // One input alone goes as a batch of one, and comes back on its own.
    let reply = run(json!({"i": 7}).to_string()).await;
    assert_eq!(reply.json()["result"], json!({"seen": 7}));
    assert_eq!(batches.lock().unwrap().clone(), vec![3, 1]);
    let published = read(&p.output, 4).await;
    let seen: Vec<Value> = published
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.value).unwrap()["seen"].clone())
        .collect();
    assert_eq!(
        seen,
        vec![json!(1), json!(2), json!(3), json!(7)],
        "each prediction is a record"
    );
    // Too many instances, and a batch the model refuses.
    let many: Vec<Value> = (0..257).map(|i| json!({"i": i})).collect();
    let reply = run(json!({ "instances": many }).to_string()).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text()
    );
    let reply = run(json!({"instances": [{"i": 1, "poison": true}]}).to_string()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
}

/// A model that takes batches and answers each instance with `{"seen": i}`,
/// holding its call number `held` (counted from 1) until `release` is
/// notified.
async fn gated_batch_model(held: usize, release: Arc<tokio::sync::Notify>) -> String {
    use axum::{Json, Router, routing::post};
    let calls = Arc::new(Mutex::new(0usize));
    let app = Router::new().route(
        "/predict",
        post(move |Json(body): Json<Value>| {
            let (calls, release) = (calls.clone(), release.clone());
            async move {
                let call = {
                    let mut calls = calls.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                if call == held {
                    release.notified().await;
                }
                let instances = body["instances"].as_array().cloned().unwrap_or_default();
                let predictions: Vec<Value> =
                    instances.iter().map(|i| json!({"seen": i["i"]})).collect();
                Json(json!({ "predictions": predictions }))
            }
        }),
    );
    server::testing::serve_model(app).await.unwrap()
}

#[tokio::test]
async fn outputs_of_a_backlog_are_written_while_later_batches_run() {
    let p = pipeline().await;
    let release = Arc::new(tokio::sync::Notify::new());
    // The fourth batch is held until the first three batches' outputs are
    // on the output topic: they must not wait for the rest of the backlog.
    add_batch_version(&p, &gated_batch_model(4, release.clone()).await).await;
    const N: usize = 320;
    let values: Vec<String> = (0..N).map(|i| json!({ "i": i }).to_string()).collect();
    crate::kafka::produce_to_partition(&p.input, 0, &values).await;
    p.save(&p.output, "publish", "3.0.0", None).await;
    let mut request = p.flow(&p.input, "subscribe", "3.0.0", None);
    request["request"]["batch_size"] = json!(32);
    let reply = p.app.call("save_flow", request, Some(&p.ana)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // Well within the 30 s a model call may take, after which the held
    // call would fail and the flow go on without the release.
    let first = crate::flows::read_for(&p.output, 3 * 32, Duration::from_secs(20)).await;
    assert_eq!(
        first.len(),
        3 * 32,
        "the first three batches' outputs are written while the fourth runs"
    );
    release.notify_one();
    let outputs = read(&p.output, N).await;
    let seen = seen(&outputs);
    assert_eq!(
        seen,
        (0..N as i64).collect::<Vec<_>>(),
        "every output, in input order"
    );
}
