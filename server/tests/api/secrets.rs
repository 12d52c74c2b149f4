//! A broker password is a canary: it must never come back out.

use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::json;

use server::db::schema::broker_connections;

use crate::brokers::admin_app;
use crate::kafka::{bootstrap, unique_topic};
use crate::support::{capture_logs, captured_logs};

const CANARY: &str = "canary-pw-7f3a9c";

#[tokio::test]
async fn a_saved_broker_password_never_leaves_the_server() {
    capture_logs();
    let (app, token) = admin_app().await;
    let form = json!({"connection": {
        "name": "with secret", "bootstrap_servers": bootstrap(), "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN", "username": "svc", "password": CANARY, "ca_pem": ""
    }});
    let created = app.call("connect_broker", form, Some(&token)).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let id = created.json().as_str().unwrap().to_owned();
    let topic = unique_topic("secret");

    let mut replies = vec![created];
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
            !reply.text().contains(CANARY),
            "leaked in a response: {}",
            reply.text()
        );
    }
    let details = replies[2].json();
    assert_eq!(details["password_set"], true);
    assert_eq!(details["username"], "svc");

    // Stored sealed, not in plain text.
    let stored: Option<String> = app
        .services
        .db
        .run(|c| {
            broker_connections::table
                .select(broker_connections::password_encrypted)
                .first(c)
        })
        .await
        .unwrap();
    let stored = stored.unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(CANARY));
    if server::db::Backend::of(&app.db.url) == server::db::Backend::Sqlite {
        for file in std::fs::read_dir(&app.db.dir).unwrap() {
            let path = file.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
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
    assert!(!logs.contains(CANARY), "leaked in the logs");
}
