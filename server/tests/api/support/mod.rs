//! Fresh databases, the app under test, and small HTTP helpers.

pub mod servicebus_peer;

use app::api::ModelHostAdmin;
use std::path::PathBuf;

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use diesel::{Connection, PgConnection, RunQueryDsl};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use app::domain::Role;
use server::{db::Db, services::Services};

/// A database that exists only for one test.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    postgres: Option<(String, String)>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", server::db::new_id())
}

impl TestDb {
    pub fn fresh() -> Self {
        match std::env::var("EVENTFLOWS_TEST_DATABASE").as_deref() {
            Ok("postgres") => Self::postgres(),
            _ => {
                let dir = std::env::temp_dir().join(unique("eventflows_test"));
                std::fs::create_dir_all(&dir).unwrap();
                TestDb {
                    url: dir.join("eventflows.db").to_string_lossy().into_owned(),
                    dir,
                    postgres: None,
                }
            }
        }
    }

    /// A fresh PostgreSQL database, whatever the test run's choice.
    pub fn postgres() -> Self {
        let dir = std::env::temp_dir().join(unique("eventflows_test"));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = std::env::var("EVENTFLOWS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = unique("ef_test");
        let mut conn = PgConnection::establish(&admin)
            .expect("PostgreSQL must listen on 127.0.0.1:5432 for these tests");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        TestDb {
            url: format!("{base}/{name}"),
            dir,
            postgres: Some((admin, name)),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres
            && let Ok(mut conn) = PgConnection::establish(admin)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The app on a fresh database, with a tiny built UI.
pub struct TestApp {
    pub db: TestDb,
    pub services: Services,
    pub router: Router,
}

pub const INDEX_HTML: &str =
    "<!DOCTYPE html><html><head><title>Event Flows</title></head><body></body></html>";

impl TestApp {
    pub async fn spawn() -> Self {
        let db = TestDb::fresh();
        let url = db.url.clone();
        let pool = tokio::task::spawn_blocking(move || Db::open(&url))
            .await
            .unwrap()
            .unwrap();
        let services =
            Services::new(pool, server::secrets::SecretBox::random().unwrap(), false).unwrap();
        allow_local_models(&services).await;
        let dist = db.dir.join("dist");
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("index.html"), INDEX_HTML).unwrap();
        std::fs::write(
            dist.join("app.js"),
            "console.log('event flows');\n".repeat(200),
        )
        .unwrap();
        let router = server::http::router(services.clone(), &dist);
        TestApp {
            db,
            services,
            router,
        }
    }

    pub async fn with_user(self, name: &str, password: &str, role: Role) -> Self {
        self.services.add_user(name, password, role).await.unwrap();
        self
    }

    pub async fn request(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: bytes.to_vec(),
        }
    }

    /// Calls a server function with JSON arguments, optionally with a session cookie.
    pub async fn call(&self, endpoint: &str, args: Value, session: Option<&str>) -> Reply {
        let mut builder = Request::post(format!("/api/{endpoint}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(token) = session {
            builder = builder.header(header::COOKIE, format!("eventflows_session={token}"));
        }
        self.request(builder.body(Body::from(args.to_string())).unwrap())
            .await
    }

    /// Calls a server function that must succeed, and reads its answer as
    /// the type the app reads it as.
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        args: Value,
        session: Option<&str>,
    ) -> T {
        let reply = self.call(endpoint, args, session).await;
        assert_eq!(reply.status, StatusCode::OK, "{endpoint}: {}", reply.text());
        serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("{endpoint} answered {}: {e}", reply.text()))
    }

    /// Logs in and returns the session token from the cookie.
    pub async fn login(&self, name: &str, password: &str) -> String {
        let reply = self
            .call(
                "login",
                serde_json::json!({"username": name, "password": password}),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply
            .session_token()
            .expect("login sets the session cookie")
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn session_token(&self) -> Option<String> {
        let cookie = self.set_cookie()?;
        let value = cookie
            .strip_prefix("eventflows_session=")?
            .split(';')
            .next()?;
        (!value.is_empty()).then(|| value.to_owned())
    }
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Allows the model servers tests start on this machine (127.0.0.1, any
/// port); safe to repeat on one database.
pub async fn allow_local_models(services: &Services) {
    match services.allow_model_host("tests", "127.0.0.1").await {
        Ok(_) | Err(app::domain::AppError::Conflict { .. }) => {}
        Err(error) => panic!("could not allow the local model host: {error}"),
    }
}

/// Sends every log line of this test process (all levels) into a buffer.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .try_init();
    });
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}
