//! The federation reconciler: ClusterFederatedTrustDomains → SPIRE federation
//! relationships. The pure work (parse, declare, plan) and the SPIRE writes live in
//! `scm_federation`; this file is the loop's edge: where the CRs come from, statuses,
//! events and metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use scm_api::{BundleRefreshStatus, ClusterFederatedTrustDomain};
use scm_federation::{FederationApi, FederationReconciler, PassOutcome as Outcome};
use scm_spiffe::{FederationRelationship, TrustDomain};
use scm_spire_api::SpireError;

use super::PassGuard;
use super::ports::{Batch, CftdSource, StatusSink};
use super::{PassKind, PassOutcome, log_writes, observe, observe_batch};
use crate::metrics::Metrics;

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
        let mut pass = PassGuard::start(&self.metrics, "federation", kind);
        let crs = match self.source.list() {
            Ok(crs) => crs,
            Err(why) => {
                tracing::info!(reason = %why, "federation pass skipped: view incomplete");
                pass.result("skipped");
                return PassOutcome::Retry(Duration::from_millis(500));
            }
        };
        let api = Timed { inner: &self.spire, metrics: &self.metrics };
        let result = match self.inner.pass_with(&api, &crs).await {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(error = %err, "federation pass aborted");
                pass.result("error");
                return PassOutcome::Retry(Duration::from_secs(1));
            }
        };
        let m = &self.metrics;
        for ((op, res), n) in &result.writes {
            m.federation_writes.with_label_values(&[op, res]).inc_by(*n);
        }
        for (label, n) in result.outcome_counts() {
            m.federation_relationships.with_label_values(&[label]).set(n as i64);
        }
        let r = &result;
        log_writes("federation", r.created, r.updated, r.deleted, r.failed, r.kept.len(), pass.elapsed());
        for (td, why) in &result.kept {
            tracing::warn!(trust_domain = %td, reason = %why, "keeping federation relationship");
        }
        for f in &result.delete_failures {
            tracing::warn!(trust_domain = %f.trust_domain, error = %f.message, "deleting federation relationship failed");
        }
        self.report(&crs, &result.outcomes).await;
        self.bundle_statuses(&crs, &result.outcomes).await;
        pass.result("ok");
        PassOutcome::Done
    }

    /// "Is federation working?": for each CR this install applies, the refresh its
    /// annotation asks for (TrustDomain API `RefreshBundle`), then whether SPIRE holds
    /// the trust domain's bundle, its sequence number and when that changed (one
    /// `ListFederatedBundles` a pass).
    async fn bundle_statuses(
        &mut self,
        crs: &[Arc<ClusterFederatedTrustDomain>],
        outcomes: &BTreeMap<String, Outcome>,
    ) {
        let mine: Vec<&Arc<ClusterFederatedTrustDomain>> =
            crs.iter().filter(|cr| outcomes.contains_key(&cr.name_any())).collect();
        if mine.is_empty() {
            return;
        }
        let now = || scm_api::Time(jiff::Timestamp::now());
        let mut refreshed = BTreeMap::new();
        for cr in &mine {
            let Some(request) = scm_federation::refresh_request(cr) else { continue };
            let name = cr.name_any();
            let outcome = match TrustDomain::parse(&cr.spec.trust_domain) {
                Ok(td) => observe(&self.metrics, "RefreshBundle", self.spire.refresh_bundle(&td)).await,
                Err(err) => Err(SpireError::InvalidRequest { method: "RefreshBundle", reason: err.to_string() }),
            };
            let status = match outcome {
                Ok(()) => {
                    tracing::info!(name = %name, trust_domain = %cr.spec.trust_domain, request = %request, "bundle refreshed");
                    BundleRefreshStatus { request, result: "Refreshed".into(), message: None, time: now() }
                }
                Err(err) => {
                    let message = format!("SPIRE could not refresh the bundle of {}: {err}", cr.spec.trust_domain);
                    tracing::warn!(name = %name, request = %request, "{message}");
                    self.status.event_federation(cr, "RefreshFailed", &message).await;
                    BundleRefreshStatus { request, result: "Failed".into(), message: Some(message), time: now() }
                }
            };
            refreshed.insert(name, status);
        }
        let listed = match observe(&self.metrics, "ListFederatedBundles", self.spire.list_federated_bundles(true)).await
        {
            Ok(listed) => Some(listed),
            Err(err) => {
                tracing::warn!(error = %err, "cannot list SPIRE's federated bundles; bundle statuses not updated");
                None
            }
        };
        for cr in mine {
            let name = cr.name_any();
            let previous = cr.status.as_ref().and_then(|s| s.bundle.as_ref());
            let bundle = match &listed {
                Some(listed) => {
                    let held = listed.iter().find(|b| b.trust_domain.name() == cr.spec.trust_domain);
                    scm_federation::bundle_status(previous, held, &now())
                }
                None => match previous {
                    Some(p) => p.clone(),
                    None => continue,
                },
            };
            self.status.federated_bundle(cr, bundle, refreshed.remove(&name)).await;
        }
    }

    /// Status conditions (only on change) and one Event per new problem, in the words
    /// `scm_federation` chose (`PassOutcome::reason`, `PassOutcome::message`).
    async fn report(&mut self, crs: &[Arc<ClusterFederatedTrustDomain>], outcomes: &BTreeMap<String, Outcome>) {
        let mut now_reported = BTreeMap::new();
        for cr in crs {
            let name = cr.name_any();
            let Some(outcome) = outcomes.get(&name) else {
                continue;
            };
            let (ok, reason, message) = (outcome.is_ready(), outcome.reason(), outcome.message());
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

/// The federation calls, timed and counted like the entry calls.
struct Timed<'a, A> {
    inner: &'a A,
    metrics: &'a Metrics,
}

impl<A: FederationApi> FederationApi for Timed<'_, A> {
    fn list_federation_relationships(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<FederationRelationship>, SpireError>> + Send {
        observe(self.metrics, "ListFederationRelationships", self.inner.list_federation_relationships())
    }
    fn create_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> impl std::future::Future<Output = Batch<FederationRelationship>> + Send {
        observe_batch(
            self.metrics,
            "BatchCreateFederationRelationship",
            self.inner.create_federation_relationships(relationships),
        )
    }
    fn update_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> impl std::future::Future<Output = Batch<FederationRelationship>> + Send {
        observe_batch(
            self.metrics,
            "BatchUpdateFederationRelationship",
            self.inner.update_federation_relationships(relationships),
        )
    }
    fn delete_federation_relationships(
        &self,
        trust_domains: &[TrustDomain],
    ) -> impl std::future::Future<Output = Batch<TrustDomain>> + Send {
        observe_batch(
            self.metrics,
            "BatchDeleteFederationRelationship",
            self.inner.delete_federation_relationships(trust_domains),
        )
    }
}

impl super::Reconciler for FederationLoop {
    fn pass(&mut self, kind: PassKind) -> futures::future::BoxFuture<'_, PassOutcome> {
        Box::pin(self.run(kind))
    }
}
