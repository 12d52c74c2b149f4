//! The audit log: who did what and when, for admins only.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::flows::pipeline;

/// The events an admin's query returns.
async fn events(p: &crate::flows::Pipeline, query: Value) -> Vec<Value> {
    let reply = p
        .app
        .call("list_audit_events", json!({"query": query}), Some(&p.admin))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["events"].as_array().unwrap().clone()
}

fn find<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test]
async fn changes_and_logins_are_recorded_with_who_and_what_and_read_by_admins_only() {
    let p = pipeline().await;
    // The pipeline connected a broker, created topics and gave grants.
    p.save(&p.input, "subscribe", "1.0.0", Some(&p.dlq)).await;
    p.save(&p.input, "subscribe", "1.1.0", Some(&p.dlq)).await;
    let disabled = p
        .app
        .call(
            "disable_flow",
            json!({"org": "acme", "name": "sentiment", "connection_id": p.connection,
                "topic": p.input, "direction": "Subscribe"}),
            Some(&p.ana),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text());
    let key = p
        .app
        .call(
            "create_api_key",
            json!({"name": "job", "expires_in_days": 7}),
            Some(&p.ana),
        )
        .await;
    let key_id = p
        .app
        .call("list_api_keys", json!({}), Some(&p.ana))
        .await
        .json()[0]["id"]
        .clone();
    let revoked = p
        .app
        .call("revoke_api_key", json!({"id": key_id}), Some(&p.ana))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let secret = key.json()["key"].as_str().unwrap().to_owned();
    p.app
        .call(
            "allow_model_host",
            json!({"entry": "models.example:8080"}),
            Some(&p.admin),
        )
        .await;
    // A refused login, with a password typed as the name: not recorded.
    let typo = p
        .app
        .call(
            "login",
            json!({"username": "hunter2-password", "password": "x"}),
            None,
        )
        .await;
    assert_eq!(typo.status, StatusCode::UNAUTHORIZED);
    let wrong = p
        .app
        .call(
            "login",
            json!({"username": "ana", "password": "not hers"}),
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let all = events(&p, json!({})).await;
    let text = serde_json::to_string(&all).unwrap();
    // Nothing secret: not the key, not a password, not a name that was typed.
    assert!(!text.contains(&secret) && !text.contains("not hers") && !text.contains("hunter2"));
    let one = |kind: &str| {
        let found = find(&all, kind);
        assert_eq!(found.len(), 1, "{kind}: {found:?}");
        found[0].clone()
    };
    let connected = one("broker-connected");
    assert_eq!(connected["actor"], "root");
    assert_eq!(connected["target"], "local");
    assert_eq!(find(&all, "topic-created").len(), 4);
    let grants = find(&all, "grants-changed");
    assert_eq!(grants.len(), 4);
    assert!(
        grants
            .iter()
            .any(|g| g["target"].as_str().unwrap().starts_with(&p.input)
                && g["detail"] == "acme/sentiment: none → subscribe"),
        "{grants:?}"
    );
    let enabled = one("flow-enabled");
    assert_eq!(enabled["actor"], "ana");
    assert_eq!(
        enabled["target"],
        format!("acme/sentiment subscribe {}", p.input)
    );
    assert_eq!(enabled["detail"], "version 1.0.0");
    assert_eq!(one("flow-edited")["detail"], "version 1.0.0 → 1.1.0");
    assert_eq!(one("flow-disabled")["actor"], "ana");
    let created = one("api-key-created");
    assert_eq!(created["target"], "job");
    assert_eq!(
        created["detail"],
        format!("{}…, expires in 7 days", &secret[..10])
    );
    assert_eq!(one("api-key-revoked")["target"], "job");
    // (The tests' own model host is allowed as "tests" when the app starts.)
    let hosts = find(&all, "model-host-allowed");
    assert!(
        hosts
            .iter()
            .any(|h| h["actor"] == "root" && h["target"] == "models.example:8080")
    );
    let logins = find(&all, "login");
    assert!(
        logins.iter().any(|l| l["actor"] == "ana") && logins.iter().any(|l| l["actor"] == "root")
    );
    let refused = find(&all, "login-refused");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r["actor"] == "ana" && r["detail"] == "wrong password")
    );
    assert!(
        refused
            .iter()
            .any(|r| r["actor"] == "(unknown user)" && r["target"] == "")
    );
    // Newest first.
    assert_eq!(all[0]["kind"], "login-refused");

    // Filters: by user, by kind, by time.
    let anas = events(&p, json!({"actor": "ana"})).await;
    assert!(!anas.is_empty() && anas.iter().all(|e| e["actor"] == "ana"));
    let edits = events(&p, json!({"kind": "flow-edited"})).await;
    assert_eq!(edits.len(), 1);
    let future = server::db::now_ms() + 60_000;
    assert!(events(&p, json!({"from_ms": future})).await.is_empty());
    assert_eq!(events(&p, json!({"to_ms": future})).await.len(), all.len());
    let bad = p
        .app
        .call(
            "list_audit_events",
            json!({"query": {"kind": "coffee"}}),
            Some(&p.admin),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Members and anonymous callers are refused.
    let member = p
        .app
        .call("list_audit_events", json!({"query": {}}), Some(&p.ana))
        .await;
    assert_eq!(member.status, StatusCode::FORBIDDEN);
    let anonymous = p
        .app
        .call("list_audit_events", json!({"query": {}}), None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_without_gaps_or_repeats() {
    let p = pipeline().await;
    for i in 0..70 {
        p.app
            .services
            .audit("tester", "member-added", &format!("user-{i:02}"), "acme")
            .await;
    }
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let reply = p
            .app
            .call(
                "list_audit_events",
                json!({"query": {"actor": "tester", "before": before}}),
                Some(&p.admin),
            )
            .await;
        let page = reply.json();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 50);
        seen.extend(
            events
                .iter()
                .map(|e| e["target"].as_str().unwrap().to_owned()),
        );
        match page["older"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 70);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 70, "an event was shown twice");
    let bad = p
        .app
        .call(
            "list_audit_events",
            json!({"query": {"before": "nonsense"}}),
            Some(&p.admin),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}
