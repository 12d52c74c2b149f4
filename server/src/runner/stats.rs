//! Live counters of one flow, read by the debugging view (and later metrics).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use app::domain::{FlowError, FlowStats, RunRecord};

const KEEP_ERRORS: usize = 20;
const KEEP_RUNS: usize = 50;

#[derive(Default)]
pub struct Stats {
    pub consumed: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
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
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_state(&self, state: impl Into<String>) {
        if let Ok(mut s) = self.state.lock() {
            *s = state.into();
        }
    }

    pub fn record_error(&self, error: FlowError) {
        push(&self.errors, error, KEEP_ERRORS);
    }

    pub fn record_run(&self, run: RunRecord) {
        push(&self.runs, run, KEEP_RUNS);
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
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FlowStats {
            state: self.state.lock().map(|s| s.clone()).unwrap_or_default(),
            consumed: get(&self.consumed),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            dead_lettered: get(&self.dead_lettered),
            retries: get(&self.retries),
            assignments: get(&self.assignments),
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
