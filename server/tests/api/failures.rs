//! Failed messages of flows without a Dead Letter Queue, kept in the
//! database.

use serde_json::json;

use server::db::failures::{self, Failure, KEEP_PER_FLOW};

use crate::flows::{pipeline, wait_until};
use crate::kafka::produce_to_partition;

#[tokio::test]
async fn failed_messages_without_a_dlq_are_kept_and_survive_a_restart() {
    let p = pipeline().await;
    p.save(&p.output, "publish", "1.0.0", None).await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    let inputs: Vec<String> = [
        json!({"text": "a great day"}).to_string(),
        json!({"no_text": true}).to_string(),
        json!({"text": "awful"}).to_string(),
        "not json".to_owned(),
    ]
    .into();
    produce_to_partition(&p.input, 1, &inputs).await;
    wait_until("the two bad messages are kept", || async {
        p.stats(&flow).await.failures_kept == 2
    })
    .await;
    let stats = p.stats(&flow).await;
    assert_eq!(stats.succeeded, 2);
    let kept = stats.kept_failures.clone();
    // Newest first: offset 3, then 1.
    assert_eq!(kept.len(), 2);
    assert_eq!((kept[0].partition, kept[0].offset), (1, 3));
    assert_eq!(kept[0].value, "not json");
    assert_eq!(kept[0].kind, "bad-input");
    assert!(kept[0].message.contains("not JSON"));
    assert_eq!(kept[1].offset, 1);
    assert_eq!(kept[1].value, "{\n  \"no_text\": true\n}");
    assert_eq!(kept[1].version, "1.0.0");
    assert!(!kept[1].value_cut);
    assert!(kept[1].at.ends_with(" UTC"));

    // A new runner on the same database (a restart, or another instance)
    // shows them too; its in-memory counters start at zero.
    p.app.services.runner.shutdown().await;
    let again =
        server::runner::Runner::new(p.app.services.db.clone(), p.app.services.secrets.clone())
            .unwrap();
    let after = again.flow_stats(&flow).await;
    assert_eq!(after.failed, 0);
    assert_eq!(after.failures_kept, 2);
    assert_eq!(after.kept_failures, kept);
}

fn failure(i: i64) -> Failure {
    let (value, value_bytes) = Failure::value_kept(Some(&vec![b'x'; 70_000]));
    Failure {
        at_ms: 1_000 + i,
        partition: 0,
        offset: i,
        version: "1.0.0".into(),
        kind: "bad-input".into(),
        message: format!("failure {i}"),
        attempts: 1,
        key: Some(vec![0xff, 0xfe]),
        value,
        value_bytes,
        headers: "[]".into(),
    }
}

#[tokio::test]
async fn a_flow_keeps_a_bounded_number_of_failures_and_counts_what_it_dropped() {
    let p = pipeline().await;
    p.save(&p.input, "subscribe", "1.0.0", None).await;
    let flow = p.subscribe_flow_id().await;
    let db = &p.app.services.db;
    for batch in 0..(KEEP_PER_FLOW + 5) / 100 + 1 {
        let records: Vec<Failure> = (batch * 100..(batch + 1) * 100)
            .filter(|i| *i < KEEP_PER_FLOW + 5)
            .map(failure)
            .collect();
        let id = flow.clone();
        db.interact(move |c| failures::keep(c, &id, &records))
            .await
            .unwrap();
    }
    let id = flow.clone();
    let (rows, kept, dropped) = db
        .interact(move |c| failures::latest(c, &id, 3))
        .await
        .unwrap();
    let rows: Vec<Failure> = rows.into_iter().map(|(_, row)| row).collect();
    assert_eq!((kept, dropped), (KEEP_PER_FLOW, 5), "the five oldest went");
    assert_eq!(rows[0].offset, KEEP_PER_FLOW + 4, "newest first");
    assert_eq!(
        rows[0].value.as_ref().unwrap().len(),
        failures::KEEP_VALUE_BYTES
    );
    assert_eq!(rows[0].value_bytes, 70_000);
    assert_eq!(rows[0].key.as_deref(), Some(&[0xff, 0xfe][..]));
    let id = flow.clone();
    let oldest: Vec<i64> = db
        .interact(move |c| {
            use diesel::prelude::*;
            use server::db::schema::flow_failures;
            flow_failures::table
                .filter(flow_failures::flow_id.eq(&id))
                .select(flow_failures::source_offset)
                .order(flow_failures::source_offset.asc())
                .limit(1)
                .load(c)
        })
        .await
        .unwrap();
    assert_eq!(oldest, vec![5]);
    let stats = p.stats(&flow).await;
    assert_eq!(stats.failures_dropped, 5);
    assert!(stats.kept_failures[0].value_cut);
}
