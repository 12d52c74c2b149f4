//! Prometheus metrics. The flow counters here are the very counters the
//! debugging view reads (see [`super::Stats`]), so both always agree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The labels of every per-flow metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
    pub algorithm: String,
    pub topic: String,
}

/// The labels of the replay counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    pub flow: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub consumed: Family<FlowLabels, Counter>,
    pub succeeded: Family<FlowLabels, Counter>,
    pub failed: Family<FlowLabels, Counter>,
    pub dead_lettered: Family<FlowLabels, Counter>,
    pub retries: Family<FlowLabels, Counter>,
    pub run_latency: Family<FlowLabels, Histogram, fn() -> Histogram>,
    pub lag: Family<FlowLabels, Gauge>,
    pub replayed: Family<ReplayLabels, Counter>,
    resident_memory: Gauge,
    threads: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("eventflows");
        let consumed = Family::<FlowLabels, Counter>::default();
        let succeeded = Family::<FlowLabels, Counter>::default();
        let failed = Family::<FlowLabels, Counter>::default();
        let dead_lettered = Family::<FlowLabels, Counter>::default();
        let retries = Family::<FlowLabels, Counter>::default();
        let run_latency = Family::<FlowLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let lag = Family::<FlowLabels, Gauge>::default();
        registry.register(
            "flow_messages_consumed",
            "Messages a flow consumed",
            consumed.clone(),
        );
        registry.register(
            "flow_runs_succeeded",
            "Runs that succeeded",
            succeeded.clone(),
        );
        registry.register(
            "flow_runs_failed",
            "Runs that failed (bad input or retries exhausted)",
            failed.clone(),
        );
        registry.register(
            "flow_messages_dead_lettered",
            "Messages written to the Dead Letter Queue",
            dead_lettered.clone(),
        );
        registry.register(
            "flow_retries",
            "Retries of transient failures",
            retries.clone(),
        );
        registry.register(
            "flow_run_latency_seconds",
            "Time from consuming a message to its acknowledged result",
            run_latency.clone(),
        );
        registry.register(
            "flow_consumer_lag",
            "Messages on the topic not yet processed",
            lag.clone(),
        );
        let replayed = Family::<ReplayLabels, Counter>::default();
        registry.register(
            "flow_dead_letters_replayed",
            "Dead letters replayed by this instance, by how the replay went",
            replayed.clone(),
        );
        let resident_memory = Gauge::default();
        let threads = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the server",
            resident_memory.clone(),
        );
        registry.register("process_threads", "Threads of the server", threads.clone());
        Self {
            registry,
            consumed,
            succeeded,
            failed,
            dead_lettered,
            retries,
            run_latency,
            lag,
            replayed,
            resident_memory,
            threads,
        }
    }
}

/// Resident memory (bytes) and thread count of this process, from /proc.
pub fn process_usage() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")? * 1024, field("Threads:")?))
}

impl Metrics {
    /// The Prometheus (OpenMetrics) text of every metric.
    pub fn encode(&self) -> String {
        if let Some((rss, threads)) = process_usage() {
            self.resident_memory.set(rss as i64);
            self.threads.set(threads as i64);
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("could not encode the metrics");
        }
        text
    }
}
