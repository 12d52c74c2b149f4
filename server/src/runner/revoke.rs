//! Partition ownership: when a rebalance takes partitions away, their lanes
//! stop before the rebalance completes, so that two instances never run the
//! same partition at once.
//!
//! Each lane has a [`LaneControl`], registered per partition. On revoke the
//! consumer's rebalance callback tells those lanes to stop (they finish the
//! run under way and drop what they hold), waits a bounded time until they
//! have settled their writes and stored their offsets, then commits, so
//! that the partition's next owner starts right after the last message
//! written here.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long a revoke waits for the lanes of the partitions taken away: long
/// enough for a run under way to end (it has [`super::executor::RUN_TIMEOUT`]).
pub const REVOKE_WAIT: Duration = Duration::from_secs(35);

/// A lane's stop signal and whether it has finished.
pub struct LaneControl {
    stop: watch::Sender<bool>,
    finished: Mutex<bool>,
    changed: Condvar,
}

impl LaneControl {
    /// A control and the receiver its lane watches.
    pub fn new() -> (Arc<Self>, watch::Receiver<bool>) {
        let (stop, receiver) = watch::channel(false);
        let control = Arc::new(LaneControl {
            stop,
            finished: Mutex::new(false),
            changed: Condvar::new(),
        });
        (control, receiver)
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Called by the lane when it has stored its last offset.
    pub fn finish(&self) {
        if let Ok(mut finished) = self.finished.lock() {
            *finished = true;
            self.changed.notify_all();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished.lock().map(|f| *f).unwrap_or(false)
    }

    /// Waits until the lane finished, at most until `deadline`.
    fn wait(&self, deadline: Instant) -> bool {
        let Ok(mut finished) = self.finished.lock() else {
            return false;
        };
        while !*finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.changed.wait_timeout(finished, left) {
                Ok((guard, _)) => finished = guard,
                Err(_) => return false,
            }
        }
        true
    }
}

/// Runs blocking work from a librdkafka callback, which runs on the
/// consumer loop's async thread: on a multi-thread runtime the other
/// workers go on meanwhile (running the lanes), and `work` may wait for
/// them (`true`); on a single-threaded one it must not.
pub fn blocking_in_callback<T>(work: impl FnOnce(bool) -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| work(true))
        }
        Ok(_) => work(false),
        Err(_) => work(true),
    }
}

/// Marks the lane finished however it ends.
pub struct FinishOnDrop(pub Arc<LaneControl>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// The lanes of one flow by partition, shared by the consumer loop (which
/// starts them) and the consumer's rebalance callback (which stops them).
#[derive(Default)]
pub struct Lanes {
    by_partition: Mutex<HashMap<i32, Arc<LaneControl>>>,
}

impl Lanes {
    pub fn register(&self, partition: i32, control: Arc<LaneControl>) {
        if let Ok(mut map) = self.by_partition.lock() {
            map.insert(partition, control);
        }
    }

    /// Stops the lanes of `partitions` and, with `can_wait`, waits (up to
    /// [`REVOKE_WAIT`]) until they finished; false if one did not.
    pub fn revoke(&self, partitions: &[i32], can_wait: bool) -> bool {
        let controls: Vec<Arc<LaneControl>> = match self.by_partition.lock() {
            Ok(mut map) => partitions.iter().filter_map(|p| map.remove(p)).collect(),
            Err(_) => return false,
        };
        for control in &controls {
            control.stop();
        }
        if !can_wait {
            return controls.iter().all(|c| c.is_finished());
        }
        let deadline = Instant::now() + REVOKE_WAIT;
        controls.iter().all(|c| c.wait(deadline))
    }

    /// Stops every lane (the flow is stopping).
    pub fn stop_all(&self) {
        if let Ok(map) = self.by_partition.lock() {
            for control in map.values() {
                control.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_stops_the_lanes_and_waits_until_they_finish() {
        let lanes = Lanes::default();
        let (control, mut stop) = LaneControl::new();
        lanes.register(3, control.clone());
        let (other, other_stop) = LaneControl::new();
        lanes.register(4, other.clone());
        let lane = std::thread::spawn(move || {
            // The lane notices the stop, settles, then finishes.
            while !*stop.borrow_and_update() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _finished = FinishOnDrop(control);
        });
        assert!(lanes.revoke(&[3], true));
        lane.join().unwrap();
        assert!(!*other_stop.borrow(), "partition 4 is not touched");
        assert!(!other.stopped());
    }

    #[test]
    fn a_lane_that_never_finishes_does_not_hold_the_revoke_forever() {
        let lanes = Lanes::default();
        let (control, _stop) = LaneControl::new();
        lanes.register(0, control.clone());
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(!control.wait(deadline));
        assert!(Instant::now() >= deadline);
    }
}
