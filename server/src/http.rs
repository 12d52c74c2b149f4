//! The HTTP app: server functions under `/api`, `/healthz`, and the built UI
//! (compressed, with the single-page fallback to `index.html`).

use std::path::Path;
use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderValue, Request, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use leptos::prelude::provide_context;
use tower_http::{
    compression::CompressionLayer,
    services::{ServeDir, ServeFile},
    set_header::SetResponseHeaderLayer,
};

use app::api::SharedBackend;

use crate::services::Services;

#[derive(Clone)]
struct AppState {
    services: Services,
    backend: SharedBackend,
}

/// Builds the router for one server instance.
pub fn router(services: Services, dist_dir: &Path) -> Router {
    let backend: SharedBackend = Arc::new(services.clone());
    let state = AppState { services, backend };
    let index = dist_dir.join("index.html");
    if !index.exists() {
        tracing::warn!(
            dist = %dist_dir.display(),
            "the built UI was not found; build it with `trunk build` or set EVENTFLOWS_DIST_DIR"
        );
    }
    let ui = ServeDir::new(dist_dir)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(ServeFile::new(index));

    Router::new()
        .route("/api/{*fn_name}", post(server_fn))
        .route("/healthz", get(healthz))
        .fallback_service(ui)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CompressionLayer::new())
        .with_state(state)
}

async fn server_fn(State(state): State<AppState>, request: Request<Body>) -> impl IntoResponse {
    let backend = state.backend.clone();
    leptos_axum::handle_server_fns_with_context(move || provide_context(backend.clone()), request)
        .await
}

/// 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    use diesel::RunQueryDsl;
    let ping = state
        .services
        .db
        .run(|c| diesel::sql_query("SELECT 1").execute(c))
        .await;
    match ping {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}
