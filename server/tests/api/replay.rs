//! Dead letters on the flow's page, and replaying them through a chosen
//! version, against the real broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use app::domain::{Direction, ReplayProgress};

use crate::flows::{Pipeline, Reader, pipeline, read, records_on, wait_until};
use crate::kafka::produce_keyed_to_partition;

impl Pipeline {
    pub async fn dead_letters(&self, flow_id: &str, query: Value) -> Value {
        let reply = self
            .app
            .call(
                "list_dead_letters",
                json!({"flow_id": flow_id, "query": query}),
                Some(&self.ana),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }

    pub async fn replay(&self, request: Value, session: &str) -> crate::support::Reply {
        self.app
            .call(
                "replay_dead_letters",
                json!({"request": request}),
                Some(session),
            )
            .await
    }

    /// Waits until the flow's newest replay is over; its progress.
    pub async fn replay_done(&self, flow_id: &str) -> ReplayProgress {
        wait_until("the replay is over", || async {
            self.stats(flow_id).await.replays[0].state != "running"
        })
        .await;
        self.stats(flow_id).await.replays[0].clone()
    }
}

/// 100 inputs on partition 1 with keys `k-0`…: every tenth has no "text"
/// (bad input for the sentiment model, fine for echo).
fn inputs() -> Vec<(Option<String>, String)> {
    (0..100)
        .map(|i| {
            let value = if i % 10 == 3 {
                json!({"no_text": i})
            } else {
                json!({"text": format!("a great day {i}")})
            };
            (Some(format!("k-{i}")), value.to_string())
        })
        .collect()
}

#[tokio::test]
async fn dead_letters_replayed_with_a_version_that_takes_them_are_published_once() {
    let p = pipeline().await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", "builtin:echo", "")
        .await
        .unwrap();
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    let flow = p.subscribe_flow_id().await;
    produce_keyed_to_partition(&p.input, 1, &inputs()).await;
    wait_until("90 outputs and 10 dead letters", || async {
        let s = p.stats(&flow).await;
        s.succeeded == 90 && s.dead_lettered == 10
    })
    .await;

    // The list: the ten, newest first, from the Dead Letter Queue.
    let page = p.dead_letters(&flow, json!({})).await;
    assert_eq!(page["dlq_topic"], p.dlq.as_str());
    let letters = page["letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 10, "{page}");
    assert_eq!(page["next"], Value::Null, "one page holds them all");
    let offsets: Vec<i64> = letters
        .iter()
        .map(|l| l["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, vec![93, 83, 73, 63, 53, 43, 33, 23, 13, 3]);
    assert_eq!(letters[0]["kind"], "bad-input");
    assert_eq!(letters[0]["version"], "1.0.0");
    assert_eq!(letters[0]["partition"], 1);
    assert_eq!(letters[0]["key"], "k-93");
    assert_eq!(letters[0]["value"], "{\n  \"no_text\": 93\n}");
    assert_eq!(letters[0]["replayed"], Value::Null);
    assert!(letters[0]["message"].as_str().unwrap().contains("text"));
    // Filters: by kind, by version, by error text.
    for (query, count) in [
        (json!({"kind": "transient"}), 0),
        (json!({"kind": "bad-input"}), 10),
        (json!({"version": "1.1.0"}), 0),
        (json!({"search": "STRING FIELD"}), 10),
        (json!({"search": "no such words"}), 0),
    ] {
        let page = p.dead_letters(&flow, query.clone()).await;
        assert_eq!(page["letters"].as_array().unwrap().len(), count, "{query}");
    }

    // Bad requests change nothing.
    let ids: Vec<Value> = letters.iter().map(|l| l["id"].clone()).collect();
    let refused = p
        .replay(
            json!({"flow_id": flow, "version": "9.9.9", "letters": ids}),
            &p.ana,
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("Version 9.9.9 does not exist"));
    let elsewhere = p
        .replay(
            json!({"flow_id": flow, "letters": [format!("topic:{}:0:1", p.input)]}),
            &p.ana,
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        elsewhere
            .text()
            .contains("not on this flow's Dead Letter Queue")
    );
    let none = p
        .replay(json!({"flow_id": flow, "letters": []}), &p.ana)
        .await;
    assert!(
        none.text().contains("No dead letters were chosen"),
        "{}",
        none.text()
    );
    let ben = p.app.login("ben", "ben-password").await;
    let outsider = p
        .replay(json!({"flow_id": flow, "letters": ids}), &ben)
        .await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    let peek = p
        .app
        .call(
            "list_dead_letters",
            json!({"flow_id": flow, "query": {}}),
            Some(&ben),
        )
        .await;
    assert_eq!(peek.status, StatusCode::FORBIDDEN);

    // Version 2.0.0 publishes to the output topic, and replays the ten.
    p.save(&p.output, "publish", "2.0.0", None).await;
    let started = p
        .replay(
            json!({"flow_id": flow, "version": "2.0.0", "letters": ids}),
            &p.ana,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let progress = p.replay_done(&flow).await;
    assert_eq!(progress.state, "done", "{progress:?}");
    assert_eq!(
        (progress.succeeded, progress.failed, progress.left),
        (10, 0, 0)
    );
    assert_eq!(progress.version, "2.0.0");
    assert_eq!(progress.by, "ana");
    let metrics = p.app.services.runner.metrics_text();
    let line = format!(
        "eventflows_flow_dead_letters_replayed_total{{flow=\"{flow}\",outcome=\"succeeded\"}} 10"
    );
    assert!(metrics.contains(&line), "{metrics}");

    // The replay is over once its outputs are written.
    assert_eq!(
        records_on(&p.output).await,
        100,
        "nothing but the ten was published again"
    );
    let outputs = read(&p.output, 100).await;
    let replayed: Vec<_> = outputs
        .iter()
        .filter(|r| r.headers.contains_key("eventflows-replay-of"))
        .collect();
    assert_eq!(replayed.len(), 10);
    for r in &replayed {
        let offset: i64 = r.headers["eventflows-source-offset"].parse().unwrap();
        assert_eq!(offset % 10, 3);
        assert_eq!(r.key.as_deref(), Some(format!("k-{offset}").as_str()));
        assert_eq!(r.value, json!({"no_text": offset}).to_string());
        assert_eq!(r.headers["eventflows-version"], "2.0.0");
        assert_eq!(r.headers["eventflows-source-topic"], p.input);
        assert!(r.headers["eventflows-replay-of"].starts_with(&format!("{}/0/", p.dlq)));
    }
    let page = p.dead_letters(&flow, json!({})).await;
    for letter in page["letters"].as_array().unwrap() {
        assert_eq!(letter["replayed"], "replayed, succeeded", "{letter}");
    }
    // Nothing new on the Dead Letter Queue.
    assert_eq!(page["letters"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn letters_that_fail_again_go_back_with_their_attempts_and_two_replays_of_one_letter_are_refused()
 {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    let flow = p.subscribe_flow_id().await;
    produce_keyed_to_partition(&p.input, 0, &[(Some("k".into()), "not json".into())]).await;
    wait_until("the dead letter", || async {
        p.stats(&flow).await.dead_lettered == 1
    })
    .await;
    let letters = p.dead_letters(&flow, json!({})).await["letters"].clone();
    let id = letters[0]["id"].clone();

    // Two replays of one letter at once: the second is refused.
    let db = p.app.services.db.clone();
    let (f, letter) = (flow.clone(), id.as_str().unwrap().to_owned());
    let busy = db
        .interact(move |c| {
            use server::db::replays;
            let first = replays::create(c, &f, "1.0.0", "ana", std::slice::from_ref(&letter), 1)?;
            let second = replays::create(c, &f, "1.0.0", "ben", &[letter], 2)?;
            Ok((first.is_ok(), second))
        })
        .await
        .unwrap();
    assert_eq!(busy, (true, Err(server::db::replays::Refused::Busy(1))));
    let clash = p
        .replay(json!({"flow_id": flow, "letters": [id]}), &p.ana)
        .await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.text());
    assert!(clash.text().contains("being replayed already"));
    // The replay created directly above runs once this instance takes it.
    p.app.services.runner.resume_replays().await;
    let progress = p.replay_done(&flow).await;
    assert_eq!(progress.failed, 1, "{progress:?}");

    // It failed again: a new dead letter, a replay of the first, with the
    // attempts carried on.
    let page = p.dead_letters(&flow, json!({})).await;
    let letters = page["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{page}");
    assert_eq!(letters[0]["attempts"], 2);
    assert_eq!(letters[0]["offset"], 0);
    assert_eq!(letters[0]["key"], "k");
    assert_eq!(
        letters[0]["replay_of"],
        format!("{}/0/0", p.dlq),
        "{}",
        letters[0]
    );
    assert_eq!(letters[1]["replayed"], "replayed, failed again");
}

/// A model that echoes its input, except that after `up_to` calls it
/// answers 503 until `open` is set.
async fn failing_after(
    up_to: usize,
    open: Arc<std::sync::atomic::AtomicBool>,
) -> (String, Arc<AtomicUsize>) {
    use axum::{Json, Router, http::StatusCode as Status, response::IntoResponse, routing::post};
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| {
            let (seen, open) = (seen.clone(), open.clone());
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if n >= up_to && !open.load(Ordering::SeqCst) {
                    return Status::SERVICE_UNAVAILABLE.into_response();
                }
                Json(input).into_response()
            }
        }),
    );
    (server::testing::serve_model(app).await.unwrap(), calls)
}

#[tokio::test]
async fn a_replay_stopped_by_a_restart_finishes_without_redoing_what_was_done() {
    let p = pipeline().await;
    const LETTERS: usize = 300;
    // Without a Dead Letter Queue: the failures are kept in the database.
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    let bad: Vec<(Option<String>, String)> = (0..LETTERS)
        .map(|i| (Some(format!("k-{i}")), json!({"i": i}).to_string()))
        .collect();
    produce_keyed_to_partition(&p.input, 2, &bad).await;
    wait_until("every input is kept as a failure", || async {
        p.stats(&flow).await.failures_kept == LETTERS as u64
    })
    .await;
    let page = p.dead_letters(&flow, json!({})).await;
    assert_eq!(page["dlq_topic"], Value::Null);
    assert_eq!(page["letters"].as_array().unwrap().len(), 20);
    let second = p
        .dead_letters(&flow, json!({"cursor": page["next"].clone()}))
        .await;
    assert_eq!(
        second["letters"][0]["offset"],
        LETTERS as i64 - 21,
        "newest first, paged"
    );

    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (model, calls) = failing_after(150, open.clone()).await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", &format!("http:{model}"), "")
        .await
        .unwrap();
    p.save(&p.output, "publish", "2.0.0", None).await;
    p.app.services.runner.set_instance("replayer".into());
    let started = p
        .replay(
            json!({"flow_id": flow, "version": "2.0.0", "matching": {}}),
            &p.ana,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    wait_until("the model refuses calls", || async {
        calls.load(Ordering::SeqCst) > 150
    })
    .await;
    // A restart: this runner stops, a new one on the same database, with
    // the same instance name, takes the replay up.
    p.app.services.runner.shutdown().await;
    let stopped = p.stats(&flow).await.replays[0].clone();
    assert_eq!(stopped.state, "running");
    let done_before = stopped.succeeded;
    assert!(
        done_before >= 100,
        "the first chunk was recorded: {stopped:?}"
    );
    open.store(true, Ordering::SeqCst);
    let again =
        server::runner::Runner::new(p.app.services.db.clone(), p.app.services.secrets.clone())
            .unwrap();
    again.set_instance("replayer".into());
    let _loop = again.start();
    wait_until("the new runner finishes the replay", || async {
        again.flow_stats(&flow).await.replays[0].state == "done"
    })
    .await;
    let progress = again.flow_stats(&flow).await.replays[0].clone();
    assert_eq!(
        (progress.succeeded, progress.left),
        (LETTERS as u64, 0),
        "{progress:?}"
    );

    // Every letter has one output, written once.
    let outputs = Reader::new(&p.output)
        .read(LETTERS + 1, Duration::from_secs(10))
        .await;
    let mut per_letter: HashMap<String, usize> = HashMap::new();
    for r in &outputs {
        *per_letter
            .entry(r.headers["eventflows-replay-of"].clone())
            .or_default() += 1;
    }
    assert_eq!(per_letter.len(), LETTERS);
    let duplicates: usize = per_letter.values().map(|n| n - 1).sum();
    println!("replay of {LETTERS} across a restart: {duplicates} written twice");
    assert_eq!(duplicates, 0, "a stop settles and records what was written");
    assert_eq!(outputs.len(), LETTERS);
    again.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_compares_a_version_on_recent_messages_and_publishes_nothing() {
    let p = pipeline().await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", "builtin:echo", "")
        .await
        .unwrap();
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    let flow = p.subscribe_flow_id().await;
    let inputs: Vec<(Option<String>, String)> = inputs().into_iter().take(50).collect();
    produce_keyed_to_partition(&p.input, 0, &inputs).await;
    wait_until("45 outputs and 5 dead letters", || async {
        let s = p.stats(&flow).await;
        s.succeeded == 45 && s.dead_lettered == 5
    })
    .await;
    let outputs = Reader::new(&p.output);
    assert_eq!(outputs.read(45, Duration::from_secs(30)).await.len(), 45);
    let dry = |version: &'static str, sample: Value| p.try_version(&flow, version, sample);

    // The same model: the same outputs, and the five it refuses fail.
    let same = dry("1.1.0", json!({"Recent": 50})).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text());
    let same = same.json();
    assert_eq!(same["comparisons"].as_array().unwrap().len(), 50);
    assert_eq!(
        (&same["same"], &same["different"], &same["failed"]),
        (&json!(45), &json!(0), &json!(5))
    );
    assert_eq!(same["current_version"], "1.0.0");
    let published = same["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["current_published"] == true)
        .count();
    assert_eq!(
        published, 45,
        "the flow's outputs are read from its output topic"
    );

    // Another model: every one differs (and takes the five).
    let echo = dry("2.0.0", json!({"Recent": 50})).await.json();
    assert_eq!(
        (&echo["same"], &echo["different"], &echo["failed"]),
        (&json!(0), &json!(50), &json!(0))
    );
    let bad = echo["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["offset"] == 43)
        .unwrap()
        .clone();
    assert!(
        bad["current"]["Err"]
            .as_str()
            .unwrap()
            .starts_with("bad-input"),
        "{bad}"
    );
    assert_eq!(bad["candidate"]["Ok"], "{\n  \"no_text\": 43\n}");
    assert_eq!(echo["comparisons"][0]["offset"], 49, "newest first");

    // On the dead letters.
    let ids: Vec<Value> = p.dead_letters(&flow, json!({})).await["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    let letters = dry("2.0.0", json!({"Letters": ids})).await.json();
    assert_eq!(letters["comparisons"].as_array().unwrap().len(), 5);
    assert_eq!(letters["different"], 5);

    // Bad requests.
    for (version, sample, text) in [
        ("2.0.0", json!({"Recent": 0}), "1 to 200"),
        ("2.0.0", json!({"Recent": 201}), "1 to 200"),
        (
            "9.9.9",
            json!({"Recent": 5}),
            "Version 9.9.9 does not exist",
        ),
        ("2.0.0", json!({"Letters": ["kept:nope"]}), "cannot be run"),
    ] {
        let reply = dry(version, sample).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.text()
        );
        assert!(reply.text().contains(text), "{}", reply.text());
    }

    // Nothing was published (a dry run answers after all it does), and the
    // flow's offsets did not move.
    assert_eq!(records_on(&p.output).await, 45);
    assert_eq!(
        p.dead_letters(&flow, json!({})).await["letters"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let pause = p
        .app
        .call(
            "pause_flow",
            json!({"flow_id": flow, "paused": true}),
            Some(&p.ana),
        )
        .await;
    assert_eq!(pause.status, StatusCode::OK);
    let plan = p
        .app
        .call(
            "rewind_flow",
            json!({"flow_id": flow, "to": "Latest", "apply": false}),
            Some(&p.ana),
        )
        .await
        .json();
    let committed = plan["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 0)
        .unwrap()["committed"]
        .clone();
    assert_eq!(committed, 50);
}

#[tokio::test]
async fn a_publish_flow_that_follows_the_listener_gets_every_version_it_runs_and_replays() {
    let p = pipeline().await;
    p.app
        .services
        .add_algorithm_version("acme/sentiment", "2.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let mut follow = p.flow(&p.output, "publish", "1.0.0", None);
    follow["request"]["follows_subscribe_flow"] = json!(true);
    let saved = p.app.call("save_flow", follow, Some(&p.ana)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    let mut wrong = p.flow(&p.input, "subscribe", "1.0.0", None);
    wrong["request"]["follows_subscribe_flow"] = json!(true);
    let refused = p.app.call("save_flow", wrong, Some(&p.ana)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let row = p
        .events()
        .await
        .into_iter()
        .find(|r| r.topic == p.output && r.direction == Direction::Publish)
        .unwrap();
    assert!(row.flow.unwrap().follows_subscribe_flow);

    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    let flow = p.subscribe_flow_id().await;
    let outputs = Reader::new(&p.output);
    produce_keyed_to_partition(
        &p.input,
        0,
        &[
            (Some("a".into()), json!({"text": "great"}).to_string()),
            (Some("b".into()), json!({"no_text": 1}).to_string()),
        ],
    )
    .await;
    let first = outputs.read(1, Duration::from_secs(60)).await;
    assert_eq!(first[0].headers["eventflows-version"], "1.0.0");
    wait_until("the dead letter", || async {
        p.stats(&flow).await.dead_lettered == 1
    })
    .await;

    // A replay with another version publishes where the listener does.
    let ids: Vec<Value> = p.dead_letters(&flow, json!({})).await["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    let started = p
        .replay(
            json!({"flow_id": flow, "version": "2.0.0", "letters": ids}),
            &p.ana,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let replayed = outputs.read(2, Duration::from_secs(60)).await;
    assert_eq!(replayed.len(), 2);
    assert_eq!(replayed[1].headers["eventflows-version"], "2.0.0");
    assert_eq!(replayed[1].value, json!({"no_text": 1}).to_string());

    // The listener moves to 2.0.0: its outputs still arrive.
    p.save(&p.input, "subscribe", "2.0.0", Some(&p.dlq)).await;
    produce_keyed_to_partition(
        &p.input,
        0,
        &[(Some("c".into()), json!({"text": "after"}).to_string())],
    )
    .await;
    let all = outputs.read(3, Duration::from_secs(60)).await;
    assert_eq!(all.len(), 3, "the output topic follows the listener");
    assert_eq!(all[2].headers["eventflows-version"], "2.0.0");
    assert_eq!(all[2].value, json!({"text": "after"}).to_string());
}

#[tokio::test]
async fn dead_letters_that_are_not_text_are_shown_safely_and_a_missing_dlq_says_so() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    let flow = p.subscribe_flow_id().await;
    // A dead letter of this flow whose value is not UTF-8, and a record of
    // another algorithm on the same topic.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", crate::kafka::bootstrap())
        .create()
        .unwrap();
    for algorithm in ["acme/sentiment", "globex/echo"] {
        let headers = [
            ("eventflows-algorithm", algorithm),
            ("eventflows-version", "1.0.0"),
            ("eventflows-source-topic", p.input.as_str()),
            ("eventflows-source-partition", "2"),
            ("eventflows-source-offset", "7"),
            ("eventflows-error", "the message is not JSON"),
            ("eventflows-error-kind", "bad-input"),
            ("eventflows-attempts", "1"),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&p.dlq)
                    .payload(&[0xff, 0xfe, 0x00, 0x01][..])
                    .headers(headers),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let page = p.dead_letters(&flow, json!({})).await;
    let letters = page["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "only this flow's: {page}");
    assert_eq!(letters[0]["value"], "(4 bytes, not UTF-8 text: fffe0001)");
    assert_eq!(letters[0]["partition"], 2);
    assert_eq!(letters[0]["offset"], 7);

    // A Dead Letter Queue topic that is not on the broker.
    let (id, missing) = (flow.clone(), crate::kafka::unique_topic("gone"));
    p.app
        .services
        .db
        .interact(move |c| {
            use diesel::prelude::*;
            use server::db::schema::flows;
            diesel::update(flows::table.find(&id))
                .set(flows::dlq_topic.eq(&missing))
                .execute(c)
        })
        .await
        .unwrap();
    let reply = p
        .app
        .call(
            "list_dead_letters",
            json!({"flow_id": flow, "query": {}}),
            Some(&p.ana),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(
        reply.text().contains("does not exist on the broker"),
        "{}",
        reply.text()
    );
}
