use axum::http::StatusCode;
use diesel::prelude::*;
use serde_json::{Value, json};

use app::domain::Role;
use server::db::{now_ms, schema::sessions, users};

use crate::support::TestApp;

async fn app_with_ana() -> TestApp {
    TestApp::spawn()
        .await
        .with_user("ana", "ana-password", Role::Member)
        .await
}

async fn whoami(app: &TestApp, token: Option<&str>) -> Value {
    let reply = app.call("current_user", json!({}), token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

#[tokio::test]
async fn logging_in_with_the_right_password_starts_an_http_only_session() {
    let app = app_with_ana().await;
    let reply = app
        .call(
            "login",
            json!({"username": "ana", "password": "ana-password"}),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["username"], "ana");
    assert_eq!(reply.json()["role"], "member");
    let cookie = reply.set_cookie().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let token = reply.session_token().unwrap();
    assert_eq!(whoami(&app, Some(&token)).await["username"], "ana");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = app_with_ana().await;
    let wrong = app
        .call(
            "login",
            json!({"username": "ana", "password": "not-her-password"}),
            None,
        )
        .await;
    let unknown = app
        .call(
            "login",
            json!({"username": "nobody", "password": "ana-password"}),
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.set_cookie().is_none());
    assert!(!wrong.text().contains("password is wrong") && !wrong.text().contains("no such user"));
}

#[tokio::test]
async fn empty_fields_are_refused_and_named() {
    let app = app_with_ana().await;
    let reply = app
        .call("login", json!({"username": "  ", "password": "x"}), None)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["field"], "username");
    let reply = app
        .call("login", json!({"username": "ana", "password": ""}), None)
        .await;
    assert_eq!(reply.json()["field"], "password");
}

#[tokio::test]
async fn every_login_gets_a_new_session_and_ends_the_one_it_came_with() {
    let app = app_with_ana().await;
    let first = app.login("ana", "ana-password").await;
    let second = app
        .call(
            "login",
            json!({"username": "ana", "password": "ana-password"}),
            Some(&first),
        )
        .await
        .session_token()
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(whoami(&app, Some(&first)).await, Value::Null);
    assert_eq!(whoami(&app, Some(&second)).await["username"], "ana");
}

#[tokio::test]
async fn logging_out_ends_the_session_on_the_server() {
    let app = app_with_ana().await;
    let token = app.login("ana", "ana-password").await;
    let reply = app.call("logout", json!({}), Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.set_cookie().unwrap().contains("Max-Age=0"));
    // The old cookie, replayed, opens nothing.
    assert_eq!(whoami(&app, Some(&token)).await, Value::Null);
    let left = app
        .services
        .db
        .interact(|c| {
            let user = users::find_user(c, "ana")?.unwrap();
            users::count_sessions(c, &user.id)
        })
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn forged_and_expired_cookies_are_anonymous() {
    let app = app_with_ana().await;
    assert_eq!(whoami(&app, None).await, Value::Null);
    assert_eq!(whoami(&app, Some("forged-token-value")).await, Value::Null);

    let token = app.login("ana", "ana-password").await;
    let hash = server::services::auth::token_hash(&token);
    app.services
        .db
        .interact(move |c| {
            diesel::update(sessions::table.filter(sessions::token_hash.eq(hash)))
                .set(sessions::expires_at.eq(now_ms() - 1))
                .execute(c)
        })
        .await
        .unwrap();
    assert_eq!(whoami(&app, Some(&token)).await, Value::Null);
}

#[tokio::test]
async fn the_session_names_the_users_organizations() {
    let app = app_with_ana().await;
    app.services.add_organization("acme").await.unwrap();
    app.services.add_member("acme", "ana").await.unwrap();
    let token = app.login("ana", "ana-password").await;
    assert_eq!(
        whoami(&app, Some(&token)).await["organizations"],
        json!(["acme"])
    );
}

#[tokio::test]
async fn a_session_left_idle_too_long_ends_and_one_in_use_goes_on() {
    let app = app_with_ana().await;
    let idle_ms = app.services.session_idle.as_millis() as i64;
    let set_last_seen = |token: &str, at: i64| {
        let hash = server::services::auth::token_hash(token);
        app.services.db.interact(move |c| {
            diesel::update(sessions::table.filter(sessions::token_hash.eq(hash)))
                .set(sessions::last_seen_at.eq(at))
                .execute(c)
        })
    };
    let last_seen = |token: &str| {
        let hash = server::services::auth::token_hash(token);
        app.services.db.interact(move |c| {
            sessions::table
                .filter(sessions::token_hash.eq(hash))
                .select(sessions::last_seen_at)
                .first::<i64>(c)
        })
    };
    // Used a little less than the idle limit ago: still valid, and the use
    // counts as activity.
    let busy = app.login("ana", "ana-password").await;
    set_last_seen(&busy, now_ms() - idle_ms + 60_000)
        .await
        .unwrap();
    assert_eq!(whoami(&app, Some(&busy)).await["username"], "ana");
    assert!(last_seen(&busy).await.unwrap() > now_ms() - 60_000);
    // Idle past the limit: anonymous, although not expired.
    let idle = app.login("ana", "ana-password").await;
    set_last_seen(&idle, now_ms() - idle_ms - 1).await.unwrap();
    assert_eq!(whoami(&app, Some(&idle)).await, Value::Null);
}
