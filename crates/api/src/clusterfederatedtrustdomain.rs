use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, Time};

/// ClusterFederatedTrustDomain: a federation relationship with a foreign trust domain.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "spire.spiffe.io",
    version = "v1alpha1",
    kind = "ClusterFederatedTrustDomain",
    plural = "clusterfederatedtrustdomains",
    singular = "clusterfederatedtrustdomain",
    shortname = "cftd",
    category = "spire",
    status = "ClusterFederatedTrustDomainStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "ClusterFederatedTrustDomain is the Schema for the clusterfederatedtrustdomains API",
    printcolumn(name = "Trust Domain", type_ = "string", json_path = ".spec.trustDomain"),
    printcolumn(name = "Endpoint URL", type_ = "string", json_path = ".spec.bundleEndpointURL"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Bundle", type_ = "boolean", json_path = ".status.bundle.present"),
    printcolumn(name = "Sequence", type_ = "integer", json_path = ".status.bundle.sequenceNumber"),
    printcolumn(name = "Bundle Changed", type_ = "date", json_path = ".status.bundle.lastChanged"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ClusterFederatedTrustDomainSpec {
    /// TrustDomain is the name of the trust domain to federate with (e.g. example.org).
    #[serde(rename = "trustDomain")]
    #[schemars(regex(pattern = "[a-z0-9._-]{1,255}"))]
    pub trust_domain: String,
    /// BundleEndpointURL is the URL of the bundle endpoint (https only).
    #[serde(rename = "bundleEndpointURL")]
    pub bundle_endpoint_url: String,
    /// BundleEndpointProfile is the profile for the bundle endpoint.
    #[serde(rename = "bundleEndpointProfile")]
    pub bundle_endpoint_profile: BundleEndpointProfile,
    /// TrustDomainBundle is the SPIFFE bundle (JWKS JSON) of the trust domain, used to
    /// bootstrap https_spiffe endpoints.
    #[serde(rename = "trustDomainBundle", default, skip_serializing_if = "Option::is_none")]
    pub trust_domain_bundle: Option<String>,
    /// ClassName selects which controller class acts on this object.
    #[serde(rename = "className", default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct BundleEndpointProfile {
    /// Type is the type of the bundle endpoint profile.
    #[serde(rename = "type")]
    pub r#type: BundleEndpointProfileType,
    /// EndpointSPIFFEID is the SPIFFE ID of the bundle endpoint (https_spiffe only).
    #[serde(rename = "endpointSPIFFEID", default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spiffe_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BundleEndpointProfileType {
    #[default]
    #[serde(rename = "https_spiffe")]
    HttpsSpiffe,
    #[serde(rename = "https_web")]
    HttpsWeb,
}

/// Upstream writes no status for this kind; this implementation adds conditions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClusterFederatedTrustDomainStatus {
    /// Conditions: Ready (reason Applied, Invalid, Conflict or ApplyFailed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The trust domain's bundle as SPIRE holds it (an extension beyond upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<FederatedBundleStatus>,
    /// The latest refresh asked for with the `spire.spiffe.io/refresh-bundle` annotation.
    #[serde(rename = "lastRefresh", default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<BundleRefreshStatus>,
}

/// Whether SPIRE holds the foreign trust domain's bundle, and which version of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct FederatedBundleStatus {
    /// SPIRE holds a bundle for the trust domain.
    pub present: bool,
    /// The bundle's sequence number in SPIRE.
    #[serde(rename = "sequenceNumber", default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// How many X.509 authorities the bundle has.
    #[serde(rename = "x509Authorities", default, skip_serializing_if = "Option::is_none")]
    pub x509_authorities: Option<i64>,
    /// How many JWT authorities the bundle has.
    #[serde(rename = "jwtAuthorities", default, skip_serializing_if = "Option::is_none")]
    pub jwt_authorities: Option<i64>,
    /// A digest of the bundle's authorities (`sha256:` and 32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the controller saw the bundle appear, go or change (sequence number or authorities).
    #[serde(rename = "lastChanged", default, skip_serializing_if = "Option::is_none")]
    pub last_changed: Option<Time>,
}

/// The outcome of a refresh asked for with the `spire.spiffe.io/refresh-bundle` annotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct BundleRefreshStatus {
    /// The annotation's value that asked for it (a new value asks again).
    pub request: String,
    /// `Refreshed` or `Failed`.
    pub result: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When SPIRE answered.
    pub time: Time,
}
