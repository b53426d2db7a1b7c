//! `cacheNamespaces`: where pods, Endpoints and EndpointSlices are watched, and so which
//! pods early registration may add. Shared by the watches (`k8s/watch.rs`) and early
//! registration (`k8s/early.rs`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// One namespace of `cacheNamespaces`, with its equality selectors (`{key: value}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceScope {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
}

impl NamespaceScope {
    /// From the config's `cacheNamespaces` map.
    pub fn from_config(namespaces: &BTreeMap<String, scm_config::NamespaceCacheConfig>) -> Vec<Self> {
        namespaces
            .iter()
            .map(|(ns, c)| NamespaceScope {
                namespace: ns.clone(),
                labels: c.label_selectors.clone(),
                fields: c.field_selectors.clone(),
            })
            .collect()
    }

    pub(crate) fn selector(m: &BTreeMap<String, String>) -> Option<String> {
        (!m.is_empty()).then(|| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
    }

    /// Whether the watch of this namespace would hold `pod`. Field selectors other than
    /// `metadata.name` / `metadata.namespace` cannot be judged from an admitted pod: no.
    pub fn admits(&self, pod: &Pod) -> bool {
        let m = &pod.metadata;
        let labels_ok = self.labels.iter().all(|(k, v)| m.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
        let fields_ok = self.fields.iter().all(|(k, v)| match k.as_str() {
            "metadata.name" => m.name.as_ref() == Some(v),
            "metadata.namespace" => m.namespace.as_ref() == Some(v),
            _ => false,
        });
        m.namespace.as_deref() == Some(self.namespace.as_str()) && labels_ok && fields_ok
    }
}
