use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, LabelSelector};

/// ClusterSPIFFEID: an identity template applied to the pods its selectors pick.
/// One SPIRE entry per selected pod.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "spire.spiffe.io",
    version = "v1alpha1",
    kind = "ClusterSPIFFEID",
    plural = "clusterspiffeids",
    singular = "clusterspiffeid",
    shortname = "cspiffeid",
    category = "spire",
    status = "ClusterSPIFFEIDStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "ClusterSPIFFEID is the Schema for the clusterspiffeids API",
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.spiffeIDTemplate", priority = 1),
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.className"),
    printcolumn(name = "Fallback", type_ = "boolean", json_path = ".spec.fallback", priority = 1),
    printcolumn(name = "Pods", type_ = "integer", json_path = ".status.stats.podsSelected"),
    printcolumn(name = "Entries", type_ = "integer", json_path = ".status.stats.entriesToSet"),
    printcolumn(name = "Failures", type_ = "integer", json_path = ".status.stats.podEntryRenderFailures"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ClusterSPIFFEIDSpec {
    /// SPIFFEID is the SPIFFE ID template (Go text/template). The node and pod are made
    /// available to the template under .NodeMeta, .NodeSpec, .PodMeta and .PodSpec.
    #[serde(rename = "spiffeIDTemplate")]
    pub spiffe_id_template: String,

    /// NamespaceSelector selects the namespaces that are targeted by this CRD.
    #[serde(rename = "namespaceSelector", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub namespace_selector: Option<LabelSelector>,

    /// PodSelector selects the pods that are targeted by this CRD.
    #[serde(rename = "podSelector", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub pod_selector: Option<LabelSelector>,

    /// WorkloadSelectorTemplates render extra selectors of the form type:value.
    #[serde(rename = "workloadSelectorTemplates", default, skip_serializing_if = "Option::is_none")]
    pub workload_selector_templates: Option<Vec<String>>,

    /// DNSNameTemplates render extra DNS names for the SVIDs of this ClusterSPIFFEID.
    #[serde(rename = "dnsNameTemplates", default, skip_serializing_if = "Option::is_none")]
    pub dns_name_templates: Option<Vec<String>>,

    /// AutoPopulateDNSNames adds the DNS names of the Services whose endpoints select the pod.
    #[serde(rename = "autoPopulateDNSNames", default, skip_serializing_if = "Option::is_none")]
    pub auto_populate_dns_names: Option<bool>,

    /// FederatesWith is a list of trust domain names the workloads federate with.
    #[serde(rename = "federatesWith", default, skip_serializing_if = "Option::is_none")]
    pub federates_with: Option<Vec<String>>,

    /// TTL is an upper bound for the X509-SVID time-to-live (Go duration, e.g. "1h").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,

    /// JWTTTL is an upper bound for the JWT-SVID time-to-live (Go duration).
    #[serde(rename = "jwtTtl", default, skip_serializing_if = "Option::is_none")]
    pub jwt_ttl: Option<String>,

    /// Admin lets the SVID access the SPIRE administrative APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,

    /// Downstream marks an entry for a downstream SPIRE server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<bool>,

    /// Hint is an operator-defined string passed to the workload with its SVID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,

    /// ClassName selects which controller class acts on this object.
    #[serde(rename = "className", default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,

    /// Fallback applies this identity only to pods that got no entry from a non-fallback ClusterSPIFFEID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,

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
pub struct ClusterSPIFFEIDStatus {
    /// Stats produced by the last entry reconciliation run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ClusterSPIFFEIDStats>,

    /// Conditions (this implementation's addition): Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSPIFFEIDStats {
    /// How many namespaces were selected.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub namespaces_selected: i64,
    /// How many (selected) namespaces were ignored (based on configuration).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub namespaces_ignored: i64,
    /// How many pods were selected out of the namespaces.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pods_selected: i64,
    /// How many failures were encountered rendering an entry for selected pods.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pod_entry_render_failures: i64,
    /// How many entries were masked by entries of other objects with the same key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entries_masked: i64,
    /// How many entries are to be set for this ClusterSPIFFEID.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entries_to_set: i64,
    /// How many entries could not be created or updated through the SPIRE Server API.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entry_failures: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
