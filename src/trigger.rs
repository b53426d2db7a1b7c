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
        let _ = self.inner.pending_since.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        // `notify_one` stores a permit when nobody waits: a notification during a pass
        // wakes the next wait at once.
        self.inner.notify.notify_one();
    }

    /// Waits for a notification. Returns how long the oldest coalesced notification waited.
    pub async fn notified(&self) -> std::time::Duration {
        self.inner.notify.notified().await;
        self.take_lag()
    }

    /// Consumes pending notifications (a pass is starting for another reason, e.g. the timer).
    pub fn take_lag(&self) -> std::time::Duration {
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
}
