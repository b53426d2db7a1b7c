//! The federation reconciler: ClusterFederatedTrustDomains → SPIRE federation
//! relationships. The pure work (parse, declare, plan) and the SPIRE writes live in
//! `scm_federation`; this file is the loop's edge: where the CRs come from, statuses,
//! events and metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use scm_api::ClusterFederatedTrustDomain;
use scm_federation::{FederationReconciler, PassOutcome as Outcome};

use super::{PassKind, PassOutcome};
use crate::metrics::Metrics;
use crate::status::StatusSink;

/// Where the ClusterFederatedTrustDomains come from.
pub trait CftdSource: Send + Sync {
    fn list(&self) -> Result<Vec<Arc<ClusterFederatedTrustDomain>>, String>;
}

pub struct FederationLoop {
    source: Arc<dyn CftdSource>,
    spire: scm_spire_api::Client,
    inner: FederationReconciler,
    metrics: Metrics,
    status: Arc<dyn StatusSink>,
    reported: BTreeMap<String, String>,
}

impl FederationLoop {
    pub fn new(
        source: Arc<dyn CftdSource>,
        spire: scm_spire_api::Client,
        class_name: &str,
        watch_classless: bool,
        metrics: Metrics,
        status: Arc<dyn StatusSink>,
    ) -> Self {
        Self {
            source,
            spire,
            inner: FederationReconciler::new(class_name, watch_classless),
            metrics,
            status,
            reported: BTreeMap::new(),
        }
    }

    async fn run(&mut self, kind: PassKind) -> PassOutcome {
        let started = Instant::now();
        if let PassKind::Triggered(lag) = kind {
            self.metrics.trigger_lag.with_label_values(&["federation"]).observe(lag.as_secs_f64());
        }
        let crs = match self.source.list() {
            Ok(crs) => crs,
            Err(why) => {
                tracing::info!(reason = %why, "federation pass skipped: view incomplete");
                self.count("skipped", started);
                return PassOutcome::Retry(Duration::from_millis(500));
            }
        };
        let spire = self.spire.clone();
        let result = match self.inner.pass(&spire, &crs).await {
            Ok(r) => r,
            Err(err) => {
                self.metrics.spire_rpc_errors.with_label_values(&["ListFederationRelationships", "error"]).inc();
                tracing::warn!(error = %err, "federation pass aborted");
                self.count("error", started);
                return PassOutcome::Retry(Duration::from_secs(1));
            }
        };
        let m = &self.metrics;
        for (op, n) in [("create", result.created), ("update", result.updated), ("delete", result.deleted)] {
            if n > 0 {
                m.federation_writes.with_label_values(&[op, "ok"]).inc_by(n as u64);
            }
        }
        if result.failed > 0 {
            m.federation_writes.with_label_values(&["any", "failed"]).inc_by(result.failed as u64);
        }
        let mut by_outcome: BTreeMap<&str, i64> =
            BTreeMap::from([("ready", 0), ("invalid", 0), ("conflict", 0), ("apply_failed", 0)]);
        for o in result.outcomes.values() {
            let k = match o {
                Outcome::Ready { .. } => "ready",
                Outcome::Invalid { .. } => "invalid",
                Outcome::Conflict { .. } => "conflict",
                Outcome::ApplyFailed { .. } => "apply_failed",
            };
            *by_outcome.entry(k).or_default() += 1;
        }
        for (k, v) in by_outcome {
            m.federation_relationships.with_label_values(&[k]).set(v);
        }
        if result.created + result.updated + result.deleted + result.failed > 0 {
            tracing::info!(
                created = result.created,
                updated = result.updated,
                deleted = result.deleted,
                failed = result.failed,
                "federation pass applied changes"
            );
        }
        for (td, why) in &result.kept {
            tracing::warn!(trust_domain = %td, reason = %why, "keeping federation relationship");
        }
        self.report(&crs, &result.outcomes).await;
        self.count("ok", started);
        PassOutcome::Done
    }

    fn count(&self, result: &str, started: Instant) {
        self.metrics.passes.with_label_values(&["federation", result]).inc();
        self.metrics.pass_duration.with_label_values(&["federation", result]).observe(started.elapsed().as_secs_f64());
    }

    /// Status conditions (only on change) and one Event per new problem.
    async fn report(&mut self, crs: &[Arc<ClusterFederatedTrustDomain>], outcomes: &BTreeMap<String, Outcome>) {
        let mut now_reported = BTreeMap::new();
        for cr in crs {
            let name = cr.name_any();
            let Some(outcome) = outcomes.get(&name) else {
                continue;
            };
            let (ok, reason, message) = match outcome {
                Outcome::Ready { trust_domain, .. } => {
                    (true, "Applied", format!("federation relationship with {trust_domain} is in SPIRE"))
                }
                Outcome::ApplyFailed { message, .. } => (false, "ApplyFailed", message.clone()),
                Outcome::Invalid { message, kept } => (
                    false,
                    "Invalid",
                    match kept {
                        Some(td) => {
                            format!("{message} (the existing relationship with {td} is kept)")
                        }
                        None => message.clone(),
                    },
                ),
                Outcome::Conflict { winner } => (
                    false,
                    "Conflict",
                    format!(
                        "trust domain {} is already declared by the older ClusterFederatedTrustDomain {winner}",
                        cr.spec.trust_domain
                    ),
                ),
            };
            if !ok {
                let key = format!("{reason}: {message}");
                if self.reported.get(&name) != Some(&key) {
                    tracing::warn!(name = %name, reason, %message, "ClusterFederatedTrustDomain not applied");
                    self.status.event_federation(cr, reason, &message).await;
                }
                now_reported.insert(name.clone(), key);
            }
            self.status.cluster_federated_trust_domain(cr, ok, reason, message).await;
        }
        self.reported = now_reported;
    }
}

impl super::Reconciler for FederationLoop {
    fn pass(&mut self, kind: PassKind) -> futures::future::BoxFuture<'_, PassOutcome> {
        Box::pin(self.run(kind))
    }
}

/// CRs from the Kubernetes watch (only once synced).
pub struct KubeCftds(pub Arc<crate::k8s::world::Stores>);

impl CftdSource for KubeCftds {
    fn list(&self) -> Result<Vec<Arc<ClusterFederatedTrustDomain>>, String> {
        if !self.0.cluster_federated_trust_domains.is_synced() {
            return Err("ClusterFederatedTrustDomain cache not synced".into());
        }
        Ok(self.0.cluster_federated_trust_domains.state())
    }
}

impl CftdSource for crate::manifests::ManifestDir {
    fn list(&self) -> Result<Vec<Arc<ClusterFederatedTrustDomain>>, String> {
        Ok(self.load()?.federated_trust_domains)
    }
}
