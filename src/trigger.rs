//! A coalescing trigger. Upstream drops a trigger that arrives during a pass (a
//! non-blocking send on an unbuffered channel); here any number of notifications
//! while a pass runs collapse into exactly one more pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Trigger {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    notify: Notify,
    /// Monotonic nanoseconds (since `epoch`) of the oldest notification not yet consumed; 0 = none.
    pending_since: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Trigger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a pass. Never blocks, never lost.
    pub fn notify(&self) {
        let now = self.now_nanos().max(1);
        // Only the first notification since the last pass started wakes anyone: the others
        // are covered by the same pass. `notify_one` stores a permit when nobody waits, so
        // a notification during a pass wakes the next wait at once.
        if self.inner.pending_since.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.inner.notify.notify_one();
        }
    }

    /// Waits for a notification. Returns how long the oldest coalesced notification waited.
    pub async fn notified(&self) -> std::time::Duration {
        self.inner.notify.notified().await;
        self.take_lag()
    }

    /// Consumes pending notifications (a pass is starting for another reason, e.g. the timer).
    pub fn take_lag(&self) -> std::time::Duration {
        // A stored wake-up first, then the pending mark: a notification in between finds
        // the mark still set and is covered by the pass that is starting.
        let _ = futures::FutureExt::now_or_never(self.inner.notify.notified());
        let since = self.inner.pending_since.swap(0, Ordering::AcqRel);
        if since == 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_nanos(self.now_nanos().saturating_sub(since))
    }

    fn now_nanos(&self) -> u64 {
        let epoch = *self.inner.epoch.get_or_init(Instant::now);
        epoch.elapsed().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn notifications_during_a_pass_coalesce_into_one() {
        let t = Trigger::new();
        t.notify();
        t.notified().await; // pass 1 starts
        t.notify();
        t.notify();
        t.notify();
        // pass 1 ends: exactly one more pass is due
        tokio::time::timeout(Duration::from_millis(100), t.notified()).await.expect("a pass is due");
        assert!(tokio::time::timeout(Duration::from_millis(50), t.notified()).await.is_err(), "only one");
    }

    #[tokio::test]
    async fn a_pass_for_another_reason_consumes_pending_notifications() {
        let t = Trigger::new();
        t.notify();
        t.notify();
        t.take_lag(); // the timer's full pass starts
        assert!(tokio::time::timeout(Duration::from_millis(50), t.notified()).await.is_err(), "nothing left");
        t.notify();
        tokio::time::timeout(Duration::from_millis(100), t.notified()).await.expect("a new change is seen");
    }
}
