//! Per-pod entry construction (upstream `renderPodEntry`), ARCHITECTURE.md §3.

use std::collections::HashSet;

use crate::fast::FastMap;

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use scm_spiffe::{Entry, Selector, SpiffeId, TrustDomain};

use crate::parse::ParsedClusterSPIFFEID;
use crate::settings::Settings;
use crate::tmpl::{Template, TemplateData};
use crate::world::{PodInfo, World};

/// A failure to render one entry: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderError {
    pub field: String,
    pub message: String,
}

impl RenderError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// The field named for a failing parent ID template (it is configuration, not CR spec).
pub(crate) const PARENT_ID_TEMPLATE_FIELD: &str = "parentIDTemplate";

static EMPTY_NODE_SPEC: std::sync::LazyLock<NodeSpec> = std::sync::LazyLock::new(NodeSpec::default);

fn node_spec(node: &Node) -> &NodeSpec {
    node.spec.as_ref().unwrap_or(&EMPTY_NODE_SPEC)
}

/// The parent ID of every pod on `node`: the configured template rendered with node-only
/// data; must be a SPIFFE ID in the trust domain.
pub(crate) fn render_parent_id(settings: &Settings, node: &Node) -> Result<SpiffeId, RenderError> {
    let data = TemplateData::for_node(
        settings.trust_domain.name(),
        &settings.cluster_name,
        &settings.cluster_domain,
        &node.metadata,
        node_spec(node),
    );
    render_spiffe_id(&settings.parent_id_template, &data, &settings.trust_domain)
        .map_err(|m| RenderError::new(PARENT_ID_TEMPLATE_FIELD, format!("failed to render parent ID: {m}")))
}

fn render_spiffe_id(t: &Template, data: &TemplateData, td: &TrustDomain) -> Result<SpiffeId, String> {
    let rendered = t.render(data).map_err(|e| format!("failed to execute template: {e}"))?;
    let id = SpiffeId::parse(&rendered).map_err(|e| format!("invalid SPIFFE ID {rendered:?}: {e}"))?;
    if !id.is_member_of(td) {
        return Err(format!(
            "invalid SPIFFE ID: expected trust domain {:?} but got {:?}",
            td.name(),
            id.trust_domain_name()
        ));
    }
    Ok(id)
}

/// Builds the entry for `pod` under `spec`. `services` are the sorted, de-duplicated names
/// of the Services whose endpoints reference the pod in its namespace (used only when
/// `autoPopulateDNSNames` is set).
pub(crate) fn render_pod_entry(
    spec: &ParsedClusterSPIFFEID,
    settings: &Settings,
    pod: &PodInfo,
    node: &Node,
    parent_id: &SpiffeId,
    services: &[&str],
) -> Result<Entry, RenderError> {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut selectors = vec![Selector::new("k8s", format!("pod-uid:{pod_uid}"))];

    let data = TemplateData::for_pod(
        settings.trust_domain.name(),
        &settings.cluster_name,
        &settings.cluster_domain,
        &pod.metadata,
        &pod.spec,
        &node.metadata,
        node_spec(node),
    );

    let spiffe_id = render_spiffe_id(&spec.spiffe_id_template, &data, &settings.trust_domain)
        .map_err(|m| RenderError::new("spec.spiffeIDTemplate", format!("failed to render SPIFFE ID: {m}")))?;

    let mut dns_names: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (i, t) in spec.dns_name_templates.iter().enumerate() {
        let name = t.render(&data).map_err(|e| {
            RenderError::new(
                format!("spec.dnsNameTemplates[{i}]"),
                format!("failed to render DNS name: failed to execute template: {e}"),
            )
        })?;
        if seen.insert(name.clone()) {
            dns_names.push(name);
        }
    }
    if spec.auto_populate_dns_names {
        for name in dns_names_from_services(services, namespace, &settings.cluster_domain) {
            if seen.insert(name.clone()) {
                dns_names.push(name);
            }
        }
    }

    for (i, t) in spec.workload_selector_templates.iter().enumerate() {
        let field = || format!("spec.workloadSelectorTemplates[{i}]");
        let rendered = t.render(&data).map_err(|e| {
            RenderError::new(field(), format!("failed to render workload selector: failed to execute template: {e}"))
        })?;
        let selector = Selector::parse(&rendered).map_err(|e| {
            RenderError::new(
                field(),
                format!("failed to render workload selector: invalid workload selector {rendered:?}: {e}"),
            )
        })?;
        selectors.push(selector);
    }

    Ok(Entry {
        id: String::new(),
        spiffe_id,
        parent_id: parent_id.clone(),
        selectors,
        x509_svid_ttl: spec.ttl,
        jwt_svid_ttl: spec.jwt_ttl,
        federates_with: spec.federates_with.clone(),
        admin: spec.admin,
        downstream: spec.downstream,
        dns_names,
        hint: spec.hint.clone(),
        store_svid: false,
        additional_attributes: spec.additional_attributes,
        revision: 0,
    })
}

/// Upstream `dnsNamesFromEndpoints`: `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc` and, with a
/// cluster domain, `<svc>.<ns>.svc.<domain>` for each service; the whole list sorted.
pub(crate) fn dns_names_from_services(services: &[&str], namespace: &str, cluster_domain: &str) -> Vec<String> {
    let mut names = Vec::with_capacity(services.len() * 4);
    for svc in services {
        names.push((*svc).to_owned());
        names.push(format!("{svc}.{namespace}"));
        names.push(format!("{svc}.{namespace}.svc"));
        if !cluster_domain.is_empty() {
            names.push(format!("{svc}.{namespace}.svc.{cluster_domain}"));
        }
    }
    names.sort();
    names
}

/// Which Services reference which pods: core/v1 Endpoints (`subsets[].addresses[]` and
/// `notReadyAddresses[]`) and discovery/v1 EndpointSlices (`endpoints[]`, service from the
/// `kubernetes.io/service-name` label), targetRef kind `Pod`, by pod UID.
#[derive(Default)]
pub(crate) struct ServiceIndex<'w> {
    by_pod: FastMap<&'w str, Vec<(&'w str, &'w str)>>,
}

pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl<'w> ServiceIndex<'w> {
    pub(crate) fn build(world: &'w World) -> Self {
        let mut by_pod: FastMap<&'w str, Vec<(&'w str, &'w str)>> = FastMap::default();
        for ep in &world.endpoints {
            let (Some(ns), Some(name)) = (ep.metadata.namespace.as_deref(), ep.metadata.name.as_deref()) else {
                continue;
            };
            for subset in ep.subsets.iter().flatten() {
                let addrs = subset.addresses.iter().flatten().chain(subset.not_ready_addresses.iter().flatten());
                for addr in addrs {
                    if let Some(uid) = pod_target_uid(addr.target_ref.as_ref()) {
                        by_pod.entry(uid).or_default().push((ns, name));
                    }
                }
            }
        }
        for slice in &world.endpoint_slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
                continue;
            };
            for ep in &slice.endpoints {
                if let Some(uid) = pod_target_uid(ep.target_ref.as_ref()) {
                    by_pod.entry(uid).or_default().push((ns, svc.as_str()));
                }
            }
        }
        Self { by_pod }
    }

    /// Sorted, de-duplicated service names in `namespace` referencing `pod_uid`.
    pub(crate) fn services(&self, pod_uid: &str, namespace: &str) -> Vec<&'w str> {
        let Some(refs) = self.by_pod.get(pod_uid) else {
            return Vec::new();
        };
        let mut out: Vec<&'w str> = refs.iter().filter(|(ns, _)| *ns == namespace).map(|(_, s)| *s).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn pod_target_uid(r: Option<&k8s_openapi::api::core::v1::ObjectReference>) -> Option<&str> {
    let r = r?;
    if r.kind.as_deref() != Some("Pod") {
        return None;
    }
    r.uid.as_deref()
}
