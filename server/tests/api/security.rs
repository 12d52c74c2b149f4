//! Login throttling and the cross-site request checks.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use app::domain::Role;

use crate::support::{Reply, TestApp, capture_logs, captured_logs};

async fn app_with_users() -> TestApp {
    TestApp::spawn()
        .await
        .with_user("ana", "ana-password", Role::Member)
        .await
        .with_user("ben", "ben-password", Role::Member)
        .await
}

/// A login as sent from `client`.
async fn login_from(app: &TestApp, client: Option<&str>, username: &str, password: &str) -> Reply {
    let mut request = Request::post("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(
            json!({"username": username, "password": password}).to_string(),
        ))
        .unwrap();
    if let Some(client) = client {
        let address: SocketAddr = format!("{client}:40000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(address));
    }
    app.request(request).await
}

#[tokio::test]
async fn repeated_failed_logins_for_a_name_are_refused_for_a_while() {
    let app = app_with_users().await;
    for attempt in 1..=5 {
        let reply = login_from(&app, None, "ana", "guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Now even the right password waits, and is not checked.
    let held = login_from(&app, None, "ana", "ana-password").await;
    assert_eq!(
        held.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        held.text()
    );
    let retry_after: u64 = held.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=300).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(held.json()["kind"], "too_many_requests");
    assert!(
        held.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed logins"),
        "{}",
        held.text()
    );
    assert!(held.session_token().is_none());
    // Another user is not held back.
    let ben = login_from(&app, None, "ben", "ben-password").await;
    assert_eq!(ben.status, StatusCode::OK, "{}", ben.text());
}

#[tokio::test]
async fn many_failed_logins_from_one_address_hold_that_address_back() {
    let app = app_with_users().await;
    for i in 0..20 {
        let reply = login_from(&app, Some("192.0.2.7"), &format!("guess{i}"), "x").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let held = login_from(&app, Some("192.0.2.7"), "ana", "ana-password").await;
    assert_eq!(
        held.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        held.text()
    );
    let elsewhere = login_from(&app, Some("198.51.100.3"), "ana", "ana-password").await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.text());
}

#[tokio::test]
async fn a_user_name_that_is_no_user_is_not_written_to_the_log() {
    capture_logs();
    let app = app_with_users().await;
    let typed = "Tr0ub4dor&3-in-the-name-field";
    let reply = login_from(&app, None, typed, "x").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let wrong = login_from(&app, None, "ben", "not-bens-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let logs = captured_logs();
    assert!(
        logs.contains("login refused: unknown user name"),
        "the refusal is logged"
    );
    assert!(!logs.contains(typed), "the typed name is not");
    assert!(logs.contains("login refused: wrong password"));
}

/// The process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_keeps_memory_bounded_and_the_server_answering() {
    let app = std::sync::Arc::new(app_with_users().await);
    let before = resident_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // 200 wrong logins at once, each for another name.
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                login_from(&app, None, &format!("nobody{i}"), "x")
                    .await
                    .status
            })
        })
        .collect();
    // Meanwhile a normal request is answered.
    let answered = tokio::time::timeout(
        Duration::from_secs(2),
        app.call("current_user", json!({}), None),
    )
    .await;
    let mut statuses = Vec::new();
    for login in flood {
        statuses.push(login.await.unwrap());
    }
    sampling.abort();
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    // A password check takes about 19 MiB and only a few run at once; the
    // allocator may keep a freed one per thread arena (unbounded, 200 at
    // once grew it by 3.8 GiB).
    eprintln!(
        "login flood: resident memory grew by {} MiB",
        grown / (1024 * 1024)
    );
    assert!(
        grown < 640 * 1024 * 1024,
        "resident memory grew by {} MiB",
        grown / (1024 * 1024)
    );
    let answered = answered.expect("a normal request is answered during the flood");
    assert_eq!(answered.status, StatusCode::OK);
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "logins past those waiting are refused as busy"
    );
}

fn post(
    path: &str,
    content_type: &str,
    origin: Option<(&str, &str)>,
    body: Value,
) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::HOST, "eventflows.example:3000")
        .header(header::CONTENT_TYPE, content_type);
    if let Some((name, value)) = origin {
        request = request.header(name, value);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn requests_from_other_sites_and_bodies_that_are_not_json_are_refused() {
    let app = app_with_users().await;
    let login = json!({"username": "ana", "password": "ana-password"});
    let json = "application/json";
    for (origin, expected) in [
        (
            Some(("origin", "https://evil.example")),
            StatusCode::FORBIDDEN,
        ),
        (Some(("origin", "null")), StatusCode::FORBIDDEN),
        (
            Some(("origin", "http://eventflows.example:3001")),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(("referer", "https://evil.example/page")),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(("origin", "http://eventflows.example:3000")),
            StatusCode::OK,
        ),
        (
            Some(("referer", "http://eventflows.example:3000/login")),
            StatusCode::OK,
        ),
        // Programs send neither header.
        (None, StatusCode::OK),
    ] {
        let reply = app
            .request(post("/api/login", json, origin, login.clone()))
            .await;
        assert_eq!(reply.status, expected, "{origin:?}: {}", reply.text());
        assert_eq!(reply.session_token().is_some(), expected == StatusCode::OK);
    }
    // What an HTML form can send is refused before anything runs.
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data",
    ] {
        let reply = app
            .request(post("/api/login", content_type, None, login.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert!(reply.session_token().is_none());
        let run = app
            .request(post(
                "/v1/algo/acme/sentiment/1.0.0",
                content_type,
                None,
                json!({"text": "hi"}),
            ))
            .await;
        assert_eq!(
            run.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert!(run.text().contains("Content-Type: application/json"));
    }
}

#[tokio::test]
async fn metrics_are_off_without_a_token_and_need_it_when_set() {
    let app = app_with_users().await;
    let scrape = |authorization: Option<&'static str>| {
        let mut request = Request::get("/metrics");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        app.request(request.body(Body::empty()).unwrap())
    };
    let off = scrape(None).await;
    assert_eq!(off.status, StatusCode::NOT_FOUND);
    assert!(off.text().contains("EVENTFLOWS_METRICS_TOKEN"));
    app.services
        .metrics_token
        .set("scraper-token-0123456789".into())
        .unwrap();
    for refused in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("scraper-token-0123456789"),
    ] {
        let reply = scrape(refused).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!reply.text().contains("eventflows_"));
    }
    let served = scrape(Some("Bearer scraper-token-0123456789")).await;
    assert_eq!(served.status, StatusCode::OK);
    assert!(
        served
            .text()
            .contains("eventflows_process_resident_memory_bytes")
    );
}

#[tokio::test]
async fn model_hosts_are_an_admin_decision_checked_when_added_and_on_every_call() {
    use axum::{Json, Router, routing::post};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = app_with_users()
        .await
        .with_user("root", "root-password", Role::Admin)
        .await;
    app.services.add_organization("acme").await.unwrap();
    app.services.add_member("acme", "ana").await.unwrap();
    app.services
        .add_algorithm_version("acme/sentiment", "1.0.0", "builtin:sentiment", "")
        .await
        .unwrap();
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let model = server::testing::serve_model(Router::new().route(
        "/predict",
        post(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Json(json!({"label": "from the model"})) }
        }),
    ))
    .await
    .unwrap();
    let port = model
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (root, ana) = (
        app.login("root", "root-password").await,
        app.login("ana", "ana-password").await,
    );
    // Tests allow 127.0.0.1 everywhere; this one starts from no entry.
    let removed = app
        .call(
            "remove_model_host",
            json!({"entry": "127.0.0.1"}),
            Some(&root),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text());
    let listed = app.call("list_model_hosts", json!({}), Some(&root)).await;
    assert_eq!(listed.json(), json!([]));
    // Only admins see or change the list.
    for (endpoint, args) in [
        ("list_model_hosts", json!({})),
        ("allow_model_host", json!({"entry": "169.254.169.254"})),
        ("remove_model_host", json!({"entry": "127.0.0.1"})),
    ] {
        let refused = app.call(endpoint, args.clone(), Some(&ana)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{endpoint}");
        let anonymous = app.call(endpoint, args, None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{endpoint}");
    }
    // A member cannot point a version at a host no admin allowed.
    let add = |version: &str, url: String| {
        app.call(
            "add_version",
            json!({"org": "acme", "name": "sentiment", "version": version, "runtime": format!("http:{url}")}),
            Some(&ana),
        )
    };
    for url in [
        model.clone(),
        "http://169.254.169.254/latest/meta-data".into(),
        format!("http://127.0.0.1:{port}@169.254.169.254/"),
    ] {
        let refused = add("2.0.0", url.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            refused.text()
        );
        assert_eq!(refused.json()["field"], "runtime");
        assert!(
            refused.json()["message"]
                .as_str()
                .unwrap()
                .contains("is not allowed; an admin can allow it under Admin → Model hosts")
        );
    }
    // The admin allows this one server; the entry is stored normalized.
    let allowed = app
        .call(
            "allow_model_host",
            json!({"entry": format!(" 127.0.0.1:{port} ")}),
            Some(&root),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text());
    assert_eq!(allowed.json()["entry"], format!("127.0.0.1:{port}"));
    assert_eq!(allowed.json()["added_by"], "root");
    let again = app
        .call(
            "allow_model_host",
            json!({"entry": format!("127.0.0.1:{port}")}),
            Some(&root),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    for bad in ["", "http://user:pw@models/", "*.10.0.0.1", "models/v1"] {
        let refused = app
            .call("allow_model_host", json!({"entry": bad}), Some(&root))
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_eq!(refused.json()["field"], "entry");
    }
    let added = add("2.0.0", model.clone()).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text());
    let run = || {
        app.request(
            Request::post("/v1/algo/acme/sentiment/2.0.0")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, format!("eventflows_session={ana}"))
                .body(Body::from(json!({"text": "hi"}).to_string()))
                .unwrap(),
        )
    };
    let ran = run().await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text());
    assert_eq!(ran.json()["result"]["label"], "from the model");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Taken off the list, the host is not called again, even by a version
    // added while it was allowed.
    let removed = app
        .call(
            "remove_model_host",
            json!({"entry": format!("127.0.0.1:{port}")}),
            Some(&root),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    let refused = run().await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert!(
        refused
            .text()
            .contains(&format!("127.0.0.1:{port} is not allowed")),
        "{}",
        refused.text()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let gone = app
        .call(
            "remove_model_host",
            json!({"entry": format!("127.0.0.1:{port}")}),
            Some(&root),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
