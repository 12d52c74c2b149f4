use std::time::{Duration, Instant};

use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::{Value, json};

use app::domain::Role;
use server::db::schema::{broker_connections, flows, topic_grants};

use crate::kafka::{bootstrap, produce, unique_topic};
use crate::support::TestApp;

/// An app with an admin logged in, and the demo-like algorithms.
pub async fn admin_app() -> (TestApp, String) {
    let app = TestApp::spawn()
        .await
        .with_user("root", "root-password", Role::Admin)
        .await;
    app.services.add_organization("acme").await.unwrap();
    for name in ["sentiment", "echo"] {
        app.services
            .add_algorithm_version(&format!("acme/{name}"), "1.0.0", "builtin:echo", "")
            .await
            .unwrap();
    }
    let token = app.login("root", "root-password").await;
    (app, token)
}

pub fn plaintext(name: &str, servers: &str) -> Value {
    json!({"connection": {
        "name": name, "bootstrap_servers": servers, "security_protocol": "PLAINTEXT",
        "sasl_mechanism": "", "username": "", "password": "", "ca_pem": ""
    }})
}

pub async fn connect(app: &TestApp, token: &str, name: &str) -> String {
    let reply = app
        .call("connect_broker", plaintext(name, bootstrap()), Some(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json().as_str().unwrap().to_owned()
}

/// Sends the form `base` with each patch of `cases` applied, and checks
/// that the server refuses it at the field named beside the patch.
pub async fn refuses_each_field(app: &TestApp, token: &str, base: Value, cases: &[(Value, &str)]) {
    for (patch, field) in cases {
        let mut form = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            form["connection"][k] = v.clone();
        }
        let reply = app.call("connect_broker", form, Some(token)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{patch}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["field"], *field, "{patch}");
    }
}

/// Asks for a new topic (or queue) on connection `id`; the reply.
pub async fn create_topic(
    app: &TestApp,
    token: &str,
    id: &str,
    topic: &str,
    partitions: u32,
) -> crate::support::Reply {
    app.call(
        "create_topic",
        json!({"id": id, "topic": topic, "partitions": partitions}),
        Some(token),
    )
    .await
}

pub async fn connection_count(app: &TestApp) -> i64 {
    app.services
        .db
        .interact(|c| broker_connections::table.count().get_result(c))
        .await
        .unwrap()
}

#[tokio::test]
async fn connecting_to_a_reachable_broker_saves_the_connection() {
    let (app, token) = admin_app().await;
    let id = connect(&app, &token, "local tansu").await;
    let list = app
        .call("list_broker_connections", json!({}), Some(&token))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let row = &list[0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["name"], "local tansu");
    assert_eq!(row["kind"], "Kafka");
    assert_eq!(row["bootstrap_servers"], bootstrap());
    assert_eq!(row["status"], "Reachable");
    assert!(row["topic_count"].is_u64());
    assert_eq!(row["flow_count"], 0);
}

#[tokio::test]
async fn unreachable_brokers_fail_within_the_timeout_and_save_nothing() {
    let (app, token) = admin_app().await;
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // Something listens here, but it is no Kafka broker: it hangs up at once.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_port = rude.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = rude.accept().await {
            drop(socket);
        }
    });
    for servers in [
        format!("127.0.0.1:{closed_port}"),
        format!("127.0.0.1:{rude_port}"),
        "no-such-broker.invalid:9092".to_owned(),
    ] {
        let started = Instant::now();
        let reply = app
            .call(
                "connect_broker",
                plaintext("nowhere", &servers),
                Some(&token),
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{servers} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            reply.status,
            StatusCode::BAD_GATEWAY,
            "{servers}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["kind"], "broker");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&servers), "{message}");
    }
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn bad_connection_forms_are_refused_field_by_field() {
    let (app, token) = admin_app().await;
    connect(&app, &token, "taken").await;
    let cases = [
        (json!({"name": "  "}), "name"),
        (json!({"name": "taken"}), "name"),
        (json!({"bootstrap_servers": ""}), "bootstrap_servers"),
        (json!({"bootstrap_servers": "kafka"}), "bootstrap_servers"),
        (
            json!({"bootstrap_servers": "kafka:notaport"}),
            "bootstrap_servers",
        ),
        (json!({"security_protocol": "TELNET"}), "security_protocol"),
        (
            json!({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "username": "u", "password": "p"}),
            "sasl_mechanism",
        ),
        (
            json!({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "username": "", "password": "p"}),
            "username",
        ),
        (
            json!({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "username": "u", "password": ""}),
            "password",
        ),
        (
            json!({"security_protocol": "SSL", "ca_pem": "not a certificate"}),
            "ca_pem",
        ),
    ];
    refuses_each_field(&app, &token, plaintext("new one", bootstrap()), &cases).await;
    assert_eq!(connection_count(&app).await, 1);
}

#[tokio::test]
async fn topics_appear_with_partitions_and_message_counts() {
    let (app, token) = admin_app().await;
    let id = connect(&app, &token, "local").await;
    let topic = unique_topic("orders");
    let reply = app
        .call(
            "create_topic",
            json!({"id": id, "topic": topic, "partitions": 3}),
            Some(&token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    produce(&topic, &["a", "b", "c", "d", "e"]).await;

    let details = app
        .call("get_broker_connection", json!({"id": id}), Some(&token))
        .await
        .json();
    assert_eq!(details["status"], "Reachable");
    let found = details["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == topic.as_str())
        .unwrap_or_else(|| panic!("{topic} missing from {details}"));
    assert_eq!(found["partitions"], 3);
    assert_eq!(found["message_count"], 5);
    assert!(found["replication_factor"].as_u64().unwrap() >= 1);
    assert_eq!(details["password_set"], false);

    let again = app
        .call(
            "create_topic",
            json!({"id": id, "topic": topic, "partitions": 1}),
            Some(&token),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.json()["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
}

#[tokio::test]
async fn topic_names_kafka_would_refuse_and_zero_partitions_are_refused() {
    let (app, token) = admin_app().await;
    let id = connect(&app, &token, "local").await;
    for bad in ["", ".", "..", "with space", "slash/topic", &"t".repeat(250)] {
        let reply = create_topic(&app, &token, &id, bad, 1).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_eq!(reply.json()["field"], "topic", "{bad:?}");
    }
    let reply = app
        .call(
            "create_topic",
            json!({"id": id, "topic": unique_topic("zero"), "partitions": 0}),
            Some(&token),
        )
        .await;
    assert_eq!(reply.json()["field"], "partitions");
}

#[tokio::test]
async fn grants_save_all_at_once_and_reload() {
    let (app, token) = admin_app().await;
    let id = connect(&app, &token, "local").await;
    let topic = unique_topic("events");
    app.call(
        "create_topic",
        json!({"id": id, "topic": topic, "partitions": 1}),
        Some(&token),
    )
    .await;
    let save = |grants: Value| {
        app.call(
            "save_topic_grants",
            json!({"id": id, "topic": topic, "grants": grants}),
            Some(&token),
        )
    };
    let both = json!([
        {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
        {"algorithm": "acme/echo", "access": {"subscribe": false, "publish": true}},
    ]);
    assert_eq!(save(both).await.status, StatusCode::OK);
    let topic_view = app
        .call("get_topic", json!({"id": id, "topic": topic}), Some(&token))
        .await
        .json();
    assert_eq!(
        topic_view["grants"],
        json!([
            {"algorithm": "acme/echo", "access": {"subscribe": false, "publish": true}},
            {"algorithm": "acme/sentiment", "access": {"subscribe": true, "publish": false}},
        ])
    );

    // A bad list changes nothing.
    for (bad, status) in [
        (
            json!([{"algorithm": "acme/nope", "access": {"subscribe": true, "publish": false}}]),
            StatusCode::NOT_FOUND,
        ),
        (
            json!([{"algorithm": "acme/echo", "access": {"subscribe": false, "publish": false}}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([
                {"algorithm": "acme/echo", "access": {"subscribe": true, "publish": false}},
                {"algorithm": "acme/echo", "access": {"subscribe": false, "publish": true}},
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        assert_eq!(save(bad.clone()).await.status, status, "{bad}");
    }
    let unchanged = app
        .call("get_topic", json!({"id": id, "topic": topic}), Some(&token))
        .await
        .json();
    assert_eq!(unchanged["grants"], topic_view["grants"]);

    // Removing one keeps the other.
    let one = json!([{"algorithm": "acme/echo", "access": {"subscribe": true, "publish": true}}]);
    assert_eq!(save(one.clone()).await.status, StatusCode::OK);
    let reloaded = app
        .call("get_topic", json!({"id": id, "topic": topic}), Some(&token))
        .await
        .json();
    assert_eq!(reloaded["grants"], one);

    let missing = app
        .call(
            "save_topic_grants",
            json!({"id": id, "topic": unique_topic("absent"), "grants": []}),
            Some(&token),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_a_connection_removes_its_grants_and_flows() {
    let (app, token) = admin_app().await;
    let id = connect(&app, &token, "doomed").await;
    let topic = unique_topic("doomed");
    app.call(
        "create_topic",
        json!({"id": id, "topic": topic, "partitions": 1}),
        Some(&token),
    )
    .await;
    let grants =
        json!([{"algorithm": "acme/echo", "access": {"subscribe": true, "publish": false}}]);
    app.call(
        "save_topic_grants",
        json!({"id": id, "topic": topic, "grants": grants}),
        Some(&token),
    )
    .await;
    let (cid, t) = (id.clone(), topic.clone());
    app.services
        .db
        .interact(move |c| {
            let algorithm: String = server::db::schema::algorithms::table
                .select(server::db::schema::algorithms::id)
                .filter(server::db::schema::algorithms::name.eq("echo"))
                .first(c)?;
            diesel::insert_into(flows::table)
                .values((
                    flows::id.eq("flow-1"),
                    flows::algorithm_id.eq(algorithm),
                    flows::connection_id.eq(cid),
                    flows::topic.eq(t),
                    flows::direction.eq("subscribe"),
                    flows::version.eq("1.0.0"),
                    flows::enabled.eq(true),
                    flows::created_at.eq(0i64),
                    flows::updated_at.eq(0i64),
                ))
                .execute(c)
        })
        .await
        .unwrap();
    let details = app
        .call("get_broker_connection", json!({"id": id}), Some(&token))
        .await
        .json();
    assert_eq!(
        details["flows"],
        json!([format!("acme/echo (subscribe) on {topic}")])
    );

    let reply = app
        .call("delete_broker_connection", json!({"id": id}), Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (connections, grants, flows_left) = app
        .services
        .db
        .interact(|c| {
            Ok((
                broker_connections::table.count().get_result::<i64>(c)?,
                topic_grants::table.count().get_result::<i64>(c)?,
                flows::table.count().get_result::<i64>(c)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((connections, grants, flows_left), (0, 0, 0));
    let gone = app
        .call("get_broker_connection", json!({"id": id}), Some(&token))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = app
        .call("delete_broker_connection", json!({"id": id}), Some(&token))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let topic_after = app
        .call(
            "create_topic",
            json!({"id": id, "topic": unique_topic("x"), "partitions": 1}),
            Some(&token),
        )
        .await;
    assert_eq!(topic_after.status, StatusCode::NOT_FOUND);
}
