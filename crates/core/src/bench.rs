//! A synthetic cluster for timing `declare_entries` (used by the `declare_bench` example and
//! the ignored `declare_timing` test). Not part of the stable API.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointSubset, Endpoints, Namespace, Node, ObjectReference, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scm_api::{ClusterSPIFFEID, ClusterSPIFFEIDSpec};
use scm_spiffe::TrustDomain;

use crate::PodInfo;
use crate::tmpl::{DEFAULT_PARENT_ID_TEMPLATE, Template};
use crate::{Settings, World};

fn meta(name: &str, uid: &str, ns: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        uid: Some(uid.into()),
        resource_version: Some("1".into()),
        creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000).unwrap_or_default())),
        labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
        ..Default::default()
    }
}

/// `pods` pods over 50 namespaces and 100 nodes, every tenth pod behind a Service, and
/// `crs` ClusterSPIFFEIDs each selecting every pod (distinct SPIFFE ID paths), the first
/// with `autoPopulateDNSNames` and a DNS name template.
pub fn big_world(pods: usize, crs: usize) -> (World, Settings) {
    let namespaces: Vec<Arc<Namespace>> = (0..50)
        .map(|i| {
            Arc::new(Namespace {
                metadata: meta(&format!("ns-{i}"), &format!("ns-uid-{i}"), None, &[("env", "prod")]),
                ..Default::default()
            })
        })
        .collect();
    let nodes: Vec<Arc<Node>> = (0..100)
        .map(|i| {
            Arc::new(Node {
                metadata: meta(&format!("node-{i}"), &format!("node-uid-{i}"), None, &[]),
                ..Default::default()
            })
        })
        .collect();
    let mut pod_list = Vec::with_capacity(pods);
    let mut endpoints = Vec::new();
    for i in 0..pods {
        let ns = format!("ns-{}", i % 50);
        let uid = format!("pod-uid-{i:08}");
        pod_list.push(Arc::new(PodInfo::from(Pod {
            metadata: meta(&format!("pod-{i}"), &uid, Some(&ns), &[("app", "web"), ("idx", &format!("{}", i % 7))]),
            spec: Some(PodSpec {
                node_name: Some(format!("node-{}", i % 100)),
                service_account_name: Some(format!("sa-{}", i % 13)),
                ..Default::default()
            }),
            ..Default::default()
        })));
        if i % 10 == 0 {
            endpoints.push(Arc::new(Endpoints {
                metadata: meta(&format!("svc-{i}"), &format!("ep-uid-{i}"), Some(&ns), &[]),
                subsets: Some(vec![EndpointSubset {
                    addresses: Some(vec![EndpointAddress {
                        ip: "10.0.0.1".into(),
                        target_ref: Some(ObjectReference {
                            kind: Some("Pod".into()),
                            uid: Some(uid),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }]),
            }));
        }
    }
    let cluster_spiffe_ids = (0..crs)
        .map(|i| {
            let mut cr = ClusterSPIFFEID::new(
                &format!("cr-{i}"),
                ClusterSPIFFEIDSpec {
                    spiffe_id_template: format!(
                        "spiffe://{{{{ .TrustDomain }}}}/cr{i}/ns/{{{{ .PodMeta.Namespace }}}}/sa/{{{{ .PodSpec.ServiceAccountName }}}}/{{{{ .PodMeta.Name }}}}"
                    ),
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some([("env".to_string(), "prod".to_string())].into()),
                        ..Default::default()
                    }),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    }),
                    auto_populate_dns_names: Some(i == 0),
                    dns_name_templates: if i == 0 {
                        Some(vec!["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc.{{ .ClusterDomain }}".into()])
                    } else {
                        None
                    },
                    ..Default::default()
                },
            );
            cr.metadata = meta(&format!("cr-{i}"), &format!("cr-uid-{i}"), None, &[]);
            Arc::new(cr)
        })
        .collect();
    let world = World { pods: pod_list, nodes, namespaces, endpoints, cluster_spiffe_ids, ..Default::default() };
    let settings = Settings {
        trust_domain: TrustDomain::parse("example.org").expect("valid"),
        cluster_name: "bench".into(),
        cluster_domain: "cluster.local".into(),
        parent_id_template: Template::parse("parentIDTemplate", DEFAULT_PARENT_ID_TEMPLATE).expect("valid"),
        ignore_namespaces: vec![regex::Regex::new("^kube-").expect("valid")],
        class_name: String::new(),
        watch_classless: false,
        reconcile_cluster_spiffe_ids: true,
        reconcile_cluster_static_entries: true,
    };
    (world, settings)
}
