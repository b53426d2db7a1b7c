//! The `spire.spiffe.io/v1alpha1` custom resources, field for field as upstream
//! (spiffe/spire-controller-manager `api/v1alpha1`), plus status conditions beside
//! upstream's status fields. One file per kind; `crd` renders the CRD YAML.
//!
//! May touch: serde, schemars, kube's derive. Nothing here talks to a server.

// kube's `printcolumn(...)` attributes legitimately repeat `type_ = "string"`.
#![allow(clippy::duplicated_attributes)]

mod clusterfederatedtrustdomain;
mod clusterspiffeid;
mod clusterstaticentry;
pub mod crd;

pub use clusterfederatedtrustdomain::{
    BundleEndpointProfile, BundleEndpointProfileType, BundleRefreshStatus, ClusterFederatedTrustDomain,
    ClusterFederatedTrustDomainSpec, ClusterFederatedTrustDomainStatus, FederatedBundleStatus,
};
pub use clusterspiffeid::{ClusterSPIFFEID, ClusterSPIFFEIDSpec, ClusterSPIFFEIDStats, ClusterSPIFFEIDStatus};
pub use clusterstaticentry::{ClusterStaticEntry, ClusterStaticEntrySpec, ClusterStaticEntryStatus};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

/// API group and version of the three kinds.
pub const GROUP: &str = "spire.spiffe.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "spire.spiffe.io/v1alpha1";

/// The label the SPIRE helm chart puts on the objects of one install (`filterByClassName`).
pub const CLASS_NAME_LABEL: &str = "spire.spiffe.io/class-name";

/// Condition type written on all three kinds.
pub const CONDITION_READY: &str = "Ready";

/// Condition type on ClusterSPIFFEIDs and ClusterStaticEntries whose entries are written
/// with less than declared (a federatesWith trust domain without a bundle, a field the
/// SPIRE server does not store); absent when everything declared is written.
pub const CONDITION_DEGRADED: &str = "Degraded";

/// On a ClusterFederatedTrustDomain: a new value asks SPIRE to refresh the trust domain's
/// bundle from its endpoint now (the outcome is in `status.lastRefresh`).
pub const REFRESH_BUNDLE_ANNOTATION: &str = "spire.spiffe.io/refresh-bundle";
