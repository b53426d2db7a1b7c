//! Which pod fields entry declaration can read, so that the pod cache keeps only those
//! (issue: 10k pods in tens of MiB). Pure.

use scm_api::ClusterSPIFFEIDSpec;

use crate::parse::parse_cluster_spiffe_id;
pub use crate::tmpl::PodFields;

/// What declaration reads of every pod besides its templates: identity and namespace,
/// labels (podSelector), resourceVersion (the render cache) and the node (parent ID).
pub fn pod_fields_always() -> PodFields {
    PodFields::of([
        "PodMeta.Name",
        "PodMeta.Namespace",
        "PodMeta.UID",
        "PodMeta.ResourceVersion",
        "PodMeta.Labels",
        "PodSpec.NodeName",
    ])
}

/// The pod fields the SPIFFE ID, DNS name and workload selector templates of `spec`
/// can read. A spec that does not parse renders nothing and needs nothing.
pub fn pod_fields_of(spec: &ClusterSPIFFEIDSpec) -> PodFields {
    let mut out = PodFields::default();
    if let Ok(parsed) = parse_cluster_spiffe_id(spec) {
        let templates = std::iter::once(&parsed.spiffe_id_template)
            .chain(&parsed.dns_name_templates)
            .chain(&parsed.workload_selector_templates);
        for t in templates {
            out.union(&t.pod_fields());
        }
    }
    out
}

/// [`pod_fields_always`] plus what the templates of `specs` read.
pub fn pod_fields_needed<'a>(specs: impl IntoIterator<Item = &'a ClusterSPIFFEIDSpec>) -> PodFields {
    let mut out = pod_fields_always();
    for spec in specs {
        out.union(&pod_fields_of(spec));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, dns: &[&str], sel: &[&str]) -> ClusterSPIFFEIDSpec {
        ClusterSPIFFEIDSpec {
            spiffe_id_template: id.into(),
            dns_name_templates: Some(dns.iter().map(|s| s.to_string()).collect()),
            workload_selector_templates: Some(sel.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn helm_chart_default_needs_only_the_always_fields() {
        let s = spec(
            "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
            &[],
            &[],
        );
        let need = pod_fields_needed([&s]);
        assert_eq!(
            need.to_string(),
            "PodMeta{Labels,Name,Namespace,ResourceVersion,UID} PodSpec{NodeName,ServiceAccountName}"
        );
    }

    #[test]
    fn every_template_counts() {
        let s = spec(
            "spiffe://{{ .TrustDomain }}/x",
            &["{{ index .PodMeta.Annotations \"dns\" }}"],
            &["k8s:container-image:{{ (index .PodSpec.Containers 0).Image }}"],
        );
        assert_eq!(pod_fields_of(&s).to_string(), "PodMeta{Annotations} PodSpec{Containers}");
    }

    #[test]
    fn unparsable_spec_needs_nothing() {
        let s = spec("spiffe://{{ .PodSpec.Containers", &[], &[]);
        assert_eq!(pod_fields_of(&s), PodFields::default());
    }
}
