//! The loops: a coalescing trigger plus a gcInterval timer drive passes (the entry pass
//! declares only what a trigger names when it can; see `entries`).
//! Each pass: snapshot → declare (pure) → diff against the SPIRE mirror (pure) → apply.

pub mod entries;
pub mod federation;
pub mod mirror;
pub mod ports;

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::trigger::Trigger;

/// What a pass reports to the loop.
pub enum PassOutcome {
    /// Done; the next pass waits for a trigger or the timer.
    Done,
    /// Could not run (unsynced caches, SPIRE unreachable, list failed): retry after the delay.
    Retry(Duration),
}

/// A reconciler the loop drives: one pass at a time.
pub trait Reconciler: Send {
    fn pass(&mut self, kind: PassKind) -> futures::future::BoxFuture<'_, PassOutcome>;

    /// Leadership was (re)gained: whatever was learnt before may be stale.
    fn reset(&mut self) {}
}

/// Runs passes on every trigger and every `gc_interval`, only while `leader` is true.
/// Passes never overlap; triggers during a pass coalesce into one more pass. `beat` is
/// called before each wait and each pass (liveness).
pub async fn run_loop<R: Reconciler>(
    name: &'static str,
    trigger: Trigger,
    gc_interval: Duration,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
    reconciler: &mut R,
    beat: impl Fn(),
) {
    let mut next_full = tokio::time::Instant::now();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(200);
    let mut was_leader = false;
    loop {
        beat();
        let is_leader = *leader.borrow_and_update();
        if !is_leader {
            if was_leader {
                tracing::info!(reconciler = name, "lost leadership; passes stop");
            }
            was_leader = false;
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = leader.changed() => if r.is_err() { return },
            }
            continue;
        }
        if !was_leader {
            tracing::info!(reconciler = name, "leading; starting passes");
            was_leader = true;
            reconciler.reset();
            next_full = tokio::time::Instant::now();
        }
        let now = tokio::time::Instant::now();
        let kind = if now >= next_full {
            trigger.take_lag();
            PassKind::Full
        } else if retry_at.is_some_and(|t| now >= t) {
            PassKind::Retry
        } else {
            let wake = retry_at.map_or(next_full, |r| r.min(next_full));
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = leader.changed() => { if r.is_err() { return } continue }
                _ = tokio::time::sleep_until(wake) => continue,
                lag = trigger.notified() => PassKind::Triggered(lag),
            }
        };
        if cancel.is_cancelled() {
            return;
        }
        retry_at = None;
        // A lost lease stops writes at once: the pass future is dropped mid-flight.
        let mut lost = leader.clone();
        let outcome = tokio::select! {
            outcome = reconciler.pass(kind) => outcome,
            _ = lost.wait_for(|l| !*l) => {
                tracing::warn!(reconciler = name, "leadership lost during a pass; abandoning it");
                continue;
            }
            // Shutdown lets the current pass finish (its SPIRE calls have deadlines).
        };
        match outcome {
            PassOutcome::Done => {
                backoff = Duration::from_millis(200);
                if matches!(kind, PassKind::Full) {
                    next_full = tokio::time::Instant::now() + gc_interval;
                }
            }
            PassOutcome::Retry(min) => {
                let delay = backoff.max(min);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                retry_at = Some(tokio::time::Instant::now() + delay);
                if matches!(kind, PassKind::Full) {
                    // A full pass failed: keep it due.
                    retry_at = None;
                    next_full = tokio::time::Instant::now() + delay;
                }
            }
        }
    }
}

/// Why a pass runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PassKind {
    /// The gcInterval timer (or the first pass): refresh the SPIRE mirror with a full list.
    Full,
    /// A change notification; `Duration` is how long the oldest one waited.
    Triggered(Duration),
    /// A retry after a failed pass.
    Retry,
}

/// Records latency and errors of one SPIRE call (all pages or batches of it).
pub async fn observe<T>(
    metrics: &Metrics,
    method: &'static str,
    call: impl std::future::Future<Output = Result<T, scm_spire_api::SpireError>>,
) -> Result<T, scm_spire_api::SpireError> {
    let started = Instant::now();
    let result = call.await;
    metrics.spire_rpc_duration.with_label_values(&[method]).observe(started.elapsed().as_secs_f64());
    if let Err(err) = &result {
        metrics.spire_rpc_errors.with_label_values(&[method, err.metric_label()]).inc();
    }
    result
}

pub async fn observe_batch<T>(
    metrics: &Metrics,
    method: &'static str,
    call: impl std::future::Future<Output = Result<Vec<scm_spire_api::BatchResult<T>>, scm_spire_api::BatchError<T>>>,
) -> Result<Vec<scm_spire_api::BatchResult<T>>, scm_spire_api::BatchError<T>> {
    let started = Instant::now();
    let result = call.await;
    metrics.spire_rpc_duration.with_label_values(&[method]).observe(started.elapsed().as_secs_f64());
    if let Err(err) = &result {
        metrics.spire_rpc_errors.with_label_values(&[method, err.error.metric_label()]).inc();
    }
    result
}

/// What a pass wrote, logged at info when it wrote anything (debug otherwise).
pub(crate) fn log_writes(
    reconciler: &'static str,
    created: usize,
    updated: usize,
    deleted: usize,
    failed: usize,
    kept: usize,
    elapsed: Duration,
) {
    let elapsed_ms = elapsed.as_millis() as u64;
    if created + updated + deleted + failed > 0 {
        tracing::info!(reconciler, created, updated, deleted, failed, kept, elapsed_ms, "pass applied changes");
    } else {
        tracing::debug!(reconciler, elapsed_ms, "pass: nothing to change");
    }
}

/// One pass's metrics, recorded when it ends however it ends (kube-rs controller-rs's
/// measurer): `reconcile_passes_total` and `reconcile_pass_duration_seconds` by result
/// (`ok` unless set; a pass dropped mid-flight, e.g. on a lost lease, counts as
/// `abandoned`), and the trigger lag of a triggered pass at its start.
pub struct PassGuard {
    metrics: Metrics,
    reconciler: &'static str,
    started: std::time::Instant,
    result: &'static str,
}

impl PassGuard {
    pub fn start(metrics: &Metrics, reconciler: &'static str, kind: PassKind) -> Self {
        if let PassKind::Triggered(lag) = kind {
            metrics.trigger_lag.with_label_values(&[reconciler]).observe(lag.as_secs_f64());
        }
        Self { metrics: metrics.clone(), reconciler, started: std::time::Instant::now(), result: "abandoned" }
    }

    /// How the pass ended: `ok`, `skipped` or `error`.
    pub fn result(&mut self, result: &'static str) {
        self.result = result;
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

impl Drop for PassGuard {
    fn drop(&mut self) {
        let labels = [self.reconciler, self.result];
        self.metrics.passes.with_label_values(&labels).inc();
        self.metrics.pass_duration.with_label_values(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
