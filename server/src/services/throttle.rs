//! Login throttling. Failed logins slow down the next attempts for the same
//! user name and from the same client address (a growing wait, answered
//! with 429 and `Retry-After` without checking the password), and only a
//! few password checks run at once: each takes about 19 MiB and a core for
//! a moment, and the blocking pool they run on also serves the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Failed logins for one user name before each further attempt waits.
const FREE_USER_FAILURES: u32 = 5;
/// The same for one client address (several users may share one).
const FREE_CLIENT_FAILURES: u32 = 20;
/// The longest wait: a user whose name is being guessed at is kept out at
/// most this long after the last failure.
const MAX_WAIT: Duration = Duration::from_secs(5 * 60);
/// Attempts that may wait for a password check; past this, logins are
/// refused at once as busy.
const MAX_QUEUED: usize = 32;
/// Names and addresses remembered at most; the oldest are forgotten first.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Client(IpAddr),
}

impl Key {
    fn free_failures(&self) -> u32 {
        match self {
            Key::User(_) => FREE_USER_FAILURES,
            Key::Client(_) => FREE_CLIENT_FAILURES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when attempts for this key wait.
    fn until(&self, free: u32) -> Instant {
        self.last + wait_after(self.count, free)
    }
}

/// The wait after `count` failures: none for the first `free`, then 1 s,
/// doubling with each failure up to [`MAX_WAIT`].
fn wait_after(count: u32, free: u32) -> Duration {
    if count < free {
        return Duration::ZERO;
    }
    let doublings = (count - free).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_WAIT)
}

/// Why a login is not tried now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures: try again after this long.
    Wait(Duration),
    /// Too many logins under way.
    Busy,
}

pub struct LoginGuard {
    checks: Semaphore,
    queued: AtomicUsize,
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LoginGuard {
            checks: Semaphore::new(cores.max(1)),
            queued: AtomicUsize::new(0),
            failures: Mutex::default(),
        }
    }
}

impl LoginGuard {
    /// Whether a login for `keys` may be tried at `now`.
    pub fn check(&self, keys: &[Key], now: Instant) -> Result<(), Refusal> {
        let Ok(failures) = self.failures.lock() else {
            return Ok(());
        };
        let until = keys
            .iter()
            .filter_map(|key| failures.get(key).map(|f| f.until(key.free_failures())))
            .max();
        match until {
            Some(until) if until > now => {
                // Whole seconds, rounded up, as `Retry-After` has them.
                let wait = until - now;
                Err(Refusal::Wait(Duration::from_secs(
                    wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, keys: &[Key], now: Instant) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() + keys.len() > MAX_TRACKED {
            forget_settled(&mut failures, now);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
            });
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    pub fn succeeded(&self, keys: &[Key]) {
        if let Ok(mut failures) = self.failures.lock() {
            for key in keys {
                failures.remove(key);
            }
        }
    }

    /// A turn to check a password: waits while others run, or refuses at
    /// once when too many are waiting already.
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy);
        }
        let permit = self.checks.acquire().await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| Refusal::Busy)
    }
}

/// Forgets keys whose last failure is older than the longest wait and,
/// if that is not enough, the half with the oldest failures.
fn forget_settled(failures: &mut HashMap<Key, Failures>, now: Instant) {
    failures.retain(|_, f| now.saturating_duration_since(f.last) < MAX_WAIT);
    if failures.len() >= MAX_TRACKED {
        let mut lasts: Vec<Instant> = failures.values().map(|f| f.last).collect();
        lasts.sort_unstable();
        let cut = lasts[lasts.len() / 2];
        failures.retain(|_, f| f.last > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Key {
        Key::User(name.to_owned())
    }

    #[test]
    fn failures_past_the_free_ones_wait_longer_each_time_up_to_the_cap() {
        let guard = LoginGuard::default();
        let keys = [user("ana")];
        let t0 = Instant::now();
        for _ in 0..FREE_USER_FAILURES - 1 {
            guard.failed(&keys, t0);
            assert_eq!(guard.check(&keys, t0), Ok(()));
        }
        guard.failed(&keys, t0);
        assert_eq!(
            guard.check(&keys, t0),
            Err(Refusal::Wait(Duration::from_secs(1)))
        );
        assert_eq!(guard.check(&keys, t0 + Duration::from_secs(1)), Ok(()));
        guard.failed(&keys, t0 + Duration::from_secs(1));
        assert_eq!(
            guard.check(&keys, t0 + Duration::from_millis(1500)),
            Err(Refusal::Wait(Duration::from_secs(2))),
            "rounded up to whole seconds"
        );
        for _ in 0..30 {
            guard.failed(&keys, t0);
        }
        assert_eq!(guard.check(&keys, t0), Err(Refusal::Wait(MAX_WAIT)));
        // Another name is not held back; a success clears the name.
        assert_eq!(guard.check(&[user("ben")], t0), Ok(()));
        guard.succeeded(&keys);
        assert_eq!(guard.check(&keys, t0), Ok(()));
    }

    #[test]
    fn a_client_address_is_held_back_after_many_names_failed_from_it() {
        let guard = LoginGuard::default();
        let client = Key::Client("192.0.2.7".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..FREE_CLIENT_FAILURES {
            let keys = [user(&format!("guess{i}")), client.clone()];
            assert_eq!(guard.check(&keys, t0), Ok(()));
            guard.failed(&keys, t0);
        }
        let next = [user("someone-new"), client];
        assert_eq!(
            guard.check(&next, t0),
            Err(Refusal::Wait(Duration::from_secs(1)))
        );
    }

    #[tokio::test]
    async fn only_a_bounded_number_of_logins_wait_for_a_check() {
        let guard = LoginGuard::default();
        let cores = guard.checks.available_permits();
        let mut turns = Vec::new();
        for _ in 0..cores {
            turns.push(guard.turn().await.unwrap());
        }
        // Every check is taken: the next ones queue, up to the bound.
        let waiting: Vec<_> = (0..MAX_QUEUED).map(|_| Box::pin(guard.turn())).collect();
        let mut waiting = waiting;
        for turn in waiting.iter_mut() {
            assert!(futures::FutureExt::now_or_never(turn.as_mut()).is_none());
        }
        assert_eq!(guard.turn().await.unwrap_err(), Refusal::Busy);
        drop(turns);
        assert!(
            waiting.remove(0).await.is_ok(),
            "a queued login gets its turn"
        );
    }
}
