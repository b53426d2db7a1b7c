//! The admission webhook end to end: the real kube-apiserver calls the controller over TLS
//! with a certificate minted by the real spire-server; caBundle is filled and repaired by
//! the controller; the certificate rotates under admission traffic without a failed request.
//!
//! The webhook configurations are scoped to objects labelled for this test run (and the
//! pod observer to this test's namespace), so the other tests are never routed to them.

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::harness::*;

const TD: &str = "example.org";

/// The webhook tests run one at a time (each has its own webhook configurations, named
/// in its config, and its own SPIRE server; they are heavy on the shared apiserver).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(45);

struct Configs {
    client: kube::Client,
    names: (String, String, String),
}

impl Drop for Configs {
    fn drop(&mut self) {
        // Remove the configurations even when the test failed (failurePolicy Fail).
        let (v, m, p) = self.names.clone();
        let out = kubectl(&["delete", "validatingwebhookconfiguration", &v, &p, "--ignore-not-found"]);
        let _ = out;
        let _ = kubectl(&["delete", "mutatingwebhookconfiguration", &m, "--ignore-not-found"]);
        let _ = &self.client;
    }
}

fn webhook(name: &str, url: &str, resource: &str, ops: &[&str], failure: &str, selector: Value) -> Value {
    let mut w = json!({
        "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": failure,
        "timeoutSeconds": 5,
        "clientConfig": {"url": url},
        "rules": [{"apiGroups": ["spire.spiffe.io"], "apiVersions": ["v1alpha1"], "operations": ops, "resources": [resource], "scope": "Cluster"}],
    });
    w.as_object_mut().unwrap().extend(selector.as_object().unwrap().clone());
    w
}

/// Configurations named `<label>-validating`, `<label>-mutating`, `<label>-pods`.
async fn install_configs(client: &kube::Client, port: u16, label: &str, ns: &str) -> Configs {
    let (vwc, mwc, pods) = (format!("{label}-validating"), format!("{label}-mutating"), format!("{label}-pods"));
    let base = format!("https://localhost:{port}");
    let sel = json!({"objectSelector": {"matchLabels": {"e2e-webhook": label}}});
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": vwc},
        "webhooks": [
            webhook("vclusterspiffeid.kb.io", &format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterspiffeid"), "clusterspiffeids", &["CREATE", "UPDATE"], "Fail", sel.clone()),
            webhook("vclusterfederatedtrustdomain.kb.io", &format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterfederatedtrustdomain"), "clusterfederatedtrustdomains", &["CREATE", "UPDATE"], "Fail", sel.clone()),
            webhook("vclusterstaticentry.spire.spiffe.io", &format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterstaticentry"), "clusterstaticentries", &["CREATE", "UPDATE"], "Fail", sel.clone()),
        ]
    }))
    .unwrap();
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": mwc},
        "webhooks": [
            webhook("mclusterspiffeid.spire.spiffe.io", &format!("{base}/mutate-spire-spiffe-io-v1alpha1-clusterspiffeid"), "clusterspiffeids", &["CREATE", "UPDATE"], "Fail", sel.clone()),
        ]
    }))
    .unwrap();
    let observer = pod_observer_config(&pods, &base, ns);
    let v: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let m: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    v.create(&PostParams::default(), &validating).await.expect("create validating configuration");
    m.create(&PostParams::default(), &mutating).await.expect("create mutating configuration");
    v.create(&PostParams::default(), &observer).await.expect("create pod observer configuration");
    Configs { client: client.clone(), names: (vwc, mwc, pods) }
}

fn bundle_pem(spire: &Spire) -> String {
    let out = spire.cli(&["bundle", "show", "-format", "pem"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cas_of(v: &ValidatingWebhookConfiguration) -> Vec<String> {
    v.webhooks
        .iter()
        .flatten()
        .map(|w| {
            w.client_config.ca_bundle.as_ref().map(|b| String::from_utf8_lossy(&b.0).into_owned()).unwrap_or_default()
        })
        .collect()
}

fn pem_certs(pem: &str) -> Vec<String> {
    pem.split("-----END CERTIFICATE-----")
        .filter_map(|p| p.split("-----BEGIN CERTIFICATE-----").nth(1))
        .map(|b| b.split_whitespace().collect::<String>())
        .collect()
}

#[tokio::test]
async fn admission_through_the_real_apiserver() {
    let _serial = SERIAL.lock().await;
    let client = kube().await;
    let spire = Spire::start(&unique("webhook"), TD);
    let class = unique("webhook");
    let ns = unique("webhook");
    create_namespace(&client, &ns, &[]).await;
    let port = free_port();
    let configs = install_configs(&client, port, &class, &ns).await;
    let (vwc, mwc, pods) = configs.names.clone();
    let config = format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\n{}className: {class}\nvalidatingWebhookConfigurationName: {vwc}\nmutatingWebhookConfigurationName: {mwc}\npodObserverWebhookConfigurationName: {pods}\nwebhook:\n  host: 127.0.0.1\n  port: {port}\ngcInterval: 2s\n",
        crate::transport::server_keys(&spire) // the socket, or TCP + mTLS (SCM_E2E_TRANSPORT)
    );
    let mut ctl =
        Controller::start_env(&class, &config, &[("ENABLE_WEBHOOKS", "true"), ("SCM_WEBHOOK_CERT_TTL", "20s")]);

    // caBundle filled with SPIRE's X.509 authorities, certificate minted, ready.
    let want = pem_certs(&bundle_pem(&spire));
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mapi: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    eventually(WAIT, "caBundle filled in the three configurations (names from the config)", || async {
        let v = vapi.get(&vwc).await.ok()?;
        let p = vapi.get(&pods).await.ok()?;
        let m = mapi.get(&mwc).await.ok()?;
        let m_cas: Vec<String> = m
            .webhooks
            .iter()
            .flatten()
            .map(|w| {
                w.client_config
                    .ca_bundle
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default()
            })
            .collect();
        let filled = |cas: &[String]| !cas.is_empty() && cas.iter().all(|c| pem_certs(c) == want);
        (filled(&cas_of(&v)) && filled(&cas_of(&p)) && filled(&m_cas)).then_some(())
    })
    .await;
    eventually(WAIT, "certificate loaded", || async {
        check_ok(&ctl.health_addr, "webhook-certificate").await?.then_some(())
    })
    .await;

    let labels = format!("  labels:\n    e2e-webhook: {class}\n");
    // Invalid objects are refused by the apiserver, naming the field.
    let cases = [
        (
            "ClusterSPIFFEID",
            format!(
                "spec:\n  className: {class}\n  spiffeIDTemplate: \"spiffe://{{{{ .TrustDomain }}}}/{{{{ nofunc . }}}}\"\n"
            ),
            "spec.spiffeIDTemplate",
        ),
        (
            "ClusterSPIFFEID",
            format!(
                "spec:\n  className: {class}\n  spiffeIDTemplate: \"spiffe://{{{{ .TrustDomain }}}}/{{{{ .PodMeta.Nmae }}}}\"\n"
            ),
            "Nmae",
        ),
        (
            "ClusterSPIFFEID",
            format!("spec:\n  className: {class}\n  spiffeIDTemplate: \"spiffe://other.org/x\"\n"),
            "trust domain",
        ),
        (
            "ClusterSPIFFEID",
            format!(
                "spec:\n  className: {class}\n  spiffeIDTemplate: \"spiffe://{{{{ .TrustDomain }}}}/x\"\n  federatesWith: [\"Bad.Domain\"]\n"
            ),
            "spec.federatesWith[0]",
        ),
        (
            "ClusterStaticEntry",
            format!(
                "spec:\n  className: {class}\n  spiffeID: \"spiffe://example.org/a\"\n  parentID: \"spiffe://example.org/spire/server\"\n  selectors: [\"nocolon\"]\n"
            ),
            "spec.selectors[0]",
        ),
        (
            "ClusterStaticEntry",
            format!(
                "spec:\n  className: {class}\n  spiffeID: \"not-an-id\"\n  parentID: \"spiffe://example.org/spire/server\"\n  selectors: [\"unix:uid:0\"]\n"
            ),
            "spec.spiffeID",
        ),
        (
            "ClusterFederatedTrustDomain",
            format!(
                "spec:\n  className: {class}\n  trustDomain: partner.example\n  bundleEndpointURL: \"http://partner.example:8443\"\n  bundleEndpointProfile:\n    type: https_web\n"
            ),
            "spec.bundleEndpointURL",
        ),
        (
            "ClusterFederatedTrustDomain",
            format!(
                "spec:\n  className: {class}\n  trustDomain: partner.example\n  bundleEndpointURL: \"https://partner.example:8443\"\n  bundleEndpointProfile:\n    type: https_spiffe\n"
            ),
            "endpointSPIFFEID",
        ),
    ];
    for (i, (kind, spec, field)) in cases.iter().enumerate() {
        let doc = format!(
            "apiVersion: spire.spiffe.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {class}-bad-{i}\n{labels}{spec}"
        );
        let (ok, out) = kubectl_apply(&doc);
        assert!(!ok, "{kind} case {i} must be refused:\n{doc}\n{out}");
        assert!(out.contains("denied the request") && out.contains(field), "case {i}: message names {field}: {out}");
    }

    // A valid object passes and its defaults appear (the class label mirrors spec.className).
    let good = format!(
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterSPIFFEID\nmetadata:\n  name: {class}-good\n{labels}spec:\n  className: {class}\n  spiffeIDTemplate: \"spiffe://{{{{ .TrustDomain }}}}/ns/{{{{ .PodMeta.Namespace }}}}/sa/{{{{ .PodSpec.ServiceAccountName }}}}\"\n  namespaceSelector:\n    matchLabels:\n      kubernetes.io/metadata.name: {ns}\n"
    );
    let (ok, out) = kubectl_apply(&good);
    assert!(ok, "{out}");
    let got = kubectl(&["get", "clusterspiffeid", &format!("{class}-good"), "-o", "json"]);
    let v: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(v["metadata"]["labels"]["spire.spiffe.io/class-name"], json!(class), "{v}");

    // Pod observation: a pod bound at creation gets its entry (and creation never fails).
    let node = unique("webhook-node");
    create_node(&client, &node).await;
    create_pod(&client, &ns, "observed", &node, "sa", &[]).await;
    let sc = spire.client().await;
    eventually(WAIT, "entry for the observed pod", || async {
        let entries = sc.list_entries().await.ok()?;
        let ours = entries
            .iter()
            .filter(|e| !crate::transport::is_transport_entry(e.spiffe_id.as_str(), e.parent_id.as_str()));
        (ours.count() == 1).then_some(())
    })
    .await;

    // The certificate rotates (TTL 20s) under continuous admission traffic; no request fails.
    let rotations0 = ctl.metric("spire_controller_manager_webhook_certificate_rotations_total", &[]).await;
    let dry = PostParams { dry_run: true, ..Default::default() };
    let api: Api<kube::api::DynamicObject> = cr_api(&client, "ClusterSPIFFEID", "clusterspiffeids");
    let (mut ok_n, mut failed) = (0u32, Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let name = format!("{class}-load-{ok_n}");
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
            "metadata": {"name": name, "labels": {"e2e-webhook": class}},
            "spec": {"className": class, "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/load"}
        }))
        .unwrap();
        match api.create(&dry, &obj).await {
            Ok(_) => ok_n += 1,
            Err(e) => failed.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rotations = ctl.metric("spire_controller_manager_webhook_certificate_rotations_total", &[]).await - rotations0;
    eprintln!("admission requests during rotation: {ok_n} ok, {} failed; rotations: {rotations}", failed.len());
    assert!(failed.is_empty(), "requests failed during rotation: {failed:?}");
    assert!(rotations >= 1.0, "the certificate rotated at least once (rotations {rotations})\n{}", ctl.logs());
    assert!(ok_n > 100);

    // Someone edits caBundle: the controller repairs it.
    let patch = json!({"webhooks": [{"name": "vclusterspiffeid.kb.io", "clientConfig": {"caBundle": "Ym9ndXMK"}}]});
    vapi.patch(&vwc, &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("tamper caBundle");
    eventually(WAIT, "caBundle repaired", || async {
        let v = vapi.get(&vwc).await.ok()?;
        cas_of(&v).iter().all(|c| pem_certs(c) == want).then_some(())
    })
    .await;

    // With the controller stopped, pod creation still succeeds (failurePolicy Ignore).
    ctl.stop();
    create_pod(&client, &ns, "while-down", &node, "sa", &[]).await;
    drop(configs);
    let _ = vapi.delete(&vwc, &DeleteParams::default()).await;
}

/// A TCP front end playing the part of the webhook Service: new connections go round-robin
/// to the backends still listed (Kubernetes removes a terminating pod's endpoint).
struct Front {
    port: u16,
    backends: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
}

impl Front {
    async fn start(backends: Vec<u16>) -> Front {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let backends = std::sync::Arc::new(std::sync::Mutex::new(backends));
        let list = backends.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = {
                    let b = list.lock().unwrap();
                    if b.is_empty() {
                        continue;
                    }
                    let t = b[n % b.len()];
                    n += 1;
                    t
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Front { port, backends }
    }

    fn remove(&self, port: u16) {
        self.backends.lock().unwrap().retain(|p| *p != port);
    }
}

/// SIGTERM to one of two replicas during admission traffic fails no request: the
/// terminating replica finishes what it accepted and stops taking connections; the
/// apiserver's next requests reach the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_admission_traffic_fails_no_request() {
    let _serial = SERIAL.lock().await;
    let client = kube().await;
    let spire = Spire::start(&unique("drain"), TD);
    let class = unique("drain");
    let (port_a, port_b) = (free_port(), free_port());
    let front = Front::start(vec![port_a, port_b]).await;
    let vwc = format!("{class}-validating");
    let sel = json!({"objectSelector": {"matchLabels": {"e2e-webhook": class}}});
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": vwc},
        "webhooks": [webhook("vclusterspiffeid.kb.io", &format!("https://localhost:{}/validate-spire-spiffe-io-v1alpha1-clusterspiffeid", front.port), "clusterspiffeids", &["CREATE", "UPDATE"], "Fail", sel)]
    }))
    .unwrap();
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    vapi.create(&PostParams::default(), &validating).await.unwrap();
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = kubectl(&["delete", "validatingwebhookconfiguration", &self.0, "--ignore-not-found"]);
        }
    }
    let _cleanup = Cleanup(vwc.clone());
    let config = |port: u16| {
        format!(
            "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\n{}className: {class}\nvalidatingWebhookConfigurationName: {vwc}\nwebhook:\n  host: 127.0.0.1\n  port: {port}\nentryIDPrefix: {class}\n",
            crate::transport::server_keys(&spire)
        )
    };
    let dbg = [("ENABLE_WEBHOOKS", "true")];
    let mut a = Controller::start_env(&format!("{class}-a"), &config(port_a), &dbg);
    let mut b = Controller::start_env(&format!("{class}-b"), &config(port_b), &dbg);
    for c in [&a, &b] {
        eventually(WAIT, "replica serving with a certificate", || async {
            check_ok(&c.health_addr, "webhook-certificate").await?.then_some(())
        })
        .await;
    }
    let api: Api<kube::api::DynamicObject> = cr_api(&client, "ClusterSPIFFEID", "clusterspiffeids");
    // Four concurrent clients for 12 s; after 4 s the replica serving them is terminated.
    let stop_at = Instant::now() + Duration::from_secs(12);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let api = api.clone();
        let class = class.clone();
        tasks.push(tokio::spawn(async move {
            let dry = PostParams { dry_run: true, ..Default::default() };
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0;
            while Instant::now() < stop_at {
                i += 1;
                let obj: kube::api::DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
                    "metadata": {"name": format!("{class}-w{w}-{i}"), "labels": {"e2e-webhook": class}},
                    "spec": {"className": class, "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/drain"}
                }))
                .unwrap();
                match api.create(&dry, &obj).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let requests = "spire_controller_manager_webhook_requests_total";
    // The apiserver keeps one (h2) connection: terminate the replica it landed on.
    let (victim, survivor, victim_port) =
        if a.metric(requests, &[]).await > 0.0 { (&mut a, &mut b, port_a) } else { (&mut b, &mut a, port_b) };
    let served_by_victim = victim.metric(requests, &[]).await;
    front.remove(victim_port);
    // SIGTERM, then wait for the exit without blocking the front end's tasks.
    tokio::task::block_in_place(|| victim.stop());
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "admission during SIGTERM: {ok} ok, {} failed; the terminated replica had served {served_by_victim}",
        failed.len()
    );
    assert!(served_by_victim > 0.0, "the terminated replica took traffic before SIGTERM");
    assert!(failed.is_empty(), "requests failed: {failed:?}\n--- terminated replica:\n{}", victim.logs());
    assert!(ok > 100);
    assert!(survivor.metric(requests, &[]).await > 0.0, "the other replica took over");
    assert!(victim.logs().contains("shutting down"), "{}", victim.logs());
    assert!(victim.exited_cleanly(), "the terminated replica exited by itself:\n{}", victim.logs());
}
