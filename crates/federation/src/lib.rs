//! ClusterFederatedTrustDomain → SPIRE federation relationships (ARCHITECTURE.md §6).
//!
//! - [`parse_federated_trust_domain`]: upstream's `ParseClusterFederatedTrustDomainSpec`;
//!   the admission webhook uses it too. Errors are [`FieldError`]s naming the field.
//! - [`declare`] (pure): class filter, oldest CR first (UID tie-break), invalid CRs
//!   reported, one CR per trust domain (later ones reported as conflicting).
//! - [`plan()`] / [`plan_with_memory`] (pure): declared vs SPIRE → deletes, creates, updates.
//! - [`bundle_status`], [`refresh_request`] (pure): the bundle part of a CR's status and
//!   the refresh its `spire.spiffe.io/refresh-bundle` annotation asks for.
//! - [`FederationReconciler::pass`]: list, declare, plan, then delete → create → update
//!   through `scm_spire_api::Client`, returning per-CR [`PassOutcome`]s and counts.
//!
//! Where this differs from upstream (deliberately; ARCHITECTURE.md §7):
//!
//! - **`trustDomainBundle` edits are pushed.** Upstream's equality ignores the bundle.
//!   Here a CR bundle is pushed once when it changes, and SPIRE's own refreshed bundle
//!   never causes a write; see [`plan`](mod@plan) for the exact rule and [`BundleMemory`].
//! - **Invalid CRs do not delete relationships.** Upstream deletes the relationship of a
//!   CR that stops validating; here it is kept and reported ([`Plan::kept`],
//!   [`PassOutcome::Invalid`] with `kept`).
//! - **Everything is reported**: per-CR outcomes (Ready / ApplyFailed / Invalid /
//!   Conflict naming the winner) for statuses and Events, and write counts for metrics.
//!
//! No Kubernetes client here: the caller lists the CRs (all classes) and writes statuses,
//! Events and metrics from the [`PassResult`].

mod bundle_status;
mod declare;
mod explain;
mod parse;
pub mod plan;
mod reconciler;

pub use bundle_status::{bundle_status, refresh_request};
pub use declare::{CrRef, Declared, Outcome, declare};
pub use explain::{RelationshipState, TrustDomainExplanation, explain_trust_domain};
pub use parse::{
    FIELD_BUNDLE_ENDPOINT_URL, FIELD_ENDPOINT_SPIFFE_ID, FIELD_TRUST_DOMAIN, FIELD_TRUST_DOMAIN_BUNDLE,
    parse_federated_trust_domain,
};
pub use plan::{BundleMemory, Plan, authorities_subset, plan, plan_with_memory};
pub use reconciler::{Action, DeleteFailure, Error, FederationApi, FederationReconciler, PassOutcome, PassResult};
pub use scm_core::FieldError;

#[cfg(test)]
mod tests;
