//! Runs of one partition in flight at once, for flows whose ordering is
//! `key` or `none`: up to a bound, each started as soon as its ordering
//! allows, and handed on in offset order whatever order they finish in, so
//! that the write step and the stored offsets see the partition as before.
//!
//! With `key` ordering a run waits for the run of the previous message with
//! the same key (messages without a key count as one key); with `none` it
//! waits for nothing. Each run is a task of its own, so runs go on while
//! the lane writes; dropping [`Runs`] stops those still under way.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use futures::StreamExt;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use futures::stream::FuturesOrdered;

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

/// The run step of one partition, many runs at once.
pub(super) struct Runs<T> {
    ordering: FlowOrdering,
    limit: usize,
    in_flight: FuturesOrdered<Task<T>>,
    /// Offsets of the runs in flight, oldest first.
    offsets: VecDeque<i64>,
    /// Per key, the offset of its newest run started and a signal that
    /// resolves when that run is over.
    keys: HashMap<Option<Vec<u8>>, (i64, Over)>,
}

impl<T: Send + 'static> Runs<T> {
    pub fn new(ordering: FlowOrdering, limit: usize) -> Self {
        Runs {
            ordering,
            limit: limit.max(1),
            in_flight: FuturesOrdered::new(),
            offsets: VecDeque::new(),
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

    /// Whether as many runs as allowed are in flight.
    pub fn is_full(&self) -> bool {
        self.in_flight.len() >= self.limit
    }

    /// Starts `run` for the message at `offset` with `key`, once its
    /// ordering allows.
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        offset: i64,
        run: impl Future<Output = T> + Send + 'static,
    ) {
        self.push_batch([key], offset, run)
    }

    /// Starts `run` for messages from `offset` on with these keys (a batch
    /// of them in one run), once its ordering allows: with `key`, after
    /// the earlier runs of every one of the keys.
    pub fn push_batch<'k>(
        &mut self,
        keys: impl IntoIterator<Item = Option<&'k [u8]>>,
        offset: i64,
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
        self.offsets.push_back(offset);
        self.in_flight.push_back(Task::spawn(async move {
            match after {
                None => run.await,
                Some((before, over)) => {
                    // Each resolves (cancelled) when its run is over or dropped.
                    for earlier in before {
                        let _ = earlier.await;
                    }
                    let result = run.await;
                    drop(over);
                    result
                }
            }
        }));
    }

    /// The oldest run's result, once it is over (`None` when none is in
    /// flight). Later runs go on meanwhile.
    pub async fn next(&mut self) -> Option<T> {
        let result = self.in_flight.next().await;
        if result.is_some() {
            self.offsets.pop_front();
            self.forget_finished_keys();
        }
        result
    }

    /// Drops the keys whose newest run is over, once they pile up.
    fn forget_finished_keys(&mut self) {
        if self.keys.len() <= 2 * self.limit {
            return;
        }
        match self.offsets.front() {
            None => self.keys.clear(),
            Some(&oldest) => self.keys.retain(|_, (offset, _)| *offset >= oldest),
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
            runs.push(Some(key), offset as i64, log.run(name.into(), millis));
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
                log.run(format!("m{offset}"), millis),
            );
        }
        assert!(runs.is_full());
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
        runs.push(None, 0, log.run("n0".into(), 20));
        runs.push(None, 1, log.run("n1".into(), 5));
        assert_eq!(drain(&mut runs).await, ["n0", "n1"]);
        assert!(log.position("start n1") > log.position("end n0"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_the_earlier_runs_of_each_of_its_keys() {
        let log = Log::default();
        let mut runs = Runs::new(FlowOrdering::Key, 8);
        runs.push(Some(b"a"), 0, log.run("a0".into(), 40));
        runs.push(Some(b"b"), 1, log.run("b1".into(), 100));
        // One run for offsets 2..5 with keys a, c, a: after a0, not after b1.
        let keys: [Option<&[u8]>; 3] = [Some(b"a"), Some(b"c"), Some(b"a")];
        runs.push_batch(keys, 2, log.run("batch".into(), 5));
        runs.push(Some(b"c"), 5, log.run("c5".into(), 1));
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
            runs.push(Some(key.as_bytes()), offset, log.run(key.clone(), 1));
        }
        drain(&mut runs).await;
        assert!(runs.keys.len() <= 5, "{} keys kept", runs.keys.len());
    }
}
