//! Live counters of one flow, read by the debugging view (and later metrics).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use app::domain::{FlowError, FlowStats, RunRecord};

use super::metrics::{FlowLabels, Metrics};

const KEEP_ERRORS: usize = 20;
/// Recent runs kept for the debugging view.
pub(super) const KEEP_RUNS: usize = 50;

/// The counters of one flow: Prometheus counters (shared with `/metrics`)
/// plus what only the debugging view shows.
#[derive(Default)]
pub struct Stats {
    pub consumed: Counter,
    pub succeeded: Counter,
    pub failed: Counter,
    pub dead_lettered: Counter,
    pub retries: Counter,
    pub latency: Option<Histogram>,
    pub lag: Gauge,
    pub assignments: AtomicU64,
    state: Mutex<String>,
    errors: Mutex<VecDeque<FlowError>>,
    runs: Mutex<VecDeque<RunRecord>>,
    /// Next offset to process, per partition.
    progress: Mutex<HashMap<i32, i64>>,
}

fn push<T>(queue: &Mutex<VecDeque<T>>, item: T, keep: usize) {
    if let Ok(mut q) = queue.lock() {
        q.push_front(item);
        q.truncate(keep);
    }
}

impl Stats {
    /// Counters registered in `metrics` under `labels`.
    pub fn registered(metrics: &Metrics, labels: &FlowLabels) -> Self {
        Self {
            consumed: metrics.consumed.get_or_create(labels).clone(),
            succeeded: metrics.succeeded.get_or_create(labels).clone(),
            failed: metrics.failed.get_or_create(labels).clone(),
            dead_lettered: metrics.dead_lettered.get_or_create(labels).clone(),
            retries: metrics.retries.get_or_create(labels).clone(),
            latency: Some(metrics.run_latency.get_or_create(labels).clone()),
            lag: metrics.lag.get_or_create(labels).clone(),
            ..Default::default()
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_latency(&self, seconds: f64) {
        if let Some(h) = &self.latency {
            h.observe(seconds);
        }
    }

    pub fn set_state(&self, state: impl Into<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = state.into();
        }
    }

    pub fn record_error(&self, error: FlowError) {
        push(&self.errors, error, KEEP_ERRORS);
    }

    /// Marks the flow running again (after a broker outage); cheap when it is.
    pub fn set_running(&self) {
        if let Ok(mut s) = self.state.lock()
            && *s != "running"
        {
            *s = "running".into();
        }
    }

    /// Adds runs, oldest first, keeping the newest [`KEEP_RUNS`].
    pub fn record_runs(&self, runs: impl IntoIterator<Item = RunRecord>) {
        if let Ok(mut q) = self.runs.lock() {
            for run in runs {
                q.push_front(run);
            }
            q.truncate(KEEP_RUNS);
        }
    }

    pub fn processed(&self, partition: i32, offset: i64) {
        if let Ok(mut p) = self.progress.lock() {
            p.insert(partition, offset + 1);
        }
    }

    pub fn progress(&self) -> HashMap<i32, i64> {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn snapshot(&self, lag: Option<u64>) -> FlowStats {
        if let Some(lag) = lag {
            self.lag.set(lag as i64);
        }
        FlowStats {
            state: self.state.lock().map(|s| s.clone()).unwrap_or_default(),
            consumed: self.consumed.get(),
            succeeded: self.succeeded.get(),
            failed: self.failed.get(),
            dead_lettered: self.dead_lettered.get(),
            retries: self.retries.get(),
            assignments: self.assignments.load(Ordering::Relaxed),
            lag,
            last_errors: self
                .errors
                .lock()
                .map(|q| q.iter().cloned().collect())
                .unwrap_or_default(),
            recent_runs: self
                .runs
                .lock()
                .map(|q| q.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }
}
