//! Runs of one partition in flight at once, for flows whose ordering is
//! `key` or `none`: up to a bound, each started as soon as its ordering
//! allows, and handed on in offset order whatever order they finish in, so
//! that the write step and the stored offsets see the partition as before.
//!
//! With `key` ordering a run waits for the run of the previous message with
//! the same key (messages without a key count as one key); with `none` it
//! waits for nothing. Each run is a task of its own, so runs go on while
//! the lane writes; dropping [`Runs`] stops those still under way.
//!
//! The bound is on runs under way (calling the model). With `key` and
//! `none` ordering, runs that are over but wait for an older one to be
//! handed on, or that wait for an earlier run of their key, do not take a
//! place: up to [`WINDOW`] times the bound (and [`WINDOW_BYTES`] of inputs)
//! may be started, so that one slow run does not hold the others' places.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use futures::stream::FuturesOrdered;
use tokio::sync::Semaphore;

use app::domain::FlowOrdering;

/// Resolves once a run is over (or dropped); any number may wait on it.
type Over = Shared<oneshot::Receiver<()>>;

/// A run as a task of its own: aborted when dropped; a panic in it goes on
/// in whoever awaits it.
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    fn spawn(run: impl Future<Output = T> + Send + 'static) -> Self {
        Task(tokio::spawn(run))
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|done| match done {
                Ok(value) => value,
                Err(error) => match error.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_) => unreachable!("a run is only aborted when its task is dropped"),
                },
            })
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs started but not handed on, as a multiple of the runs that may be
/// under way at once (for `key` and `none` ordering).
const WINDOW: usize = 4;
/// Bytes of inputs of the runs started but not handed on, at most (a run
/// is always started when none is).
const WINDOW_BYTES: usize = 64 * 1024 * 1024;

/// The run step of one partition, many runs at once.
pub(super) struct Runs<T> {
    ordering: FlowOrdering,
    limit: usize,
    /// A place for each run under way.
    places: Arc<Semaphore>,
    in_flight: FuturesOrdered<Task<T>>,
    /// Offsets and input bytes of the runs started, oldest first.
    offsets: VecDeque<(i64, usize)>,
    bytes: usize,
    /// Per key, the offset of its newest run started and a signal that
    /// resolves when that run is over.
    keys: HashMap<Option<Vec<u8>>, (i64, Over)>,
}

impl<T: Send + 'static> Runs<T> {
    pub fn new(ordering: FlowOrdering, limit: usize) -> Self {
        let limit = limit.max(1);
        Runs {
            ordering,
            limit,
            places: Arc::new(Semaphore::new(limit)),
            in_flight: FuturesOrdered::new(),
            offsets: VecDeque::new(),
            bytes: 0,
            keys: HashMap::new(),
        }
    }

    pub fn ordering(&self) -> FlowOrdering {
        self.ordering
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Whether no more runs may be started until the oldest is handed on.
    /// With `partition` ordering, one run at a time.
    pub fn is_full(&self) -> bool {
        let window = match self.ordering {
            FlowOrdering::Partition => self.limit,
            FlowOrdering::Key | FlowOrdering::None => self.limit * WINDOW,
        };
        self.in_flight.len() >= window || self.bytes >= WINDOW_BYTES
    }

    /// Starts `run` for the message at `offset` with `key` (and `bytes` of
    /// input), once its ordering allows and a place is free.
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        offset: i64,
        bytes: usize,
        run: impl Future<Output = T> + Send + 'static,
    ) {
        self.push_batch([key], offset, bytes, run)
    }

    /// Starts `run` for messages from `offset` on with these keys (a batch
    /// of them in one run, with `bytes` of inputs), once its ordering
    /// allows (with `key`, after the earlier runs of every one of the keys)
    /// and a place is free.
    pub fn push_batch<'k>(
        &mut self,
        keys: impl IntoIterator<Item = Option<&'k [u8]>>,
        offset: i64,
        bytes: usize,
        run: impl Future<Output = T> + Send + 'static,
    ) {
        let after = match self.ordering {
            FlowOrdering::Key => {
                let (over, signal) = oneshot::channel::<()>();
                let signal = signal.shared();
                let mut before = Vec::new();
                for key in keys {
                    let previous = self
                        .keys
                        .insert(key.map(<[u8]>::to_vec), (offset, signal.clone()));
                    // The same key twice in a batch waits once.
                    if let Some((_, previous)) = previous
                        && !previous.ptr_eq(&signal)
                        && previous.peek().is_none()
                    {
                        before.push(previous);
                    }
                }
                Some((before, over))
            }
            FlowOrdering::Partition | FlowOrdering::None => None,
        };
        self.offsets.push_back((offset, bytes));
        self.bytes += bytes;
        let places = self.places.clone();
        self.in_flight.push_back(Task::spawn(async move {
            let (before, over) = after.unzip();
            // Each resolves (cancelled) when its run is over or dropped.
            for earlier in before.into_iter().flatten() {
                let _ = earlier.await;
            }
            // The semaphore is never closed.
            let place = places.acquire_owned().await;
            let result = run.await;
            drop(place);
            drop(over);
            result
        }));
    }

    /// The oldest run's result, once it is over (`None` when none is in
    /// flight). Later runs go on meanwhile.
    pub async fn next(&mut self) -> Option<T> {
        let result = self.in_flight.next().await;
        if result.is_some() {
            if let Some((_, bytes)) = self.offsets.pop_front() {
                self.bytes -= bytes;
            }
            self.forget_finished_keys();
        }
        result
    }

    /// Drops the keys whose newest run is over, once they pile up.
    fn forget_finished_keys(&mut self) {
        if self.keys.len() <= 2 * WINDOW * self.limit {
            return;
        }
        match self.offsets.front() {
            None => self.keys.clear(),
            Some(&(oldest, _)) => self.keys.retain(|_, (offset, _)| *offset >= oldest),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Start and end of each run, in the order they happened.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Log {
        fn run(&self, name: String, millis: u64) -> impl Future<Output = String> + Send + 'static {
            let log = self.clone();
            async move {
                log.0.lock().unwrap().push(format!("start {name}"));
                tokio::time::sleep(Duration::from_millis(millis)).await;
                log.0.lock().unwrap().push(format!("end {name}"));
                name
            }
        }

        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }

        fn position(&self, line: &str) -> usize {
            self.lines().iter().position(|l| l == line).unwrap()
        }
    }

    async fn drain(runs: &mut Runs<String>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(name) = runs.next().await {
            out.push(name);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn same_keys_run_in_order_and_other_keys_at_the_same_time() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Key, 8);
        // a0 is slow; a1 must wait for it, b0 and b1 need not.
        let plan: [(&[u8], &str, u64); 4] = [
            (b"a", "a0", 50),
            (b"b", "b0", 10),
            (b"a", "a1", 5),
            (b"b", "b1", 5),
        ];
        for (offset, (key, name, millis)) in plan.into_iter().enumerate() {
            runs.push(Some(key), offset as i64, 1, log.run(name.into(), millis));
        }
        assert_eq!(
            drain(&mut runs).await,
            ["a0", "b0", "a1", "b1"],
            "handed on in offset order"
        );
        assert!(
            log.position("start a1") > log.position("end a0"),
            "{:?}",
            log.lines()
        );
        assert!(
            log.position("start b1") > log.position("end b0"),
            "{:?}",
            log.lines()
        );
        assert!(
            log.position("end b1") < log.position("end a0"),
            "other keys overlap: {:?}",
            log.lines()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_ordering_every_run_starts_at_once() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::None, 4);
        for (offset, millis) in [40u64, 30, 20, 10].into_iter().enumerate() {
            runs.push(
                Some(b"same"),
                offset as i64,
                1,
                log.run(format!("m{offset}"), millis),
            );
        }
        assert!(!runs.is_full(), "runs over may wait to be handed on");
        assert_eq!(drain(&mut runs).await, ["m0", "m1", "m2", "m3"]);
        let lines = log.lines();
        assert!(
            lines[..4].iter().all(|l| l.starts_with("start")),
            "{lines:?}"
        );
        assert_eq!(lines[4], "end m3", "the shortest finishes first");
        assert!(runs.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn messages_without_a_key_count_as_one_key() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Key, 4);
        runs.push(None, 0, 1, log.run("n0".into(), 20));
        runs.push(None, 1, 1, log.run("n1".into(), 5));
        assert_eq!(drain(&mut runs).await, ["n0", "n1"]);
        assert!(log.position("start n1") > log.position("end n0"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_the_earlier_runs_of_each_of_its_keys() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Key, 8);
        runs.push(Some(b"a"), 0, 1, log.run("a0".into(), 40));
        runs.push(Some(b"b"), 1, 1, log.run("b1".into(), 100));
        // One run for offsets 2..5 with keys a, c, a: after a0, not after b1.
        let keys: [Option<&[u8]>; 3] = [Some(b"a"), Some(b"c"), Some(b"a")];
        runs.push_batch(keys, 2, 3, log.run("batch".into(), 5));
        runs.push(Some(b"c"), 5, 1, log.run("c5".into(), 1));
        assert_eq!(drain(&mut runs).await, ["a0", "b1", "batch", "c5"]);
        assert!(log.position("start batch") > log.position("end a0"));
        assert!(
            log.position("start batch") < log.position("end b1"),
            "b is not among its keys: {:?}",
            log.lines()
        );
        assert!(log.position("start c5") > log.position("end batch"));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_of_finished_runs_are_forgotten() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Key, 2);
        for offset in 0..100i64 {
            if runs.is_full() {
                runs.next().await.unwrap();
            }
            let key = offset.to_string();
            runs.push(Some(key.as_bytes()), offset, 1, log.run(key.clone(), 1));
        }
        drain(&mut runs).await;
        assert!(
            runs.keys.len() <= 2 * WINDOW * 2 + 1,
            "{} keys kept",
            runs.keys.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_run_does_not_hold_the_places_of_the_runs_after_it() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::None, 2);
        // m0 takes 100 ms; the rest take 10 ms each, two at a time.
        runs.push(None, 0, 1, log.run("m0".into(), 100));
        let mut offset = 1;
        while !runs.is_full() {
            runs.push(None, offset, 1, log.run(format!("m{offset}"), 10));
            offset += 1;
        }
        assert_eq!(offset, 8, "four times the bound may be started");
        assert_eq!(
            drain(&mut runs).await,
            (0..8).map(|o| format!("m{o}")).collect::<Vec<_>>()
        );
        let lines = log.lines();
        // Runs after m0 went on, one place at a time, while m0 ran.
        assert!(log.position("end m7") < log.position("end m0"), "{lines:?}");
        // Never more than two under way.
        let mut under_way = 0;
        for line in &lines {
            under_way += if line.starts_with("start") { 1 } else { -1 };
            assert!(under_way <= 2, "{lines:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_partition_ordering_one_run_is_started_at_a_time() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Partition, 1);
        runs.push(None, 0, 1, log.run("m0".into(), 10));
        assert!(runs.is_full());
        assert_eq!(drain(&mut runs).await, ["m0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn large_inputs_fill_the_window_before_the_count_does() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Key, 64);
        runs.push(Some(b"a"), 0, WINDOW_BYTES / 2, log.run("m0".into(), 10));
        assert!(!runs.is_full());
        runs.push(Some(b"b"), 1, WINDOW_BYTES / 2, log.run("m1".into(), 10));
        assert!(runs.is_full());
        runs.next().await.unwrap();
        assert!(!runs.is_full(), "handing a run on frees its bytes");
    }
}
