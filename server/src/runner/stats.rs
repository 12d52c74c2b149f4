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
/// How a flow's state starts while its broker cannot be reached.
pub const BROKER_AWAY: &str = "waiting for the broker";
/// The state's start while writes fail and are sent again.
const CANNOT_WRITE: &str = "cannot write";
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
    /// Messages not yet processed, as last measured (see [`Stats::set_lag`]).
    measured_lag: Mutex<Option<u64>>,
    /// When the flow's model began failing (milliseconds since the epoch),
    /// while its runs are being retried.
    unavailable_since: Mutex<Option<i64>>,
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

    /// Marks the flow running again (after a broker outage); cheap when it
    /// is. A model outage keeps showing until a run gets through.
    pub fn set_running(&self) {
        if self
            .unavailable_since
            .lock()
            .is_ok_and(|since| since.is_some())
        {
            return;
        }
        if let Ok(mut s) = self.state.lock()
            && *s != "running"
        {
            *s = "running".into();
        }
    }

    /// The broker cannot be reached: the state says why until it can.
    pub fn broker_away(&self, reason: impl std::fmt::Display) {
        self.set_state(format!("{BROKER_AWAY}: {reason}"));
    }

    /// The broker answered: an outage the flow showed is over, even when no
    /// message has arrived since.
    pub fn broker_reachable(&self) {
        if let Ok(mut s) = self.state.lock()
            && s.starts_with(BROKER_AWAY)
        {
            *s = "running".into();
        }
    }

    /// A receive got through: a state that said `gone` is over.
    pub fn queue_back(&self, gone: &str) {
        if let Ok(mut s) = self.state.lock()
            && *s == gone
        {
            *s = "running".into();
        }
    }

    /// Writes keep failing and are sent again: the state says why until
    /// one gets through.
    pub fn cannot_write(&self, reason: &str) {
        self.set_state(format!("{CANNOT_WRITE}: {reason}"));
    }

    /// A write that had failed got through: a write failure the flow showed
    /// is over.
    pub fn written_again(&self) {
        if let Ok(mut s) = self.state.lock()
            && s.starts_with(CANNOT_WRITE)
        {
            *s = "running".into();
        }
    }

    /// The model fails transiently and runs are retried: the state says
    /// since when, and why.
    pub fn model_unavailable(&self, reason: &str) {
        let since = match self.unavailable_since.lock() {
            Ok(mut since) => *since.get_or_insert_with(crate::db::now_ms),
            Err(_) => return,
        };
        self.set_state(format!(
            "model unavailable since {} ({reason}), retrying",
            clock(since)
        ));
    }

    /// A run got through after transient failures.
    pub fn model_available(&self) {
        let was = self
            .unavailable_since
            .lock()
            .ok()
            .and_then(|mut s| s.take());
        if was.is_some() {
            self.set_running();
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

    /// The flow's lag as it measured it (every few seconds, off the async
    /// threads); the monitor and `/metrics` show this one.
    pub fn set_lag(&self, lag: u64) {
        self.lag.set(lag.min(i64::MAX as u64) as i64);
        if let Ok(mut measured) = self.measured_lag.lock() {
            *measured = Some(lag);
        }
    }

    pub fn snapshot(&self) -> FlowStats {
        let lag = self.measured_lag.lock().ok().and_then(|l| *l);
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
            consumer_group: None,
            partitions: Vec::new(),
            ..FlowStats::default()
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a time in milliseconds since the epoch.
pub fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_like_a_calendar() {
        assert_eq!(clock(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(clock(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(clock(1_795_462_863_000), "2026-11-23 19:41:03 UTC");
    }

    #[test]
    fn a_broker_outage_shows_until_the_broker_answers() {
        let stats = Stats::default();
        stats.set_running();
        stats.broker_away("1/1 brokers are down");
        assert_eq!(
            stats.snapshot().state,
            "waiting for the broker: 1/1 brokers are down"
        );
        stats.broker_reachable();
        assert_eq!(stats.snapshot().state, "running");
        // Other states are not the broker's to clear.
        stats.set_state("cannot write: topic deleted");
        stats.broker_reachable();
        assert_eq!(stats.snapshot().state, "cannot write: topic deleted");
    }

    #[test]
    fn failing_writes_show_until_one_gets_through() {
        let stats = Stats::default();
        stats.set_running();
        stats.cannot_write("writing to 'out' failed: timed out");
        assert_eq!(
            stats.snapshot().state,
            "cannot write: writing to 'out' failed: timed out"
        );
        stats.written_again();
        assert_eq!(stats.snapshot().state, "running");
        // Other states are not the writer's to clear.
        stats.broker_away("1/1 brokers are down");
        stats.written_again();
        assert!(stats.snapshot().state.starts_with(BROKER_AWAY));
    }

    #[test]
    fn a_model_outage_shows_since_when_until_a_run_gets_through() {
        let stats = Stats::default();
        stats.set_running();
        stats.model_unavailable("the model server failed (503)");
        let first = stats.snapshot().state;
        assert!(first.starts_with("model unavailable since "), "{first}");
        assert!(
            first.ends_with("(the model server failed (503)), retrying"),
            "{first}"
        );
        stats.model_unavailable("the model server at x could not be reached");
        let second = stats.snapshot().state;
        assert_eq!(first[..40], second[..40], "the outage keeps its start");
        stats.set_running();
        assert_eq!(
            stats.snapshot().state,
            second,
            "messages still arriving do not hide the outage"
        );
        stats.model_available();
        assert_eq!(stats.snapshot().state, "running");
    }
}
