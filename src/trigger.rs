//! A coalescing trigger. Upstream drops a trigger that arrives during a pass (a
//! non-blocking send on an unbuffered channel); here any number of notifications
//! while a pass runs collapse into exactly one more pass.
//!
//! A notification also says what changed (`scm_core::Changes`: a pod, a namespace, a
//! node, or everything), gathered until the pass takes them, so that the pass declares
//! again only what the changes touch. A plain [`Trigger::notify`] means everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    changes: Mutex<scm_core::Changes>,
}

impl Trigger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a pass over everything. Never blocks, never lost.
    pub fn notify(&self) {
        self.notify_change(|c| c.set_everything());
    }

    /// Asks for a pass over what `mark` records (e.g. `|c| c.pod(ns, name)`).
    pub fn notify_change(&self, mark: impl FnOnce(&mut scm_core::Changes)) {
        // Recorded before the wake-up: the pass that wakes takes it.
        mark(&mut self.inner.changes.lock().unwrap_or_else(|e| e.into_inner()));
        self.wake();
    }

    /// What changed since the last call (taken by a starting pass, before its snapshot:
    /// a change recorded after that is seen by the next pass).
    pub fn take_changes(&self) -> scm_core::Changes {
        std::mem::take(&mut *self.inner.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Gives back changes a pass took but did not use (no wake-up: whoever deferred
    /// them asks for the pass that uses them).
    pub fn restore_changes(&self, changes: scm_core::Changes) {
        self.inner.changes.lock().unwrap_or_else(|e| e.into_inner()).merge(changes);
    }

    fn wake(&self) {
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

    #[tokio::test]
    async fn changes_gather_until_taken_and_a_plain_notify_means_everything() {
        let t = Trigger::new();
        t.notify_change(|c| c.pod("ns", "a"));
        t.notify_change(|c| c.node("n1"));
        t.notified().await;
        let c = t.take_changes();
        assert!(!c.everything);
        assert_eq!((c.pods.len(), c.nodes.len()), (1, 1));
        assert!(t.take_changes().is_empty(), "taken once");
        t.restore_changes(c);
        t.notify();
        assert!(t.take_changes().everything);
    }
}
