//! What `declare_entries` needs from the configuration.

use regex::Regex;
use scm_spiffe::TrustDomain;

use crate::tmpl::Template;

#[derive(Debug, Clone)]
pub struct Settings {
    pub trust_domain: TrustDomain,
    pub cluster_name: String,
    /// May be empty (autodetection failed or not configured).
    pub cluster_domain: String,
    /// Process-wide parent ID template, rendered with node-only data
    /// (default: `scm_template::DEFAULT_PARENT_ID_TEMPLATE`).
    pub parent_id_template: Template,
    /// Unanchored regexes: `spire` also ignores `my-spire-ns`.
    pub ignore_namespaces: Vec<Regex>,
    pub class_name: String,
    pub watch_classless: bool,
    pub reconcile_cluster_spiffe_ids: bool,
    pub reconcile_cluster_static_entries: bool,
}

impl Settings {
    /// Upstream `namespace.IsIgnored`.
    pub fn is_namespace_ignored(&self, namespace: &str) -> bool {
        self.ignored_by(namespace).is_some()
    }

    /// The first `ignoreNamespaces` pattern matching `namespace`, if any.
    pub fn ignored_by(&self, namespace: &str) -> Option<&Regex> {
        self.ignore_namespaces.iter().find(|r| r.is_match(namespace))
    }
}
