//! One federation pass against the SPIRE API: list → declare → plan → delete, create,
//! update. Keeps the bundle memory across passes. Kubernetes stays out: the caller turns
//! the [`PassResult`] into statuses, Events and metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use scm_api::ClusterFederatedTrustDomain;
use scm_spiffe::{FederationRelationship, TrustDomain};
use scm_spire_api::{BatchError, BatchResult, Client, SpireError, item_code_label};

use crate::declare::{Declared, Outcome, declare};
use crate::plan::{BundleMemory, Plan, plan_with_memory};

/// The four federation relationship calls of the SPIRE API. Implemented by
/// [`scm_spire_api::Client`] (paging and upstream's batch sizes, 200 delete / 50 create /
/// 50 update, come from its [`ClientOptions`](scm_spire_api::ClientOptions)); tests use fakes.
pub trait FederationApi: Sync {
    fn list_federation_relationships(
        &self,
    ) -> impl Future<Output = Result<Vec<FederationRelationship>, SpireError>> + Send;
    fn create_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> impl Future<Output = Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>>> + Send;
    fn update_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> impl Future<Output = Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>>> + Send;
    fn delete_federation_relationships(
        &self,
        trust_domains: &[TrustDomain],
    ) -> impl Future<Output = Result<Vec<BatchResult<TrustDomain>>, BatchError<TrustDomain>>> + Send;
}

impl FederationApi for Client {
    fn list_federation_relationships(
        &self,
    ) -> impl Future<Output = Result<Vec<FederationRelationship>, SpireError>> + Send {
        Client::list_federation_relationships(self)
    }
    fn create_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> impl Future<Output = Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>>> + Send
    {
        Client::create_federation_relationships(self, relationships)
    }
    fn update_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> impl Future<Output = Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>>> + Send
    {
        Client::update_federation_relationships(self, relationships)
    }
    fn delete_federation_relationships(
        &self,
        trust_domains: &[TrustDomain],
    ) -> impl Future<Output = Result<Vec<BatchResult<TrustDomain>>, BatchError<TrustDomain>>> + Send {
        Client::delete_federation_relationships(self, trust_domains)
    }
}

/// A pass that wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `ListFederationRelationships` failed (or returned something unusable): without
    /// SPIRE's current set nothing can be diffed, so nothing was written.
    #[error("failed to list federation relationships: {0}")]
    List(SpireError),
}

/// What a pass did for a declared relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    /// With the fields that differed (see [`Plan::changed_fields`]).
    Updated {
        fields: Vec<&'static str>,
    },
    Unchanged,
}

/// The result of a pass for one class-matching ClusterFederatedTrustDomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// Declared, and SPIRE holds its relationship (written now or already in line).
    Ready { trust_domain: TrustDomain, action: Action },
    /// Declared, but the write failed (SPIRE's item status, or the RPC failed).
    ApplyFailed { trust_domain: TrustDomain, message: String },
    /// The spec does not parse (`spec.x: ...`). `kept`: the relationship with the trust
    /// domain it names exists in SPIRE and was kept rather than deleted.
    Invalid { message: String, kept: Option<TrustDomain> },
    /// An older CR (`winner`) declares the same trust domain.
    Conflict { winner: String },
}

impl PassOutcome {
    pub fn is_ready(&self) -> bool {
        matches!(self, PassOutcome::Ready { .. })
    }

    /// The `Ready` condition's reason: `Applied`, `ApplyFailed`, `Invalid` or `Conflict`.
    pub fn reason(&self) -> &'static str {
        match self {
            PassOutcome::Ready { .. } => "Applied",
            PassOutcome::ApplyFailed { .. } => "ApplyFailed",
            PassOutcome::Invalid { .. } => "Invalid",
            PassOutcome::Conflict { .. } => "Conflict",
        }
    }

    /// Metric label: `ready`, `apply_failed`, `invalid`, `conflict`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PassOutcome::Ready { .. } => "ready",
            PassOutcome::ApplyFailed { .. } => "apply_failed",
            PassOutcome::Invalid { .. } => "invalid",
            PassOutcome::Conflict { .. } => "conflict",
        }
    }

    /// A message for the `Ready` condition / an Event.
    pub fn message(&self) -> String {
        match self {
            PassOutcome::Ready { trust_domain, action: Action::Created } => {
                format!("federation relationship with {trust_domain} created")
            }
            PassOutcome::Ready { trust_domain, action: Action::Updated { fields } } => {
                format!("federation relationship with {trust_domain} updated ({})", fields.join(", "))
            }
            PassOutcome::Ready { trust_domain, action: Action::Unchanged } => {
                format!("federation relationship with {trust_domain} is in place")
            }
            PassOutcome::ApplyFailed { trust_domain, message } => {
                format!("failed to apply the federation relationship with {trust_domain}: {message}")
            }
            PassOutcome::Invalid { message, kept: None } => message.clone(),
            PassOutcome::Invalid { message, kept: Some(td) } => {
                format!("{message} (the existing federation relationship with {td} is kept until this is fixed)")
            }
            PassOutcome::Conflict { winner } => {
                format!("another ClusterFederatedTrustDomain ({winner}) already declares this trust domain")
            }
        }
    }
}

impl fmt::Display for PassOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// A relationship delete that failed (no CR to report it on: log it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub trust_domain: TrustDomain,
    pub message: String,
}

/// What a pass did. Counts are relationships (items), not RPCs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassResult {
    /// Per class-matching CR name. CRs of other classes are absent.
    pub outcomes: BTreeMap<String, PassOutcome>,
    /// Relationships in SPIRE when the pass started.
    pub current: usize,
    pub created: usize,
    pub updated: usize,
    /// Including deletes answered `NotFound` (already gone).
    pub deleted: usize,
    /// Writes (create, update, delete) that failed.
    pub failed: usize,
    pub unchanged: usize,
    /// Relationships kept because an Invalid CR names their trust domain.
    pub kept: Vec<(TrustDomain, String)>,
    pub deleted_trust_domains: Vec<TrustDomain>,
    pub delete_failures: Vec<DeleteFailure>,
    /// `(operation, result)` → items, for a writes counter: operation `create`, `update`,
    /// `delete`; result `ok`, `already_exists`, `not_found` or `error` (upstream's labels).
    pub writes: BTreeMap<(&'static str, &'static str), u64>,
    /// RPC-level failures of write batches (their items are counted in `failed`).
    pub write_errors: Vec<SpireError>,
}

impl PassResult {
    /// Number of relationships written successfully.
    pub fn writes_ok(&self) -> usize {
        self.created + self.updated + self.deleted
    }

    /// Number of write attempts (ok or not).
    pub fn write_attempts(&self) -> u64 {
        self.writes.values().sum()
    }

    /// The per-item outcomes of an `op` (`delete`, `create`, `update`) write, each
    /// counted in `writes`; an RPC-level failure is logged and kept in `write_errors`.
    fn record_writes<T>(
        &mut self,
        op: &'static str,
        written: Result<Vec<BatchResult<T>>, BatchError<T>>,
    ) -> Vec<BatchResult<T>> {
        let (items, error) = BatchError::split(written);
        if let Some(error) = error {
            tracing::error!(%error, "Failed to {op} federation relationships");
            self.write_errors.push(error);
        }
        for item in &items {
            *self.writes.entry((op, item_code_label(item))).or_default() += 1;
        }
        items
    }

    /// A create or update (`op`) of the relationship of `td` that failed.
    fn write_failed(&mut self, op: &'static str, td: &TrustDomain, error: &dyn fmt::Display) -> PassOutcome {
        tracing::error!(trust_domain = %td, %error, "Failed to {op} federation relationship");
        self.failed += 1;
        PassOutcome::ApplyFailed { trust_domain: td.clone(), message: error.to_string() }
    }

    /// CRs per [`PassOutcome::metric_label`], all four labels present.
    pub fn outcome_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out: BTreeMap<&'static str, usize> =
            ["ready", "apply_failed", "invalid", "conflict"].into_iter().map(|l| (l, 0)).collect();
        for outcome in self.outcomes.values() {
            *out.entry(outcome.metric_label()).or_default() += 1;
        }
        out
    }
}

/// The federation reconciler's state across passes: the class settings and the
/// [`BundleMemory`]. One per process (leader); a new one (restart) starts with an empty
/// memory and relies on the first-pass rule of [the `plan` module](mod@crate::plan).
#[derive(Debug, Clone, Default)]
pub struct FederationReconciler {
    class_name: String,
    watch_classless: bool,
    memory: BundleMemory,
}

impl FederationReconciler {
    /// `class_name` / `watch_classless`: the controller's `className` and
    /// `watchClassless` settings (ARCHITECTURE.md §2).
    pub fn new(class_name: impl Into<String>, watch_classless: bool) -> Self {
        Self { class_name: class_name.into(), watch_classless, memory: BundleMemory::default() }
    }

    pub fn memory(&self) -> &BundleMemory {
        &self.memory
    }

    /// Declares from `crs` without touching SPIRE (for a dry run or the webhook's view).
    pub fn declare(&self, crs: &[Arc<ClusterFederatedTrustDomain>]) -> Declared {
        declare(crs, &self.class_name, self.watch_classless)
    }

    /// One pass against a SPIRE server. `crs`: every ClusterFederatedTrustDomain (all
    /// classes; filtering happens here). The caller must pass a complete list: an
    /// incomplete one (cache not synced, a manifest that failed to load) would delete the
    /// relationships of the missing CRs, so skip the pass instead.
    pub async fn pass(
        &mut self,
        client: &Client,
        crs: &[Arc<ClusterFederatedTrustDomain>],
    ) -> Result<PassResult, Error> {
        self.pass_with(client, crs).await
    }

    /// [`pass`](Self::pass) over any [`FederationApi`].
    ///
    /// Lists SPIRE's relationships (a failure ⇒ `Err`, nothing written), declares, plans,
    /// then writes deletes, creates and updates, in that order, each in the client's
    /// batches. A batch whose RPC fails marks its items (and the unsent rest of that
    /// operation) failed; the next operation is still attempted.
    pub async fn pass_with<A: FederationApi>(
        &mut self,
        api: &A,
        crs: &[Arc<ClusterFederatedTrustDomain>],
    ) -> Result<PassResult, Error> {
        let current = api.list_federation_relationships().await.map_err(Error::List)?;
        let declared = self.declare(crs);
        let plan = plan_with_memory(&declared, &current, &self.memory);
        let mut result = PassResult { current: current.len(), ..Default::default() };
        let mut per_td: BTreeMap<TrustDomain, PassOutcome> = BTreeMap::new();

        for (td, cr) in &plan.kept {
            tracing::warn!(trust_domain = %td, cluster_federated_trust_domain = %cr,
                "Keeping federation relationship: its ClusterFederatedTrustDomain is invalid");
        }
        result.kept = plan.kept.clone();

        self.apply_deletes(api, &plan, &mut result).await;
        self.apply_creates(api, &plan, &mut result, &mut per_td).await;
        self.apply_updates(api, &plan, &mut result, &mut per_td).await;
        for td in &plan.unchanged {
            per_td.insert(td.clone(), PassOutcome::Ready { trust_domain: td.clone(), action: Action::Unchanged });
        }
        result.unchanged = plan.unchanged.len();
        for bundle in &plan.adopted {
            self.memory.record(bundle);
        }

        // Forget what no CR declares with a bundle any more (kept ones stay).
        let keep: BTreeSet<&TrustDomain> = declared
            .relationships
            .iter()
            .filter(|(_, fr)| fr.trust_domain_bundle.is_some())
            .map(|(_, fr)| &fr.trust_domain)
            .chain(plan.kept.iter().map(|(td, _)| td))
            .collect();
        self.memory.retain(|td| keep.contains(td));

        let kept_by_cr: BTreeMap<&str, &TrustDomain> = plan.kept.iter().map(|(td, cr)| (cr.as_str(), td)).collect();
        let declared_by_cr: BTreeMap<&str, &TrustDomain> =
            declared.relationships.iter().map(|(cr, fr)| (cr.name.as_str(), &fr.trust_domain)).collect();
        for (name, outcome) in &declared.outcomes {
            let outcome = match outcome {
                Outcome::Declared => {
                    let td = declared_by_cr[name.as_str()];
                    per_td.get(td).cloned().unwrap_or_else(|| PassOutcome::ApplyFailed {
                        trust_domain: td.clone(),
                        message: "no outcome recorded".into(),
                    })
                }
                Outcome::Invalid(message) => {
                    tracing::debug!(cluster_federated_trust_domain = %name, %message, "Ignoring invalid ClusterFederatedTrustDomain");
                    PassOutcome::Invalid {
                        message: message.clone(),
                        kept: kept_by_cr.get(name.as_str()).map(|td| (*td).clone()),
                    }
                }
                Outcome::Conflict { winner } => {
                    tracing::debug!(cluster_federated_trust_domain = %name, %winner, "Ignoring ClusterFederatedTrustDomain with conflicting trust domain");
                    PassOutcome::Conflict { winner: winner.clone() }
                }
            };
            result.outcomes.insert(name.clone(), outcome);
        }
        Ok(result)
    }

    async fn apply_deletes<A: FederationApi>(&mut self, api: &A, plan: &Plan, result: &mut PassResult) {
        if plan.deletes.is_empty() {
            return;
        }
        let written = api.delete_federation_relationships(&plan.deletes).await;
        let items = result.record_writes("delete", written);
        for (td, item) in plan.deletes.iter().zip(items) {
            let label = item_code_label(&item);
            match item {
                Ok(_) => {
                    tracing::info!(trust_domain = %td, "Deleted federation relationship");
                    result.deleted += 1;
                    result.deleted_trust_domains.push(td.clone());
                    self.memory.forget(td);
                }
                Err(_) if label == "not_found" => {
                    tracing::info!(trust_domain = %td, "Federation relationship already deleted");
                    result.deleted += 1;
                    result.deleted_trust_domains.push(td.clone());
                    self.memory.forget(td);
                }
                Err(error) => {
                    tracing::error!(trust_domain = %td, %error, "Failed to delete federation relationship");
                    result.failed += 1;
                    result.delete_failures.push(DeleteFailure { trust_domain: td.clone(), message: error.to_string() });
                }
            }
        }
    }

    async fn apply_creates<A: FederationApi>(
        &mut self,
        api: &A,
        plan: &Plan,
        result: &mut PassResult,
        per_td: &mut BTreeMap<TrustDomain, PassOutcome>,
    ) {
        if plan.creates.is_empty() {
            return;
        }
        let written = api.create_federation_relationships(&plan.creates).await;
        let items = result.record_writes("create", written);
        for (fr, item) in plan.creates.iter().zip(items) {
            let td = &fr.trust_domain;
            let outcome = match item {
                Ok(_) => {
                    tracing::info!(trust_domain = %td, bundle = fr.trust_domain_bundle.is_some(), "Created federation relationship");
                    result.created += 1;
                    match &fr.trust_domain_bundle {
                        Some(bundle) => self.memory.record(bundle),
                        None => self.memory.forget(td),
                    }
                    PassOutcome::Ready { trust_domain: td.clone(), action: Action::Created }
                }
                Err(error) => result.write_failed("create", td, &error),
            };
            per_td.insert(td.clone(), outcome);
        }
    }

    async fn apply_updates<A: FederationApi>(
        &mut self,
        api: &A,
        plan: &Plan,
        result: &mut PassResult,
        per_td: &mut BTreeMap<TrustDomain, PassOutcome>,
    ) {
        if plan.updates.is_empty() {
            return;
        }
        let written = api.update_federation_relationships(&plan.updates).await;
        let items = result.record_writes("update", written);
        for (fr, item) in plan.updates.iter().zip(items) {
            let td = &fr.trust_domain;
            let fields = plan.changed_fields.get(td).cloned().unwrap_or_default();
            let outcome = match item {
                Ok(_) => {
                    tracing::info!(trust_domain = %td, fields = ?fields, "Updated federation relationship");
                    result.updated += 1;
                    if let Some(bundle) = &fr.trust_domain_bundle {
                        self.memory.record(bundle);
                    }
                    PassOutcome::Ready { trust_domain: td.clone(), action: Action::Updated { fields } }
                }
                Err(error) => result.write_failed("update", td, &error),
            };
            per_td.insert(td.clone(), outcome);
        }
    }
}
