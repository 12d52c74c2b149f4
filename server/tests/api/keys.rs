//! API keys for the REST API: created and revoked by their user, shown
//! once, stored hashed, acting as their user.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use app::domain::Role;

use crate::support::{Reply, TestApp};

async fn app() -> TestApp {
    let app = TestApp::spawn()
        .await
        .with_user("ana", "ana-password", Role::Member)
        .await
        .with_user("ben", "ben-password", Role::Member)
        .await;
    for org in ["acme", "globex"] {
        app.services.add_organization(org).await.unwrap();
    }
    app.services.add_member("acme", "ana").await.unwrap();
    app.services.add_member("globex", "ben").await.unwrap();
    app.services
        .add_algorithm_version("acme/sentiment", "1.0.0", "builtin:sentiment", "")
        .await
        .unwrap();
    app
}

/// A REST run of acme/sentiment 1.0.0 with `authorization`, if any.
async fn run(app: &TestApp, authorization: Option<&str>, body: Value) -> Reply {
    let mut request = Request::post("/v1/algo/acme/sentiment/1.0.0")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    app.request(request.body(Body::from(body.to_string())).unwrap())
        .await
}

#[tokio::test]
async fn a_key_runs_algorithms_as_its_user_until_it_is_revoked() {
    let app = app().await;
    let (ana, ben) = (
        app.login("ana", "ana-password").await,
        app.login("ben", "ben-password").await,
    );
    let created = app
        .call(
            "create_api_key",
            json!({"name": " nightly job ", "expires_in_days": 30}),
            Some(&ana),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let key = created.json()["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ef_") && key.len() == 46, "{key}");
    let summary = &created.json()["summary"];
    assert_eq!(summary["name"], "nightly job");
    assert_eq!(summary["prefix"], key[..10]);
    assert_eq!(summary["state"], "active");
    assert!(summary["expires_at"].is_string());
    assert!(summary["last_used_at"].is_null());
    // The key is shown once: the list and the database hold only its start
    // and its hash.
    let listed = app.call("list_api_keys", json!({}), Some(&ana)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(!listed.text().contains(&key));
    let id = listed.json()[0]["id"].as_str().unwrap().to_owned();
    let stored: Vec<String> = app
        .services
        .db
        .interact(|c| {
            use diesel::prelude::*;
            use server::db::schema::api_keys;
            api_keys::table.select(api_keys::key_hash).load(c)
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&key) && stored[0].len() == 64);
    // Others see none of it.
    let theirs = app.call("list_api_keys", json!({}), Some(&ben)).await;
    assert_eq!(theirs.json(), json!([]));

    let ok = run(
        &app,
        Some(&format!("Simple {key}")),
        json!({"text": "a great day"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["result"]["label"], "positive");
    assert_eq!(ok.json()["metadata"]["content_type"], "json");
    assert!(ok.json()["metadata"]["duration"].is_number());
    let used = app.call("list_api_keys", json!({}), Some(&ana)).await;
    assert!(used.json()[0]["last_used_at"].is_string());
    // The key has its user's rights, no more: ben's key cannot run acme's.
    let bens = app
        .call(
            "create_api_key",
            json!({"name": "ben's", "expires_in_days": null}),
            Some(&ben),
        )
        .await;
    let bens = bens.json()["key"].as_str().unwrap().to_owned();
    let hidden = run(&app, Some(&format!("Simple {bens}")), json!({"text": "hi"})).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden.json()["error"]["error_type"], "NotFoundError");
    // An admin's key acts as the admin, who may run any organization's.
    app.services
        .add_user("root", "root-password", Role::Admin)
        .await
        .unwrap();
    let root = app.login("root", "root-password").await;
    let roots = app
        .call(
            "create_api_key",
            json!({"name": "ops", "expires_in_days": null}),
            Some(&root),
        )
        .await;
    let roots = roots.json()["key"].as_str().unwrap().to_owned();
    let admin_run = run(
        &app,
        Some(&format!("Simple {roots}")),
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(admin_run.status, StatusCode::OK, "{}", admin_run.text());
    // Only its user revokes it.
    let not_his = app
        .call("revoke_api_key", json!({"id": id}), Some(&ben))
        .await;
    assert_eq!(not_his.status, StatusCode::NOT_FOUND);
    let revoked = app
        .call("revoke_api_key", json!({"id": id}), Some(&ana))
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let refused = run(&app, Some(&format!("Simple {key}")), json!({"text": "hi"})).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json()["error"]["error_type"], "AuthorizationError");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    assert_eq!(refused.headers[header::WWW_AUTHENTICATE], "Simple");
    let again = app
        .call("revoke_api_key", json!({"id": id}), Some(&ana))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let after = app.call("list_api_keys", json!({}), Some(&ana)).await;
    assert_eq!(after.json()[0]["state"], "revoked");
}

#[tokio::test]
async fn expired_forged_and_malformed_keys_are_refused_and_bad_names_are_caught() {
    let app = app().await;
    let ana = app.login("ana", "ana-password").await;
    let created = app
        .call(
            "create_api_key",
            json!({"name": "short-lived", "expires_in_days": 1}),
            Some(&ana),
        )
        .await;
    let key = created.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(
        run(&app, Some(&format!("Simple {key}")), json!({"text": "hi"}))
            .await
            .status,
        StatusCode::OK
    );
    // A day later (the expiry moved back), the key no longer works.
    app.services
        .db
        .interact(|c| {
            use diesel::prelude::*;
            use server::db::schema::api_keys;
            diesel::update(api_keys::table)
                .set(api_keys::expires_at_ms.eq(server::db::now_ms() - 1))
                .execute(c)
        })
        .await
        .unwrap();
    let expired = run(&app, Some(&format!("Simple {key}")), json!({"text": "hi"})).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    let listed = app.call("list_api_keys", json!({}), Some(&ana)).await;
    assert_eq!(listed.json()[0]["state"], "expired");
    for authorization in [
        format!("Simple {}x", &key[..key.len() - 1]),
        format!("Bearer {key}"),
        "Simple ".into(),
        key.clone(),
    ] {
        let refused = run(&app, Some(&authorization), json!({"text": "hi"})).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(refused.json()["error"]["error_type"], "AuthorizationError");
    }
    // A key that is sent wins over a session cookie: a bad key is refused
    // even for a logged-in browser.
    let mixed = app
        .request(
            Request::post("/v1/algo/acme/sentiment/1.0.0")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, "Simple ef_forged")
                .header(header::COOKIE, format!("eventflows_session={ana}"))
                .body(Body::from(json!({"text": "hi"}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(mixed.status, StatusCode::UNAUTHORIZED);
    let anonymous = run(&app, None, json!({"text": "hi"})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Simple")
    );
    for (args, field) in [
        (json!({"name": "  ", "expires_in_days": null}), "name"),
        (
            json!({"name": "x".repeat(65), "expires_in_days": null}),
            "name",
        ),
        (
            json!({"name": "ok", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "ok", "expires_in_days": 3651}),
            "expires_in_days",
        ),
    ] {
        let refused = app.call("create_api_key", args.clone(), Some(&ana)).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{args}");
        assert_eq!(refused.json()["field"], field, "{args}");
    }
    for endpoint in ["list_api_keys", "create_api_key", "revoke_api_key"] {
        let args = match endpoint {
            "create_api_key" => json!({"name": "x", "expires_in_days": null}),
            "revoke_api_key" => json!({"id": "x"}),
            _ => json!({}),
        };
        let anonymous = app.call(endpoint, args, None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{endpoint}");
    }
    // Bad input to the REST route has the same shape.
    let bad = run(&app, Some("Simple nothing"), json!({"text": "hi"})).await;
    assert_eq!(bad.json()["error"]["error_type"], "AuthorizationError");
}
