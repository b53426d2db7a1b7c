//! `explain_pod`, `explain_cluster_spiffe_id`, `check_in_spire`, `describe_plan`: every
//! reason, and agreement with `declare_entries` on the entries each pod gets.

use super::*;

fn sel(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector { match_labels: labels(pairs), ..Default::default() })
}

fn verdict_of<'a>(x: &'a PodExplanation, name: &str) -> &'a Verdict {
    &x.verdicts.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no verdict for {name}: {x:?}")).verdict
}

fn reason_of<'a>(x: &'a PodExplanation, name: &str) -> &'a Reason {
    match verdict_of(x, name) {
        Verdict::NotApplied(r) => r,
        v => panic!("{name} applies: {v:?}"),
    }
}

fn world_with(crs: Vec<Arc<ClusterSPIFFEID>>) -> World {
    let mut w = small_world();
    w.namespaces.push(ns("kube-system", &[]));
    w.namespaces.push(ns("shop", &[("team", "shop")]));
    w.pods.push(pod("kube-system", "dns", "uid-dns", "n1", &[]));
    w.pods.push(pod("shop", "web", "uid-web", "n1", &[("app", "web")]));
    w.pods.push(pod("shop", "pending", "uid-pending", "", &[("app", "web")]));
    w.pods.push(pod("shop", "lost", "uid-lost", "gone", &[("app", "web")]));
    w.cluster_spiffe_ids = crs;
    w
}

#[test]
fn a_selected_pod_gets_the_entries_declare_gives_it() {
    let w = world_with(vec![cspiffeid("sa", "u1", 10, spec(SA_TEMPLATE))]);
    let x = explain_pod(&w, &settings(), "shop", "web");
    assert_eq!(x.pod.as_ref().unwrap().uid, "uid-web");
    let Verdict::Applies(e) = verdict_of(&x, "sa") else { panic!("{x:?}") };
    assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/ns/shop/sa/sa-web");
    assert_eq!(x.entries.len(), 1);
    assert_eq!(*x.entries[0].entry, **e);
}

#[test]
fn a_missing_pod_is_said_so() {
    let x = explain_pod(&world_with(vec![]), &settings(), "shop", "nope");
    assert!(x.pod.is_none() && x.verdicts.is_empty() && x.entries.is_empty());
}

#[test]
fn namespace_selector_ignored_namespace_and_pod_selector() {
    let mut by_ns = spec(SA_TEMPLATE);
    by_ns.namespace_selector = sel(&[("team", "shop")]);
    let mut by_pod = spec(SA_TEMPLATE);
    by_pod.pod_selector = sel(&[("app", "other")]);
    let w = world_with(vec![cspiffeid("by-ns", "u1", 10, by_ns), cspiffeid("by-pod", "u2", 10, by_pod)]);
    let s = settings();
    let x = explain_pod(&w, &s, "default", "a");
    assert_eq!(reason_of(&x, "by-ns"), &Reason::NamespaceNotSelected { namespace: "default".into() });
    assert_eq!(reason_of(&x, "by-pod"), &Reason::PodNotSelected);
    assert!(x.entries.is_empty());
    let x = explain_pod(&w, &s, "kube-system", "dns");
    assert_eq!(
        reason_of(&x, "by-pod"),
        &Reason::NamespaceIgnored { namespace: "kube-system".into(), pattern: "kube-system".into() }
    );
    assert!(reason_of(&x, "by-pod").to_string().contains("ignoreNamespaces pattern \"kube-system\""));
}

#[test]
fn class_and_watch_classless() {
    let mut other = spec(SA_TEMPLATE);
    other.class_name = Some("other".into());
    let w = world_with(vec![cspiffeid("other", "u1", 10, other), cspiffeid("classless", "u2", 10, spec(SA_TEMPLATE))]);
    let mut s = settings();
    s.class_name = "mine".into();
    let x = explain_pod(&w, &s, "shop", "web");
    assert_eq!(
        reason_of(&x, "other"),
        &Reason::ClassMismatch { class_name: Some("other".into()), ours: "mine".into() }
    );
    assert_eq!(reason_of(&x, "classless"), &Reason::ClassMismatch { class_name: None, ours: "mine".into() });
    assert!(reason_of(&x, "classless").to_string().contains("watchClassless is false"));
    s.watch_classless = true;
    let x = explain_pod(&w, &s, "shop", "web");
    assert!(matches!(verdict_of(&x, "classless"), Verdict::Applies(_)));
    s.reconcile_cluster_spiffe_ids = false;
    let x = explain_pod(&w, &s, "shop", "web");
    assert_eq!(reason_of(&x, "classless"), &Reason::ReconcileDisabled);
}

#[test]
fn invalid_spec_names_the_field() {
    let w = world_with(vec![cspiffeid("bad", "u1", 10, spec(""))]);
    let x = explain_pod(&w, &settings(), "shop", "web");
    let Reason::InvalidSpec { field, .. } = reason_of(&x, "bad") else { panic!("{x:?}") };
    assert_eq!(field, "spec.spiffeIDTemplate");
}

#[test]
fn unscheduled_pod_and_missing_node() {
    let w = world_with(vec![cspiffeid("sa", "u1", 10, spec(SA_TEMPLATE))]);
    let x = explain_pod(&w, &settings(), "shop", "pending");
    assert_eq!(reason_of(&x, "sa"), &Reason::NotScheduled);
    let x = explain_pod(&w, &settings(), "shop", "lost");
    assert_eq!(reason_of(&x, "sa"), &Reason::NodeMissing { node: "gone".into() });
}

#[test]
fn render_failure_names_the_template_and_message() {
    let w = world_with(vec![cspiffeid("other-td", "u1", 10, spec("spiffe://other.org/{{ .PodMeta.Name }}"))]);
    let x = explain_pod(&w, &settings(), "shop", "web");
    let Reason::RenderFailed { field, message } = reason_of(&x, "other-td") else { panic!("{x:?}") };
    assert_eq!(field, "spec.spiffeIDTemplate");
    assert!(message.contains("trust domain"), "{message}");
    // The pass reports the same failure.
    let d = declare_entries(&w, &settings(), &mut RenderCache::new());
    assert!(d.failures.iter().any(|f| f.field == *field && f.pod == Some(("shop".into(), "web".into()))));
}

#[test]
fn masked_names_the_winner() {
    let w = world_with(vec![
        cspiffeid("young", "u2", 20, spec(SA_TEMPLATE)),
        cspiffeid("old", "u1", 10, spec(SA_TEMPLATE)),
    ]);
    let x = explain_pod(&w, &settings(), "shop", "web");
    assert!(matches!(verdict_of(&x, "old"), Verdict::Applies(_)));
    let Reason::Masked { winner, .. } = reason_of(&x, "young") else { panic!("{x:?}") };
    assert_eq!(winner.name, "old");
    assert!(reason_of(&x, "young").to_string().contains("ClusterSPIFFEID old"));
}

#[test]
fn fallback_is_skipped_when_another_object_applies() {
    let mut fb = spec("spiffe://{{ .TrustDomain }}/fallback/{{ .PodMeta.Name }}");
    fb.fallback = Some(true);
    let mut web_only = spec(SA_TEMPLATE);
    web_only.pod_selector = sel(&[("app", "web")]);
    let w = world_with(vec![cspiffeid("fb", "u1", 1, fb), cspiffeid("web", "u2", 10, web_only)]);
    let x = explain_pod(&w, &settings(), "shop", "web");
    assert_eq!(reason_of(&x, "fb"), &Reason::FallbackSkipped { by: vec!["web".into()] });
    // Fallback objects come last in the walk, as in the pass.
    assert_eq!(x.verdicts.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["web", "fb"]);
    let x = explain_pod(&w, &settings(), "default", "a");
    assert!(matches!(verdict_of(&x, "fb"), Verdict::Applies(_)));
}

/// Whatever the objects, the entries explain says apply are exactly what the pass declares.
#[test]
fn explain_agrees_with_declare_for_every_pod() {
    let mut fb = spec("spiffe://{{ .TrustDomain }}/fallback/{{ .PodMeta.Name }}");
    fb.fallback = Some(true);
    let mut by_ns = spec(SA_TEMPLATE);
    by_ns.namespace_selector = sel(&[("team", "shop")]);
    let mut other = spec(SA_TEMPLATE);
    other.class_name = Some("other".into());
    let w = world_with(vec![
        cspiffeid("fb", "u1", 1, fb),
        cspiffeid("by-ns", "u2", 5, by_ns),
        cspiffeid("sa", "u3", 10, spec(SA_TEMPLATE)),
        cspiffeid("other", "u4", 1, other),
        cspiffeid("bad", "u5", 1, spec("spiffe://other.org/x")),
    ]);
    let s = settings();
    let d = declare_entries(&w, &s, &mut RenderCache::new());
    for p in &w.pods {
        let (ns, name) = (p.metadata.namespace.as_deref().unwrap(), p.metadata.name.as_deref().unwrap());
        let x = explain_pod(&w, &s, ns, name);
        let mut applied: Vec<Entry> = x
            .verdicts
            .iter()
            .filter_map(|v| match &v.verdict {
                Verdict::Applies(e) => Some((**e).clone()),
                _ => None,
            })
            .collect();
        let mut want: Vec<Entry> =
            by_pod(&d, p.metadata.uid.as_deref().unwrap()).iter().map(|e| Entry::clone(&e.entry)).collect();
        applied.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        want.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        assert_eq!(applied, want, "{ns}/{name}");
    }
}

#[test]
fn a_cluster_spiffe_id_lists_its_pods_and_ignored_namespaces() {
    let w = world_with(vec![cspiffeid("sa", "u1", 10, spec(SA_TEMPLATE))]);
    let x = explain_cluster_spiffe_id(&w, &settings(), "sa");
    assert!(x.found && x.skipped.is_none());
    assert_eq!(x.ignored_namespaces, [("kube-system".to_owned(), "kube-system".to_owned())]);
    let names: Vec<&str> = x.pods.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "web", "pending", "lost"]);
    assert!(!explain_cluster_spiffe_id(&w, &settings(), "nope").found);
    let mut s = settings();
    s.class_name = "mine".into();
    assert!(matches!(explain_cluster_spiffe_id(&w, &s, "sa").skipped, Some(Reason::ClassMismatch { .. })));
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::parse(s).unwrap()
}

#[test]
fn check_in_spire_states_and_missing_bundles() {
    let mut federated = spec(SA_TEMPLATE);
    federated.federates_with = Some(vec!["partner.org".into()]);
    let w = world_with(vec![cspiffeid("sa", "u1", 10, federated)]);
    let d = declare_entries(&w, &settings(), &mut RenderCache::new());
    let want = by_pod(&d, "uid-web")[0].clone();
    let own = Ownership { prefix: Some("scm.".into()), cleanup: None };
    let none = UnsupportedFields::default();
    let check = |current: &[Entry], bundles: Option<&[TrustDomain]>| {
        check_in_spire(std::slice::from_ref(&want), current, &own, &none, &td(TD), bundles).remove(0)
    };
    let c = check(&[], Some(&[]));
    assert_eq!(c.state, SpireState::Missing { foreign: vec![] });
    assert_eq!(c.missing_bundles, [td("partner.org")]);
    assert!(check(&[], Some(&[td("partner.org")])).missing_bundles.is_empty());
    assert!(check(&[], None).missing_bundles.is_empty());

    let mut foreign = Entry::clone(&want.entry);
    foreign.id = "hand-made".into();
    assert_eq!(check(&[foreign], None).state, SpireState::Missing { foreign: vec!["hand-made".into()] });
    let mut ours = Entry::clone(&want.entry);
    ours.id = "scm.1".into();
    assert_eq!(check(std::slice::from_ref(&ours), None).state, SpireState::InSync { id: "scm.1".into() });
    // Without the bundle a pass writes the entry without that trust domain.
    let mut degraded = ours.clone();
    degraded.federates_with.clear();
    let c = check(std::slice::from_ref(&degraded), Some(&[]));
    assert_eq!((c.state, c.missing_bundles), (SpireState::InSync { id: "scm.1".into() }, vec![td("partner.org")]));
    let c = check(std::slice::from_ref(&degraded), Some(&[td("partner.org")]));
    assert_eq!(c.state, SpireState::Differs { id: "scm.1".into(), fields: vec!["federatesWith"] });
    ours.x509_svid_ttl = Duration::from_secs(60);
    ours.dns_names = vec!["x".into()];
    assert_eq!(
        check(&[ours], None).state,
        SpireState::Differs { id: "scm.1".into(), fields: vec!["x509SVIDTTL", "dnsNames"] }
    );
}

#[test]
fn describe_plan_groups_writes_and_says_what_it_leaves_alone() {
    let w = world_with(vec![cspiffeid("sa", "u1", 10, spec(SA_TEMPLATE))]);
    let d = declare_entries(&w, &settings(), &mut RenderCache::new());
    let own = Ownership { prefix: Some("scm.".into()), cleanup: Some("old.".into()) };
    let none = UnsupportedFields::default();
    let with_id = |e: &Entry, id: &str| Entry { id: id.into(), ..e.clone() };
    let a = &by_pod(&d, "uid-a")[0].entry;
    let b = &by_pod(&d, "uid-b")[0].entry;
    let mut drifted = with_id(b, "scm.b");
    drifted.admin = true;
    let stray =
        Entry::new(id("spiffe://example.org/stray"), id("spiffe://example.org/p"), vec![Selector::new("x", "y")]);
    let join = Entry::new(
        id("spiffe://example.org/node"),
        id("spiffe://example.org/spire/agent/join_token/t"),
        vec![Selector::new("spiffe_id", "z")],
    );
    let current = vec![
        with_id(a, "scm.a"),
        with_id(a, "scm.a2"),
        drifted,
        with_id(&stray, "scm.stray"),
        with_id(&stray, "old.stray"),
        with_id(&stray, "by-hand"),
        with_id(&stray, "other.x"),
        with_id(&join, "scm.join"),
    ];
    let p = plan(&d.entries, &current, &own, &none, &d.protect);
    let r = describe_plan(&p, &d.entries, &current, &own, &none);
    assert!(r.has_drift());
    let sa = &r.by_source[&d.entries[0].source];
    assert_eq!(sa.unchanged, 1);
    assert_eq!(sa.updates.len(), 1);
    assert_eq!(sa.updates[0].1, ["admin"]);
    assert_eq!(sa.creates.len(), 1, "shop/web only: {sa:?}");
    let deletes: Vec<(&str, &DeleteReason)> = r.deletes.iter().map(|(e, why)| (e.id.as_str(), why)).collect();
    assert!(deletes.contains(&("scm.a2", &DeleteReason::Duplicate)), "{deletes:?}");
    assert!(deletes.contains(&("scm.stray", &DeleteReason::Undeclared)));
    assert!(deletes.contains(&("old.stray", &DeleteReason::Cleanup)));
    let alone: Vec<(&str, &LeftAlone)> = r.left_alone.iter().map(|(e, why)| (e.id.as_str(), why)).collect();
    assert!(alone.contains(&("by-hand", &LeftAlone::Foreign)), "{alone:?}");
    assert!(alone.contains(&("other.x", &LeftAlone::OtherPrefix("other.".into()))));
    assert!(alone.contains(&("scm.join", &LeftAlone::JoinToken)));

    // In sync: nothing to write.
    let synced: Vec<Entry> =
        d.entries.iter().enumerate().map(|(i, e)| with_id(&e.entry, &format!("scm.{i}"))).collect();
    let p = plan(&d.entries, &synced, &own, &none, &d.protect);
    assert!(!describe_plan(&p, &d.entries, &synced, &own, &none).has_drift());
}

#[test]
fn describe_plan_reports_protected_entries() {
    let w = world_with(vec![cspiffeid("bad", "u1", 10, spec("spiffe://other.org/x"))]);
    let d = declare_entries(&w, &settings(), &mut RenderCache::new());
    let old = Entry::new(
        id("spiffe://example.org/old"),
        id("spiffe://example.org/p"),
        vec![Selector::new("k8s", "pod-uid:uid-web")],
    );
    let current = vec![Entry { id: "e1".into(), ..old }];
    let none = UnsupportedFields::default();
    let p = plan(&d.entries, &current, &Ownership::default(), &none, &d.protect);
    let r = describe_plan(&p, &d.entries, &current, &Ownership::default(), &none);
    assert!(r.deletes.is_empty());
    assert!(matches!(&r.left_alone[0].1, LeftAlone::Protected(why) if why.contains("failed to render")));
}

#[test]
fn a_pod_whose_namespace_is_not_in_the_snapshot() {
    let mut w = world_with(vec![cspiffeid("sa", "u1", 10, spec(SA_TEMPLATE))]);
    w.pods.push(pod("gone", "orphan", "uid-orphan", "n1", &[]));
    let x = explain_pod(&w, &settings(), "gone", "orphan");
    assert_eq!(reason_of(&x, "sa"), &Reason::NamespaceMissing { namespace: "gone".into() });
    assert!(x.entries.is_empty(), "the pass gives it nothing either");
}
