//! Every server function checks the caller on the server.

use axum::http::StatusCode;
use serde_json::{Value, json};

use app::domain::Role;

use crate::support::TestApp;

/// Every admin-only server function, with well-formed arguments.
fn admin_calls() -> Vec<(&'static str, Value)> {
    let conn = json!({"name": "x", "bootstrap_servers": "127.0.0.1:9", "security_protocol": "PLAINTEXT",
        "sasl_mechanism": "", "username": "", "password": "", "ca_pem": ""});
    vec![
        ("list_broker_connections", json!({})),
        ("connect_broker", json!({"connection": conn})),
        ("get_broker_connection", json!({"id": "some-id"})),
        ("delete_broker_connection", json!({"id": "some-id"})),
        (
            "create_topic",
            json!({"id": "some-id", "topic": "t", "partitions": 1}),
        ),
        ("get_topic", json!({"id": "some-id", "topic": "t"})),
        (
            "save_topic_grants",
            json!({"id": "some-id", "topic": "t", "grants": []}),
        ),
        ("list_algorithm_names", json!({})),
        ("list_model_hosts", json!({})),
        ("allow_model_host", json!({"entry": "models.example"})),
        ("remove_model_host", json!({"entry": "models.example"})),
        ("list_audit_events", json!({"query": {}})),
    ]
}

#[tokio::test]
async fn admin_server_functions_refuse_members_with_403_and_anonymous_callers_with_401() {
    let app = TestApp::spawn()
        .await
        .with_user("ana", "ana-password", Role::Member)
        .await;
    let member = app.login("ana", "ana-password").await;
    for (endpoint, args) in admin_calls() {
        let anonymous = app.call(endpoint, args.clone(), None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{endpoint}");
        assert_eq!(anonymous.json()["kind"], "unauthorized", "{endpoint}");
        let forged = app.call(endpoint, args.clone(), Some("forged")).await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{endpoint}");
        let refused = app.call(endpoint, args, Some(&member)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{endpoint}");
        assert_eq!(refused.json()["kind"], "forbidden", "{endpoint}");
    }
}

#[tokio::test]
async fn an_admin_passes_the_check() {
    let app = TestApp::spawn()
        .await
        .with_user("root", "root-password", Role::Admin)
        .await;
    let admin = app.login("root", "root-password").await;
    let reply = app
        .call("list_broker_connections", json!({}), Some(&admin))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!([]));
    let reply = app
        .call(
            "get_broker_connection",
            json!({"id": "some-id"}),
            Some(&admin),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn member_server_functions_refuse_anonymous_callers_and_other_organizations() {
    let app = TestApp::spawn()
        .await
        .with_user("ben", "ben-password", Role::Member)
        .await;
    app.services.add_organization("acme").await.unwrap();
    app.services.add_organization("globex").await.unwrap();
    app.services.add_member("globex", "ben").await.unwrap();
    app.services
        .add_algorithm_version("acme/echo", "1.0.0", "builtin:echo", "")
        .await
        .unwrap();
    let ben = app.login("ben", "ben-password").await;
    let request = json!({"org": "acme", "name": "echo", "connection_id": "c", "topic": "t",
        "direction": "Subscribe", "version": "1.0.0", "dlq_topic": null});
    let calls = [
        ("get_algorithm", json!({"org": "acme", "name": "echo"})),
        (
            "add_version",
            json!({"org": "acme", "name": "echo", "version": "2.0.0", "runtime": "builtin:echo"}),
        ),
        ("list_events", json!({"org": "acme", "name": "echo"})),
        ("save_flow", json!({"request": request})),
        (
            "disable_flow",
            json!({"org": "acme", "name": "echo", "connection_id": "c", "topic": "t", "direction": "Subscribe"}),
        ),
    ];
    for (endpoint, args) in calls {
        let anonymous = app.call(endpoint, args.clone(), None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{endpoint}");
        // Another organization's algorithm answers like one that does not
        // exist, so that its name cannot be probed.
        let other_org = app.call(endpoint, args.clone(), Some(&ben)).await;
        assert_eq!(
            other_org.status,
            StatusCode::NOT_FOUND,
            "{endpoint}: {}",
            other_org.text()
        );
        let absent = serde_json::to_string(&args)
            .unwrap()
            .replace("\"echo\"", "\"nothing\"");
        let absent = app
            .call(endpoint, serde_json::from_str(&absent).unwrap(), Some(&ben))
            .await;
        assert_eq!(absent.status, other_org.status, "{endpoint}");
        assert_eq!(
            absent.text().replace("acme/nothing", "acme/echo"),
            other_org.text(),
            "{endpoint}: the same answer"
        );
    }
    for (endpoint, args) in [
        ("list_catalog", json!({})),
        ("get_flow_stats", json!({"flow_id": "x"})),
    ] {
        assert_eq!(
            app.call(endpoint, args, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{endpoint}"
        );
    }
    let catalog = app.call("list_catalog", json!({}), Some(&ben)).await;
    assert_eq!(catalog.json(), json!([]), "ben sees no acme algorithm");
}
