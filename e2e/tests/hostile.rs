//! Hostile input, end to end: what a stranger on the cluster network can send to the
//! webhook port, and what a tenant can put in a pod or a custom resource. Each test here
//! failed on the code before it (see the README's "Hostile input" section).
//!
//! - a forged AdmissionReview for a pod that does not exist, or binding a real pod to
//!   another node, never yields a SPIRE entry (admission is a hint; the apiserver decides);
//! - an annotation of multibyte text in a failing render cannot stop registration;
//! - a plan that would delete most entries (the pod view came up empty) is held until
//!   acknowledged.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::harness::*;

const TD: &str = "example.org";
const WAIT: Duration = Duration::from_secs(60);

pub(crate) struct Configs(Vec<String>);

impl Drop for Configs {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = kubectl(&["delete", "validatingwebhookconfiguration", n, "--ignore-not-found"]);
        }
    }
}

/// POSTs `body` to the controller's webhook port as anyone on the network could (no
/// client certificate, server certificate not verified). Status code and JSON body.
pub(crate) fn post(port: u16, path: &str, body: &[u8]) -> (u16, Value) {
    let dir = std::env::temp_dir().join(format!("hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("body-{}", unique("b")));
    std::fs::write(&file, body).unwrap();
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn pod_review(ns: &str, name: &str, uid: &str, node: Option<&str>, sa: &str, dry_run: bool) -> Vec<u8> {
    let mut spec = json!({"serviceAccountName": sa, "containers": [{"name": "app", "image": "x"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": unique("req"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name, "namespace": ns, "operation": "CREATE", "userInfo": {"username": "mallory"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": uid}, "spec": spec},
            "dryRun": dry_run
        }
    }))
    .unwrap()
}

fn binding_review(ns: &str, name: &str, node: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": unique("req"), "kind": {"group": "", "version": "v1", "kind": "Binding"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "subResource": "binding",
            "name": name, "namespace": ns, "operation": "CREATE", "userInfo": {"username": "mallory"},
            "object": {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
            "dryRun": false
        }
    }))
    .unwrap()
}

/// A controller with webhooks on, its validating configuration scoped to nothing but
/// this test's labelled objects, and a pod observer for namespace `ns`.
pub(crate) async fn webhook_controller(name: &str, ns: &str, spire: &Spire, extra: &str) -> (Controller, u16, Configs) {
    let client = kube().await;
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let (vwc, pods) = (format!("{name}-validating"), format!("{name}-pods"));
    let validating = cluster_spiffe_id_validating_config(&vwc, &base, "e2e-hostile", name);
    let observer = pod_observer_config(&pods, &base, ns);
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    api.create(&PostParams::default(), &validating).await.unwrap();
    api.create(&PostParams::default(), &observer).await.unwrap();
    let configs = Configs(vec![vwc.clone(), pods.clone()]);
    let config = format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\nspireServerSocketPath: {sock}\nclassName: {name}\n\
         validatingWebhookConfigurationName: {vwc}\nmutatingWebhookConfigurationName: {name}-none\npodObserverWebhookConfigurationName: {pods}\n\
         webhook:\n  host: 127.0.0.1\n  port: {port}\ngcInterval: 1h\n{extra}",
        sock = spire.socket()
    );
    let ctl = Controller::start_env(name, &config, &[("ENABLE_WEBHOOKS", "true")]);
    eventually(WAIT, "the webhook serving with a certificate", || async {
        check_ok(&ctl.health_addr, "webhook-certificate").await?.then_some(())
    })
    .await;
    (ctl, port, configs)
}

/// A ClusterSPIFFEID of class `class` for the pods of namespace `ns` (with `pod_label`).
async fn apply_csid(
    client: &kube::Client,
    name: &str,
    class: &str,
    ns: &str,
    pod_label: Option<(&str, &str)>,
    template: &str,
) {
    let mut spec = json!({"className": class, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "spiffeIDTemplate": template});
    if let Some((k, v)) = pod_label {
        spec["podSelector"] = json!({"matchLabels": {k: v}});
    }
    apply_json(
        client,
        "clusterspiffeids",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
}

fn ids(spire: &Spire) -> Vec<String> {
    spire.entry_show().iter().map(|e| show_id(&e["spiffe_id"])).collect()
}

#[tokio::test]
async fn forged_admissions_never_mint_an_identity() {
    let client = kube().await;
    let name = unique("forge");
    let spire = Spire::start(&name, TD);
    let ns = unique("shop");
    create_namespace(&client, &ns, &[]).await;
    let node = create_node(&client, &unique("node-1")).await;
    let node_name = node.metadata.name.clone().unwrap();
    let (ctl, port, _configs) = webhook_controller(&name, &ns, &spire, "").await;
    apply_csid(
        &client,
        &name,
        &name,
        &ns,
        None,
        "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
    )
    .await;
    // A real pod, not scheduled yet (no scheduler here: it stays unbound).
    let victim = create_pod(&client, &ns, "victim", "", "payments", &[]).await;
    let victim_uid = victim.metadata.uid.clone().unwrap();
    eventually(WAIT, "a pass with the ClusterSPIFFEID", || async {
        (ctl.metric("spire_controller_manager_entries_declared", &[]).await == 0.0
            && ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 2.0)
            .then_some(())
    })
    .await;

    let hint_count = || async {
        let m = ctl.metrics().await;
        ["unconfirmed", "refuted", "confirmed"].map(|o| {
            parse_metric(&m, "spire_controller_manager_early_registration_hints_total", &[&format!("outcome=\"{o}\"")])
        })
    };
    // 1. A pod that does not exist, "admin" service account, on a real node.
    let (code, res) = post(
        port,
        "/observe-v1-pod",
        &pod_review(&ns, "ghost", "11111111-2222-3333-4444-555555555555", Some(&node_name), "admin", false),
    );
    assert_eq!((code, res["response"]["allowed"].as_bool()), (200, Some(true)), "{res}");
    // 2. The real pod, claimed with another UID, bound to the node.
    let (code, _) = post(
        port,
        "/observe-v1-pod",
        &pod_review(&ns, "victim", "99999999-2222-3333-4444-555555555555", Some(&node_name), "payments", false),
    );
    assert_eq!(code, 200);
    // 3. A binding of the real (unbound) pod that the apiserver never saw.
    let (code, _) = post(port, "/observe-v1-pod", &binding_review(&ns, "victim", &node_name));
    assert_eq!(code, 200);
    // 4. A dry run: not even a hint.
    let (code, _) = post(
        port,
        "/observe-v1-pod",
        &pod_review(&ns, "dry", "abababab-2222-3333-4444-555555555555", Some(&node_name), "dry", true),
    );
    assert_eq!(code, 200);
    // 5. A body far over the limit is refused at once.
    let big = vec![b' '; 2 * 1024 * 1024];
    let started = Instant::now();
    let (code, _) = post(port, "/observe-v1-pod", &big);
    assert!(code == 413 || code == 0, "oversized body refused (413, or the connection closed while sending): {code}");
    eprintln!("hostile: 2 MiB body refused in {:?} (HTTP {code})", started.elapsed());
    let (code, _) = post(
        port,
        "/observe-v1-pod",
        &pod_review(&ns, "after", "cdcdcdcd-2222-3333-4444-555555555555", None, "x", true),
    );
    assert_eq!(code, 200, "the port still answers after the oversized body");

    // Every hint was checked with the apiserver and came to nothing.
    let counts = eventually(WAIT, "the hints checked with the apiserver", || async {
        let [unconfirmed, refuted, confirmed] = hint_count().await;
        (unconfirmed + refuted >= 2.0).then_some([unconfirmed, refuted, confirmed])
    })
    .await;
    assert_eq!(counts[2], 0.0, "nothing confirmed: {counts:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = ids(&spire);
    for sa in ["admin", "payments", "dry"] {
        let forged = format!("spiffe://{TD}/ns/{ns}/sa/{sa}");
        assert!(!now.contains(&forged), "forged admission minted {forged}: {now:?}");
    }

    // The real binding of the victim: its entry comes (confirmed by the apiserver), with
    // the real UID.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "victim"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}});
    let t0 = Instant::now();
    pods.create_subresource::<Value, Value>("binding", "victim", &PostParams::default(), &binding)
        .await
        .expect("bind the victim");
    let entry = eventually(WAIT, "the victim's entry after the real binding", || async {
        spire
            .entry_show()
            .into_iter()
            .find(|e| show_id(&e["spiffe_id"]) == format!("spiffe://{TD}/ns/{ns}/sa/payments"))
    })
    .await;
    let bound_to_entry = t0.elapsed();
    let selectors = entry["selectors"].to_string();
    assert!(selectors.contains(&victim_uid), "the entry names the real pod's UID: {selectors}");

    // Early registration stays early: pods created bound, with and without the observer.
    let mut with = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        create_pod(&client, &ns, &format!("early-{i}"), &node_name, &format!("early-{i}"), &[]).await;
        let want = format!("spiffe://{TD}/ns/{ns}/sa/early-{i}");
        eventually(WAIT, "entry of an observed pod", || async { ids(&spire).contains(&want).then_some(()) }).await;
        with.push(t.elapsed());
    }
    let confirmed = hint_count().await[2];
    assert!(confirmed >= 1.0, "real pods are confirmed through the early path");
    let _ = kubectl(&["delete", "validatingwebhookconfiguration", &format!("{name}-pods")]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut without = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        create_pod(&client, &ns, &format!("late-{i}"), &node_name, &format!("late-{i}"), &[]).await;
        let want = format!("spiffe://{TD}/ns/{ns}/sa/late-{i}");
        eventually(WAIT, "entry of an unobserved pod", || async { ids(&spire).contains(&want).then_some(()) }).await;
        without.push(t.elapsed());
    }
    eprintln!(
        "hostile: binding → entry {bound_to_entry:?}; pod created → entry with the early path {with:?}, without {without:?}"
    );
    drop(ctl);
}

#[tokio::test]
async fn multibyte_annotations_in_a_failing_render_cannot_stop_registration() {
    let client = kube().await;
    let name = unique("utf8");
    let spire = Spire::start(&name, TD);
    let ns = unique("utf8");
    create_namespace(&client, &ns, &[]).await;
    let node = create_node(&client, &unique("utf8-node")).await;
    let node_name = node.metadata.name.clone().unwrap();
    let config = format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\nspireServerSocketPath: {}\nclassName: {name}\ngcInterval: 1h\n",
        spire.socket()
    );
    let mut ctl = Controller::start(&name, &config);
    apply_csid(
        &client,
        &format!("{name}-notes"),
        &name,
        &ns,
        Some(("kind", "noted")),
        "spiffe://{{ .TrustDomain }}/{{ index .PodMeta.Annotations \"note\" }}",
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for i in 0..4 {
        // 700 × "é" (2 bytes): the render error quotes it and crosses byte 1000 mid-character.
        let prefix = "x".repeat(i);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("noted-{i}"), "labels": {"kind": "noted"}, "annotations": {"note": format!("{prefix}{}", "é".repeat(700))}},
            "spec": {"nodeName": node_name, "serviceAccountName": "n", "containers": [{"name": "a", "image": "x"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    eventually(WAIT, "the render failures reported", || async {
        (ctl.metric("spire_controller_manager_render_failures", &["ClusterSPIFFEID"]).await >= 1.0).then_some(())
    })
    .await;
    // Registration goes on: a pod of another ClusterSPIFFEID created afterwards gets its entry.
    apply_csid(
        &client,
        &format!("{name}-plain"),
        &name,
        &ns,
        Some(("kind", "plain")),
        "spiffe://{{ .TrustDomain }}/plain/{{ .PodMeta.Name }}",
    )
    .await;
    create_pod(&client, &ns, "after", &node_name, "sa", &[("kind", "plain")]).await;
    let want = format!("spiffe://{TD}/plain/after");
    eventually(WAIT, "an entry for a pod created after the failures", || async {
        ids(&spire).contains(&want).then_some(())
    })
    .await;
    // The Events were written, each note cut on a character boundary.
    let notes: Vec<String> = events_regarding(Some("default"), &format!("{name}-notes"))
        .iter()
        .filter_map(|e| e["note"].as_str().map(str::to_owned))
        .collect();
    assert!(!notes.is_empty(), "RenderFailed events were written");
    assert!(notes.iter().all(|n| n.len() <= 1000), "notes are cut to 1000 bytes");
    let (code, _) = http_get(&ctl.health_addr, "/healthz").await.expect("the process is alive");
    assert_eq!(code, 200);
    ctl.stop();
    assert!(ctl.exited_cleanly(), "{}", ctl.logs());
    assert!(!ctl.logs().contains("panicked"), "{}", ctl.logs());
}

#[tokio::test]
async fn an_empty_pod_view_cannot_delete_every_entry() {
    let client = kube().await;
    let name = unique("breaker");
    let spire = Spire::start(&name, TD);
    let ns = unique("breaker");
    let home = unique("breaker-home"); // the controller's own namespace
    create_namespace(&client, &ns, &[]).await;
    create_namespace(&client, &home, &[]).await;
    let node = create_node(&client, &unique("breaker-node")).await;
    let node_name = node.metadata.name.clone().unwrap();
    let base = format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\nspireServerSocketPath: {}\nclassName: {name}\n\
         entryIDPrefix: {name}\ngcInterval: 1h\ndeletionGuard:\n  releaseAfter: 0s\n",
        spire.socket()
    );
    let env = [("ENABLE_WEBHOOKS", "false"), ("POD_NAMESPACE", home.as_str()), ("POD_NAME", name.as_str())];
    let mut ctl = Controller::start_env(&name, &base, &env);
    apply_csid(&client, &name, &name, &ns, None, "spiffe://{{ .TrustDomain }}/w/{{ .PodMeta.Name }}").await;
    for i in 0..30 {
        create_pod(&client, &ns, &format!("w{i}"), &node_name, "sa", &[]).await;
    }
    let owned = |spire: &Spire| ids(spire).iter().filter(|id| id.contains("/w/w")).count();
    eventually(WAIT, "30 entries", || async { (owned(&spire) == 30).then_some(()) }).await;
    ctl.stop();

    // The same controller, restarted with its pod view scoped to a namespace without pods
    // (a filter switched on before the pods match it): every entry would go.
    let scoped = format!("{base}cacheNamespaces:\n  {home}: {{}}\n");
    let mut ctl = Controller::start_env(&format!("{name}-scoped"), &scoped, &env);
    let status = eventually(WAIT, "the deletes held", || async {
        let s = health_status(&ctl.health_addr).await?;
        (s["checks"]["deletions"]["ok"] == false).then_some(s)
    })
    .await;
    let message = status["checks"]["deletions"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("holding 30 of 30"), "{message}");
    assert_eq!(ctl.metric("spire_controller_manager_entry_deletes_held", &[]).await, 30.0);
    let passes = ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await;
    assert!(passes >= 1.0);
    assert_eq!(owned(&spire), 30, "nothing deleted while held");
    assert!(ctl.logs().contains("mass deletion held"), "{}", ctl.logs());
    let events = events_regarding(Some(&home), &name);
    assert!(
        events.iter().any(|e| e["reason"] == "DeletesHeld"),
        "a DeletesHeld Event on the controller's Pod: {events:?}"
    );

    // The operator acknowledges that exact plan: the deletes go ahead.
    let plan_id = message.split("(plan ").nth(1).and_then(|r| r.split(',').next()).unwrap().to_owned();
    let annotation = format!("spire.spiffe.io/allow-deletes={plan_id}");
    let out = kubectl(&["annotate", "namespace", &home, &annotation, "--overwrite"]);
    assert!(out.status.success());
    eventually(WAIT, "the acknowledged deletes applied", || async { (owned(&spire) == 0).then_some(()) }).await;
    eventually(WAIT, "nothing held any more", || async {
        (check_ok(&ctl.health_addr, "deletions").await?
            && ctl.metric("spire_controller_manager_entry_deletes_held", &[]).await == 0.0)
            .then_some(())
    })
    .await;
    ctl.stop();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn csid_review(name: &str, template: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": unique("req"), "kind": {"group": "spire.spiffe.io", "version": "v1alpha1", "kind": "ClusterSPIFFEID"},
            "resource": {"group": "spire.spiffe.io", "version": "v1alpha1", "resource": "clusterspiffeids"},
            "name": name, "operation": "CREATE", "userInfo": {"username": "mallory"},
            "object": {"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": name},
                "spec": {"spiffeIDTemplate": template}},
            "dryRun": false
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn template_bombs_cost_milliseconds_and_no_memory() {
    let client = kube().await;
    let name = unique("bomb");
    let spire = Spire::start(&name, TD);
    let ns = unique("bomb");
    create_namespace(&client, &ns, &[]).await;
    let node = create_node(&client, &unique("bomb-node")).await;
    let node_name = node.metadata.name.clone().unwrap();
    let (ctl, port, _configs) = webhook_controller(&name, &ns, &spire, "").await;
    let pid = ctl.pid().unwrap();
    let bomb = "spiffe://example.org/{{range 2000000000}}aaaaaaaa{{end}}";
    let rss_before = rss_kib(pid);

    // Eight bombs at once straight at the port, and an ordinary request beside them.
    let t0 = Instant::now();
    let bombs: Vec<_> = (0..8)
        .map(|i| {
            let body = csid_review(&format!("bomb-{i}"), bomb);
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = post(port, "/validate-spire-spiffe-io-v1alpha1-clusterspiffeid", &body);
                (r, t.elapsed())
            })
        })
        .collect();
    let t = Instant::now();
    let (code, ordinary) = post(
        port,
        "/validate-spire-spiffe-io-v1alpha1-clusterspiffeid",
        &csid_review("ordinary", "spiffe://example.org/ns/{{ .PodMeta.Namespace }}"),
    );
    let ordinary_took = t.elapsed();
    assert_eq!((code, ordinary["response"]["allowed"].as_bool()), (200, Some(true)), "{ordinary}");
    let mut slowest = Duration::ZERO;
    for b in bombs {
        let ((code, res), took) = b.join().unwrap();
        slowest = slowest.max(took);
        // Answered: refused naming the field, or turned away while four others were decided.
        match code {
            200 => {
                assert_eq!(res["response"]["allowed"], false, "{res}");
                let msg = res["response"]["status"]["message"].as_str().unwrap_or_default();
                assert!(msg.contains("spec.spiffeIDTemplate") && msg.contains("execution budget"), "{msg}");
            }
            429 => {}
            other => panic!("bomb answered {other}: {res}"),
        }
    }
    let rss_after = rss_kib(pid);
    eprintln!(
        "hostile: 8 template bombs answered in {:?} (slowest {slowest:?}, all {:?}); an ordinary request beside them {ordinary_took:?}; RSS {} → {} KiB",
        t0.elapsed(),
        t0.elapsed(),
        rss_before,
        rss_after
    );
    assert!(rss_after < rss_before + 32 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");

    // Through the apiserver: refused at apply time.
    let cspiffeids = cr_api(&client, "ClusterSPIFFEID", "clusterspiffeids");
    let obj = serde_json::from_value(json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
        "metadata": {"name": format!("{name}-bomb"), "labels": {"e2e-hostile": name}},
        "spec": {"className": name, "spiffeIDTemplate": bomb}}))
    .unwrap();
    match cspiffeids.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(s)) => assert!(s.message.contains("execution budget"), "{}", s.message),
        other => panic!("the bomb was not refused: {other:?}"),
    }

    // Not routed to the webhook (as when it is off): the reconciler renders it under the
    // same budget, reports the failure and goes on registering other pods.
    apply_csid(&client, &format!("{name}-unrouted"), &name, &ns, Some(("app", "bombed")), bomb).await;
    apply_csid(
        &client,
        &format!("{name}-plain"),
        &name,
        &ns,
        Some(("app", "plain")),
        "spiffe://{{ .TrustDomain }}/plain/{{ .PodMeta.Name }}",
    )
    .await;
    create_pod(&client, &ns, "bombed", &node_name, "sa", &[("app", "bombed")]).await;
    create_pod(&client, &ns, "plain", &node_name, "sa", &[("app", "plain")]).await;
    let want = format!("spiffe://{TD}/plain/plain");
    eventually(WAIT, "the plain pod's entry beside the bomb", || async { ids(&spire).contains(&want).then_some(()) })
        .await;
    eventually(WAIT, "the bomb reported as a render failure", || async {
        (ctl.metric("spire_controller_manager_render_failures", &["ClusterSPIFFEID"]).await >= 1.0).then_some(())
    })
    .await;
    let rss_end = rss_kib(pid);
    eprintln!("hostile: reconciler rendered the bomb; RSS {rss_end} KiB");
    assert!(rss_end < rss_before + 32 * 1024, "RSS grew from {rss_before} to {rss_end} KiB");
}
