//! A broker password is a canary: it must never come back out.

use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::json;

use server::db::schema::broker_connections;

use crate::brokers::admin_app;
use crate::kafka::{sasl_broker, unique_topic};
use crate::support::{capture_logs, captured_logs};

#[tokio::test]
async fn a_saved_broker_password_never_leaves_the_server() {
    capture_logs();
    let (app, token) = admin_app().await;
    let (servers, user, canary) = sasl_broker();
    let canary = canary.as_str();
    let mut form = json!({"connection": {
        "name": "with secret", "bootstrap_servers": servers, "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "username": user, "password": "wrong-password", "ca_pem": ""
    }});
    let refused = app.call("connect_broker", form.clone(), Some(&token)).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        refused.text()
    );
    form["connection"]["password"] = json!(canary);
    let created = app.call("connect_broker", form, Some(&token)).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let id = created.json().as_str().unwrap().to_owned();
    let topic = unique_topic("secret");

    let mut replies = vec![refused, created];
    replies.push(
        app.call("list_broker_connections", json!({}), Some(&token))
            .await,
    );
    replies.push(
        app.call("get_broker_connection", json!({"id": id}), Some(&token))
            .await,
    );
    replies.push(
        app.call(
            "create_topic",
            json!({"id": id, "topic": topic, "partitions": 1}),
            Some(&token),
        )
        .await,
    );
    replies.push(
        app.call("get_topic", json!({"id": id, "topic": topic}), Some(&token))
            .await,
    );
    replies.push(
        app.call("list_algorithm_names", json!({}), Some(&token))
            .await,
    );
    for reply in &replies {
        assert!(
            !reply.text().contains(canary),
            "leaked in a response: {}",
            reply.text()
        );
    }
    let details = replies[3].json();
    assert_eq!(details["password_set"], true);
    assert_eq!(details["username"], "svc");

    // Stored sealed, not in plain text.
    let stored: Option<String> = app
        .services
        .db
        .interact(|c| {
            broker_connections::table
                .select(broker_connections::password_encrypted)
                .first(c)
        })
        .await
        .unwrap();
    let stored = stored.unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(canary));
    if server::db::Backend::of(&app.db.url) == server::db::Backend::Sqlite {
        for file in std::fs::read_dir(&app.db.dir).unwrap() {
            let path = file.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                    "{} holds the password in plain text",
                    path.display()
                );
            }
        }
    }

    // Nor in any log line.
    let logs = captured_logs();
    assert!(
        logs.contains("broker connection created"),
        "logs were captured"
    );
    assert!(!logs.contains(canary), "leaked in the logs");
}
