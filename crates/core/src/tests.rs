//! Table tests for declare + plan, with fixtures built in memory (no server).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointSubset, Endpoints, Namespace, Node, ObjectReference, Pod, PodSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scm_api::{ClusterSPIFFEID, ClusterSPIFFEIDSpec, ClusterStaticEntry, ClusterStaticEntrySpec};
use scm_spiffe::{AdditionalAttributes, Entry, Selector, SpiffeId, TrustDomain};

use crate::tmpl::{DEFAULT_PARENT_ID_TEMPLATE, Template};
use crate::*;

// ---------------------------------------------------------------- fixtures

const TD: &str = "example.org";
const CLUSTER: &str = "test";
const DOMAIN: &str = "cluster.local";
const SA_TEMPLATE: &str =
    "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}";

fn settings() -> Settings {
    Settings {
        trust_domain: TrustDomain::parse(TD).unwrap(),
        cluster_name: CLUSTER.into(),
        cluster_domain: DOMAIN.into(),
        parent_id_template: Template::parse("parentIDTemplate", DEFAULT_PARENT_ID_TEMPLATE).unwrap(),
        ignore_namespaces: ["kube-system", "kube-public", "spire-system"]
            .iter()
            .map(|r| regex::Regex::new(r).unwrap())
            .collect(),
        class_name: String::new(),
        watch_classless: false,
        reconcile_cluster_spiffe_ids: true,
        reconcile_cluster_static_entries: true,
    }
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    if pairs.is_empty() {
        return None;
    }
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn ts(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn meta(name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        uid: Some(uid.into()),
        resource_version: Some("1".into()),
        creation_timestamp: Some(ts(1_000)),
        ..Default::default()
    }
}

fn ns(name: &str, l: &[(&str, &str)]) -> Arc<Namespace> {
    Arc::new(Namespace {
        metadata: ObjectMeta { labels: labels(l), ..meta(name, &format!("ns-{name}")) },
        ..Default::default()
    })
}

fn node(name: &str, uid: &str) -> Arc<Node> {
    Arc::new(Node { metadata: meta(name, uid), ..Default::default() })
}

fn pod(namespace: &str, name: &str, uid: &str, node: &str, l: &[(&str, &str)]) -> Arc<PodInfo> {
    Arc::new(PodInfo::from(Pod {
        metadata: ObjectMeta { namespace: Some(namespace.into()), labels: labels(l), ..meta(name, uid) },
        spec: Some(PodSpec {
            service_account_name: Some(format!("sa-{name}")),
            node_name: if node.is_empty() { None } else { Some(node.into()) },
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn cspiffeid(name: &str, uid: &str, created: i64, spec: ClusterSPIFFEIDSpec) -> Arc<ClusterSPIFFEID> {
    let mut cr = ClusterSPIFFEID::new(name, spec);
    cr.metadata = ObjectMeta { creation_timestamp: Some(ts(created)), ..meta(name, uid) };
    Arc::new(cr)
}

fn spec(template: &str) -> ClusterSPIFFEIDSpec {
    ClusterSPIFFEIDSpec { spiffe_id_template: template.into(), ..Default::default() }
}

fn cse(name: &str, uid: &str, created: i64, spec: ClusterStaticEntrySpec) -> Arc<ClusterStaticEntry> {
    let mut cr = ClusterStaticEntry::new(name, spec);
    cr.metadata = ObjectMeta { creation_timestamp: Some(ts(created)), ..meta(name, uid) };
    Arc::new(cr)
}

fn static_spec(spiffe: &str, parent: &str, selectors: &[&str]) -> ClusterStaticEntrySpec {
    ClusterStaticEntrySpec {
        spiffe_id: spiffe.into(),
        parent_id: parent.into(),
        selectors: selectors.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// One namespace `default`, one node `n1`, pods `a` and `b`.
fn small_world() -> World {
    World {
        namespaces: vec![ns("default", &[])],
        nodes: vec![node("n1", "node-uid-1")],
        pods: vec![
            pod("default", "a", "uid-a", "n1", &[("app", "a")]),
            pod("default", "b", "uid-b", "n1", &[("app", "b")]),
        ],
        ..Default::default()
    }
}

fn declare(world: &World) -> Declared {
    declare_entries(world, &settings(), &mut RenderCache::new())
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn by_pod<'a>(d: &'a Declared, pod_uid: &str) -> Vec<&'a DeclaredEntry> {
    d.entries.iter().filter(|e| e.pod_uid.as_deref() == Some(pod_uid)).collect()
}

fn endpoints(namespace: &str, name: &str, ready: &[(&str, &str)], not_ready: &[(&str, &str)]) -> Arc<Endpoints> {
    let addrs = |v: &[(&str, &str)]| {
        Some(
            v.iter()
                .map(|(kind, uid)| EndpointAddress {
                    ip: "10.0.0.1".into(),
                    target_ref: Some(ObjectReference {
                        kind: Some(kind.to_string()),
                        uid: Some(uid.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        )
    };
    Arc::new(Endpoints {
        metadata: ObjectMeta { namespace: Some(namespace.into()), ..meta(name, &format!("ep-{name}")) },
        subsets: Some(vec![EndpointSubset {
            addresses: addrs(ready),
            not_ready_addresses: addrs(not_ready),
            ..Default::default()
        }]),
    })
}

fn slice(namespace: &str, name: &str, service: &str, pods: &[&str]) -> Arc<EndpointSlice> {
    Arc::new(EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            labels: labels(&[("kubernetes.io/service-name", service)]),
            ..meta(name, &format!("es-{name}"))
        },
        address_type: "IPv4".into(),
        endpoints: pods
            .iter()
            .map(|uid| Endpoint {
                addresses: vec!["10.0.0.2".into()],
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    uid: Some(uid.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: None,
    })
}

// ---------------------------------------------------------------- rendering (upstream entries_test.go)

#[test]
fn render_pod_entry_upstream_case() {
    let mut world = small_world();
    world.namespaces = vec![ns("namespace", &[])];
    world.pods = vec![pod("namespace", "test", "pod-uid", "n1", &[])];
    world.nodes = vec![node("n1", "uid")];
    world.endpoints = vec![
        endpoints("namespace", "endpoint", &[("Pod", "pod-uid")], &[]),
        endpoints("namespace", "other-endpoint", &[], &[("Pod", "pod-uid")]), // notReady counts too
    ];
    world.cluster_spiffe_ids = vec![cspiffeid(
        "c",
        "c-uid",
        1,
        ClusterSPIFFEIDSpec {
            dns_name_templates: Some(vec![
                "{{ .PodSpec.ServiceAccountName }}.{{ .PodMeta.Namespace }}.svc.{{ .ClusterDomain }}".into(),
                "{{ .PodSpec.ServiceAccountName }}.{{ .PodMeta.Namespace }}.svc.{{ .ClusterDomain }}".into(), // duplicate
                "{{ .PodMeta.Name }}.{{ .TrustDomain }}.svc".into(),
            ]),
            auto_populate_dns_names: Some(true),
            jwt_ttl: Some("60s".into()),
            ..spec(SA_TEMPLATE)
        },
    )];
    let d = declare(&world);
    assert!(d.failures.is_empty(), "{:?}", d.failures);
    let [e] = by_pod(&d, "pod-uid")[..] else { panic!("{:?}", d.entries) };
    let e = &e.entry;
    assert_eq!(e.spiffe_id.as_str(), "spiffe://example.org/ns/namespace/sa/sa-test");
    assert_eq!(e.parent_id.as_str(), "spiffe://example.org/spire/agent/k8s_psat/test/uid");
    assert_eq!(e.selectors, vec![Selector::new("k8s", "pod-uid:pod-uid")]);
    assert_eq!(e.jwt_svid_ttl, Duration::from_secs(60));
    assert!(!e.store_svid);
    let want: Vec<&str> = vec![
        "sa-test.namespace.svc.cluster.local",
        "test.example.org.svc",
        "endpoint",
        "endpoint.namespace",
        "endpoint.namespace.svc",
        "endpoint.namespace.svc.cluster.local",
        "other-endpoint",
        "other-endpoint.namespace",
        "other-endpoint.namespace.svc",
        "other-endpoint.namespace.svc.cluster.local",
    ];
    assert_eq!(e.dns_names, want);
}

#[test]
fn render_custom_parent_template() {
    let mut world = small_world();
    world.nodes = vec![node("test.example.org", "uid")];
    world.pods = vec![pod("default", "a", "uid-a", "test.example.org", &[])];
    world.cluster_spiffe_ids = vec![cspiffeid("c", "c-uid", 1, spec(SA_TEMPLATE))];
    let mut s = settings();
    s.parent_id_template =
        Template::parse("parentIDTemplate", "spiffe://{{ .TrustDomain }}/spire/agent/x509pop/{{ .NodeMeta.Name }}")
            .unwrap();
    let d = declare_entries(&world, &s, &mut RenderCache::new());
    assert_eq!(d.entries[0].entry.parent_id.as_str(), "spiffe://example.org/spire/agent/x509pop/test.example.org");
}

#[test]
fn render_fields_and_selectors() {
    let mut world = small_world();
    world.pods.truncate(1);
    world.cluster_spiffe_ids = vec![cspiffeid(
        "c",
        "c-uid",
        1,
        ClusterSPIFFEIDSpec {
            workload_selector_templates: Some(vec![
                "k8s:ns:{{ .PodMeta.Namespace }}".into(),
                "k8s:sa:{{ .PodSpec.ServiceAccountName }}".into(),
            ]),
            ttl: Some("1h0.5s".into()),
            federates_with: Some(vec!["b.org".into(), "a.org".into()]),
            admin: Some(true),
            downstream: Some(true),
            hint: Some("hint".into()),
            ..spec(SA_TEMPLATE)
        },
    )];
    let d = declare(&world);
    let e = &d.entries[0].entry;
    assert_eq!(
        e.selectors,
        vec![
            Selector::new("k8s", "pod-uid:uid-a"),
            Selector::new("k8s", "ns:default"),
            Selector::new("k8s", "sa:sa-a")
        ]
    );
    assert_eq!(e.x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(e.federates_with, vec![TrustDomain::parse("b.org").unwrap(), TrustDomain::parse("a.org").unwrap()]);
    assert!(e.admin && e.downstream && !e.store_svid);
    assert_eq!(e.hint, "hint");
    assert_eq!(d.entries[0].key, entry_key(e));
}

#[test]
fn render_failures() {
    // (spec, failing field)
    let cases: Vec<(ClusterSPIFFEIDSpec, &str)> = vec![
        (spec("spiffe://other.org/x"), "spec.spiffeIDTemplate"),
        (spec("not-an-id"), "spec.spiffeIDTemplate"),
        (
            ClusterSPIFFEIDSpec {
                workload_selector_templates: Some(vec!["ok:1".into(), "novalue:".into()]),
                ..spec(SA_TEMPLATE)
            },
            "spec.workloadSelectorTemplates[1]",
        ),
        (
            ClusterSPIFFEIDSpec {
                workload_selector_templates: Some(vec!["{{ .PodMeta.Name }}".into()]),
                ..spec(SA_TEMPLATE)
            },
            "spec.workloadSelectorTemplates[0]",
        ),
    ];
    for (sp, field) in cases {
        let mut world = small_world();
        world.pods.truncate(1);
        world.cluster_spiffe_ids = vec![cspiffeid("c", "c-uid", 1, sp)];
        let d = declare(&world);
        assert!(d.entries.is_empty());
        assert_eq!(d.failures.len(), 1);
        let f = &d.failures[0];
        assert_eq!(f.field, field, "{}", f.message);
        assert_eq!(f.pod, Some(("default".into(), "a".into())));
        assert_eq!(d.spiffe_id_stats["c"].pod_entry_render_failures, 1);
        assert!(d.protect.pods.contains_key("uid-a"));
    }

    // Parent ID outside the trust domain: every pod on the node fails.
    let mut world = small_world();
    world.cluster_spiffe_ids = vec![cspiffeid("c", "c-uid", 1, spec(SA_TEMPLATE))];
    let mut s = settings();
    s.parent_id_template = Template::parse("parentIDTemplate", "spiffe://elsewhere.org/{{ .NodeMeta.Name }}").unwrap();
    let d = declare_entries(&world, &s, &mut RenderCache::new());
    assert_eq!(d.failures.len(), 2);
    assert!(d.failures.iter().all(|f| f.field == "parentIDTemplate"));
}

#[test]
fn auto_populated_dns_names() {
    let mut world = small_world();
    world.namespaces.push(ns("other", &[]));
    world.endpoints = vec![
        endpoints("default", "svc-ep", &[("Pod", "uid-a"), ("Pod", "uid-b")], &[]),
        endpoints("default", "not-pod", &[("Node", "uid-a")], &[]),
        endpoints("other", "other-ns", &[("Pod", "uid-a")], &[]),
    ];
    world.endpoint_slices = vec![
        slice("default", "svc-ep-abc", "svc-ep", &["uid-a"]), // same service: no duplicates
        slice("default", "svc-slice-xyz", "svc-slice", &["uid-a"]),
    ];
    let mk = |auto: bool| {
        cspiffeid("c", "c-uid", 1, ClusterSPIFFEIDSpec { auto_populate_dns_names: Some(auto), ..spec(SA_TEMPLATE) })
    };
    world.cluster_spiffe_ids = vec![mk(true)];
    let d = declare(&world);
    let a = &by_pod(&d, "uid-a")[0].entry;
    assert_eq!(
        a.dns_names,
        vec![
            "svc-ep",
            "svc-ep.default",
            "svc-ep.default.svc",
            "svc-ep.default.svc.cluster.local",
            "svc-slice",
            "svc-slice.default",
            "svc-slice.default.svc",
            "svc-slice.default.svc.cluster.local",
        ]
    );
    assert_eq!(by_pod(&d, "uid-b")[0].entry.dns_names.len(), 4);

    // Without a cluster domain: three names per service.
    let mut s = settings();
    s.cluster_domain = String::new();
    let d = declare_entries(&world, &s, &mut RenderCache::new());
    assert_eq!(by_pod(&d, "uid-b")[0].entry.dns_names, vec!["svc-ep", "svc-ep.default", "svc-ep.default.svc"]);

    world.cluster_spiffe_ids = vec![mk(false)];
    let d = declare(&world);
    assert!(d.entries.iter().all(|e| e.entry.dns_names.is_empty()));
}

// ---------------------------------------------------------------- selection

#[test]
fn namespace_and_pod_selection_stats() {
    let world = World {
        namespaces: vec![
            ns("default", &[("team", "a")]),
            ns("prod", &[("team", "b")]),
            ns("my-spire-ns", &[("team", "a")]),
            ns("kube-system", &[]),
        ],
        nodes: vec![node("n1", "node-1")],
        pods: vec![
            pod("default", "web", "p1", "n1", &[("app", "web")]),
            pod("default", "db", "p2", "n1", &[("app", "db")]),
            pod("default", "nolabel", "p3", "n1", &[]),
            pod("prod", "web", "p4", "n1", &[("app", "web")]),
            pod("my-spire-ns", "web", "p5", "n1", &[("app", "web")]),
            pod("kube-system", "dns", "p6", "n1", &[("app", "web")]),
        ],
        cluster_spiffe_ids: vec![
            cspiffeid("all", "u1", 1, spec(SA_TEMPLATE)),
            cspiffeid(
                "team-a-web",
                "u2",
                1,
                ClusterSPIFFEIDSpec {
                    namespace_selector: Some(LabelSelector {
                        match_labels: labels(&[("team", "a")]),
                        ..Default::default()
                    }),
                    pod_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "app".into(),
                            operator: "In".into(),
                            values: Some(vec!["web".into()]),
                        }]),
                        ..Default::default()
                    }),
                    ..spec("spiffe://{{ .TrustDomain }}/web/{{ .PodMeta.Name }}")
                },
            ),
            cspiffeid(
                "not-web",
                "u3",
                1,
                ClusterSPIFFEIDSpec {
                    namespace_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "team".into(),
                            operator: "Exists".into(),
                            values: None,
                        }]),
                        ..Default::default()
                    }),
                    pod_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "app".into(),
                            operator: "NotIn".into(),
                            values: Some(vec!["web".into()]),
                        }]),
                        ..Default::default()
                    }),
                    ..spec("spiffe://{{ .TrustDomain }}/notweb/{{ .PodMeta.Name }}")
                },
            ),
            cspiffeid(
                "no-label",
                "u4",
                1,
                ClusterSPIFFEIDSpec {
                    pod_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "app".into(),
                            operator: "DoesNotExist".into(),
                            values: None,
                        }]),
                        ..Default::default()
                    }),
                    ..spec("spiffe://{{ .TrustDomain }}/nolabel/{{ .PodMeta.Name }}")
                },
            ),
        ],
        ..Default::default()
    };
    let mut s = settings();
    // `spire` is unanchored: it also ignores my-spire-ns.
    s.ignore_namespaces = vec![regex::Regex::new("spire").unwrap(), regex::Regex::new("^kube-").unwrap()];
    let d = declare_entries(&world, &s, &mut RenderCache::new());
    assert!(d.failures.is_empty());
    let st = |n: &str| d.spiffe_id_stats[n].clone();
    // (cr, namespacesSelected, namespacesIgnored, podsSelected, entriesToSet)
    let want = [("all", 4, 2, 4, 4), ("team-a-web", 2, 1, 1, 1), ("not-web", 3, 1, 2, 2), ("no-label", 4, 2, 1, 1)];
    for (name, sel, ign, pods, set) in want {
        let got = st(name);
        assert_eq!(
            (got.namespaces_selected, got.namespaces_ignored, got.pods_selected, got.entries_to_set),
            (sel, ign, pods, set),
            "{name}"
        );
    }
    assert!(d.entries.iter().all(|e| !["p5", "p6"].contains(&e.pod_uid.as_deref().unwrap())));
    let web: Vec<_> = d.entries.iter().filter(|e| e.entry.spiffe_id.path().starts_with("/web/")).collect();
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].pod_uid.as_deref(), Some("p1"));
}

#[test]
fn unscheduled_pod_skipped_unknown_node_fails() {
    let mut world = small_world();
    world.pods = vec![pod("default", "pending", "p1", "", &[]), pod("default", "orphan", "p2", "gone", &[])];
    world.cluster_spiffe_ids = vec![cspiffeid("c", "u", 1, spec(SA_TEMPLATE))];
    let d = declare(&world);
    assert!(d.entries.is_empty());
    let st = &d.spiffe_id_stats["c"];
    assert_eq!((st.pods_selected, st.pod_entry_render_failures), (2, 1));
    assert_eq!(d.failures.len(), 1);
    assert_eq!(d.failures[0].field, "spec.nodeName");
    assert_eq!(d.failures[0].pod, Some(("default".into(), "orphan".into())));
    assert!(!d.protect.pods.contains_key("p1"));
    assert!(d.protect.pods.contains_key("p2"));
}

#[test]
fn class_filter_in_declare() {
    let mut world = small_world();
    world.cluster_spiffe_ids = vec![
        cspiffeid("classless", "u1", 1, spec("spiffe://{{ .TrustDomain }}/classless/{{ .PodMeta.Name }}")),
        cspiffeid(
            "mine",
            "u2",
            1,
            ClusterSPIFFEIDSpec {
                class_name: Some("mine".into()),
                ..spec("spiffe://{{ .TrustDomain }}/mine/{{ .PodMeta.Name }}")
            },
        ),
        cspiffeid(
            "theirs",
            "u3",
            1,
            ClusterSPIFFEIDSpec {
                class_name: Some("theirs".into()),
                ..spec("spiffe://{{ .TrustDomain }}/theirs/{{ .PodMeta.Name }}")
            },
        ),
    ];
    world.cluster_static_entries = vec![
        cse("s-classless", "s1", 1, static_spec("spiffe://x.org/a", "spiffe://x.org/p", &["a:1"])),
        cse(
            "s-mine",
            "s2",
            1,
            ClusterStaticEntrySpec {
                class_name: Some("mine".into()),
                ..static_spec("spiffe://x.org/b", "spiffe://x.org/p", &["a:1"])
            },
        ),
    ];
    // (config className, watchClassless, processed CSPIFFEIDs, processed CSEs)
    let cases: [(&str, bool, &[&str], &[&str]); 4] = [
        ("", false, &["classless"], &["s-classless"]),
        ("", true, &["classless"], &["s-classless"]),
        ("mine", false, &["mine"], &["s-mine"]),
        ("mine", true, &["classless", "mine"], &["s-classless", "s-mine"]),
    ];
    for (class, wc, want_ids, want_static) in cases {
        let mut s = settings();
        s.class_name = class.into();
        s.watch_classless = wc;
        let d = declare_entries(&world, &s, &mut RenderCache::new());
        let ids: Vec<&str> = d.spiffe_id_stats.keys().map(String::as_str).collect();
        assert_eq!(ids, want_ids, "{class:?} {wc}");
        let st: Vec<&str> = d.static_entries.keys().map(String::as_str).collect();
        assert_eq!(st, want_static, "{class:?} {wc}");
        assert_eq!(d.entries.len(), want_ids.len() * 2 + want_static.len());
    }
}

#[test]
fn reconcile_toggles() {
    let mut world = small_world();
    world.cluster_spiffe_ids = vec![cspiffeid("c", "u", 1, spec(SA_TEMPLATE))];
    world.cluster_static_entries =
        vec![cse("s", "s1", 1, static_spec("spiffe://x.org/a", "spiffe://x.org/p", &["a:1"]))];
    let mut s = settings();
    s.reconcile_cluster_spiffe_ids = false;
    let d = declare_entries(&world, &s, &mut RenderCache::new());
    assert_eq!(d.entries.len(), 1);
    assert!(d.spiffe_id_stats.is_empty());
    s.reconcile_cluster_spiffe_ids = true;
    s.reconcile_cluster_static_entries = false;
    let d = declare_entries(&world, &s, &mut RenderCache::new());
    assert_eq!(d.entries.len(), 2);
    assert!(d.static_entries.is_empty());
}

#[test]
fn fallback() {
    let mut world = small_world();
    world.pods.push(pod("default", "c", "uid-c", "n1", &[("app", "c")]));
    let fb = |name: &str, uid: &str| {
        cspiffeid(
            name,
            uid,
            1,
            ClusterSPIFFEIDSpec {
                fallback: Some(true),
                ..spec(&format!("spiffe://{{{{ .TrustDomain }}}}/{name}/{{{{ .PodMeta.Name }}}}"))
            },
        )
    };
    world.cluster_spiffe_ids = vec![
        // Fallback CRs listed first: they must still be processed last.
        fb("fb1", "u1"),
        fb("fb2", "u2"),
        cspiffeid(
            "main",
            "u3",
            1,
            ClusterSPIFFEIDSpec {
                pod_selector: Some(LabelSelector { match_labels: labels(&[("app", "a")]), ..Default::default() }),
                ..spec("spiffe://{{ .TrustDomain }}/main/{{ .PodMeta.Name }}")
            },
        ),
        // Fails for pod b: a failed non-fallback render does not block fallback.
        cspiffeid(
            "broken",
            "u4",
            1,
            ClusterSPIFFEIDSpec {
                pod_selector: Some(LabelSelector { match_labels: labels(&[("app", "b")]), ..Default::default() }),
                ..spec("spiffe://other.org/{{ .PodMeta.Name }}")
            },
        ),
    ];
    let d = declare(&world);
    let paths = |uid: &str| {
        let mut v: Vec<String> = by_pod(&d, uid).iter().map(|e| e.entry.spiffe_id.path().to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(paths("uid-a"), vec!["/main/a"]);
    assert_eq!(paths("uid-b"), vec!["/fb1/b", "/fb2/b"]);
    assert_eq!(paths("uid-c"), vec!["/fb1/c", "/fb2/c"]);
    // podsSelected counts pods skipped by fallback.
    assert_eq!(d.spiffe_id_stats["fb1"].pods_selected, 3);
    assert_eq!(d.spiffe_id_stats["fb1"].entries_to_set, 2);
    assert_eq!(d.spiffe_id_stats["broken"].pod_entry_render_failures, 1);
}

// ---------------------------------------------------------------- masking

#[test]
fn masking_precedence() {
    // Two CRs producing the same entry (same SPIFFE ID template) for one pod.
    let with_times = |created: i64, deleted: Option<i64>, uid: &str, name: &str| {
        let mut cr = (*cspiffeid(name, uid, created, spec(SA_TEMPLATE))).clone();
        cr.metadata.deletion_timestamp = deleted.map(ts);
        Arc::new(cr)
    };
    // (first CR, second CR, expected winner)
    let cases = [
        ("older wins", with_times(10, None, "b", "x"), with_times(20, None, "a", "y"), "x"),
        ("older wins (listed second)", with_times(20, None, "a", "y"), with_times(10, None, "b", "x"), "x"),
        ("not deleted wins", with_times(10, Some(50), "a", "y"), with_times(10, None, "b", "x"), "x"),
        ("later deletion wins", with_times(10, Some(50), "a", "y"), with_times(10, Some(60), "b", "x"), "x"),
        ("smaller uid wins", with_times(10, None, "b", "y"), with_times(10, None, "a", "x"), "x"),
    ];
    for (what, a, b, winner) in cases {
        let mut world = small_world();
        world.pods.truncate(1);
        world.cluster_spiffe_ids = vec![a, b];
        let d = declare(&world);
        assert_eq!(d.entries.len(), 1, "{what}");
        assert_eq!(d.entries[0].source.name, winner, "{what}");
        let loser = if winner == "x" { "y" } else { "x" };
        assert_eq!(
            (d.spiffe_id_stats[winner].entries_to_set, d.spiffe_id_stats[winner].entries_masked),
            (1, 0),
            "{what}"
        );
        assert_eq!(
            (d.spiffe_id_stats[loser].entries_to_set, d.spiffe_id_stats[loser].entries_masked),
            (0, 1),
            "{what}"
        );
    }
}

#[test]
fn masking_static_vs_spiffe_id() {
    let mut world = small_world();
    world.pods.truncate(1);
    world.cluster_spiffe_ids = vec![cspiffeid("c", "c-uid", 20, spec(SA_TEMPLATE))];
    let same = static_spec(
        "spiffe://example.org/ns/default/sa/sa-a",
        "spiffe://example.org/spire/agent/k8s_psat/test/node-uid-1",
        &["k8s:pod-uid:uid-a"],
    );
    // Older static entry wins over the ClusterSPIFFEID...
    world.cluster_static_entries = vec![
        cse("older", "s1", 10, same.clone()),
        cse("newer", "s2", 30, ClusterStaticEntrySpec { hint: Some("h".into()), ..same.clone() }),
    ];
    let d = declare(&world);
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].source.kind, SourceKind::ClusterStaticEntry);
    assert_eq!(d.entries[0].source.name, "older");
    assert_eq!(d.spiffe_id_stats["c"].entries_masked, 1);
    assert_eq!(d.spiffe_id_stats["c"].entries_to_set, 0);
    assert!(!d.static_entries["older"].masked && d.static_entries["older"].rendered);
    assert!(d.static_entries["newer"].masked);
    assert_eq!(d.static_entries["older"].key, Some(d.entries[0].key.clone()));
    // ...and an older ClusterSPIFFEID masks the static entries.
    world.cluster_spiffe_ids = vec![cspiffeid("c", "c-uid", 5, spec(SA_TEMPLATE))];
    let d = declare(&world);
    assert_eq!(d.entries[0].source.kind, SourceKind::ClusterSPIFFEID);
    assert!(d.static_entries["older"].masked && d.static_entries["newer"].masked);
    assert_eq!(d.spiffe_id_stats["c"].entries_to_set, 1);
}

#[test]
fn static_entries_declared() {
    let world = World {
        cluster_static_entries: vec![
            cse(
                "ok",
                "s1",
                1,
                ClusterStaticEntrySpec {
                    store_svid: Some(true),
                    ..static_spec("spiffe://other.org/a", "spiffe://x.org/p", &["a:1"])
                },
            ),
            cse("bad", "s2", 1, static_spec("spiffe://x.org/a", "spiffe://x.org/p", &["nocolon"])),
        ],
        ..Default::default()
    };
    let d = declare(&world);
    assert_eq!(d.entries.len(), 1);
    assert!(d.entries[0].entry.store_svid);
    assert_eq!(d.entries[0].pod_uid, None);
    assert!(d.static_entries["ok"].rendered);
    let bad = &d.static_entries["bad"];
    assert!(!bad.rendered && bad.key.is_none());
    assert!(bad.error.as_deref().unwrap().starts_with("spec.selectors[0]: "));
    assert_eq!(d.failures[0].source.kind, SourceKind::ClusterStaticEntry);
    assert!(d.protect.non_pod_entries.is_some());
}

// ---------------------------------------------------------------- protection

fn existing(spiffe: &str, parent: &str, sels: &[(&str, &str)], entry_id: &str) -> Entry {
    let mut e = Entry::new(id(spiffe), id(parent), sels.iter().map(|(t, v)| Selector::new(*t, *v)).collect());
    e.id = entry_id.into();
    e
}

fn stale_pod_entry(pod_uid: &str, entry_id: &str) -> Entry {
    existing(
        "spiffe://example.org/old",
        "spiffe://example.org/spire/agent/k8s_psat/test/node-uid-1",
        &[("k8s", &format!("pod-uid:{pod_uid}"))],
        entry_id,
    )
}

fn plan_simple(d: &Declared, current: &[Entry]) -> Plan {
    plan(&d.entries, current, &Ownership::default(), &UnsupportedFields::default(), &d.protect)
}

fn ids(v: &[Entry]) -> Vec<&str> {
    v.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn protection_cr_parse_failure() {
    let mut world = small_world();
    world.pods.push(pod("kube-system", "k", "uid-k", "n1", &[("app", "a")]));
    // Selectors parse: only pod a (app=a, non-ignored namespace) is protected.
    world.cluster_spiffe_ids = vec![cspiffeid(
        "bad",
        "u",
        1,
        ClusterSPIFFEIDSpec {
            pod_selector: Some(LabelSelector { match_labels: labels(&[("app", "a")]), ..Default::default() }),
            ..spec("{{ nosuchfunc }}")
        },
    )];
    let d = declare(&world);
    assert_eq!(d.failures.len(), 1);
    assert_eq!(d.failures[0].pod, None);
    assert_eq!(d.failures[0].field, "spec.spiffeIDTemplate");
    assert!(d.spiffe_id_stats.contains_key("bad"));
    let mut protected: Vec<&str> = d.protect.pods.keys().map(String::as_str).collect();
    protected.sort();
    assert_eq!(protected, vec!["uid-a"]);
    let current = [stale_pod_entry("uid-a", "1"), stale_pod_entry("uid-b", "2"), stale_pod_entry("uid-gone", "3")];
    let p = plan_simple(&d, &current);
    assert_eq!(ids(&p.deletes), vec!["2", "3"]);
    assert_eq!(p.kept.len(), 1);
    assert_eq!(p.kept[0].0.id, "1");
    assert!(p.kept[0].1.contains("\"bad\""), "{}", p.kept[0].1);

    // Selectors do not parse: every existing pod is protected, vanished pods are not.
    world.cluster_spiffe_ids = vec![cspiffeid(
        "bad",
        "u",
        1,
        ClusterSPIFFEIDSpec {
            pod_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "a".into(),
                    operator: "Nope".into(),
                    values: None,
                }]),
                ..Default::default()
            }),
            ..spec(SA_TEMPLATE)
        },
    )];
    let d = declare(&world);
    assert_eq!(d.failures[0].field, "spec.podSelector");
    let mut protected: Vec<&str> = d.protect.pods.keys().map(String::as_str).collect();
    protected.sort();
    assert_eq!(protected, vec!["uid-a", "uid-b", "uid-k"]);
    let p = plan_simple(&d, &current);
    assert_eq!(ids(&p.deletes), vec!["3"]);
    assert_eq!(p.kept.len(), 2);
}

#[test]
fn protection_render_failure_keeps_only_that_pod() {
    let mut world = small_world();
    world.cluster_spiffe_ids = vec![cspiffeid(
        "c",
        "u",
        1,
        ClusterSPIFFEIDSpec {
            workload_selector_templates: Some(vec!["{{ index .PodMeta.Labels \"sel\" }}".into()]),
            ..spec(SA_TEMPLATE)
        },
    )];
    world.pods[1] = pod("default", "b", "uid-b", "n1", &[("sel", "k8s:x")]);
    let d = declare(&world);
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].pod_uid.as_deref(), Some("uid-b"));
    let current = [stale_pod_entry("uid-a", "1"), stale_pod_entry("uid-b", "2")];
    let p = plan_simple(&d, &current);
    assert_eq!(ids(&p.deletes), vec!["2"]);
    assert_eq!(ids(&p.kept.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()), vec!["1"]);
    assert_eq!(p.creates.len(), 1);
}

#[test]
fn protection_static_failure_keeps_non_pod_entries() {
    let mut world = small_world();
    world.cluster_static_entries = vec![cse("bad", "s", 1, static_spec("nope", "spiffe://x.org/p", &["a:1"]))];
    let d = declare(&world);
    let current = [
        existing("spiffe://x.org/manual", "spiffe://x.org/p", &[("unix", "uid:0")], "1"),
        stale_pod_entry("uid-a", "2"),
    ];
    let p = plan_simple(&d, &current);
    assert_eq!(ids(&p.deletes), vec!["2"]);
    assert_eq!(p.kept[0].0.id, "1");
    // With the CSE fixed, nothing is protected any more.
    world.cluster_static_entries =
        vec![cse("bad", "s", 1, static_spec("spiffe://x.org/ok", "spiffe://x.org/p", &["a:1"]))];
    let d = declare(&world);
    assert!(d.protect.is_empty());
    assert_eq!(ids(&plan_simple(&d, &current).deletes), vec!["1", "2"]);
}

#[test]
fn protection_keeps_the_controllers_own_identity() {
    let world = small_world();
    let mut d = declare(&world);
    let current = [
        existing("spiffe://x.org/controller", "spiffe://x.org/spire/agent/join_token/t", &[("unix", "uid:0")], "1"),
        existing("spiffe://x.org/manual", "spiffe://x.org/p", &[("unix", "uid:0")], "2"),
    ];
    assert_eq!(ids(&plan_simple(&d, &current).deletes), vec!["1", "2"]);
    d.protect.protect_spiffe_id("spiffe://x.org/controller");
    let p = plan_simple(&d, &current);
    assert_eq!(ids(&p.deletes), vec!["2"]);
    assert!(p.kept.is_empty(), "not held back: never ours to delete, like join-token entries");
    assert!(!d.protect.is_empty());
}

// ---------------------------------------------------------------- diff

fn declared(spiffe: &str, name: &str) -> DeclaredEntry {
    let entry = existing(spiffe, "spiffe://td/parent", &[("a", "1")], "");
    DeclaredEntry {
        key: entry_key(&entry),
        entry: Arc::new(entry),
        source: SourceRef { kind: SourceKind::ClusterStaticEntry, name: name.into(), uid: format!("uid-{name}") },
        pod_uid: None,
    }
}

fn current(spiffe: &str, entry_id: &str) -> Entry {
    existing(spiffe, "spiffe://td/parent", &[("a", "1")], entry_id)
}

#[test]
fn ownership_classification() {
    let own = |p: Option<&str>, c: Option<&str>| Ownership { prefix: p.map(Into::into), cleanup: c.map(Into::into) };
    use EntryOwnership::*;
    // (prefix, cleanup, entry id, expected)
    let cases = [
        (None, None, "anything", Managed),
        (None, Some(""), "anything.x", Managed),
        (Some(""), None, "x", Managed),
        (Some("scm."), None, "scm.123", Managed),
        (Some("scm."), None, "123", Ignored),
        (Some("scm."), None, "other.123", Ignored),
        (Some("scm."), Some(""), "123-abc", DeleteOnly),
        (Some("scm."), Some(""), "other.123", Ignored),
        (Some("scm."), Some(""), "scm.1", Managed),
        (Some("scm."), Some("old."), "old.1", DeleteOnly),
        (Some("scm."), Some("old."), "123", Ignored),
        (Some("scm."), Some("old."), "scm.1", Managed),
    ];
    for (p, c, entry_id, want) in cases {
        assert_eq!(own(p, c).classify(entry_id), want, "{p:?} {c:?} {entry_id}");
    }
}

#[test]
fn plan_with_prefix_and_cleanup() {
    let d = vec![declared("spiffe://td/new", "n"), declared("spiffe://td/kept", "k")];
    let cur = vec![
        current("spiffe://td/kept", "scm.1"),
        current("spiffe://td/gone", "scm.2"),
        current("spiffe://td/foreign", "other.3"),
        current("spiffe://td/unprefixed", "4"),
        current("spiffe://td/kept", "5"), // same key, but not ours: ignored/cleanup, never reused
    ];
    let own = Ownership { prefix: Some("scm.".into()), cleanup: Some("".into()) };
    let p = plan(&d, &cur, &own, &UnsupportedFields::default(), &Protection::default());
    assert_eq!(p.creates.len(), 1);
    assert_eq!(p.creates[0].1.id, crate::deterministic_entry_id("scm.", &p.creates[0].1));
    assert!(p.creates[0].1.id.starts_with("scm."));
    assert_eq!(p.creates[0].0.name, "n");
    assert_eq!(p.unchanged.len(), 1);
    assert_eq!(p.unchanged[0].1, "scm.1");
    assert_eq!(ids(&p.deletes), vec!["scm.2", "4", "5"]);

    // Without a prefix SPIRE assigns the ID and every entry is managed.
    let p = plan(&d, &cur, &Ownership::default(), &UnsupportedFields::default(), &Protection::default());
    assert_eq!(p.creates[0].1.id, "");
    assert_eq!(p.unchanged[0].1, "scm.1");
    assert_eq!(ids(&p.deletes), vec!["scm.2", "other.3", "4", "5"]);
}

#[test]
fn plan_duplicates_and_join_tokens() {
    let d = vec![declared("spiffe://td/a", "a")];
    let jt = |entry_id: &str, spiffe: &str| {
        existing(spiffe, "spiffe://td/spire/agent/join_token/abc", &[("spiffe_id", "spiffe://td/x")], entry_id)
    };
    let cur = vec![
        current("spiffe://td/a", "1"),
        current("spiffe://td/a", "2"),
        jt("3", "spiffe://td/node"),
        current("spiffe://td/a", "4"),
        jt("5", "spiffe://td/node"), // duplicate join-token entry: still kept
    ];
    let p = plan_simple_entries(&d, &cur);
    assert_eq!(p.unchanged[0].1, "1");
    assert_eq!(ids(&p.deletes), vec!["2", "4"]);
    // Join-token entries in cleanup are deleted (upstream does not filter them there).
    let own = Ownership { prefix: Some("scm.".into()), cleanup: Some("".into()) };
    let p = plan(&[], &[jt("3", "spiffe://td/node")], &own, &UnsupportedFields::default(), &Protection::default());
    assert_eq!(ids(&p.deletes), vec!["3"]);
}

fn plan_simple_entries(d: &[DeclaredEntry], cur: &[Entry]) -> Plan {
    plan(d, cur, &Ownership::default(), &UnsupportedFields::default(), &Protection::default())
}

#[test]
fn plan_protection_on_cleanup_entries() {
    let mut protect = Protection::default();
    protect.pods.insert("p1".into(), "because".into());
    let pod_entry = existing("spiffe://td/x", "spiffe://td/parent", &[("k8s", "pod-uid:p1")], "legacy");
    let own = Ownership { prefix: Some("scm.".into()), cleanup: Some("".into()) };
    let p = plan(&[], &[pod_entry], &own, &UnsupportedFields::default(), &protect);
    assert!(p.deletes.is_empty());
    assert_eq!(p.kept[0].1, "because");
}

#[test]
fn undeclared_additional_attributes_are_left_alone() {
    let mut old = current("spiffe://td/a", "1");
    old.additional_attributes =
        Some(AdditionalAttributes { disable_x509_svid_prefetch: true, jwt_svid_include_jti: true });
    let none = UnsupportedFields::default();
    let mut new = old.clone();
    new.additional_attributes = None;
    assert!(outdated_fields(&new, &old, &none).is_empty(), "not declared: not compared");
    // SPIRE may return an all-false message as none.
    new.additional_attributes = Some(AdditionalAttributes::default());
    old.additional_attributes = None;
    assert!(outdated_fields(&new, &old, &none).is_empty());
}

#[test]
fn outdated_fields_each() {
    let base = current("spiffe://td/a", "1");
    let none = UnsupportedFields::default();
    let all = UnsupportedFields { jwt_svid_ttl: true, hint: true, store_svid: true, additional_attributes: true };
    // (mutation, field, still outdated when unsupported fields are skipped)
    type Case = (fn(&mut Entry), &'static str, bool);
    let cases: Vec<Case> = vec![
        (|e| e.x509_svid_ttl = Duration::from_secs(1), "x509SVIDTTL", true),
        (|e| e.jwt_svid_ttl = Duration::from_secs(1), "jwtSVIDTTL", false),
        (|e| e.federates_with = vec![TrustDomain::parse("a.org").unwrap()], "federatesWith", true),
        (|e| e.admin = true, "admin", true),
        (|e| e.downstream = true, "downstream", true),
        (|e| e.dns_names = vec!["x".into()], "dnsNames", true),
        (|e| e.hint = "h".into(), "hint", false),
        (|e| e.store_svid = true, "storeSVID", false),
        (
            |e| {
                e.additional_attributes =
                    Some(AdditionalAttributes { disable_x509_svid_prefetch: true, ..Default::default() })
            },
            "disableX509SVIDPrefetch",
            false,
        ),
        (
            |e| {
                e.additional_attributes =
                    Some(AdditionalAttributes { jwt_svid_include_jti: true, ..Default::default() })
            },
            "jwtSVIDIncludeJTI",
            false,
        ),
    ];
    for (f, field, with_unsupported) in cases {
        let mut new = base.clone();
        f(&mut new);
        assert_eq!(outdated_fields(&new, &base, &none), vec![field]);
        assert_eq!(!outdated_fields(&new, &base, &all).is_empty(), with_unsupported, "{field}");
        // plan: update iff outdated
        let d = DeclaredEntry {
            key: entry_key(&new),
            entry: Arc::new({
                let mut n = new.clone();
                n.id.clear();
                n
            }),
            source: declared("spiffe://td/a", "s").source,
            pod_uid: None,
        };
        let p = plan(&[d], std::slice::from_ref(&base), &Ownership::default(), &none, &Protection::default());
        assert_eq!((p.updates.len(), p.unchanged.len()), (1, 0), "{field}");
        assert_eq!(p.updates[0].1.id, "1");
    }
    // Order-insensitive comparisons.
    let mut a = base.clone();
    a.dns_names = vec!["x".into(), "y".into()];
    a.federates_with = vec![TrustDomain::parse("a.org").unwrap(), TrustDomain::parse("b.org").unwrap()];
    let mut b = a.clone();
    b.dns_names.reverse();
    b.federates_with.reverse();
    assert!(outdated_fields(&a, &b, &none).is_empty());
    // Multisets: a duplicate counts.
    b.dns_names = vec!["x".into(), "x".into()];
    assert_eq!(outdated_fields(&a, &b, &none), vec!["dnsNames"]);
}

// ---------------------------------------------------------------- cache

#[test]
fn render_cache_validity_and_eviction() {
    let mut world = small_world();
    world.cluster_spiffe_ids = vec![
        cspiffeid("c1", "u1", 1, ClusterSPIFFEIDSpec { auto_populate_dns_names: Some(true), ..spec(SA_TEMPLATE) }),
        cspiffeid("c2", "u2", 1, spec("spiffe://{{ .TrustDomain }}/two/{{ .PodMeta.Name }}")),
    ];
    let s = settings();
    let mut cache = RenderCache::new();
    let first = declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses, cache.stats().size), (0, 4, 4));
    let second = declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (4, 0));
    assert_eq!(first.entries, second.entries);

    // Pod change (resourceVersion) → that pod re-renders under both CRs.
    let mut p = (*world.pods[0]).clone();
    p.metadata.resource_version = Some("2".into());
    Arc::make_mut(&mut p.spec).service_account_name = Some("changed".into());
    world.pods[0] = Arc::new(p);
    let d = declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (2, 2));
    assert!(d.entries.iter().any(|e| e.entry.spiffe_id.path() == "/ns/default/sa/changed"));

    // Spec change → that CR's pods re-render; a status-only change (new RV, same spec) does not.
    let mut c2 = (*world.cluster_spiffe_ids[1]).clone();
    c2.metadata.resource_version = Some("99".into());
    world.cluster_spiffe_ids[1] = Arc::new(c2.clone());
    declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (4, 0));
    c2.spec.hint = Some("new".into());
    world.cluster_spiffe_ids[1] = Arc::new(c2);
    let d = declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (2, 2));
    assert!(d.entries.iter().filter(|e| e.source.name == "c2").all(|e| e.entry.hint == "new"));

    // Endpoints referencing a pod → re-render (autoPopulate CR only).
    world.endpoints = vec![endpoints("default", "svc", &[("Pod", "uid-b")], &[])];
    let d = declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (3, 1));
    assert_eq!(by_pod(&d, "uid-b").iter().find(|e| e.source.name == "c1").unwrap().entry.dns_names.len(), 4);

    // Node change → re-render of its pods.
    let mut n = (*world.nodes[0]).clone();
    n.metadata.resource_version = Some("7".into());
    world.nodes[0] = Arc::new(n);
    declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 4));

    // Eviction: a deleted pod and a deleted CR leave the cache.
    world.pods.truncate(1);
    world.cluster_spiffe_ids.truncate(1);
    declare_entries(&world, &s, &mut cache);
    assert_eq!(cache.stats().size, 1);

    // Objects without a resourceVersion are never served from the cache.
    let mut p = (*world.pods[0]).clone();
    p.metadata.resource_version = None;
    world.pods[0] = Arc::new(p);
    declare_entries(&world, &s, &mut cache);
    declare_entries(&world, &s, &mut cache);
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 1));

    // Settings identity change resets the cache.
    let mut s2 = settings();
    s2.cluster_name = "other".into();
    world.pods = small_world().pods;
    let d = declare_entries(&world, &s2, &mut cache);
    assert_eq!(cache.stats().hits, 0);
    assert!(d.entries.iter().all(|e| e.entry.parent_id.path().contains("/other/")));
}

#[test]
fn render_failures_are_cached_too() {
    let mut world = small_world();
    world.cluster_spiffe_ids = vec![cspiffeid("c", "u", 1, spec("spiffe://wrong.org/x"))];
    let mut cache = RenderCache::new();
    let s = settings();
    declare_entries(&world, &s, &mut cache);
    let d = declare_entries(&world, &s, &mut cache);
    assert_eq!(cache.stats().hits, 2);
    assert_eq!(d.failures.len(), 2);
    assert_eq!(d.spiffe_id_stats["c"].pod_entry_render_failures, 2);
    world.pods.clear();
    let d = declare_entries(&world, &s, &mut cache);
    assert!(d.failures.is_empty());
    assert_eq!(cache.stats().size, 0);
}

/// `cargo test -p scm-core --release -- --ignored --nocapture declare_timing`
#[test]
#[ignore]
fn declare_timing() {
    let (world, s) = crate::bench::big_world(10_000, 3);
    let mut cache = RenderCache::new();
    let t = std::time::Instant::now();
    let d = declare_entries(&world, &s, &mut cache);
    let cold = t.elapsed();
    assert_eq!(d.entries.len(), 30_000);
    let mut warm = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let d = declare_entries(&world, &s, &mut cache);
        warm.push(t.elapsed());
        assert_eq!(d.entries.len(), 30_000);
    }
    let t = std::time::Instant::now();
    let p = plan::<Entry>(&d.entries, &[], &Ownership::default(), &UnsupportedFields::default(), &d.protect);
    let plan_t = t.elapsed();
    println!(
        "10k pods x 3 CRs: cold {cold:?}, warm {warm:?}, plan(empty current) {plan_t:?}, creates {}",
        p.creates.len()
    );
}

mod declaration;
mod explain;
