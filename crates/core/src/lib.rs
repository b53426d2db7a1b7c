//! Pure domain logic of the entry reconciler: a world snapshot and the settings in,
//! declared SPIRE entries, per-object stats and a write plan out.
//!
//! No Kubernetes client, no network, no async, no clock: plain data in, plain data out.
//!
//! - [`declare_entries`]: ClusterSPIFFEID × pods and ClusterStaticEntries → winning entries
//!   (masking), stats, render failures, [`Protection`].
//! - [`Declaration`]: the same, kept between passes and updated for the pods a set of
//!   [`Changes`] touches ([`Delta`]), checked against a whole declaration at every full pass.
//! - [`plan`]: declared vs current SPIRE entries under an [`Ownership`] → deletes, creates,
//!   updates (protected would-be deletes are kept).
//! - [`restrict_federation`]: federatesWith without the trust domains SPIRE has no bundle
//!   for (federation degrades per trust domain).
//! - [`explain_pod`], [`explain_cluster_spiffe_id`], [`check_in_spire`], [`describe_plan`]:
//!   the `explain` and `plan` tooling, over the same steps as the pass.
//! - [`GuardState::check`]: the mass-deletion circuit breaker.
//! - [`parse_cluster_spiffe_id`], [`parse_static_entry`], [`parse_label_selector`]: shared
//!   with the admission webhook.

#[doc(hidden)]
pub mod bench;
mod bundles;
mod declaration;
mod declare;
mod diff;
mod duration;
mod explain;
mod fast;
mod guard;
mod key;
mod labels;
mod parse;
mod podfields;
mod render;
mod report;
mod settings;
mod tmpl;
mod world;

pub use bundles::{federated_trust_domains, restrict_federation};
pub use declaration::{Changes, Declaration, Delta};
pub use declare::{
    CacheStats, Declared, DeclaredEntry, Protection, RenderCache, RenderFailure, SourceKind, SourceRef,
    StaticEntryOutcome, declare_entries,
};
pub use diff::{EntryOwnership, Ownership, Plan, UnsupportedFields, outdated_fields, plan};
pub use explain::{
    ClusterSPIFFEIDExplanation, EntryCheck, ObjectVerdict, PodExplanation, PodSummary, Reason, SpireState, Verdict,
    check_in_spire, explain_cluster_spiffe_id, explain_pod,
};
pub use guard::{DeleteVerdict, DeletionGuard, GuardState, owned_count, plan_id};
pub use key::{EntryKey, deterministic_entry_id, entry_key, is_join_token_entry, pod_uid_of};
pub use labels::{LabelSelectorMatcher, Requirement, parse_label_selector};
pub use parse::{
    DNS_NAME_TEMPLATE_NAME, FieldError, ParsedClusterSPIFFEID, SPIFFE_ID_TEMPLATE_NAME,
    WORKLOAD_SELECTOR_TEMPLATE_NAME, class_matches, parse_cluster_spiffe_id, parse_static_entry,
};
pub use podfields::{PodFields, pod_fields_always, pod_fields_needed, pod_fields_of};
pub use report::{DeleteReason, LeftAlone, PlanReport, SourceWrites, describe_plan};
pub use settings::Settings;
pub use world::{PodInfo, World};

#[cfg(test)]
mod tests;
