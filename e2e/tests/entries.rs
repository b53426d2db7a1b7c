//! Workload registration end to end: ClusterSPIFFEID × pods and ClusterStaticEntry →
//! entries in a real spire-server, driven by the controller binary against a real
//! kube-apiserver. Every test has its own spire-server, class name, namespace and node.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const TD: &str = "example.org";
const WAIT: Duration = Duration::from_secs(30);

pub struct Fixture {
    pub spire: Spire,
    pub ctl: Controller,
    pub client: kube::Client,
    pub ns: String,
    pub node: String,
    pub node_uid: String,
    pub class: String,
}

/// `gcInterval` is 2 s unless `extra` sets it; SPIRE is read every gcInterval (as
/// upstream) unless `extra` sets `spireCheckMaxInterval`.
pub fn base_config(spire: &Spire, class: &str, extra: &str) -> String {
    let mut gc = if extra.contains("gcInterval:") { String::new() } else { "gcInterval: 2s\n".to_owned() };
    if !extra.contains("spireCheckMaxInterval:") {
        gc.push_str("spireCheckMaxInterval: 0s\n");
    }
    format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\n{server}className: {class}\nwatchClassless: false\n{gc}{extra}",
        // spireServerSocketPath, or spireServerAddress + workloadAPISocketPath (SCM_E2E_TRANSPORT=mtls)
        server = crate::transport::server_keys(spire)
    )
}

impl Fixture {
    pub async fn new(name: &str, extra_config: &str) -> Fixture {
        let client = kube().await;
        let spire = Spire::start(&unique(name), TD);
        let class = unique(name);
        let ns = unique(name);
        create_namespace(&client, &ns, &[("team", "a")]).await;
        let node = unique(&format!("{name}-node"));
        let n = create_node(&client, &node).await;
        // Trigger tests run with an hour-long gcInterval: a lost trigger is not hidden by
        // the next full pass. Tests about full passes set their own.
        let extra = if extra_config.contains("gcInterval:") {
            extra_config.to_owned()
        } else {
            format!("gcInterval: 1h\n{extra_config}")
        };
        let ctl = Controller::start(&class, &base_config(&spire, &class, &extra));
        // The first entry pass runs the controller's unsupported-fields probe, which creates
        // and deletes a dummy entry: let it be over before a test counts entries.
        eventually(WAIT, "the controller's first entry pass", || async {
            (ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 1.0).then_some(())
        })
        .await;
        Fixture { spire, ctl, client, ns, node, node_uid: n.metadata.uid.unwrap(), class }
    }

    pub fn parent_id(&self) -> String {
        format!("spiffe://{TD}/spire/agent/k8s_psat/e2e/{}", self.node_uid)
    }

    /// A ClusterSPIFFEID of this test's class selecting this test's namespace.
    pub fn cspiffeid(&self, name: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["className"] = json!(self.class);
        if spec.get("namespaceSelector").is_none() {
            spec["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": self.ns}});
        }
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": name}, "spec": spec})
    }

    pub async fn apply_cspiffeid(&self, name: &str, spec: Value) {
        apply_json(&self.client, "clusterspiffeids", self.cspiffeid(name, spec)).await;
    }

    pub async fn entries(&self) -> Vec<scm_spiffe::Entry> {
        let c = self.spire.client().await;
        let mut v = c.list_entries().await.expect("list entries");
        v.retain(|e| !crate::transport::is_transport_entry(&e.spiffe_id.to_string(), &e.parent_id.to_string()));
        v.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        v
    }

    /// Waits until the SPIRE entries satisfy `pred`, then cross-checks them with the CLI.
    pub async fn wait_entries(
        &self,
        what: &str,
        pred: impl Fn(&[scm_spiffe::Entry]) -> bool,
    ) -> Vec<scm_spiffe::Entry> {
        let got = eventually_or_logs(self, what, || async {
            let e = self.entries().await;
            pred(&e).then_some(e)
        })
        .await;
        let mut shown = self.spire.entry_show();
        shown.retain(|s| !crate::transport::is_transport_entry(&show_id(&s["spiffe_id"]), &show_id(&s["parent_id"])));
        assert_eq!(shown.len(), got.len(), "spire-server entry show agrees on the count");
        for e in &got {
            assert!(
                shown
                    .iter()
                    .any(|s| s["id"].as_str() == Some(e.id.as_str())
                        && show_id(&s["spiffe_id"]) == e.spiffe_id.to_string()),
                "entry {} {} in `entry show`",
                e.id,
                e.spiffe_id
            );
        }
        got
    }

    pub async fn writes(&self) -> f64 {
        self.ctl.metric("spire_controller_manager_entry_writes_total", &[]).await
    }

    /// How many calls of SPIRE API `method` (as the metrics name it) the controller made.
    pub async fn rpc_calls(&self, method: &str) -> f64 {
        let filter = format!("method=\"{method}\"");
        self.ctl.metric("spire_controller_manager_spire_rpc_duration_seconds_count", &[&filter]).await
    }

    pub async fn status(&self, plural: &str, name: &str) -> Value {
        let out = kubectl(&["get", plural, name, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["status"].clone()
    }
}

async fn eventually_or_logs<T, F, Fut>(fx: &Fixture, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let r = tokio::time::timeout(WAIT + Duration::from_secs(1), eventually(WAIT, what, f)).await;
    match r {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}\ncontroller log:\n{}", tail(&fx.ctl.logs(), 60)),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn ids(entries: &[scm_spiffe::Entry]) -> Vec<String> {
    entries.iter().map(|e| e.spiffe_id.to_string()).collect()
}

const SA_TEMPLATE: &str =
    "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}";

#[tokio::test]
async fn create_update_delete_and_status() {
    let fx = Fixture::new("crud", "").await;
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE, "podSelector": {"matchLabels": {"app": "web"}},
        "dnsNameTemplates": ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc"], "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace }}"]}))
        .await;
    let pod = create_pod(&fx.client, &fx.ns, "web-1", &fx.node, "web-sa", &[("app", "web")]).await;
    create_pod(&fx.client, &fx.ns, "other", &fx.node, "other-sa", &[("app", "other")]).await;
    create_pod(&fx.client, &fx.ns, "unscheduled", "", "web-sa", &[("app", "web")]).await;
    let want = format!("spiffe://{TD}/ns/{}/sa/web-sa", fx.ns);
    let got = fx.wait_entries("one entry for web-1", |e| e.len() == 1).await;
    let e = &got[0];
    assert_eq!(e.spiffe_id.to_string(), want);
    assert_eq!(e.parent_id.to_string(), fx.parent_id());
    let sels: Vec<String> = e.selectors.iter().map(|s| s.to_string()).collect();
    assert_eq!(sels, vec![format!("k8s:pod-uid:{}", pod.metadata.uid.clone().unwrap()), format!("k8s:ns:{}", fx.ns)]);
    assert_eq!(e.dns_names, vec![format!("web-1.{}.svc", fx.ns)]);

    // Status: stats (the unscheduled pod is selected but skipped, not a failure) and Ready.
    let st = eventually(WAIT, "status stats", || async {
        let s = fx.status("clusterspiffeids", &fx.class).await;
        (s["stats"]["entriesToSet"] == json!(1)).then_some(s)
    })
    .await;
    assert_eq!(st["stats"]["namespacesSelected"], json!(1));
    assert!(st["stats"].get("podEntryRenderFailures").is_none(), "{st}");
    assert_eq!(st["conditions"][0]["type"], json!("Ready"));
    assert_eq!(st["conditions"][0]["status"], json!("True"));

    // Update in place: TTL and hint change keep the entry ID.
    let id = e.id.clone();
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE, "podSelector": {"matchLabels": {"app": "web"}},
        "dnsNameTemplates": ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc"], "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace }}"],
        "ttl": "1h", "jwtTtl": "5m", "hint": "web"}))
        .await;
    let got = fx.wait_entries("ttl updated", |e| e.len() == 1 && e[0].x509_svid_ttl == Duration::from_secs(3600)).await;
    assert_eq!(got[0].id, id, "updated in place");
    assert_eq!(got[0].jwt_svid_ttl, Duration::from_secs(300));
    assert_eq!(got[0].hint, "web");

    // Key change (SPIFFE ID) = delete + create.
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/app/{{ index .PodMeta.Labels \"app\" }}", "podSelector": {"matchLabels": {"app": "web"}}}))
        .await;
    let got = fx.wait_entries("new SPIFFE ID", |e| ids(e) == vec![format!("spiffe://{TD}/app/web")]).await;
    assert_ne!(got[0].id, id);

    // A second pod, then deleting pods removes their entries.
    create_pod(&fx.client, &fx.ns, "web-2", &fx.node, "web-sa", &[("app", "web")]).await;
    fx.wait_entries("two pods", |e| e.len() == 2).await;
    delete_pod(&fx.client, &fx.ns, "web-1").await;
    fx.wait_entries("web-1 gone", |e| e.len() == 1).await;
    delete_cr(&fx.client, "ClusterSPIFFEID", "clusterspiffeids", &fx.class).await;
    fx.wait_entries("CR gone", |e| e.is_empty()).await;
}

#[tokio::test]
async fn masking_and_fallback() {
    let fx = Fixture::new("mask", "").await;
    let older = format!("{}-a", fx.class);
    let newer = format!("{}-b", fx.class);
    let fallback = format!("{}-fb", fx.class);
    // Two CRs declaring the same entry key: one entry; the older wins, the newer is masked.
    fx.apply_cspiffeid(&older, json!({"spiffeIDTemplate": SA_TEMPLATE, "hint": "older"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has second precision
    fx.apply_cspiffeid(&newer, json!({"spiffeIDTemplate": SA_TEMPLATE, "hint": "newer"})).await;
    // Fallback applies only to pods without a non-fallback entry.
    fx.apply_cspiffeid(
        &fallback,
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/fallback/{{ .PodMeta.Name }}", "fallback": true}),
    )
    .await;
    create_pod(&fx.client, &fx.ns, "p1", &fx.node, "sa1", &[]).await;
    let got = fx.wait_entries("one masked entry", |e| e.len() == 1 && e[0].hint == "older").await;
    assert_eq!(got[0].spiffe_id.to_string(), format!("spiffe://{TD}/ns/{}/sa/sa1", fx.ns));
    let st = eventually(WAIT, "masked count", || async {
        let s = fx.status("clusterspiffeids", &newer).await;
        (s["stats"]["entriesMasked"] == json!(1)).then_some(s)
    })
    .await;
    assert!(st["stats"].get("entriesToSet").is_none(), "{st}");

    // Removing both non-fallback CRs lets the fallback apply.
    delete_cr(&fx.client, "ClusterSPIFFEID", "clusterspiffeids", &older).await;
    let got = fx.wait_entries("newer takes over", |e| e.len() == 1 && e[0].hint == "newer").await;
    assert_eq!(got.len(), 1);
    delete_cr(&fx.client, "ClusterSPIFFEID", "clusterspiffeids", &newer).await;
    fx.wait_entries("fallback applies", |e| ids(e) == vec![format!("spiffe://{TD}/fallback/p1")]).await;
}

#[tokio::test]
async fn class_filter_and_ignored_namespaces() {
    let fx = Fixture::new("class", "ignoreNamespaces: [\"kube-system\", \"ignored\"]\n").await;
    // A namespace matched by the unanchored regex "ignored".
    let ignored_ns = format!("my-ignored-{}", fx.ns);
    create_namespace(&fx.client, &ignored_ns, &[("team", "a")]).await;
    create_pod(&fx.client, &fx.ns, "p", &fx.node, "sa", &[]).await;
    create_pod(&fx.client, &ignored_ns, "p", &fx.node, "sa", &[]).await;
    // Other class and classless objects are not processed (watchClassless: false).
    let mut other = fx.cspiffeid(
        &format!("{}-other", fx.class),
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/other/{{ .PodMeta.Name }}"}),
    );
    other["spec"]["className"] = json!("someone-else");
    apply_json(&fx.client, "clusterspiffeids", other).await;
    let mut classless = fx.cspiffeid(
        &format!("{}-classless", fx.class),
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/classless/{{ .PodMeta.Name }}"}),
    );
    classless["spec"].as_object_mut().unwrap().remove("className");
    apply_json(&fx.client, "clusterspiffeids", classless).await;
    // Ours selects both namespaces by label.
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/{{ .PodMeta.Name }}",
        "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [fx.ns.clone(), ignored_ns.clone()]}]}}))
        .await;
    let got = fx.wait_entries("only our class, only non-ignored namespaces", |e| e.len() == 1).await;
    assert_eq!(got[0].spiffe_id.to_string(), format!("spiffe://{TD}/ns/{}/p", fx.ns));
    let st = eventually(WAIT, "ignored namespace counted", || async {
        let s = fx.status("clusterspiffeids", &fx.class).await;
        (s["stats"]["namespacesIgnored"] == json!(1)).then_some(s)
    })
    .await;
    assert_eq!(st["stats"]["namespacesSelected"], json!(2));
    // Let a couple of passes run; still exactly one entry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fx.entries().await.len(), 1);
}

#[tokio::test]
async fn prefix_cleanup_and_foreign_entries() {
    let client = kube().await;
    let spire = Spire::start(&unique("prefix"), TD);
    let sc = spire.client().await;
    let mk = |id: &str, path: &str, parent: &str, sels: &[(&str, &str)]| {
        let mut e = scm_spiffe::Entry::new(
            scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}{path}")).unwrap(),
            scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}{parent}")).unwrap(),
            sels.iter().map(|(t, v)| scm_spiffe::Selector::new(*t, *v)).collect(),
        );
        e.id = id.to_owned();
        e
    };
    // Foreign entries: a manual one with a dotted ID (ignored), an unprefixed legacy one
    // (no dot: cleanup ""), and a join-token agent alias (with prefix: untouched anyway).
    let foreign = vec![
        mk("manual.1", "/manual", "/spire/server", &[("unix", "uid:0")]),
        mk("legacy1", "/legacy", "/spire/server", &[("unix", "uid:1")]),
        mk("other.2", "/other-cluster", "/spire/server", &[("unix", "uid:2")]),
    ];
    for r in sc.create_entries(&foreign).await.expect("seed") {
        r.expect("seed entry");
    }
    let class = unique("prefix");
    let ns = unique("prefix");
    create_namespace(&client, &ns, &[]).await;
    let node = unique("prefix-node");
    create_node(&client, &node).await;
    create_pod(&client, &ns, "p", &node, "sa", &[]).await;
    let ctl =
        Controller::start(&class, &base_config(&spire, &class, "entryIDPrefix: e2e\nentryIDPrefixCleanup: \"\"\n"));
    let fx = Fixture { spire, ctl, client, ns, node, node_uid: String::new(), class };
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE})).await;
    let got = fx
        .wait_entries("ours created, legacy cleaned, foreign kept", |e| {
            e.len() == 3 && e.iter().any(|x| x.id.starts_with("e2e.")) && !e.iter().any(|x| x.id == "legacy1")
        })
        .await;
    let mut got_ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    got_ids.sort();
    assert_eq!(got_ids[1..], ["manual.1", "other.2"]);
    assert!(got_ids[0].starts_with("e2e.") && got_ids[0].len() > 10, "{got_ids:?}");
}

#[tokio::test]
async fn join_token_entries_are_never_deleted() {
    let fx = Fixture::new("jointoken", "gcInterval: 2s\n").await;
    let sc = fx.spire.client().await;
    // Without a prefix every entry is managed, except join-token agent aliases.
    let mut alias = scm_spiffe::Entry::new(
        scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/node-alias")).unwrap(),
        scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/spire/agent/join_token/abcd")).unwrap(),
        vec![scm_spiffe::Selector::new("spiffe_id", format!("spiffe://{TD}/spire/agent/join_token/abcd"))],
    );
    alias.id = String::new();
    let manual = scm_spiffe::Entry::new(
        scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/manual")).unwrap(),
        scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/spire/server")).unwrap(),
        vec![scm_spiffe::Selector::new("unix", "uid:0")],
    );
    for r in sc.create_entries(&[alias, manual]).await.unwrap() {
        r.unwrap();
    }
    let got = fx.wait_entries("manual entry deleted, join token alias kept", |e| e.len() == 1).await;
    assert_eq!(got[0].spiffe_id.to_string(), format!("spiffe://{TD}/node-alias"));
}

#[tokio::test]
async fn auto_populated_dns_names() {
    let fx = Fixture::new("dns", "").await;
    let pod = create_pod(&fx.client, &fx.ns, "p", &fx.node, "sa", &[("app", "web")]).await;
    create_endpoints(&fx.client, &fx.ns, "websvc", &[&pod]).await;
    fx.apply_cspiffeid(
        &fx.class,
        json!({"spiffeIDTemplate": SA_TEMPLATE, "autoPopulateDNSNames": true,
        "dnsNameTemplates": ["first.example"]}),
    )
    .await;
    let got = fx.wait_entries("dns names", |e| e.len() == 1 && e[0].dns_names.len() == 5).await;
    let ns = &fx.ns;
    assert_eq!(
        got[0].dns_names,
        vec![
            "first.example".to_string(),
            "websvc".into(),
            format!("websvc.{ns}"),
            format!("websvc.{ns}.svc"),
            format!("websvc.{ns}.svc.cluster.local"),
        ]
    );
}

#[tokio::test]
async fn broken_template_keeps_existing_entries() {
    let fx = Fixture::new("broken", "gcInterval: 2s\n").await;
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE})).await;
    create_pod(&fx.client, &fx.ns, "p", &fx.node, "sa", &[]).await;
    let before = fx.wait_entries("entry", |e| e.len() == 1).await;
    // A template that renders outside the trust domain for every pod: upstream deletes the
    // entries; here they are kept and the failure is reported.
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": "spiffe://elsewhere.org/{{ .PodMeta.Name }}"})).await;
    let st = eventually(WAIT, "render failure reported", || async {
        let s = fx.status("clusterspiffeids", &fx.class).await;
        (s["stats"]["podEntryRenderFailures"] == json!(1)).then_some(s)
    })
    .await;
    assert_eq!(st["conditions"][0]["status"], json!("False"), "{st}");
    assert_eq!(st["conditions"][0]["reason"], json!("RenderFailed"), "{st}");
    tokio::time::sleep(Duration::from_secs(3)).await; // a gc pass or two
    let after = fx.entries().await;
    assert_eq!(ids(&after), ids(&before), "entry kept");
    assert_eq!(after[0].id, before[0].id);
    let kept = fx.ctl.metric("spire_controller_manager_entries_kept", &[]).await;
    assert_eq!(kept, 1.0);
    // An Event names the pod and the field.
    let out = kubectl(&["get", "events", "-A", "--field-selector", "reason=RenderFailed", "-o", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&fx.class) && text.contains("spec.spiffeIDTemplate"), "{text}");
}

#[tokio::test]
async fn restart_and_idle_make_zero_writes() {
    let mut fx = Fixture::new("idle", "gcInterval: 2s\n").await;
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE, "ttl": "2h"})).await;
    for i in 0..5 {
        create_pod(&fx.client, &fx.ns, &format!("p{i}"), &fx.node, &format!("sa{i}"), &[]).await;
    }
    let before = fx.wait_entries("five entries", |e| e.len() == 5).await;
    // Idle: several gc passes (gcInterval 2s) write nothing.
    let w0 = fx.writes().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(fx.ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 3.0);
    assert_eq!(fx.writes().await, w0, "idle passes write nothing");
    // Restart with the entries already in SPIRE: zero writes.
    fx.ctl.restart();
    eventually(WAIT, "passes after restart", || async {
        (fx.ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(fx.writes().await, 0.0, "restart writes nothing:\n{}", fx.ctl.logs());
    let after = fx.entries().await;
    assert_eq!(before.iter().map(|e| &e.id).collect::<Vec<_>>(), after.iter().map(|e| &e.id).collect::<Vec<_>>());
}

/// Idle reads of SPIRE stretch from gcInterval up to `spireCheckMaxInterval` while they
/// find nothing changed, and a change made behind the controller's back is still put back
/// within that bound.
#[tokio::test]
async fn idle_reads_stretch_up_to_the_check_max_interval() {
    let fx = Fixture::new("stretch", "gcInterval: 1s\nspireCheckMaxInterval: 4s\n").await;
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE})).await;
    create_pod(&fx.client, &fx.ns, "p", &fx.node, "sa", &[]).await;
    let before = fx.wait_entries("one entry", |e| e.len() == 1).await;
    let revs = || fx.rpc_calls("ListEntries(revisions)");
    // Let the interval grow to its bound, then count the reads of 12 idle seconds: one
    // every 4 s (3, give or take one), not one a second.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let r0 = revs().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let reads = revs().await - r0;
    assert!((2.0..=4.0).contains(&reads), "{reads} reads in 12 s at most 4 s apart");
    // An entry deleted with the CLI comes back within the bound (plus a pass).
    let out = fx.spire.cli(&["entry", "delete", "-entryID", &before[0].id]);
    assert!(out.status.success(), "{out:?}");
    let t = std::time::Instant::now();
    fx.wait_entries("the entry is back", |e| e.len() == 1).await;
    assert!(t.elapsed() < Duration::from_secs(7), "back after {:?}", t.elapsed());
}

/// The idle gcInterval checks read IDs and revision numbers only (a masked ListEntries),
/// never every entry; an entry changed behind the controller's back is fetched alone and
/// put back; one deleted behind its back is created again — still without a full read.
#[tokio::test]
async fn idle_checks_read_revisions_only_and_catch_changes() {
    let fx = Fixture::new("revs", "gcInterval: 1s\n").await;
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": SA_TEMPLATE, "hint": "mine"})).await;
    for i in 0..5 {
        create_pod(&fx.client, &fx.ns, &format!("p{i}"), &fx.node, &format!("sa{i}"), &[]).await;
    }
    let before = fx.wait_entries("five entries", |e| e.len() == 5).await;
    let rpc = |method: &'static str| fx.rpc_calls(method);
    let checks = |result: &'static str| {
        let ctl = &fx.ctl;
        async move { ctl.metric("spire_controller_manager_mirror_checks_total", &[&format!("result=\"{result}\"")]).await }
    };
    let (full0, revs0, w0) = (rpc("ListEntries").await, rpc("ListEntries(revisions)").await, fx.writes().await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (full1, revs1) = (rpc("ListEntries").await, rpc("ListEntries(revisions)").await);
    assert_eq!(full1, full0, "no full read while idle");
    assert!(revs1 - revs0 >= 3.0, "a revision check per gcInterval: {revs0} -> {revs1}");
    assert!(checks("in_sync").await >= 3.0);
    assert_eq!(fx.writes().await, w0, "idle checks write nothing");

    // Another tool changes an entry: the next check fetches it (GetEntry) and it is put back.
    let e = &before[0];
    let uid = e.selectors.iter().find(|s| s.value.starts_with("pod-uid:")).unwrap().value.clone();
    let out = fx.spire.cli(&[
        "entry",
        "update",
        "-entryID",
        &e.id,
        "-spiffeID",
        &e.spiffe_id.to_string(),
        "-parentID",
        &e.parent_id.to_string(),
        "-selector",
        &format!("k8s:{uid}"),
        "-hint",
        "tampered",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fx.wait_entries("the hint put back", |now| now.iter().any(|n| n.id == e.id && n.hint == "mine" && n.revision >= 2))
        .await;
    assert!(checks("fetched").await >= 1.0);
    assert!(rpc("GetEntry").await >= 1.0);
    // Deleted behind its back: created again.
    let out = fx.spire.cli(&["entry", "delete", "-entryID", &before[1].id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fx.wait_entries("the deleted entry created again", |now| {
        now.len() == 5 && now.iter().all(|n| n.id != before[1].id)
    })
    .await;
    assert_eq!(rpc("ListEntries").await, full0, "still no full read");
}

#[tokio::test]
async fn cluster_static_entries() {
    let fx = Fixture::new("static", "").await;
    let name = format!("{}-cse", fx.class);
    let cse = json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterStaticEntry", "metadata": {"name": name},
        "spec": {"spiffeID": "spiffe://example.org/nested", "parentID": "spiffe://example.org/spire/server",
                 "selectors": ["unix:uid:0", "k8s:ns:x"], "x509SVIDTTL": "1h", "jwtSVIDTTL": "10m", "dnsNames": ["nested.example.org"],
                 "federatesWith": [], "hint": "nested", "admin": true, "downstream": true, "className": fx.class}});
    apply_json(&fx.client, "clusterstaticentries", cse).await;
    let got = fx.wait_entries("static entry", |e| e.len() == 1).await;
    let e = &got[0];
    assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/nested");
    assert!(e.admin && e.downstream);
    assert_eq!(e.x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(e.dns_names, vec!["nested.example.org".to_string()]);
    let st = eventually(WAIT, "status set", || async {
        let s = fx.status("clusterstaticentries", &name).await;
        (s["set"] == json!(true)).then_some(s)
    })
    .await;
    assert_eq!(st["rendered"], json!(true));
    assert_eq!(st["masked"], json!(false));
    // `set` stays true in steady state (upstream flips it back to false).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fx.status("clusterstaticentries", &name).await["set"], json!(true));
    delete_cr(&fx.client, "ClusterStaticEntry", "clusterstaticentries", &name).await;
    fx.wait_entries("static entry removed", |e| e.is_empty()).await;
}

#[tokio::test]
async fn static_manifest_mode() {
    let spire = Spire::start(&unique("manifests"), TD);
    let dir = peers().dir.join("t").join(unique("manifests"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("entries.yaml"),
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: a\nspec:\n  spiffeID: spiffe://example.org/a\n  parentID: spiffe://example.org/spire/server\n  selectors: [\"unix:uid:1\"]\n---\napiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: b\nspec:\n  spiffeID: spiffe://example.org/b\n  parentID: spiffe://example.org/spire/server\n  selectors: [\"unix:uid:2\"]\n",
    )
    .unwrap();
    let class = unique("manifests");
    let config = format!(
        "trustDomain: {TD}\nclusterName: e2e\nspireServerSocketPath: {}\nstaticManifestPath: {}\ngcInterval: 1h\n",
        spire.socket(),
        dir.display()
    );
    // No Kubernetes at all: no KUBECONFIG reachable.
    let ctl = Controller::start_env(&class, &config, &[("ENABLE_WEBHOOKS", "false"), ("KUBECONFIG", "/nonexistent")]);
    let c = spire.client().await;
    let got = eventually(WAIT, "manifest entries", || async {
        let e = c.list_entries().await.ok()?;
        (e.len() == 2).then_some(e)
    })
    .await;
    assert_eq!(got.len(), 2);
    // Health and metrics are served in static mode.
    let (code, _) = http_get(&ctl.health_addr, "/readyz").await.expect("readyz");
    assert_eq!(code, 200);
    // A file change is picked up without waiting for gcInterval (1h).
    std::fs::write(
        dir.join("entries.yaml"),
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: a\nspec:\n  spiffeID: spiffe://example.org/a\n  parentID: spiffe://example.org/spire/server\n  selectors: [\"unix:uid:1\"]\n",
    )
    .unwrap();
    eventually(WAIT, "file change applied", || async {
        let e = c.list_entries().await.ok()?;
        (e.len() == 1).then_some(())
    })
    .await;
    // A broken file aborts passes: nothing is deleted.
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nspec: [\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(c.list_entries().await.unwrap().len(), 1, "{}", ctl.logs());
    assert!(spire.entry_show().len() == 1);
}

/// The pod cache keeps only the fields the templates read; a ClusterSPIFFEID that reads
/// more (annotations, containers) makes the controller list the pods again, wider, and
/// its entries come out as if whole pods had been kept all along.
#[tokio::test]
async fn pod_fields_kept_follow_the_templates() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let fx = Fixture::new("podfields", "").await;
    fx.apply_cspiffeid("pf-sa", json!({"spiffeIDTemplate": SA_TEMPLATE})).await;
    let api: Api<Pod> = Api::namespaced(fx.client.clone(), &fx.ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "annotated", "annotations": {"dns": "db.example.test"}, "labels": {"app": "db"}},
        "spec": {"nodeName": fx.node, "serviceAccountName": "db-sa",
                 "containers": [{"name": "postgres", "image": "example/postgres:16", "env": [{"name": "A", "value": "b"}]}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.expect("create pod");
    fx.wait_entries("the service-account entry", |e| e.len() == 1).await;
    let logs = fx.ctl.logs();
    assert!(
        logs.contains("PodMeta{Labels,Name,Namespace,ResourceVersion,UID} PodSpec{NodeName,ServiceAccountName}"),
        "the first pod list keeps only what the templates read:\n{}",
        tail(&logs, 40)
    );

    fx.apply_cspiffeid(
        "pf-wide",
        json!({
        "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/image/{{ (index .PodSpec.Containers 0).Name }}",
        "dnsNameTemplates": ["{{ index .PodMeta.Annotations \"dns\" }}"],
        "workloadSelectorTemplates": ["k8s:container-image:{{ (index .PodSpec.Containers 0).Image }}"]}),
    )
    .await;
    let got = fx.wait_entries("the container entry", |e| e.len() == 2).await;
    let wide = got
        .iter()
        .find(|e| e.spiffe_id.to_string() == format!("spiffe://{TD}/image/postgres"))
        .expect("entry from the container name");
    assert_eq!(wide.dns_names, vec!["db.example.test".to_string()]);
    assert!(
        wide.selectors.iter().any(|s| s.to_string() == "k8s:container-image:example/postgres:16"),
        "{:?}",
        wide.selectors
    );
    let logs = fx.ctl.logs();
    assert!(
        logs.contains("PodMeta{Annotations,Labels,Name,Namespace,ResourceVersion,UID} PodSpec{Containers,NodeName,ServiceAccountName}"),
        "pods listed again with the wider set:\n{}",
        tail(&logs, 40)
    );
    let st = eventually(WAIT, "no render failures", || async {
        let s = fx.status("clusterspiffeids", "pf-wide").await;
        (s["stats"]["entriesToSet"] == json!(1)).then_some(s)
    })
    .await;
    assert!(st["stats"].get("podEntryRenderFailures").is_none(), "{st}");
}

/// `cacheNamespaces` (with a label selector) limits the pods watched to those namespaces
/// and labels; `filterByClassName` watches only ClusterSPIFFEIDs labelled with the class.
#[tokio::test]
async fn cache_namespaces_and_filter_by_class_name() {
    let cached = unique("cached");
    let uncached = unique("uncached");
    let fx = Fixture::new(
        "cachens",
        &format!("filterByClassName: true\ncacheNamespaces:\n  {cached}:\n    labelSelectors:\n      track: \"yes\"\n"),
    )
    .await;
    create_namespace(&fx.client, &cached, &[]).await;
    create_namespace(&fx.client, &uncached, &[]).await;
    let both = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [cached, uncached]}]});
    let mut labelled = fx.cspiffeid(
        "cachens-labelled",
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/labelled/{{ .PodMeta.Namespace }}/{{ .PodMeta.Name }}", "namespaceSelector": both}),
    );
    labelled["metadata"]["labels"] = json!({"spire.spiffe.io/class-name": fx.class});
    apply_json(&fx.client, "clusterspiffeids", labelled).await;
    // Same class in spec, but without the label: not watched under filterByClassName.
    fx.apply_cspiffeid(
        "cachens-unlabelled",
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/unlabelled/{{ .PodMeta.Name }}", "namespaceSelector": both}),
    )
    .await;
    create_pod(&fx.client, &cached, "tracked", &fx.node, "sa", &[("track", "yes")]).await;
    create_pod(&fx.client, &cached, "untracked", &fx.node, "sa", &[("track", "no")]).await;
    create_pod(&fx.client, &uncached, "elsewhere", &fx.node, "sa", &[("track", "yes")]).await;
    let want = vec![format!("spiffe://{TD}/labelled/{cached}/tracked")];
    fx.wait_entries("only the tracked pod of the cached namespace", |e| ids(e) == want).await;
    // A few more passes change nothing.
    let passes = fx.ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await;
    eventually(WAIT, "two more passes", || async {
        (fx.ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= passes + 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(ids(&fx.entries().await), want);
}
