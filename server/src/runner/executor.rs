//! Running one algorithm version on one input.
//!
//! Every input is JSON (at most [`MAX_INPUT_BYTES`]). A failure is either
//! bad input (permanent: never retried) or transient (retried with backoff).
//! Built-in algorithms run inline, guarded against panics; HTTP runtimes POST
//! the input to a model server, bounded in time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use app::domain::Runtime;
use serde_json::{Value, json};

use super::model_hosts::{CheckedResolver, ModelHosts};

/// The largest message a flow accepts as input.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// How long one run may take before it counts as failed (transient).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The input can never succeed: not JSON, wrong shape, refused by the model.
    BadInput(String),
    /// Worth another try: the model server is down, slow or failing; with
    /// how long it asked us to wait (`Retry-After`), if it did.
    Transient(String, Option<Duration>),
}

impl RunError {
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::BadInput(_) => "bad-input",
            RunError::Transient(..) => "transient",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            RunError::BadInput(m) | RunError::Transient(m, _) => m,
        }
    }
}

/// The most a model server's reply may have.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Calls to one model server in flight at once, from all flows and REST
/// runs of this instance, unless set otherwise.
pub const DEFAULT_CONNECTIONS_PER_HOST: usize = 256;

/// Runs algorithms; holds the HTTP client shared by every `http:` runtime.
#[derive(Clone)]
pub struct Executor {
    http: reqwest::Client,
    hosts: Arc<Hosts>,
    /// The model hosts an admin allows; nothing else is called.
    allowed: Arc<ModelHosts>,
}

/// The bound on calls in flight per model server (`host:port`). A call
/// waits for its turn before it is sent (that wait is not part of its
/// time limit): a slow model server slows its flows down instead of
/// piling up requests, and its connections are kept alive and reused, at
/// most as many as calls in flight.
struct Hosts {
    per_host: AtomicUsize,
    turns: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Hosts {
    fn turn_for(&self, url: &str) -> Arc<Semaphore> {
        let host = reqwest::Url::parse(url)
            .ok()
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host.load(Ordering::Relaxed))))
            .clone()
    }
}

impl Executor {
    pub fn new() -> anyhow::Result<Self> {
        Self::with_connections_per_host(DEFAULT_CONNECTIONS_PER_HOST)
    }

    /// An executor that has at most `per_host` calls in flight (and keeps
    /// at most as many connections) per model server.
    pub fn with_connections_per_host(per_host: usize) -> anyhow::Result<Self> {
        let per_host = per_host.max(1);
        let allowed = Arc::new(ModelHosts::default());
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(RUN_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(per_host)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                // A model endpoint is where the version says, not where
                // its server sends us (a redirect also turns POST into GET).
                .redirect(reqwest::redirect::Policy::none())
                // Names are resolved, and their addresses checked, here:
                // a proxy would resolve them out of sight.
                .no_proxy()
                .dns_resolver(Arc::new(CheckedResolver {
                    hosts: allowed.clone(),
                }))
                .build()?,
            hosts: Arc::new(Hosts {
                per_host: AtomicUsize::new(per_host),
                turns: Mutex::new(HashMap::new()),
            }),
            allowed,
        })
    }

    /// Replaces the allowed model hosts (entries as stored).
    pub fn set_model_hosts(&self, entries: &[String]) {
        self.allowed.set(entries);
    }

    /// Sets the bound on calls in flight per model server, for calls that
    /// start from now on.
    pub fn set_connections_per_host(&self, per_host: usize) {
        self.hosts
            .per_host
            .store(per_host.max(1), Ordering::Relaxed);
        self.hosts
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub async fn run(&self, runtime: &Runtime, input: &[u8]) -> Result<Vec<u8>, RunError> {
        if matches!(runtime, Runtime::Builtin(id) if id == "echo") {
            check_size(input)?;
            // The output is the input: check it is JSON (UTF-8 text, RFC 8259),
            // without building it.
            let text = std::str::from_utf8(input).map_err(|e| {
                RunError::BadInput(format!("the message is not JSON: not UTF-8 text ({e})"))
            })?;
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
            return Ok(input.to_vec());
        }
        let value = Self::input(input)?;
        let output = match runtime {
            Runtime::Builtin(id) => self.run_builtin(id, value).await?,
            Runtime::Http(url) => self.run_http(url, &value).await?,
            Runtime::HttpBatch(url) => {
                return self
                    .run_batch(url, std::slice::from_ref(&value))
                    .await
                    .map(|mut outputs| outputs.remove(0));
            }
        };
        serde_json::to_vec(&output).map_err(|e| RunError::BadInput(e.to_string()))
    }

    /// A message's value as a model's input: JSON of at most
    /// [`MAX_INPUT_BYTES`].
    pub fn input(input: &[u8]) -> Result<Value, RunError> {
        check_size(input)?;
        serde_json::from_slice(input).map_err(not_json)
    }

    /// Runs inputs on a model that takes batches, in one request
    /// `{"instances": [...]}`; the reply must be `{"predictions": [...]}`
    /// with one prediction per instance, in order. A reply of another
    /// shape refuses the batch as bad input, so that the flow can split it
    /// to find the input at fault.
    pub async fn run_batch(&self, url: &str, inputs: &[Value]) -> Result<Vec<Vec<u8>>, RunError> {
        let reply = self.run_http(url, &json!({ "instances": inputs })).await?;
        let predictions = match reply {
            Value::Object(mut map) => match map.remove("predictions") {
                Some(Value::Array(predictions)) => predictions,
                _ => {
                    return Err(RunError::BadInput(
                        "the model server's reply has no \"predictions\" list".into(),
                    ));
                }
            },
            _ => {
                return Err(RunError::BadInput(
                    "the model server's reply is not an object with \"predictions\"".into(),
                ));
            }
        };
        if predictions.len() != inputs.len() {
            return Err(RunError::BadInput(format!(
                "the model server answered {} predictions for {} instances",
                predictions.len(),
                inputs.len()
            )));
        }
        predictions
            .iter()
            .map(|p| serde_json::to_vec(p).map_err(|e| RunError::BadInput(e.to_string())))
            .collect()
    }

    /// Built-ins are linear in their (bounded) input, so they run inline,
    /// without a thread hop per message; a panic is caught and reported.
    async fn run_builtin(&self, id: &str, input: Value) -> Result<Value, RunError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builtin(id, input)))
            .unwrap_or_else(|_| {
                Err(RunError::BadInput(
                    "the algorithm crashed on this input".into(),
                ))
            })
    }

    async fn run_http(&self, url: &str, input: &Value) -> Result<Value, RunError> {
        // Not the message's fault: the flow keeps its place until an admin
        // allows the host (or the message's retry time runs out).
        if let Some(refusal) = self.allowed.refusal(url) {
            return Err(RunError::Transient(refusal, None));
        }
        let turn = self.hosts.turn_for(url);
        // Held until the reply is read; the semaphore is never closed.
        let _turn = turn.acquire().await.ok();
        let response = self.http.post(url).json(input).send().await.map_err(|e| {
            RunError::Transient(
                if e.is_timeout() {
                    format!("the model server at {url} did not answer in time")
                } else if let Some(refused) = resolver_refusal(&e) {
                    format!("the model server at {url} could not be called: {refused}")
                } else {
                    format!("the model server at {url} could not be reached")
                },
                None,
            )
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        // A reply this large is not read: it could not be written anyway,
        // and the same input would get it again.
        let too_large = || {
            RunError::BadInput(format!(
                "the model server's reply is larger than {} MiB",
                MAX_REPLY_BYTES / (1024 * 1024)
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| {
            RunError::Transient(
                format!("the model server at {url} broke off its reply"),
                None,
            )
        })? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // What the model server said goes to the server's log only: the
        // error a member sees (on the monitor, in a dead letter, from the
        // REST route) names the status, not the reply.
        let logged = |what: &str| {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(500)]);
            tracing::info!(url, %status, reply = %excerpt, "{what}");
        };
        match classify_status(status.as_u16()) {
            Reply::Output => serde_json::from_slice(&body).map_err(|_| {
                logged("the model server's reply is not JSON");
                RunError::Transient("the model server's reply is not JSON".into(), None)
            }),
            Reply::BadInput => {
                logged("the model server refused the input");
                Err(RunError::BadInput(format!(
                    "the model server refused the input ({status})"
                )))
            }
            Reply::Transient if status.is_redirection() => {
                logged("the model server redirected the call");
                Err(RunError::Transient(
                    format!(
                        "the model server answered {status}: redirects are not followed; \
                         the version's URL must be the model's own endpoint"
                    ),
                    retry_after,
                ))
            }
            Reply::Transient => {
                logged("the model server failed");
                Err(RunError::Transient(
                    format!("the model server failed ({status})"),
                    retry_after,
                ))
            }
        }
    }
}

/// The reason the resolver refused a model host, if that is why a call failed.
fn resolver_refusal(error: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains("loopback or link-local") {
            return Some(text);
        }
        source = cause.source();
    }
    None
}

fn check_size(input: &[u8]) -> Result<(), RunError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(RunError::BadInput(format!(
            "the message has {} bytes; at most {MAX_INPUT_BYTES} are accepted",
            input.len()
        )));
    }
    Ok(())
}

fn not_json(e: serde_json::Error) -> RunError {
    RunError::BadInput(format!("the message is not JSON: {e}"))
}

/// What a model server's status code means for the message.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Output,
    BadInput,
    Transient,
}

/// 2xx is an output; 408 (timeout) and 429 (too many requests) are load,
/// like 5xx; any other 4xx refuses this input.
fn classify_status(status: u16) -> Reply {
    match status {
        200..=299 => Reply::Output,
        408 | 429 => Reply::Transient,
        400..=499 => Reply::BadInput,
        _ => Reply::Transient,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from model servers
/// and falls back to the flow's own backoff).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn text_of(input: &Value) -> Result<&str, RunError> {
    match input {
        Value::String(s) => Ok(s),
        Value::Object(map) => map.get("text").and_then(Value::as_str).ok_or_else(|| {
            RunError::BadInput("expected a JSON object with a string field \"text\"".into())
        }),
        _ => Err(RunError::BadInput(
            "expected a JSON object with a string field \"text\"".into(),
        )),
    }
}

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "love",
    "happy",
    "nice",
    "wonderful",
    "best",
    "fantastic",
    "like",
    "amazing",
    "pleased",
    "glad",
    "awesome",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "terrible",
    "awful",
    "hate",
    "sad",
    "poor",
    "worst",
    "horrible",
    "angry",
    "broken",
    "disappointed",
    "slow",
    "wrong",
    "ugly",
];

/// The algorithms shipped with the product.
pub fn builtin(id: &str, input: Value) -> Result<Value, RunError> {
    match id {
        "echo" => Ok(input),
        "sentiment" => {
            let Value::Object(_) = input else {
                return Err(RunError::BadInput(
                    "expected a JSON object with a string field \"text\"".into(),
                ));
            };
            let text = text_of(&input)?.to_lowercase();
            let words: Vec<&str> = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            let pos = words.iter().filter(|w| POSITIVE.contains(w)).count() as f64;
            let neg = words.iter().filter(|w| NEGATIVE.contains(w)).count() as f64;
            let score = if pos + neg == 0.0 {
                0.0
            } else {
                (pos - neg) / (pos + neg)
            };
            let label = if score > 0.0 {
                "positive"
            } else if score < 0.0 {
                "negative"
            } else {
                "neutral"
            };
            Ok(json!({"label": label, "score": score}))
        }
        "word-count" => {
            let words = text_of(&input)?.split_whitespace().count();
            Ok(json!({"words": words}))
        }
        "json-validate" => match input {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Ok(json!({"valid": true, "keys": keys}))
            }
            _ => Err(RunError::BadInput("expected a JSON object".into())),
        },
        other => Err(RunError::BadInput(format!(
            "there is no built-in algorithm '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An executor allowed to call model servers on this machine.
    fn local_executor() -> Executor {
        let exec = Executor::new().unwrap();
        exec.set_model_hosts(&["127.0.0.1".into()]);
        exec
    }

    #[tokio::test]
    async fn a_model_host_no_entry_allows_is_never_called() {
        use axum::{Router, routing::post};
        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = called.clone();
        let app = Router::new().route(
            "/latest/meta-data",
            post(move || {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                async { "{\"secret\": 1}" }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let exec = Executor::new().unwrap();
        let runtime = Runtime::Http(format!("http://{address}/latest/meta-data"));
        // Nothing is allowed until an admin allows it; another port of the
        // same address is not this one.
        for entries in [vec![], vec![format!("127.0.0.1:{}", address.port() + 1)]] {
            exec.set_model_hosts(&entries);
            let refused = exec.run(&runtime, b"{}").await;
            assert!(
                matches!(&refused, Err(RunError::Transient(m, None)) if m.contains(&format!("{address} is not allowed"))),
                "{refused:?}"
            );
        }
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
        exec.set_model_hosts(&[address.to_string()]);
        assert_eq!(exec.run(&runtime, b"{}").await.unwrap(), b"{\"secret\":1}");
        assert!(called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn sentiment_labels_text_and_refuses_other_shapes() {
        let out = builtin("sentiment", json!({"text": "I love this, it is great"})).unwrap();
        assert_eq!(out["label"], "positive");
        assert_eq!(out["score"], 1.0);
        assert_eq!(
            builtin("sentiment", json!({"text": "awful and slow"})).unwrap()["label"],
            "negative"
        );
        assert_eq!(
            builtin("sentiment", json!({"text": "a table"})).unwrap()["label"],
            "neutral"
        );
        assert!(matches!(
            builtin("sentiment", json!({"txt": "x"})),
            Err(RunError::BadInput(_))
        ));
        assert!(matches!(
            builtin("sentiment", json!([1, 2])),
            Err(RunError::BadInput(_))
        ));
    }

    #[test]
    fn echo_word_count_and_validation() {
        assert_eq!(
            builtin("echo", json!({"a": [1]})).unwrap(),
            json!({"a": [1]})
        );
        assert_eq!(
            builtin("word-count", json!({"text": "one two  three"})).unwrap(),
            json!({"words": 3})
        );
        assert_eq!(
            builtin("word-count", json!("a b")).unwrap(),
            json!({"words": 2})
        );
        assert_eq!(
            builtin("json-validate", json!({"b": 1, "a": 2})).unwrap(),
            json!({"valid": true, "keys": ["a", "b"]})
        );
        assert!(builtin("json-validate", json!(3)).is_err());
    }

    #[tokio::test]
    async fn inputs_must_be_json_and_not_oversized() {
        let exec = local_executor();
        let echo = Runtime::Builtin("echo".into());
        assert_eq!(
            exec.run(&echo, br#"{"x":1}"#).await.unwrap(),
            br#"{"x":1}"#.to_vec()
        );
        // Echo returns the input as it came, spacing included.
        assert_eq!(
            exec.run(&echo, b" {\"x\": [1, 2]} ").await.unwrap(),
            b" {\"x\": [1, 2]} ".to_vec()
        );
        assert!(matches!(
            exec.run(&echo, b"not json").await,
            Err(RunError::BadInput(_))
        ));
        assert!(matches!(
            exec.run(&echo, b"{\"x\": 1} trailing").await,
            Err(RunError::BadInput(_))
        ));
        assert!(matches!(
            exec.run(&echo, b"{\"x\": \"\xff\"}").await,
            Err(RunError::BadInput(m)) if m.contains("UTF-8")
        ));
        let big = format!("\"{}\"", "x".repeat(MAX_INPUT_BYTES));
        assert!(
            matches!(exec.run(&echo, big.as_bytes()).await, Err(RunError::BadInput(m)) if m.contains("bytes"))
        );
    }

    #[tokio::test]
    async fn an_http_model_that_is_down_is_a_transient_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let exec = local_executor();
        let runtime = Runtime::Http(format!("http://127.0.0.1:{port}/predict"));
        assert!(matches!(
            exec.run(&runtime, b"{}").await,
            Err(RunError::Transient(_, None))
        ));
    }

    #[tokio::test]
    async fn a_reply_past_the_bound_is_refused_without_reading_it_all() {
        use axum::{Router, body::Body, routing::post};
        // One reply says its length up front; the other streams without one.
        let app = Router::new()
            .route("/sized", post(|| async { "x".repeat(MAX_REPLY_BYTES + 1) }))
            .route(
                "/streamed",
                post(|| async {
                    let chunk = axum::body::Bytes::from(vec![b' '; 1024 * 1024]);
                    let chunks = (0..8).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route("/fine", post(|| async { "[1, 2, 3]" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let exec = local_executor();
        for path in ["sized", "streamed"] {
            let runtime = Runtime::Http(format!("{base}/{path}"));
            assert!(
                matches!(exec.run(&runtime, b"{}").await, Err(RunError::BadInput(m)) if m.contains("larger than 4 MiB")),
                "{path}"
            );
        }
        let fine = Runtime::Http(format!("{base}/fine"));
        assert_eq!(exec.run(&fine, b"{}").await.unwrap(), b"[1,2,3]");
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_replies_stay_out_of_errors() {
        use axum::{Router, http::StatusCode, response::Redirect, routing::post};
        let followed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = followed.clone();
        let app = Router::new()
            .route("/moved", post(|| async { Redirect::temporary("/inside") }))
            .route(
                "/inside",
                axum::routing::any(move || {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    async { "{\"internal\": \"secret-metadata\"}" }
                }),
            )
            .route(
                "/refuses",
                post(|| async { (StatusCode::BAD_REQUEST, "secret-token-in-the-reply") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let exec = local_executor();
        let moved = exec
            .run(&Runtime::Http(format!("{base}/moved")), b"{}")
            .await;
        assert!(
            matches!(&moved, Err(RunError::Transient(m, _)) if m.contains("307") && m.contains("redirects are not followed")),
            "{moved:?}"
        );
        assert!(!followed.load(std::sync::atomic::Ordering::SeqCst));
        let refused = exec
            .run(&Runtime::Http(format!("{base}/refuses")), b"{}")
            .await;
        match refused {
            Err(RunError::BadInput(m)) => {
                assert_eq!(m, "the model server refused the input (400 Bad Request)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_codes_sort_into_outputs_bad_input_and_load() {
        assert_eq!(classify_status(200), Reply::Output);
        assert_eq!(classify_status(400), Reply::BadInput);
        assert_eq!(classify_status(422), Reply::BadInput);
        assert_eq!(classify_status(408), Reply::Transient);
        assert_eq!(classify_status(429), Reply::Transient);
        assert_eq!(classify_status(500), Reply::Transient);
        assert_eq!(classify_status(503), Reply::Transient);
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
