//! Real components for the integration tests and the benchmark: a tansu
//! broker on a port of its own, and model servers that take their time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::{Json, Router, routing::post};
use diesel::{Connection, RunQueryDsl, SqliteConnection};
use serde_json::Value;

/// Where a [`Tansu`] broker keeps its topics, messages and offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fast, gone when the broker stops.
    Memory,
    /// In a SQLite file of the broker's own directory, as `scripts/run.sh`
    /// runs it: the broker can be stopped and started again with its data.
    Sqlite,
}

/// A `tansu broker` process on a free port, stopped when dropped, and also
/// when this process ends without dropping it (a small watcher sees to it).
pub struct Tansu {
    port: u16,
    dir: PathBuf,
    storage: Storage,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Tansu {
    /// Starts a broker with `storage` in a new directory of its own.
    pub fn start(storage: Storage) -> anyhow::Result<Self> {
        Self::start_with(storage, &[])
    }

    /// [`Tansu::start`] with more command-line arguments (`--authentication`).
    pub fn start_with(storage: Storage, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("eventflows-tansu-{}", crate::db::new_id()));
        std::fs::create_dir_all(&dir)?;
        let mut broker = Tansu {
            port: free_port()?,
            dir,
            storage,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        broker.up()?;
        Ok(broker)
    }

    /// Starts the broker again on the same port, with the same data (for
    /// [`Storage::Sqlite`]).
    pub fn up(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let storage = match self.storage {
            Storage::Memory => "memory://tansu/",
            // tansu resolves sqlite:// paths from its working directory.
            Storage::Sqlite => "sqlite://tansu.db",
        };
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", storage])
            .args(&self.extra)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("tansu must be installed (scripts/setup.sh)")?;
        stop_with_this_process(child.id())?;
        self.child = Some(child);
        wait_for_port(self.port, "the tansu broker")?;
        if self.storage == Storage::Sqlite {
            index_sqlite_storage(&self.dir.join("tansu.db"))?;
        }
        Ok(())
    }

    /// Stops the broker and starts it again, on the same port with the same
    /// data, with `extra` arguments instead of the ones it had.
    pub fn restart_with(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        self.down();
        self.extra = extra.iter().map(|a| a.to_string()).collect();
        self.up()
    }

    /// Stops the broker (as a crash would: SIGKILL).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `host:port`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The broker's working directory (its SQLite file is there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills process `watched` when this process ends without stopping it
/// (a small `sh` watcher sees to it).
fn stop_with_this_process(watched: u32) -> anyhow::Result<()> {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {watched} 2>/dev/null; do sleep 1; done; \
             kill {watched} 2>/dev/null",
            me = std::process::id()
        ))
        .stdin(Stdio::null())
        .spawn()
        .context("sh is needed to watch a test server")?;
    Ok(())
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A `moto_server` process on a free port: an SQS-compatible service that
/// the setup script installs (`EVENTFLOWS_MOTO_SERVER` names another).
pub struct Moto {
    port: u16,
    child: Child,
}

impl Moto {
    /// A server that takes any credentials.
    pub fn start() -> anyhow::Result<Self> {
        Self::spawn(false)
    }

    /// A server that checks credentials against its own IAM users, of
    /// which it has none: every key is refused.
    pub fn start_checking_credentials() -> anyhow::Result<Self> {
        Self::spawn(true)
    }

    fn spawn(check_credentials: bool) -> anyhow::Result<Self> {
        let program = std::env::var("EVENTFLOWS_MOTO_SERVER").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.local/share/eventflows/moto/bin/moto_server")
        });
        let port = free_port()?;
        let mut command = Command::new(&program);
        if check_credentials {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("{program} must be installed (scripts/setup.sh)"))?;
        stop_with_this_process(child.id())?;
        wait_for_port(port, "the moto server")?;
        Ok(Moto { port, child })
    }

    /// The URL SQS clients are pointed at.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// tansu 0.6.0's SQLite storage has no index on its record header table,
/// and a fetch looks up the headers of every record there: a new consumer
/// group reading a backlog of records with headers times out. The same
/// index as `index_tansu_sqlite` in `scripts/env.sh` makes the look-ups
/// direct; tansu keeps an index it did not create.
fn index_sqlite_storage(file: &Path) -> anyhow::Result<()> {
    let mut conn = SqliteConnection::establish(&file.to_string_lossy())
        .with_context(|| format!("could not open {}", file.display()))?;
    diesel::sql_query("PRAGMA busy_timeout = 5000").execute(&mut conn)?;
    diesel::sql_query(
        "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id)",
    )
    .execute(&mut conn)
    .with_context(|| format!("could not index {}", file.display()))?;
    Ok(())
}

/// Serves `app` on a free port of 127.0.0.1; the URL of its `/predict`.
pub async fn serve_model(app: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/predict", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// A model server that answers each request with its input after
/// `millis`, any number of requests at once.
pub async fn model_taking(millis: u64) -> anyhow::Result<String> {
    serve_model(Router::new().route(
        "/predict",
        post(move |Json(input): Json<Value>| async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Json(input)
        }),
    ))
    .await
}

/// Sends one message with `body` to the Service Bus queue or topic at
/// `path` of the namespace in `connection_string`, as another program
/// would.
#[cfg(feature = "servicebus")]
pub async fn servicebus_send(
    connection_string: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    use azservicebus::{ServiceBusMessage, ServiceBusSenderOptions};
    let settings =
        crate::servicebus::ServiceBusSettings::parse_connection_string(connection_string)?;
    let mut client = crate::runner::servicebus_flow::connect(&settings).await?;
    let mut sender = client
        .create_sender(path.to_owned(), ServiceBusSenderOptions::default())
        .await?;
    sender
        .send_message(ServiceBusMessage::new(body.to_vec()))
        .await?;
    sender.dispose().await?;
    client.dispose().await?;
    Ok(())
}

/// Puts the producer through which `runner` writes to the broker
/// `connection_id` into a fatal state, as librdkafka does when an
/// idempotent producer can no longer keep its records in order; every
/// later write through it fails. False if there is no producer yet.
pub fn make_producer_fatal(runner: &crate::runner::Runner, connection_id: &str) -> bool {
    use rdkafka::producer::Producer;
    let Some(producer) = runner.current_producer(connection_id) else {
        return false;
    };
    let reason = c"made fatal by a test";
    // SAFETY: the client pointer is valid while `producer` is held, and
    // `reason` is a NUL-terminated string librdkafka copies.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
}
