use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// ClusterStaticEntry: a literal SPIRE registration entry, e.g. for workloads outside
/// the cluster or nested SPIRE servers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "spire.spiffe.io",
    version = "v1alpha1",
    kind = "ClusterStaticEntry",
    plural = "clusterstaticentries",
    singular = "clusterstaticentry",
    shortname = "cse",
    category = "spire",
    status = "ClusterStaticEntryStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "ClusterStaticEntry is the Schema for the clusterstaticentries API",
    printcolumn(name = "SPIFFE ID", type_ = "string", json_path = ".spec.spiffeID"),
    printcolumn(name = "Parent ID", type_ = "string", json_path = ".spec.parentID", priority = 1),
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.className"),
    printcolumn(name = "Rendered", type_ = "boolean", json_path = ".status.rendered"),
    printcolumn(name = "Masked", type_ = "boolean", json_path = ".status.masked"),
    printcolumn(name = "Set", type_ = "boolean", json_path = ".status.set"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ClusterStaticEntrySpec {
    #[serde(rename = "spiffeID")]
    pub spiffe_id: String,
    #[serde(rename = "parentID")]
    pub parent_id: String,
    pub selectors: Vec<String>,
    #[serde(rename = "federatesWith", default, skip_serializing_if = "Option::is_none")]
    pub federates_with: Option<Vec<String>>,
    /// X509-SVID time-to-live (Go duration, e.g. "1h").
    #[serde(rename = "x509SVIDTTL", default, skip_serializing_if = "Option::is_none")]
    pub x509_svid_ttl: Option<String>,
    /// JWT-SVID time-to-live (Go duration).
    #[serde(rename = "jwtSVIDTTL", default, skip_serializing_if = "Option::is_none")]
    pub jwt_svid_ttl: Option<String>,
    #[serde(rename = "dnsNames", default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<bool>,
    #[serde(rename = "storeSVID", default, skip_serializing_if = "Option::is_none")]
    pub store_svid: Option<bool>,
    /// ClassName selects which controller class acts on this object.
    #[serde(rename = "className", default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// DisableX509SVIDPrefetch: agents mint the X509-SVID only when a workload asks for it
    /// (SPIRE >= 1.15; an extension beyond upstream's CRD).
    #[serde(rename = "disableX509SVIDPrefetch", default, skip_serializing_if = "Option::is_none")]
    pub disable_x509_svid_prefetch: Option<bool>,
    /// JWTSVIDIncludeJTI: JWT-SVIDs carry a `jti` claim (SPIRE >= 1.15; an extension beyond
    /// upstream's CRD).
    #[serde(rename = "jwtSVIDIncludeJTI", default, skip_serializing_if = "Option::is_none")]
    pub jwt_svid_include_jti: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClusterStaticEntryStatus {
    /// The spec was converted to an entry without error.
    pub rendered: bool,
    /// Another declared entry with the same key took precedence.
    pub masked: bool,
    /// The entry is present in SPIRE and current (upstream: created in the last pass).
    pub set: bool,
    /// Conditions (this implementation's addition): Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
