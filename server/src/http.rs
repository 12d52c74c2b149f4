//! The HTTP app: server functions under `/api`, `/healthz`, and the built UI
//! (compressed, with the single-page fallback to `index.html`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State},
    http::{HeaderMap, HeaderValue, Request, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use leptos::prelude::provide_context;
use serde_json::{Value, json};
use tower_http::{
    compression::CompressionLayer,
    services::{ServeDir, ServeFile},
    set_header::{SetResponseHeader, SetResponseHeaderLayer},
};

use app::api::{ClientAddress, Sessions, SharedBackend};
use app::domain::AppError;

use crate::runner::{MAX_INPUT_BYTES, RunError};
use crate::services::Services;
use crate::services::run::RunFailure;

/// The services, once: the server functions see them as their
/// [`app::api::Backend`], the other routes call them directly.
#[derive(Clone)]
struct AppState {
    services: Arc<Services>,
}

/// Builds the router for one server instance.
pub fn router(services: Services, dist_dir: &Path) -> Router {
    let state = AppState {
        services: Arc::new(services),
    };
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
    // The UI's wasm modules keep their names from one build to the next
    // (scripts/build-wasm.sh): browsers ask again each time (304 when
    // unchanged) rather than pair a cached module with a newer one.
    let ui = SetResponseHeader::if_not_present(
        ui,
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );

    Router::new()
        .route(
            "/api/{*fn_name}",
            post(server_fn).layer(middleware::from_fn(same_site_json)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/algo/{org}/{name}/{version}",
            post(run_algorithm)
                .layer(DefaultBodyLimit::max(MAX_INPUT_BYTES + 1))
                .layer(middleware::from_fn(same_site_json)),
        )
        .fallback_service(ui)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// Refuses what a browser may send from another site on a user's behalf:
/// the server functions and the REST route take only JSON bodies (a plain
/// HTML form cannot send one), and a request whose `Origin` (or, without
/// one, `Referer`) names another host is refused. Requests without either
/// header come from programs, not from pages.
async fn same_site_json(request: Request<Body>, next: Next) -> Response {
    let headers = request.headers();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the request body as JSON, with Content-Type: application/json.".into(),
        );
    }
    if let Some(source) = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        && !same_host(source, headers)
    {
        tracing::info!(source = ?source, "cross-site request refused");
        return api_error(
            StatusCode::FORBIDDEN,
            "Requests from other sites are refused.".into(),
        );
    }
    next.run(request).await
}

/// Whether an `Origin` or `Referer` value names the host the request was
/// sent to (as a proxy in front of the server passes it on, if any).
fn same_host(source: &HeaderValue, headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Ok(source) = source.to_str() else {
        return false;
    };
    let Some((_, rest)) = source.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !authority.is_empty() && authority.eq_ignore_ascii_case(host.trim())
}

async fn server_fn(State(state): State<AppState>, request: Request<Body>) -> impl IntoResponse {
    let backend: SharedBackend = state.services.clone();
    let client = ClientAddress(
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip()),
    );
    let response = leptos_axum::handle_server_fns_with_context(
        move || {
            provide_context(backend.clone());
            provide_context(client);
        },
        request,
    )
    .await
    .into_response();
    arguments_refused_as_bad_request(response).await
}

/// Arguments that do not read as the server function's (a missing field, an
/// unknown choice) are the caller's mistake: 400 with the reason, not the
/// 500 they would otherwise get.
async fn arguments_refused_as_bad_request(response: Response) -> Response {
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
    };
    if matches!(
        serde_json::from_slice::<AppError>(&bytes),
        Ok(AppError::Transport { .. })
    ) {
        parts.status = StatusCode::BAD_REQUEST;
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Prometheus metrics: per flow and of the process. Off unless a token is
/// set; then only a scrape with `Authorization: Bearer <token>` gets them.
/// Served from what the flows last measured: a scrape asks the broker
/// nothing.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.services.metrics_token.get() else {
        return (
            StatusCode::NOT_FOUND,
            "Metrics are off. Set EVENTFLOWS_METRICS_TOKEN and scrape with Authorization: Bearer <token>.\n",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests are compared, so the time taken says nothing about the token.
    use sha2::{Digest, Sha256};
    if Sha256::digest(given.as_bytes()) != Sha256::digest(token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "A valid bearer token is needed.\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.services.runner.metrics_text(),
    )
        .into_response()
}

/// 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    use diesel::RunQueryDsl;
    let ping = state
        .services
        .db
        .interact(|c| diesel::sql_query("SELECT 1").execute(c))
        .await;
    match ping {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

/// An error in the Algorithmia API shape: `{"error": {"message", "error_type"}}`.
fn api_error(status: StatusCode, message: String) -> Response {
    let error_type = match status.as_u16() {
        401 | 403 => "AuthorizationError",
        404 => "NotFoundError",
        400 | 413 | 415 | 422 => "InputError",
        429 => "RateLimitError",
        502 => "PublishError",
        503 => "AlgorithmError",
        _ => "InternalError",
    };
    (
        status,
        Json(json!({"error": {"message": message, "error_type": error_type}})),
    )
        .into_response()
}

/// Who is calling the REST route: the user of an API key sent as
/// `Authorization: Simple <key>`, else of the session cookie.
async fn rest_caller(
    services: &Services,
    headers: &HeaderMap,
) -> Result<app::domain::CurrentUser, Response> {
    let refused = |message: &str| {
        let mut response = api_error(StatusCode::UNAUTHORIZED, message.into());
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Simple"));
        response
    };
    let user = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Simple "))
                .map(str::trim)
                .filter(|k| !k.is_empty());
            let Some(key) = key else {
                return Err(refused("Send the API key as Authorization: Simple <key>."));
            };
            match services.api_key_user(key).await {
                Ok(None) => {
                    return Err(refused(
                        "The API key is not valid: it may have been revoked or have expired.",
                    ));
                }
                other => other,
            }
        }
        None => match app::api::token_from_headers(headers) {
            Some(token) => services.session_user(&token).await,
            None => Ok(None),
        },
    };
    match user {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(refused(
            "Send an API key as Authorization: Simple <key>, or log in.",
        )),
        Err(e) => Err(api_error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.to_string(),
        )),
    }
}

/// `POST /v1/algo/{org}/{name}/{version}`: runs a version on the JSON body
/// (an API key, or else the session cookie, decides who is asking) and answers
/// `{"result": …, "metadata": {…}}` in the Algorithmia API shape.
async fn run_algorithm(
    State(state): State<AppState>,
    UrlPath((org, name, version)): UrlPath<(String, String, String)>,
    request_headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match rest_caller(&state.services, &request_headers).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    match state
        .services
        .run_algorithm(&user, &org, &name, &version, &body)
        .await
    {
        Ok((output, seconds)) => {
            let result: Value = serde_json::from_slice(&output).unwrap_or(Value::Null);
            Json(json!({"result": result, "metadata": {"content_type": "json", "duration": seconds}})).into_response()
        }
        Err(RunFailure::App(e)) => api_error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.to_string(),
        ),
        Err(RunFailure::Run(RunError::BadInput(m))) => api_error(StatusCode::BAD_REQUEST, m),
        Err(RunFailure::Run(RunError::Transient(m, _))) => {
            api_error(StatusCode::SERVICE_UNAVAILABLE, m)
        }
        Err(RunFailure::Publish(m)) => api_error(
            StatusCode::BAD_GATEWAY,
            format!("The algorithm ran, but its result could not be published: {m}"),
        ),
    }
}
