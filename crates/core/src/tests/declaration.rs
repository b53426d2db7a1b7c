//! A kept declaration, updated for what changed, agrees with a whole declaration of the
//! same world after every change; and it refuses (unchanged) what only a whole one answers.

use super::*;

/// A small deterministic generator (no dependency, same sequence on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

/// Several namespaces and nodes, ClusterSPIFFEIDs that select, mask, fall back, fail to
/// parse and populate DNS names from Endpoints, and one static entry.
fn rich_world() -> World {
    let mut with_dns = spec(SA_TEMPLATE);
    with_dns.auto_populate_dns_names = Some(true);
    with_dns.namespace_selector =
        Some(LabelSelector { match_labels: labels(&[("env", "prod")]), ..Default::default() });
    let mut by_app = spec("spiffe://{{ .TrustDomain }}/app/{{ index .PodMeta.Labels \"app\" }}");
    by_app.pod_selector = Some(LabelSelector { match_labels: labels(&[("tier", "web")]), ..Default::default() });
    let mut fallback = spec("spiffe://{{ .TrustDomain }}/fallback/{{ .PodMeta.Name }}");
    fallback.fallback = Some(true);
    let mut broken = spec("spiffe://{{ .TrustDomain }}/{{ .Nope");
    broken.pod_selector = Some(LabelSelector { match_labels: labels(&[("keep", "yes")]), ..Default::default() });
    World {
        namespaces: vec![ns("a", &[("env", "prod")]), ns("b", &[]), ns("kube-system", &[("env", "prod")])],
        nodes: vec![node("n1", "node-uid-1"), node("n2", "node-uid-2")],
        pods: Vec::new(),
        endpoints: vec![endpoints("a", "svc", &[("Pod", "p-0")], &[])],
        cluster_spiffe_ids: vec![
            cspiffeid("dns", "c1", 10, with_dns),
            // Same entries as `dns` for the pods both select, but younger: masked there.
            cspiffeid("twin", "c2", 20, spec(SA_TEMPLATE)),
            cspiffeid("app", "c3", 30, by_app),
            cspiffeid("fallback", "c4", 40, fallback),
            cspiffeid("broken", "c5", 50, broken),
        ],
        cluster_static_entries: vec![cse(
            "static",
            "s1",
            5,
            static_spec("spiffe://example.org/static", "spiffe://example.org/parent", &["unix:uid:0"]),
        )],
        ..Default::default()
    }
}

/// A pod with a new resourceVersion (as the apiserver would give a changed pod).
fn rv(p: &PodInfo, n: usize) -> Arc<PodInfo> {
    let mut p = p.clone();
    p.metadata.resource_version = Some(format!("{n}"));
    Arc::new(p)
}

fn pod_labels(rng: &mut Lcg) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("app", ["x", "y"][rng.next(2)])];
    if rng.next(2) == 0 {
        l.push(("tier", "web"));
    }
    if rng.next(4) == 0 {
        l.push(("keep", "yes"));
    }
    l
}

#[test]
fn incremental_updates_agree_with_whole_declarations() {
    let s = settings();
    let mut world = rich_world();
    let mut rng = Lcg(7);
    for i in 0..30 {
        let l = pod_labels(&mut rng);
        let (nsn, node) = (["a", "b", "kube-system"][rng.next(3)], ["n1", "n2"][rng.next(2)]);
        world.pods.push(pod(nsn, &format!("p-{i}"), &format!("p-{i}"), node, &l));
    }
    let mut cache = RenderCache::new();
    let mut kept = Declaration::build(&world, &s, &mut cache);
    let (mut incremental, mut next_uid) = (0, 1000);
    for step in 0..400 {
        let mut changes = Changes::default();
        match rng.next(9) {
            // A new pod, sometimes unscheduled or on a node that does not exist.
            0 => {
                let l = pod_labels(&mut rng);
                let node = ["n1", "n2", "", "gone"][rng.next(4)];
                let nsn = ["a", "b", "kube-system"][rng.next(3)];
                let name = format!("new-{step}");
                world.pods.push(pod(nsn, &name, &format!("u-{next_uid}"), node, &l));
                next_uid += 1;
                changes.pod(nsn, &name);
            }
            // A pod deleted.
            1 if !world.pods.is_empty() => {
                let p = world.pods.remove(rng.next(world.pods.len()));
                changes.pod(p.metadata.namespace.as_deref().unwrap(), p.metadata.name.as_deref().unwrap());
            }
            // A pod relabelled, or bound to a node.
            2 | 3 if !world.pods.is_empty() => {
                let i = rng.next(world.pods.len());
                let mut p = (*world.pods[i]).clone();
                p.metadata.labels = labels(&pod_labels(&mut rng));
                if p.node_name().is_empty() {
                    Arc::make_mut(&mut p.spec).node_name = Some("n1".into());
                }
                world.pods[i] = rv(&p, step + 10);
                changes.pod(p.metadata.namespace.as_deref().unwrap(), p.metadata.name.as_deref().unwrap());
            }
            // A pod deleted and created again under the same name (a new UID).
            4 if !world.pods.is_empty() => {
                let i = rng.next(world.pods.len());
                let mut p = (*world.pods[i]).clone();
                p.metadata.uid = Some(format!("u-{next_uid}"));
                next_uid += 1;
                world.pods[i] = Arc::new(p.clone());
                changes.pod(p.metadata.namespace.as_deref().unwrap(), p.metadata.name.as_deref().unwrap());
            }
            // A namespace relabelled: in or out of `dns`'s selector.
            5 => {
                let i = rng.next(2);
                let name = world.namespaces[i].metadata.name.clone().unwrap();
                let l: &[(&str, &str)] = if rng.next(2) == 0 { &[("env", "prod")] } else { &[] };
                world.namespaces[i] = ns(&name, l);
                changes.namespace(&name);
            }
            // A node replaced (a new UID: a new parent ID), removed or added back.
            6 => {
                let name = ["n1", "n2", "gone"][rng.next(3)];
                world.nodes.retain(|n| n.metadata.name.as_deref() != Some(name));
                if rng.next(3) != 0 {
                    let mut n = (*node(name, &format!("node-uid-{step}"))).clone();
                    n.metadata.resource_version = Some(format!("{step}"));
                    world.nodes.push(Arc::new(n));
                }
                changes.node(name);
            }
            // Endpoints changed: another pod behind the Service.
            7 if !world.pods.is_empty() => {
                let p = &world.pods[rng.next(world.pods.len())];
                let nsn = p.metadata.namespace.clone().unwrap();
                let mut e = (*endpoints(&nsn, "svc", &[("Pod", p.metadata.uid.as_deref().unwrap())], &[])).clone();
                e.metadata.resource_version = Some(format!("{step}"));
                for old in &world.endpoints {
                    changes.namespace(old.metadata.namespace.as_deref().unwrap()); // deleted there
                }
                world.endpoints = vec![Arc::new(e)];
                changes.namespace(&nsn);
            }
            _ => continue,
        }
        let before = kept.clone();
        let delta = kept.update(&world, &s, &mut cache, &changes).expect("pods, namespaces and nodes are incremental");
        incremental += 1;
        // A whole declaration of the same world, from a cache of its own.
        let whole = Declaration::build(&world, &s, &mut RenderCache::new());
        assert_eq!(kept.disagreements(&whole), 0, "step {step}: {changes:?}");
        assert_eq!(whole.disagreements(&kept), 0, "step {step}");
        // The delta is exactly the touched pods' entries of the whole declaration...
        let touched = delta.pods.clone().unwrap();
        let want: Vec<DeclaredEntry> = whole
            .declared()
            .entries
            .into_iter()
            .filter(|e| e.pod_uid.as_ref().is_some_and(|u| touched.contains(u)))
            .collect();
        assert_eq!(delta.entries, want, "step {step}");
        // ...and covers every pod whose entries changed.
        let old = before.declared().entries;
        let new = whole.declared().entries;
        for e in old.iter().filter(|e| !new.contains(e)).chain(new.iter().filter(|e| !old.contains(e))) {
            let uid = e.pod_uid.as_ref().expect("static entries do not change here");
            assert!(touched.contains(uid), "step {step}: {uid} changed but is not in the delta");
        }
        assert_eq!(kept.declared().failures, whole.declared().failures, "step {step}");
    }
    assert!(incremental > 250, "{incremental}");
}

#[test]
fn what_only_a_whole_declaration_answers_is_refused_unchanged() {
    let s = settings();
    let mut world = rich_world();
    world.pods = vec![pod("a", "p", "p-uid", "n1", &[])];
    let mut cache = RenderCache::new();
    let mut kept = Declaration::build(&world, &s, &mut cache);
    let snapshot = kept.declared();
    let pod_change = || {
        let mut c = Changes::default();
        c.pod("a", "p");
        c
    };
    let same = |kept: &Declaration| {
        let d = kept.declared();
        assert_eq!((d.entries, d.spiffe_id_stats), (snapshot.entries.clone(), snapshot.spiffe_id_stats.clone()));
    };

    assert!(kept.update(&world, &s, &mut cache, &Changes::everything()).is_none());
    same(&kept);
    // A ClusterSPIFFEID edited (its spec), deleted, or being deleted (its precedence).
    let mut edited = world.clone();
    edited.cluster_spiffe_ids[1] = cspiffeid("twin", "c2", 20, spec("spiffe://{{ .TrustDomain }}/other"));
    assert!(kept.update(&edited, &s, &mut cache, &pod_change()).is_none());
    let mut deleted = world.clone();
    deleted.cluster_spiffe_ids.remove(0);
    assert!(kept.update(&deleted, &s, &mut cache, &pod_change()).is_none());
    let mut going = world.clone();
    let mut cr = (*going.cluster_spiffe_ids[0]).clone();
    cr.metadata.deletion_timestamp = Some(ts(2_000));
    going.cluster_spiffe_ids[0] = Arc::new(cr);
    assert!(kept.update(&going, &s, &mut cache, &pod_change()).is_none());
    // A ClusterStaticEntry edited.
    let mut edited = world.clone();
    edited.cluster_static_entries =
        vec![cse("static", "s1", 5, static_spec("spiffe://example.org/s2", "spiffe://example.org/parent", &["a:b"]))];
    assert!(kept.update(&edited, &s, &mut cache, &pod_change()).is_none());
    same(&kept);

    // A static entry that names a pod's `k8s:pod-uid` selector: that pod's changes too.
    world.cluster_static_entries.push(cse(
        "names-pod",
        "s2",
        1,
        static_spec("spiffe://example.org/x", "spiffe://example.org/parent", &["k8s:pod-uid:p-uid"]),
    ));
    let mut kept = Declaration::build(&world, &s, &mut cache);
    assert!(kept.update(&world, &s, &mut cache, &pod_change()).is_none());
    let mut other = Changes::default();
    other.pod("b", "unrelated");
    assert!(kept.update(&world, &s, &mut cache, &other).is_some(), "other pods stay incremental");
}

#[test]
fn many_changes_become_everything() {
    let mut c = Changes::default();
    for i in 0..=Changes::MAX_NAMED {
        c.pod("ns", &format!("p{i}"));
    }
    assert!(c.everything && c.pods.is_empty());
    let mut d = Changes::default();
    d.node("n");
    d.merge(c);
    assert!(d.everything);
}
