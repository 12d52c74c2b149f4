//! The runner: one task per enabled subscribe flow, reconciled with the
//! database after every change made through this instance and every few
//! seconds (for changes made by another instance sharing the database).
//!
//! Guarantees (see `subscribe`): at-least-once; an offset is stored only after
//! the output (or the dead-letter record) is acknowledged by the broker;
//! order is kept per partition while partitions run in parallel; a version
//! change applies from the next message without restarting the consumer;
//! disabling drains in-flight work and commits before the consumer stops.

mod commit;
mod dry_run;
mod executor;
pub mod headers;
mod lane;
mod letters;
pub mod metrics;
pub mod model_hosts;
pub(crate) mod publish;
mod replay;
pub mod retry;
mod revoke;
mod rewind;
mod runs;
#[cfg(feature = "servicebus")]
pub(crate) mod servicebus_flow;
mod source;
mod sqs_flow;
mod stats;
mod subscribe;
pub mod write;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use app::domain::{AppError, Batching, BrokerKind, Direction, FlowOrdering, FlowStats, Runtime};

pub use executor::{DEFAULT_CONNECTIONS_PER_HOST, Executor, MAX_INPUT_BYTES, RunError, builtin};
pub use publish::SEND_TIMEOUT;
pub use retry::RetryPolicy;
pub use sqs_flow::VISIBILITY_SECS as SQS_VISIBILITY_SECS;
pub use stats::{Stats, clock};

use crate::db::brokers::{ConnectionRow, find_connection};
use crate::db::flows::{ActiveFlow, active_flows};
use crate::db::{Db, failures};
use crate::kafka::BrokerSettings;
use crate::secrets::SecretBox;
use crate::sqs::{SqsClient, SqsSettings};
use subscribe::FlowContext;

/// Kept failures a flow's monitor shows, newest first.
const SHOWN_FAILURES: i64 = 20;

/// How often the runner re-reads the database on its own.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);

/// What a running flow may change without restarting its consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    pub version: String,
    pub runtime: Runtime,
    pub dlq_topic: Option<String>,
    pub ordering: FlowOrdering,
    /// Runs in flight per partition.
    pub concurrency: u32,
    /// Inputs per request, for a model that takes batches.
    pub batching: Batching,
    /// Of a flow on a queue: a transient failure gives the message back to
    /// the queue after a backoff, rather than retrying it in place.
    pub give_back: bool,
}

/// A topic outputs are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub connection_id: String,
    pub topic: String,
}

struct Running {
    spec: ActiveFlow,
    config: watch::Sender<FlowConfig>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The Kafka consumer; `None` for a flow on an SQS queue.
    consumer: Option<Arc<StreamConsumer<FlowContext>>>,
    /// Closes the consumer elsewhere if the flow is dropped unstopped.
    teardown: CloseAway,
}

/// When a running flow is dropped without [`stop`] (its runtime going
/// away), closes its consumer on a thread of its own once nothing else
/// holds it: librdkafka's close blocks, and one that is serving a
/// rebalance at that moment can wait forever, which must not hold up the
/// thread that dropped the flow.
struct CloseAway(Option<Arc<StreamConsumer<FlowContext>>>);

impl CloseAway {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

/// What `make` gives for `target`, made once: kept in `known`, by
/// connection and topic.
async fn cached<T: Clone>(
    known: &Mutex<HashMap<(String, String), T>>,
    target: &Target,
    make: impl std::future::Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let key = (target.connection_id.clone(), target.topic.clone());
    if let Some(value) = known.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(value);
    }
    let value = make.await?;
    if let Ok(mut known) = known.lock() {
        known.insert(key, value.clone());
    }
    Ok(value)
}

/// The SQS queues written to, by connection and queue name (`None`: the
/// name is a Kafka topic).
type OutputQueues = HashMap<(String, String), Option<Arc<sqs_flow::OutputQueue>>>;
/// The Service Bus queues and topics written to, by connection and entity
/// (`None`: the connection is not a Service Bus one).
#[cfg(feature = "servicebus")]
type OutputEntities = HashMap<(String, String), Option<Arc<servicebus_flow::OutputEntity>>>;

impl Drop for CloseAway {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("eventflows-close".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while Arc::strong_count(&consumer) > 1 && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                drop(consumer);
            });
    }
}

pub(crate) struct Inner {
    db: Db,
    /// This server instance's stable name, for static consumer-group membership.
    instance: std::sync::OnceLock<String>,
    secrets: SecretBox,
    executor: Executor,
    flows: tokio::sync::Mutex<HashMap<String, Running>>,
    stats: Mutex<HashMap<String, Arc<Stats>>>,
    /// (algorithm id, version) → where its outputs go.
    publish: RwLock<HashMap<(String, String), Vec<Arc<Target>>>>,
    /// algorithm id → the targets of its publish flows that follow the
    /// listener's version.
    follow: RwLock<HashMap<String, Vec<Arc<Target>>>>,
    /// Changes whenever `publish` or `follow` does.
    publish_generation: std::sync::atomic::AtomicU64,
    producers: publish::Producers,
    metrics: metrics::Metrics,
    retry: RwLock<RetryPolicy>,
    /// This instance's name for holding replays when it was given none.
    anonymous: String,
    /// The replays running here, by id.
    replays: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
    replay_stop: watch::Sender<bool>,
    /// How long a message received from SQS stays invisible to other
    /// readers, in seconds ([`sqs_flow::VISIBILITY_SECS`] unless set).
    sqs_visibility: std::sync::atomic::AtomicI32,
    /// Targets seen so far: the SQS queue each is, or `None` for a Kafka
    /// topic.
    output_queues: Mutex<OutputQueues>,
    #[cfg(feature = "servicebus")]
    output_entities: Mutex<OutputEntities>,
    #[cfg(feature = "servicebus")]
    servicebus_reading: Arc<servicebus_flow::Reading>,
}

/// The in-process flow supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

impl Runner {
    pub fn new(db: Db, secrets: SecretBox) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                instance: std::sync::OnceLock::new(),
                secrets,
                executor: Executor::new()?,
                flows: tokio::sync::Mutex::new(HashMap::new()),
                stats: Mutex::new(HashMap::new()),
                publish: RwLock::new(HashMap::new()),
                follow: RwLock::new(HashMap::new()),
                publish_generation: std::sync::atomic::AtomicU64::new(0),
                producers: publish::Producers::default(),
                metrics: metrics::Metrics::default(),
                retry: RwLock::new(RetryPolicy::default()),
                anonymous: crate::db::new_id(),
                replays: tokio::sync::Mutex::new(HashMap::new()),
                replay_stop: watch::channel(false).0,
                sqs_visibility: sqs_flow::VISIBILITY_SECS.into(),
                output_queues: Mutex::default(),
                #[cfg(feature = "servicebus")]
                output_entities: Mutex::default(),
                #[cfg(feature = "servicebus")]
                servicebus_reading: Arc::default(),
            }),
        })
    }

    /// Names this server instance (stable across restarts), so that a
    /// restarted instance takes its flows' partitions back at once instead of
    /// waiting for the group to time out the old member.
    /// Set once, before the first flow starts.
    pub fn set_instance(&self, instance: String) {
        let _ = self.inner.instance.set(instance);
    }

    /// How long one message may be retried before it counts as failed;
    /// applies to flows started from now on.
    pub fn set_retry_limit(&self, limit: Duration) {
        if let Ok(mut policy) = self.inner.retry.write() {
            policy.limit = limit;
        }
    }

    /// How long a message received from SQS stays invisible to other
    /// readers (extended while the flow holds it); applies to flows started
    /// from now on.
    pub fn set_sqs_visibility(&self, timeout: Duration) {
        let secs = timeout.as_secs().clamp(1, 12 * 60 * 60) as i32;
        self.inner
            .sqs_visibility
            .store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn sqs_visibility(&self) -> i32 {
        self.inner
            .sqs_visibility
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many calls to one model server may be in flight at once, from
    /// every flow and REST run of this instance.
    pub fn set_model_connections_per_host(&self, per_host: usize) {
        self.inner.executor.set_connections_per_host(per_host);
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry.read().map(|p| *p).unwrap_or_default()
    }

    /// Reconciles now, then every [`RECONCILE_INTERVAL`], until the process ends.
    pub fn start(&self) -> JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = runner.reconcile().await {
                    tracing::warn!(%error, "could not reconcile the flows");
                }
                runner.resume_replays().await;
                tokio::time::sleep(RECONCILE_INTERVAL).await;
            }
        })
    }

    /// Brings the running flows in line with the database.
    pub async fn reconcile(&self) -> Result<(), AppError> {
        let inner = &self.inner;
        // Model hosts allowed or removed on another instance apply here too.
        match inner.db.interact(crate::db::model_hosts::entries).await {
            Ok(entries) => inner.executor.set_model_hosts(&entries),
            Err(error) => tracing::warn!(%error, "could not read the allowed model hosts"),
        }
        let mut running = inner.flows.lock().await;
        let active = inner.db.interact(active_flows).await?;

        let mut publish: HashMap<(String, String), Vec<Arc<Target>>> = HashMap::new();
        let mut follow: HashMap<String, Vec<Arc<Target>>> = HashMap::new();
        let mut wanted: HashMap<String, ActiveFlow> = HashMap::new();
        for flow in active {
            if flow.direction == Direction::Publish {
                let target = Arc::new(Target {
                    connection_id: flow.connection_id.clone(),
                    topic: flow.topic.clone(),
                });
                if flow.follows_subscribe_flow {
                    follow
                        .entry(flow.algorithm_id.clone())
                        .or_default()
                        .push(target);
                } else {
                    publish
                        .entry((flow.algorithm_id.clone(), flow.version.clone()))
                        .or_default()
                        .push(target);
                }
            } else {
                wanted.insert(flow.id.clone(), flow);
            }
        }
        // A publish flow that follows the listener takes the outputs of
        // every version the algorithm's subscribe flows run.
        for flow in wanted.values() {
            for target in follow.get(&flow.algorithm_id).into_iter().flatten() {
                let targets = publish
                    .entry((flow.algorithm_id.clone(), flow.version.clone()))
                    .or_default();
                if !targets.contains(target) {
                    targets.push(target.clone());
                }
            }
        }
        for targets in publish.values_mut() {
            targets.sort_by(|a, b| (&a.connection_id, &a.topic).cmp(&(&b.connection_id, &b.topic)));
        }
        let changed = inner.publish.write().is_ok_and(|mut map| {
            let changed = *map != publish;
            *map = publish;
            changed
        });
        let followed = inner.follow.write().is_ok_and(|mut map| {
            let changed = *map != follow;
            *map = follow;
            changed
        });
        if changed || followed {
            inner
                .publish_generation
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }

        let gone: Vec<String> = running
            .iter()
            .filter(|(id, r)| {
                wanted.get(*id).is_none_or(|w| {
                    w.connection_id != r.spec.connection_id || w.topic != r.spec.topic
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(flow) = running.remove(&id) {
                stop(flow).await;
            }
        }
        for (id, spec) in wanted {
            let config = match Runtime::parse(&spec.runtime) {
                Ok(runtime) => FlowConfig {
                    version: spec.version.clone(),
                    runtime,
                    dlq_topic: spec.dlq_topic.clone(),
                    ordering: spec.ordering,
                    concurrency: spec.concurrency,
                    batching: spec.batching,
                    give_back: spec.give_back,
                },
                Err(e) => {
                    self.stats_of(&id).set_state(format!("cannot run: {e}"));
                    continue;
                }
            };
            if let Some(flow) = running.get(&id) {
                flow.config.send_if_modified(|current| {
                    let changed = *current != config;
                    *current = config.clone();
                    changed
                });
                continue;
            }
            match self.start_flow(spec, config).await {
                Ok(flow) => {
                    running.insert(id, flow);
                }
                Err(e) => {
                    tracing::warn!(flow = %id, error = %e, "could not start a flow");
                    self.stats_of(&id).set_state(format!("cannot start: {e}"));
                }
            }
        }
        Ok(())
    }

    async fn start_flow(&self, spec: ActiveFlow, config: FlowConfig) -> Result<Running, AppError> {
        let row = self.connection(&spec.connection_id).await?;
        let stats = self.registered_stats(&spec);
        let (config_tx, config_rx) = watch::channel(config);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (task, consumer) = match row.kind() {
            BrokerKind::Kafka => {
                let settings = BrokerSettings::from_row(&row, &self.inner.secrets)?;
                let consumer = Arc::new(subscribe::consumer(
                    &settings,
                    &spec,
                    self.inner.instance.get().map(String::as_str),
                    stats.clone(),
                )?);
                stats.set_state("running");
                let task = tokio::spawn(subscribe::consume(
                    self.clone(),
                    spec.clone(),
                    consumer.clone(),
                    config_rx,
                    stop_rx,
                    stats,
                ));
                (task, Some(consumer))
            }
            BrokerKind::Sqs => {
                let settings = SqsSettings::from_row(&row, &self.inner.secrets)?;
                let client = Arc::new(SqsClient::with_timeout(&settings, sqs_flow::CALL_TIMEOUT));
                stats.set_state("running");
                let task = tokio::spawn(sqs_flow::consume(
                    self.clone(),
                    spec.clone(),
                    client,
                    config_rx,
                    stop_rx,
                    stats,
                ));
                (task, None)
            }
            #[cfg(feature = "servicebus")]
            BrokerKind::ServiceBus => {
                let settings =
                    crate::servicebus::ServiceBusSettings::from_row(&row, &self.inner.secrets)?;
                stats.set_state("starting");
                let task = tokio::spawn(servicebus_flow::consume(
                    self.clone(),
                    spec.clone(),
                    settings,
                    config_rx,
                    stop_rx,
                    stats,
                ));
                (task, None)
            }
            #[cfg(not(feature = "servicebus"))]
            BrokerKind::ServiceBus => {
                return Err(AppError::Broker {
                    message: "This server was built without Azure Service Bus (the `servicebus` feature).".into(),
                });
            }
        };
        tracing::info!(flow = %spec.id, algorithm = %spec.algorithm, topic = %spec.topic, "flow started");
        Ok(Running {
            spec,
            config: config_tx,
            stop: stop_tx,
            task,
            teardown: CloseAway(consumer.clone()),
            consumer,
        })
    }

    /// Stops every flow (draining and committing), for shutdown.
    pub async fn shutdown(&self) {
        self.stop_replays().await;
        let mut running = self.inner.flows.lock().await;
        futures::future::join_all(running.drain().map(|(_, flow)| stop(flow))).await;
    }

    async fn connection(&self, connection_id: &str) -> Result<ConnectionRow, AppError> {
        let id = connection_id.to_owned();
        self.inner
            .db
            .interact(move |c| find_connection(c, &id))
            .await?
            .ok_or_else(|| AppError::not_found("The broker connection"))
    }

    /// The SQS queue `target` is, or `None` for a Kafka topic.
    pub(crate) async fn output_queue(
        &self,
        target: &Target,
    ) -> Result<Option<Arc<sqs_flow::OutputQueue>>, AppError> {
        cached(&self.inner.output_queues, target, async {
            let row = self.connection(&target.connection_id).await?;
            Ok(match row.kind() {
                BrokerKind::Kafka | BrokerKind::ServiceBus => None,
                BrokerKind::Sqs => {
                    let settings = SqsSettings::from_row(&row, &self.inner.secrets)?;
                    let client =
                        Arc::new(SqsClient::with_timeout(&settings, sqs_flow::CALL_TIMEOUT));
                    let url = client.queue_url(&target.topic).await?.ok_or_else(|| {
                        AppError::not_found(format!("The queue '{}'", target.topic))
                    })?;
                    Some(Arc::new(sqs_flow::OutputQueue::new(
                        client,
                        url,
                        &target.topic,
                    )))
                }
            })
        })
        .await
    }

    /// The Service Bus queue or topic `target` is, or `None` for another
    /// kind of connection.
    #[cfg(feature = "servicebus")]
    pub(crate) async fn output_entity(
        &self,
        target: &Target,
    ) -> Result<Option<Arc<servicebus_flow::OutputEntity>>, AppError> {
        cached(&self.inner.output_entities, target, async {
            let row = self.connection(&target.connection_id).await?;
            Ok(match row.kind() {
                BrokerKind::ServiceBus => {
                    if target
                        .topic
                        .ends_with(crate::servicebus::DEAD_LETTER_SUFFIX)
                    {
                        Some(Arc::new(
                            servicebus_flow::OutputEntity::dead_letter_subqueue(
                                row.id.clone(),
                                &target.topic,
                                self.inner.servicebus_reading.clone(),
                            ),
                        ))
                    } else {
                        let settings = crate::servicebus::ServiceBusSettings::from_row(
                            &row,
                            &self.inner.secrets,
                        )?;
                        Some(Arc::new(servicebus_flow::OutputEntity::new(
                            settings,
                            target.topic.clone(),
                        )))
                    }
                }
                _ => None,
            })
        })
        .await
    }

    /// Up to `max` messages of the Service Bus queue `target`, read without
    /// being taken; `None` for another kind of connection.
    pub(crate) async fn peek_entity(
        &self,
        target: &Target,
        max: usize,
    ) -> Result<Option<Vec<sqs_flow::Peeked>>, AppError> {
        let row = self.connection(&target.connection_id).await?;
        if row.kind() != BrokerKind::ServiceBus {
            return Ok(None);
        }
        #[cfg(feature = "servicebus")]
        {
            let settings =
                crate::servicebus::ServiceBusSettings::from_row(&row, &self.inner.secrets)?;
            servicebus_flow::peek(&settings, &target.topic, max)
                .await
                .map(Some)
        }
        #[cfg(not(feature = "servicebus"))]
        {
            let _ = max;
            Err(AppError::Broker {
                message:
                    "This server was built without Azure Service Bus (the `servicebus` feature)."
                        .into(),
            })
        }
    }

    async fn settings(&self, connection_id: &str) -> Result<BrokerSettings, AppError> {
        let row = self.connection(connection_id).await?;
        if row.kind() != BrokerKind::Kafka {
            return Err(AppError::Broker {
                message: format!("'{}' is not a Kafka connection.", row.name),
            });
        }
        BrokerSettings::from_row(&row, &self.inner.secrets)
    }

    /// The counters of a flow (unregistered ones if it never ran here).
    pub(crate) fn stats_of(&self, flow_id: &str) -> Arc<Stats> {
        let mut map = match self.inner.stats.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(flow_id.to_owned()).or_default().clone()
    }

    /// The counters of a flow that runs here, registered for `/metrics`.
    fn registered_stats(&self, spec: &ActiveFlow) -> Arc<Stats> {
        let mut map = match self.inner.stats.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let labels = metrics::FlowLabels {
            flow: spec.id.clone(),
            algorithm: spec.algorithm.clone(),
            topic: spec.topic.clone(),
        };
        match map.get(&spec.id) {
            Some(existing) if existing.latency.is_some() => existing.clone(),
            _ => {
                let stats = Arc::new(Stats::registered(&self.inner.metrics, &labels));
                map.insert(spec.id.clone(), stats.clone());
                stats
            }
        }
    }

    /// The Prometheus text of every metric as last measured (each running
    /// flow measures its lag every few seconds).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.encode()
    }

    /// The flow's counters, with its consumer lag (as the flow last
    /// measured it) when it is running.
    pub async fn flow_stats(&self, flow_id: &str) -> FlowStats {
        let stats = self.stats_of(flow_id);
        let running = {
            let running = self.inner.flows.lock().await;
            running.get(flow_id).map(|r| {
                let config = r.config.borrow();
                (
                    r.consumer.clone(),
                    r.spec.topic.clone(),
                    r.spec.consumer_group.clone(),
                    (config.ordering, config.concurrency, config.batching),
                )
            })
        };
        let is_running = running.is_some();
        let mut snapshot = match running {
            Some((consumer, topic, group, (ordering, concurrency, batching))) => {
                // The lag is the flow's own measurement: the monitor asks
                // the broker nothing.
                let mut snapshot = stats.snapshot();
                if let Some(consumer) = consumer {
                    snapshot.partitions =
                        tokio::task::spawn_blocking(move || subscribe::assigned(&consumer, &topic))
                            .await
                            .unwrap_or_default();
                    snapshot.consumer_group = Some(group);
                }
                snapshot.ordering = Some(ordering);
                snapshot.concurrency = Some(concurrency);
                snapshot.batching = Some(batching);
                snapshot
            }
            None => FlowStats {
                lag: None,
                ..stats.snapshot()
            },
        };
        if !is_running && snapshot.state == "running" {
            snapshot.state = "stopped".into();
        }
        if snapshot.state.is_empty() {
            snapshot.state = "stopped".into();
        }
        let id = flow_id.to_owned();
        match self
            .inner
            .db
            .interact(move |c| failures::latest(c, &id, SHOWN_FAILURES))
            .await
        {
            Ok((rows, kept, dropped)) => {
                snapshot.kept_failures = rows
                    .into_iter()
                    .map(|(id, row)| letters::from_kept(&id, row))
                    .collect();
                snapshot.failures_kept = kept.max(0) as u64;
                snapshot.failures_dropped = dropped.max(0) as u64;
            }
            Err(error) => {
                tracing::warn!(flow = flow_id, %error, "could not read the kept failures")
            }
        }
        snapshot.replays = self.replay_progress(flow_id).await;
        snapshot
    }

    /// Changes whenever the publish targets of any algorithm version do.
    pub(crate) fn publish_generation(&self) -> u64 {
        self.inner
            .publish_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Where successful runs of this algorithm version are published.
    pub(crate) fn targets(&self, algorithm_id: &str, version: &str) -> Vec<Arc<Target>> {
        self.inner
            .publish
            .read()
            .ok()
            .and_then(|m| {
                m.get(&(algorithm_id.to_owned(), version.to_owned()))
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// Where a replay (or a dry run) of this algorithm version publishes:
    /// the flows of that version, and those that follow the listener's.
    pub(crate) fn replay_targets(&self, algorithm_id: &str, version: &str) -> Vec<Arc<Target>> {
        let mut targets = self.targets(algorithm_id, version);
        if let Ok(follow) = self.inner.follow.read() {
            for target in follow.get(algorithm_id).into_iter().flatten() {
                if !targets.contains(target) {
                    targets.push(target.clone());
                }
            }
        }
        targets
    }

    pub(crate) fn executor(&self) -> &Executor {
        &self.inner.executor
    }
}

/// How long closing a consumer may take; librdkafka can wait much longer
/// for a broker that is gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

async fn stop(mut flow: Running) {
    // Stopped here: the close below is waited for.
    flow.teardown.disarm();
    let id = flow.spec.id.clone();
    let _ = flow.stop.send(true);
    if let Err(error) = flow.task.await {
        tracing::error!(flow = %id, %error, "a flow task ended abnormally");
    }
    // The final commit and the close block while the broker is unreachable:
    // they run on the blocking pool, and the flow is stopped either way.
    let Some(consumer) = flow.consumer else {
        tracing::info!(flow = %id, "flow stopped");
        return;
    };
    let flow_id = id.clone();
    let close = tokio::task::spawn_blocking(move || {
        if let Err(error) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(flow = %flow_id, %error, "nothing to commit when stopping");
        }
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
        tracing::warn!(flow = %id, "the consumer did not close in time (is the broker reachable?)");
    }
    tracing::info!(flow = %id, "flow stopped");
}
