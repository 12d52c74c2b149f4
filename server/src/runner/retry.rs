//! The run step: one message through the flow's algorithm, with the retry
//! policy for transient failures.
//!
//! A model server that restarts, sheds load (429, 503) or times out is not
//! bad input: such failures are retried with capped exponential backoff
//! (honouring `Retry-After`) for as long as they last, up to the flow's
//! per-message retry limit. Meanwhile the partition keeps its place and the
//! flow says why it waits. Bad input fails at once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::RunError;

/// The first pause after a transient failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between two attempts, unless the model asks for more.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How long one message may be retried before it counts as failed, unless
/// the server's settings say otherwise.
pub const DEFAULT_RETRY_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// When to try again, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub cap: Duration,
    /// Retrying one message longer than this makes it fail.
    pub limit: Duration,
    /// A transient failure is not retried here: the run ends with it at
    /// once, and the message goes back to its queue (see
    /// [`super::writer::Failure::given_back`]).
    pub give_back: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: FIRST_BACKOFF,
            cap: MAX_BACKOFF,
            limit: DEFAULT_RETRY_LIMIT,
            give_back: false,
        }
    }
}

impl RetryPolicy {
    /// The pause after the `failures`-th failure in a row (1, 2, …): doubling
    /// from `first` up to `cap`, or what the model asked for (bounded).
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(MAX_RETRY_AFTER);
        }
        let doublings = failures.saturating_sub(1).min(20);
        self.first.saturating_mul(1 << doublings).min(self.cap)
    }

    /// Whether a message retried since `since` would pass the limit by
    /// waiting `delay` more.
    pub fn gives_up(&self, retrying_for: Duration, delay: Duration) -> bool {
        retrying_for + delay > self.limit
    }
}

/// What the run step reports while it retries, so the flow can show it.
pub trait RetryObserver {
    /// A transient failure; another attempt follows after `delay`.
    fn retrying(&self, error: &RunError, delay: Duration);
    /// An attempt succeeded or failed for good after transient failures.
    fn recovered(&self);
}

/// How a run ended (its output: one message's, or a batch's).
#[derive(Debug, PartialEq, Eq)]
pub struct Ran<T = Vec<u8>> {
    pub result: Result<T, RunError>,
    pub attempts: u32,
}

/// Runs `attempt` until it succeeds, fails for good, or the policy gives up.
/// `None` if `stop` turned true first: the message then stays unprocessed.
pub async fn run_with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut stop: watch::Receiver<bool>,
    observer: &impl RetryObserver,
    mut attempt: F,
) -> Option<Ran<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RunError>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // A run under way is let finish (within the run's own time limit):
        // abandoning it would leave the model working on a message that a
        // new owner of the partition may already be running.
        let result = attempt().await;
        let retry_after = match &result {
            Err(RunError::Transient(_, retry_after)) => *retry_after,
            _ => {
                // A flow that gives messages back sees a model come back
                // on a message's first attempt.
                if attempts > 1 || policy.give_back {
                    observer.recovered();
                }
                return Some(Ran { result, attempts });
            }
        };
        let delay = policy.delay(attempts, retry_after);
        if policy.give_back {
            if let Err(error) = &result {
                observer.retrying(error, delay);
            }
            return Some(Ran { result, attempts });
        }
        if policy.gives_up(started.elapsed(), delay) {
            observer.recovered();
            let result = result.map_err(|error| {
                RunError::Transient(
                    format!(
                        "{} (gave up after {attempts} attempts in {}s)",
                        error.message(),
                        started.elapsed().as_secs()
                    ),
                    None,
                )
            });
            return Some(Ran { result, attempts });
        }
        if let Err(error) = &result {
            observer.retrying(error, delay);
        }
        if *stop.borrow() {
            return None;
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Seen(RefCell<Vec<String>>);

    impl RetryObserver for Seen {
        fn retrying(&self, error: &RunError, delay: Duration) {
            self.0
                .borrow_mut()
                .push(format!("retry {} after {delay:?}", error.message()));
        }
        fn recovered(&self) {
            self.0.borrow_mut().push("recovered".into());
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        let delays: Vec<Duration> = (1..=10).map(|n| policy.delay(n, None)).collect();
        assert_eq!(delays[0], Duration::from_millis(200));
        assert_eq!(delays[1], Duration::from_millis(400));
        assert_eq!(delays[4], Duration::from_millis(3200));
        assert_eq!(delays[9], MAX_BACKOFF);
        assert_eq!(policy.delay(u32::MAX, None), MAX_BACKOFF);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }

    fn transient() -> RunError {
        RunError::Transient("the model server failed (503)".into(), None)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_as_long_as_they_last() {
        let (_stop, stop_rx) = watch::channel(false);
        let seen = Seen::default();
        let mut left = 40;
        let ran = run_with_retries(&RetryPolicy::default(), stop_rx, &seen, || {
            left -= 1;
            let result = if left > 0 {
                Err(transient())
            } else {
                Ok(b"{}".to_vec())
            };
            async move { result }
        })
        .await
        .unwrap();
        assert_eq!(ran.result, Ok(b"{}".to_vec()));
        assert_eq!(ran.attempts, 40);
        let seen = seen.0.into_inner();
        assert_eq!(seen.len(), 40);
        assert_eq!(seen.last().unwrap(), "recovered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_that_gives_back_ends_at_the_first_transient_failure() {
        let (_stop, stop_rx) = watch::channel(false);
        let policy = RetryPolicy {
            give_back: true,
            ..RetryPolicy::default()
        };
        let seen = Seen::default();
        let started = Instant::now();
        let ran: Ran = run_with_retries(&policy, stop_rx.clone(), &seen, || async {
            Err(RunError::Transient(
                "loading".into(),
                Some(Duration::from_secs(3)),
            ))
        })
        .await
        .unwrap();
        assert_eq!(ran.attempts, 1);
        assert!(matches!(ran.result, Err(RunError::Transient(..))));
        assert_eq!(started.elapsed(), Duration::ZERO, "no pause here");
        // The flow shows the outage, and the next message that gets
        // through ends it.
        let ok: Ran = run_with_retries(&policy, stop_rx, &seen, || async { Ok(b"{}".to_vec()) })
            .await
            .unwrap();
        assert_eq!(ok.attempts, 1);
        assert_eq!(
            seen.0.into_inner(),
            vec!["retry loading after 3s".to_owned(), "recovered".to_owned()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bad_input_fails_at_once() {
        let (_stop, stop_rx) = watch::channel(false);
        let seen = Seen::default();
        let ran: Ran = run_with_retries(&RetryPolicy::default(), stop_rx, &seen, || async {
            Err(RunError::BadInput("not JSON".into()))
        })
        .await
        .unwrap();
        assert_eq!(ran.attempts, 1);
        assert!(matches!(ran.result, Err(RunError::BadInput(_))));
        assert!(seen.0.into_inner().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_retried_past_the_limit_fails_and_says_so() {
        let (_stop, stop_rx) = watch::channel(false);
        let policy = RetryPolicy {
            limit: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let started = Instant::now();
        let ran: Ran = run_with_retries(&policy, stop_rx, &Seen::default(), || async {
            Err(transient())
        })
        .await
        .unwrap();
        let Err(RunError::Transient(message, _)) = ran.result else {
            panic!("{:?}", ran.result);
        };
        assert!(message.contains("gave up after"), "{message}");
        assert!(started.elapsed() <= Duration::from_secs(10));
        assert!(
            started.elapsed() >= Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_during_retries_leaves_the_message_unprocessed() {
        let (stop, stop_rx) = watch::channel(false);
        let mut calls = 0;
        let ran: Option<Ran> =
            run_with_retries(&RetryPolicy::default(), stop_rx, &Seen::default(), || {
                calls += 1;
                if calls == 3 {
                    let _ = stop.send(true);
                }
                async { Err(transient()) }
            })
            .await;
        assert_eq!(ran, None);
        assert_eq!(calls, 3);
    }
}
