use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};

use crate::support::{INDEX_HTML, TestApp};

#[tokio::test]
async fn the_health_endpoint_answers_when_the_database_does() {
    let app = TestApp::spawn().await;
    let reply = app
        .request(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "ok\n");
}

#[tokio::test]
async fn app_routes_fall_back_to_the_single_page() {
    let app = TestApp::spawn().await;
    for path in ["/", "/admin/queues", "/catalog", "/no/such/page"] {
        let reply = app
            .request(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.text(), INDEX_HTML, "{path}");
        assert!(
            reply.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn static_files_have_their_content_type_and_are_compressed() {
    let app = TestApp::spawn().await;
    let reply = app
        .request(
            Request::get("/app.js")
                .header(header::ACCEPT_ENCODING, "br, gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(reply.headers[header::CONTENT_ENCODING], "br");
    // The UI's modules keep their names from one build to the next: a
    // browser asks again (and gets 304 Not Modified) instead of running a
    // stale module beside a new one.
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-cache");
    assert!(
        reply.body.len() < 200 * 29,
        "compressed: {} bytes",
        reply.body.len()
    );
}

#[tokio::test]
async fn an_unknown_server_function_is_a_clear_client_error() {
    let app = TestApp::spawn().await;
    let reply = app
        .call("no_such_function", serde_json::json!({}), None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("Could not find a server function"));
}

#[tokio::test]
async fn the_tests_run_on_the_backend_they_were_asked_for() {
    let app = TestApp::spawn().await;
    let wanted = match std::env::var("EVENTFLOWS_TEST_DATABASE").as_deref() {
        Ok("postgres") => server::db::Backend::Postgres,
        _ => server::db::Backend::Sqlite,
    };
    let connected = app
        .services
        .db
        .interact(|c| {
            Ok(match c {
                server::db::AnyConnection::Sqlite(_) => server::db::Backend::Sqlite,
                server::db::AnyConnection::Postgresql(_) => server::db::Backend::Postgres,
            })
        })
        .await
        .unwrap();
    assert_eq!(connected, wanted);
    assert_eq!(server::db::Backend::of(&app.db.url), wanted);
}
