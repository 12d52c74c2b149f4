//! Pausing a flow, and rewinding where it starts again, against the real
//! broker.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::flows::{Pipeline, Reader, pipeline, records_on, wait_until};
use crate::kafka::produce_keyed_to_partition;

impl Pipeline {
    async fn rewind(&self, flow_id: &str, to: Value, apply: bool) -> crate::support::Reply {
        self.app
            .call(
                "rewind_flow",
                json!({"flow_id": flow_id, "to": to, "apply": apply}),
                Some(&self.ana),
            )
            .await
    }

    async fn pause(&self, flow_id: &str, paused: bool) {
        let reply = self
            .app
            .call(
                "pause_flow",
                json!({"flow_id": flow_id, "paused": paused}),
                Some(&self.ana),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
}

fn inputs(range: std::ops::Range<usize>) -> Vec<(Option<String>, String)> {
    range
        .map(|i| {
            (
                Some(format!("k-{i}")),
                json!({"text": format!("good {i}")}).to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_paused_flow_rewound_to_a_time_processes_again_exactly_the_messages_after_it() {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    let outputs = Reader::new(&p.output);
    produce_keyed_to_partition(&p.input, 0, &inputs(0..30)).await;
    assert_eq!(outputs.read(30, Duration::from_secs(60)).await.len(), 30);
    // A time after the first 30 and before the rest.
    let between = server::db::now_ms();
    while server::db::now_ms() <= between + 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    produce_keyed_to_partition(&p.input, 0, &inputs(30..50)).await;
    produce_keyed_to_partition(&p.input, 1, &inputs(50..55)).await;
    assert_eq!(outputs.read(55, Duration::from_secs(60)).await.len(), 55);

    // A running flow is not rewound.
    let running = p.rewind(&flow, json!("Earliest"), false).await;
    assert_eq!(running.status, StatusCode::CONFLICT, "{}", running.text());
    assert!(running.text().contains("Pause the flow"));

    p.pause(&flow, true).await;
    let stats = p.stats(&flow).await;
    assert_eq!((stats.paused, stats.state.as_str()), (true, "paused"));
    assert!(p.input_row().await.flow.unwrap().paused);

    // Bad targets change nothing.
    let future = p
        .rewind(
            &flow,
            json!({"Timestamp": server::db::now_ms() + 3_600_000}),
            true,
        )
        .await;
    assert_eq!(future.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(future.text().contains("in the future"), "{}", future.text());
    let outside = p.rewind(&flow, json!({"Offsets": [[0, 999]]}), true).await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        outside.text().contains("Offset 999 is outside partition 0"),
        "{}",
        outside.text()
    );
    let nowhere = p.rewind(&flow, json!({"Offsets": [[7, 0]]}), true).await;
    assert!(
        nowhere.text().contains("has no partition 7"),
        "{}",
        nowhere.text()
    );

    // Previews: from the earliest, all 55; from the time, the 25 after it.
    let earliest = p.rewind(&flow, json!("Earliest"), false).await.json();
    assert_eq!(
        (&earliest["messages"], &earliest["applied"]),
        (&json!(55), &json!(false)),
        "{earliest}"
    );
    let preview = p.rewind(&flow, json!({"Timestamp": between}), false).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text());
    let preview = preview.json();
    assert_eq!(preview["messages"], 25, "{preview}");
    let partition = |plan: &Value, p: i64| -> Value {
        plan["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["partition"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(
        partition(&preview, 0),
        json!({"partition": 0, "committed": 50, "to": 30, "end": 50})
    );
    assert_eq!(
        partition(&preview, 1),
        json!({"partition": 1, "committed": 5, "to": 0, "end": 5})
    );
    assert_eq!(partition(&preview, 2)["to"], 0);

    let applied = p
        .rewind(&flow, json!({"Timestamp": between}), true)
        .await
        .json();
    assert_eq!(
        (&applied["messages"], &applied["applied"]),
        (&json!(25), &json!(true))
    );
    p.pause(&flow, false).await;
    let all = outputs.read(80, Duration::from_secs(60)).await;
    assert_eq!(all.len(), 80, "the 25 after the time were processed again");
    let mut again: Vec<(String, i64)> = all[55..]
        .iter()
        .map(|r| {
            (
                r.headers["eventflows-source-partition"].clone(),
                r.headers["eventflows-source-offset"].parse().unwrap(),
            )
        })
        .collect();
    again.sort();
    let mut expected: Vec<(String, i64)> = (30..50).map(|o| ("0".to_owned(), o)).collect();
    expected.extend((0..5).map(|o| ("1".to_owned(), o)));
    assert_eq!(again, expected);
    // Nothing before the time ran again: each partition runs in order, so a
    // message before the time would have been written before the last of
    // the 25 read above.
    assert_eq!(records_on(&p.output).await, 80);
    wait_until("the flow runs again", || async {
        p.stats(&flow).await.state == "running"
    })
    .await;
}
