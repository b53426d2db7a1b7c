//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics:
//! acquire when the holder's lease has not been renewed for `lease_duration` as observed
//! locally (no clock-skew trust), renew every `retry_period`, give up leadership when no
//! renewal succeeded within `renew_deadline`, release the lease on shutdown.
//!
//! The returned `watch::Receiver<bool>` gates every SPIRE writer. The task's
//! `JoinHandle` must be awaited by main: if it ends with an error the process exits.
//!
//! Two things client-go does not do (issue #12, README "Faults survived"):
//! - every Lease call runs under a deadline (at most what is left of `renew_deadline`),
//!   so an apiserver connection that stalls without closing cannot hold a renewal past
//!   `renew_deadline`: leadership (and so every SPIRE write) stops before the lease can
//!   expire and another replica acquire it;
//! - a leader whose SPIRE Server has failed every call for `lease_duration` releases the
//!   lease, and a replica whose latest SPIRE call failed does not acquire it
//!   ([`spire_verdict`]): with one controller per spire-server (the HA sidecar layout)
//!   leadership moves to a replica that can write, instead of staying with one that cannot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct LeaseParams {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// This replica's SPIRE Server, for the hand-over policy; `None`: SPIRE's state does
    /// not affect leadership.
    pub spire: Option<SpireGate>,
}

/// What the lease needs to know of SPIRE.
#[derive(Clone)]
pub struct SpireGate {
    /// How long every SPIRE call has failed (`None`: it answers, or nothing is known).
    pub failing_for: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
    /// Called each time leadership is released because of SPIRE.
    pub on_handover: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for SpireGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpireGate").field("failing_for", &(self.failing_for)()).finish_non_exhaustive()
    }
}

/// What SPIRE's state means for the lease this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpireVerdict {
    /// Acquire or renew as usual.
    Proceed,
    /// We lead, but SPIRE has failed for at least `bound`: release the lease.
    Release,
    /// We do not lead and SPIRE's latest call failed: do not acquire.
    Abstain,
}

/// The hand-over policy (pure): a leader keeps the lease through short SPIRE failures
/// (a restart, one timeout) and gives it up once SPIRE has failed for `bound`; a
/// candidate whose SPIRE is failing at all stays out.
pub fn spire_verdict(leading: bool, failing_for: Option<Duration>, bound: Duration) -> SpireVerdict {
    match failing_for {
        None => SpireVerdict::Proceed,
        Some(d) if leading && d >= bound => SpireVerdict::Release,
        Some(_) if leading => SpireVerdict::Proceed,
        Some(_) => SpireVerdict::Abstain,
    }
}

/// The deadline of one Lease call: what is left of `renew_deadline` since the last
/// successful renewal while leading (at least 100 ms), else `renew_deadline`.
pub fn call_budget(leading: bool, since_renew: Duration, renew_deadline: Duration) -> Duration {
    if leading { renew_deadline.saturating_sub(since_renew).max(Duration::from_millis(100)) } else { renew_deadline }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {namespace}/{name}: {source}")]
    Api { namespace: String, name: String, source: kube::Error },
}

pub fn spawn(
    client: Client,
    params: LeaseParams,
    cancel: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<Result<(), LeaseError>>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(run(client, params, tx, cancel));
    (rx, handle)
}

/// Leader election off: always the leader.
pub fn always_leader() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(true);
    std::mem::forget(tx);
    rx
}

struct Observed {
    holder: String,
    renew: Option<String>,
    seen_at: Instant,
}

async fn run(
    client: Client,
    p: LeaseParams,
    tx: watch::Sender<bool>,
    cancel: CancellationToken,
) -> Result<(), LeaseError> {
    let api: Api<Lease> = Api::namespaced(client, &p.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renew = Instant::now() - p.renew_deadline * 2;
    let mut consecutive_forbidden = 0u32;
    let mut abstaining = false;
    loop {
        let leading = *tx.borrow();
        let failing = p.spire.as_ref().and_then(|g| (g.failing_for)());
        match spire_verdict(leading, failing, p.lease_duration) {
            SpireVerdict::Proceed => abstaining = false,
            SpireVerdict::Release => {
                tracing::error!(lease = %p.name, failing_s = failing.unwrap_or_default().as_secs(),
                    "SPIRE Server has failed every call for leaseDuration; releasing the lease to a replica whose SPIRE answers");
                let _ = tx.send(false);
                let budget = call_budget(false, Duration::ZERO, p.renew_deadline);
                let _ = tokio::time::timeout(budget, release(&api, &p)).await;
                if let Some(g) = &p.spire {
                    (g.on_handover)();
                }
                abstaining = true;
            }
            SpireVerdict::Abstain => {
                if !abstaining {
                    tracing::warn!(lease = %p.name, "SPIRE Server is failing; not taking the lease while it does");
                    abstaining = true;
                }
            }
        }
        if abstaining {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(p.retry_period) => {}
            }
            continue;
        }
        let budget = call_budget(leading, last_renew.elapsed(), p.renew_deadline);
        let attempt = match tokio::time::timeout(budget, try_acquire_or_renew(&api, &p, &mut observed)).await {
            Ok(r) => r,
            Err(_) => Err(kube::Error::Service(format!("lease call timed out after {budget:?}").into())),
        };
        match attempt {
            Ok(true) => {
                consecutive_forbidden = 0;
                last_renew = Instant::now();
                if !leading {
                    tracing::info!(lease = %p.name, namespace = %p.namespace, identity = %p.identity, "acquired leadership");
                    let _ = tx.send(true);
                }
            }
            Ok(false) => {
                consecutive_forbidden = 0;
                if leading {
                    tracing::warn!(lease = %p.name, "leadership taken by another replica");
                    let _ = tx.send(false);
                }
            }
            Err(err) => {
                if let kube::Error::Api(status) = &err
                    && status.code == 403
                {
                    consecutive_forbidden += 1;
                    if consecutive_forbidden >= 5 {
                        let _ = tx.send(false);
                        return Err(LeaseError::Api {
                            namespace: p.namespace.clone(),
                            name: p.name.clone(),
                            source: err,
                        });
                    }
                }
                tracing::warn!(lease = %p.name, error = %err, "lease update failed");
                if leading && last_renew.elapsed() >= p.renew_deadline {
                    tracing::error!(lease = %p.name, "could not renew the lease within renewDeadline; stopping writes");
                    let _ = tx.send(false);
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                if *tx.borrow() {
                    let _ = tx.send(false);
                    let _ = tokio::time::timeout(p.renew_deadline, release(&api, &p)).await;
                }
                return Ok(());
            }
            _ = tokio::time::sleep(p.retry_period) => {}
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Returns whether we hold the lease after this attempt.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    p: &LeaseParams,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let secs = p.lease_duration.as_secs().max(1) as i32;
    let Some(mut lease) = api.get_opt(&p.name).await? else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": p.name, "namespace": p.namespace},
            "spec": {"holderIdentity": p.identity, "leaseDurationSeconds": secs, "leaseTransitions": 0}
        }))
        .expect("lease json");
        let mut lease = lease;
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.acquire_time = Some(now());
        spec.renew_time = Some(now());
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
    let changed = observed.as_ref().is_none_or(|o| o.holder != holder || o.renew != renew);
    if changed {
        *observed = Some(Observed { holder: holder.clone(), renew: renew.clone(), seen_at: Instant::now() });
    }
    let held_by_us = holder == p.identity;
    let expired = holder.is_empty() || observed.as_ref().is_some_and(|o| o.seen_at.elapsed() >= p.lease_duration);
    if !held_by_us && !expired {
        return Ok(false);
    }
    if !held_by_us {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(p.identity.clone());
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(secs);
    match api.replace(&p.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, p: &LeaseParams) {
    let Ok(Some(mut lease)) = api.get_opt(&p.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(p.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    match api.replace(&p.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %p.name, "released the lease"),
        Err(err) => tracing::warn!(lease = %p.name, error = %err, "failed to release the lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_leader_rides_out_short_spire_failures_and_hands_over_long_ones() {
        assert_eq!(spire_verdict(true, None, S(15)), SpireVerdict::Proceed);
        assert_eq!(spire_verdict(true, Some(S(3)), S(15)), SpireVerdict::Proceed);
        assert_eq!(spire_verdict(true, Some(S(15)), S(15)), SpireVerdict::Release);
        assert_eq!(spire_verdict(true, Some(S(600)), S(15)), SpireVerdict::Release);
    }

    #[test]
    fn a_candidate_with_failing_spire_abstains() {
        assert_eq!(spire_verdict(false, None, S(15)), SpireVerdict::Proceed);
        assert_eq!(spire_verdict(false, Some(Duration::ZERO), S(15)), SpireVerdict::Abstain);
        assert_eq!(spire_verdict(false, Some(S(60)), S(15)), SpireVerdict::Abstain);
    }

    #[test]
    fn lease_calls_never_outlive_the_renew_deadline() {
        // Leading: what is left of renewDeadline since the last renewal.
        assert_eq!(call_budget(true, S(0), S(10)), S(10));
        assert_eq!(call_budget(true, S(4), S(10)), S(6));
        // Past it (the loop then stops leading): a short floor, never zero.
        assert_eq!(call_budget(true, S(11), S(10)), Duration::from_millis(100));
        // Not leading: nothing to protect but a bound all the same.
        assert_eq!(call_budget(false, S(100), S(10)), S(10));
    }
}
