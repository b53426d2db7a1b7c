//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics:
//! acquire when the holder's lease has not been renewed for `lease_duration` as observed
//! locally (no clock-skew trust), renew every `retry_period`, give up leadership when no
//! renewal succeeded within `renew_deadline`, release the lease on shutdown.
//!
//! The returned `watch::Receiver<bool>` gates every SPIRE writer. The task's
//! `JoinHandle` must be awaited by main: if it ends with an error the process exits.

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
    loop {
        let leading = *tx.borrow();
        match try_acquire_or_renew(&api, &p, &mut observed).await {
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
                    release(&api, &p).await;
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
