//! The SPIRE helm chart as the test: the controller runs as the chart runs it — as the
//! spire-server pod's ServiceAccount (`system:serviceaccount:spire-server:spire-server`,
//! a token user of the peers' apiserver), bound to exactly the rules the chart grants, with
//! the config the chart renders (`gcInterval: 1e+10`, a `<8 hex>.spiffe.io` Lease in the
//! release namespace, `<ns>-spire-controller-manager-webhook`, regexes in
//! `ignoreNamespaces`, no `clusterDomain`), webhooks on, Go-style `-config=` flags, and a
//! ValidatingWebhookConfiguration with `failurePolicy: Ignore`.
//!
//! The chart's rules below are written from its documented RBAC (chart `spire` 0.30.0):
//! it grants no EndpointSlices, no MutatingWebhookConfigurations and no Events outside the
//! release namespace. Each of those absences must degrade one capability, never block: the
//! controller is ready at once, writes its entries (DNS names from Endpoints), fills the
//! caBundle, refuses a broken ClusterSPIFFEID and holds the Lease.
//!
//! Differences from a real chart install, all forced by the loopback peers: the webhook
//! is reached by URL on 127.0.0.1 (no Service routing) and scoped by an objectSelector to
//! this test's objects; metrics, health and webhook ports are free ports.

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::harness::*;

const RELEASE_NS: &str = "spire-server";
const WAIT: Duration = Duration::from_secs(60);

/// The chart's RBAC for the controller manager, bound to the spire-server ServiceAccount.
const CHART_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-chart-spire-controller-manager}
rules:
- apiGroups: [""]
  resources: [namespaces, nodes, endpoints, pods]
  verbs: [get, list, watch]
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingwebhookconfigurations]
  verbs: [get, list, patch, watch]
- apiGroups: [spire.spiffe.io]
  resources: [clusterfederatedtrustdomains, clusterspiffeids, clusterstaticentries]
  verbs: [create, delete, get, list, patch, update, watch]
- apiGroups: [spire.spiffe.io]
  resources: [clusterfederatedtrustdomains/status, clusterspiffeids/status, clusterstaticentries/status]
  verbs: [get, patch, update]
- apiGroups: [spire.spiffe.io]
  resources: [clusterfederatedtrustdomains/finalizers, clusterspiffeids/finalizers, clusterstaticentries/finalizers]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-chart-spire-controller-manager}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-chart-spire-controller-manager}
subjects: [{kind: ServiceAccount, name: spire-server, namespace: spire-server}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: e2e-chart-spire-controller-manager, namespace: spire-server}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e2e-chart-spire-controller-manager, namespace: spire-server}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: e2e-chart-spire-controller-manager}
subjects: [{kind: ServiceAccount, name: spire-server, namespace: spire-server}]
"#;

/// Removes the chart's RBAC and webhook configuration, even when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "validatingwebhookconfiguration", &self.0, "--ignore-not-found"]);
        let _ = kubectl(&["delete", "clusterrolebinding", "e2e-chart-spire-controller-manager", "--ignore-not-found"]);
        let _ = kubectl(&["delete", "clusterrole", "e2e-chart-spire-controller-manager", "--ignore-not-found"]);
    }
}

fn chart_webhook(name: &str, url: String, resource: &str, label: &str) -> Value {
    json!({
        "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
        "timeoutSeconds": 10, "clientConfig": {"url": url},
        "objectSelector": {"matchLabels": {"e2e-chart": label}},
        "rules": [{"apiGroups": ["spire.spiffe.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"], "resources": [resource]}],
    })
}

fn degraded(status: &Value) -> Vec<String> {
    status["degraded"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn runs_under_the_spire_helm_charts_rbac_and_config() {
    let client = kube().await;
    let name = unique("chart");
    let _ = kubectl(&["create", "namespace", RELEASE_NS]);
    let (ok, out) = kubectl_apply(CHART_RBAC);
    assert!(ok, "applying the chart's RBAC: {out}");
    let vwc = format!("{RELEASE_NS}-spire-controller-manager-webhook");
    let _cleanup = Cleanup(vwc.clone());
    let _ = kubectl(&["delete", "validatingwebhookconfiguration", &vwc, "--ignore-not-found"]);

    // The chart's identity may do what it grants, and nothing of what it does not.
    let user = "system:serviceaccount:spire-server:spire-server";
    let can = |args: &[&str]| {
        let mut a = vec!["auth", "can-i", "--as", user];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&kubectl(&a).stdout).trim() == "yes"
    };
    assert!(can(&["watch", "pods", "-A"]) && can(&["patch", "validatingwebhookconfigurations"]));
    assert!(!can(&["list", "endpointslices.discovery.k8s.io", "-A"]), "the chart grants no EndpointSlices");
    assert!(!can(&["patch", "mutatingwebhookconfigurations"]), "the chart grants no MutatingWebhookConfigurations");
    assert!(
        !can(&["create", "events.events.k8s.io", "-n", "default"]),
        "the chart grants Events in its namespace only"
    );

    let spire = Spire::start(&name, "example.org");
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": vwc},
        "webhooks": [
            chart_webhook("vclusterfederatedtrustdomain.kb.io", format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterfederatedtrustdomain"), "clusterfederatedtrustdomains", &name),
            chart_webhook("vclusterspiffeid.kb.io", format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterspiffeid"), "clusterspiffeids", &name),
            chart_webhook("vclusterstaticentry.kb.io", format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterstaticentry"), "clusterstaticentries", &name),
        ]
    }))
    .unwrap();
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    vapi.create(&PostParams::default(), &config).await.expect("create the chart's webhook configuration");

    // The chart's rendered config (see crates/config/testdata/helm-chart.yaml), the socket
    // through --expand-env.
    let lease = format!("{:08x}.spiffe.io", rand_u32(&name));
    let yaml = format!(
        "gcInterval: 1e+10\nlogLevel: info\nleaderElection:\n  leaderElect: true\n  resourceName: {lease}\n  \
         resourceNamespace: {RELEASE_NS}\n  leaseDuration: 15s\n  renewDeadline: 10s\n  retryPeriod: 2s\n\
         validatingWebhookConfigurationName: {vwc}\nentryIDPrefixCleanup: \"\"\nentryIDPrefix: {name}\n\
         clusterName: {name}\ntrustDomain: example.org\nignoreNamespaces:\n  - kube-system\n  - kube-public\n  \
         - local-path-storage\n  - openshift-.*\n  - ibm-.*\nspireServerSocketPath: \"${{CHART_SPIRE_SOCKET}}\"\n\
         className: {name}\nwatchClassless: false\nfilterByClassName: true\n\
         parentIDTemplate: \"spiffe://{{{{ .TrustDomain }}}}/spire/agent/k8s_psat/{{{{ .ClusterName }}}}/{{{{ .NodeMeta.UID }}}}\"\n\
         reconcile:\n  clusterSPIFFEIDs: true\n  clusterStaticEntries: true\n  clusterFederatedTrustDomains: true\n\
         webhook:\n  host: 127.0.0.1\n  port: {port}\n"
    );
    let dir = peers().dir.join("t").join(format!("chart-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig-chart");
    std::fs::copy(peers().env.get("KUBECONFIG"), &kubeconfig).unwrap();
    let out = kubectl(&["--kubeconfig", kubeconfig.to_str().unwrap(), "config", "use-context", "chart"]);
    assert!(out.status.success());
    let kc = kubeconfig.to_str().unwrap().to_owned();
    let started = Instant::now();
    let mut ctl = Controller::start_args(
        &name,
        &yaml,
        |config| vec![format!("-config={}", config.display()), "-expand-env".into(), format!("--kubeconfig={kc}")],
        &[
            ("ENABLE_WEBHOOKS", "true"),
            ("POD_NAME", &name),
            ("POD_NAMESPACE", RELEASE_NS),
            ("CHART_SPIRE_SOCKET", spire.socket()),
            // As the chart runs it: the config's logLevel, no RUST_LOG.
            ("RUST_LOG", ""),
        ],
    );

    // Ready at once: /readyz gates the SPIRE server's Service under the chart.
    eventually(WAIT, "/readyz 200", || async {
        let (code, _) = http_get(&ctl.health_addr, "/readyz").await?;
        (code == 200).then_some(())
    })
    .await;
    let ready_after = started.elapsed();

    // The webhook answers through the apiserver: a broken template is refused, naming the field.
    let broken = json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
        "metadata": {"name": format!("{name}-broken"), "labels": {"e2e-chart": name, "spire.spiffe.io/class-name": name}},
        "spec": {"className": name, "spiffeIDTemplate": "spiffe://example.org/{{ .PodMeta.Name"}});
    let cspiffeids = cr_api(&client, "ClusterSPIFFEID", "clusterspiffeids");
    let refusal = eventually(WAIT, "a broken ClusterSPIFFEID refused by the webhook", || async {
        let obj = serde_json::from_value(broken.clone()).unwrap();
        match cspiffeids.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) => Some(s.message),
            Ok(_) => {
                // Admitted while the webhook was not answering yet (failurePolicy Ignore).
                let _ = kubectl(&["delete", "clusterspiffeid", &format!("{name}-broken"), "--wait=false"]);
                None
            }
            Err(_) => None,
        }
    })
    .await;
    let webhook_after = started.elapsed();
    assert!(refusal.contains("spiffeIDTemplate"), "the refusal names the field: {refusal}");

    // caBundle filled with SPIRE's authorities.
    eventually(WAIT, "caBundle filled", || async {
        let v = vapi.get(&vwc).await.ok()?;
        v.webhooks?.iter().all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty())).then_some(())
    })
    .await;

    // Entries: a pod of a labelled ClusterSPIFFEID, its DNS name from Endpoints (the chart
    // grants no EndpointSlices).
    let ns = name.clone();
    create_namespace(&client, &ns, &[]).await;
    let node = create_node(&client, &format!("{name}-node")).await;
    let node_uid = node.metadata.uid.clone().unwrap();
    let pod =
        create_pod(&client, &ns, "web", node.metadata.name.as_deref().unwrap(), "web-sa", &[("app", "web")]).await;
    create_endpoints(&client, &ns, "web-svc", &[&pod]).await;
    apply_json(
        &client,
        "clusterspiffeids",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
            "metadata": {"name": format!("{name}-web"), "labels": {"e2e-chart": name, "spire.spiffe.io/class-name": name}},
            "spec": {"className": name, "autoPopulateDNSNames": true,
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"}}),
    )
    .await;
    // Renders outside the trust domain (not routed to the webhook: no e2e-chart label): its
    // RenderFailed Event would go to "default", which the chart does not allow.
    apply_json(
        &client,
        "clusterspiffeids",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
            "metadata": {"name": format!("{name}-elsewhere"), "labels": {"spire.spiffe.io/class-name": name}},
            "spec": {"className": name, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "spiffeIDTemplate": "spiffe://other.org/{{ .PodMeta.Name }}"}}),
    )
    .await;
    let want_id = format!("spiffe://example.org/ns/{ns}/sa/web-sa");
    let want_parent = format!("spiffe://example.org/spire/agent/k8s_psat/{name}/{node_uid}");
    let entry = eventually(WAIT, "the pod's entry in SPIRE", || async {
        spire.entry_show().into_iter().find(|e| show_id(&e["spiffe_id"]) == want_id)
    })
    .await;
    let entry_after = started.elapsed();
    assert_eq!(show_id(&entry["parent_id"]), want_parent, "parent from the chart's parentIDTemplate: {entry}");
    assert!(entry["id"].as_str().unwrap().starts_with(&format!("{name}.")), "entryIDPrefix: {entry}");
    let dns: Vec<&str> = entry["dns_names"].as_array().into_iter().flatten().filter_map(|d| d.as_str()).collect();
    let svc_name = format!("web-svc.{ns}.svc");
    assert!(dns.contains(&"web-svc") && dns.contains(&svc_name.as_str()), "DNS names from Endpoints: {dns:?}");

    // The Lease in the release namespace.
    eventually(WAIT, "the Lease held", || async {
        let out = kubectl(&["-n", RELEASE_NS, "get", "lease", &lease, "-o", "jsonpath={.spec.holderIdentity}"]);
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{name}_")).then_some(())
    })
    .await;

    // Every missing rule is one degraded capability, reported once; the rest is healthy.
    let status = eventually(WAIT, "degraded capabilities in /status", || async {
        let s = health_status(&ctl.health_addr).await?;
        let d = degraded(&s);
        let all = ["endpointslices", "events", "webhook-config-read:spire-controller-manager-mutating-webhook"];
        all.iter().all(|c| d.iter().any(|x| x == c)).then_some(s)
    })
    .await;
    assert_eq!(status["degraded"]["endpointslices"]["missing_rule"], "list/watch endpointslices.discovery.k8s.io");
    eventually(WAIT, "caches, SPIRE and the certificate ok in /status", || async {
        let s = health_status(&ctl.health_addr).await?;
        ["caches", "spire", "webhook-certificate"].iter().all(|c| s["checks"][c]["ok"] == true).then_some(())
    })
    .await;
    for capability in ["endpointslices", "events"] {
        let label = format!("capability=\"{capability}\"");
        assert_eq!(ctl.metric("spire_controller_manager_degraded", &[&label]).await, 1.0, "{capability}");
    }
    let logs = ctl.logs();
    let warnings = logs.lines().filter(|l| l.contains("optional permission missing")).count();
    assert_eq!(warnings, degraded(&status).len(), "one warning per degraded capability:\n{logs}");
    let forbidden = logs.lines().filter(|l| l.to_lowercase().contains("forbidden")).count();
    assert_eq!(forbidden, 0, "no retry loop of refused calls:\n{logs}");

    eprintln!(
        "chart: ready after {ready_after:?}, webhook refusing after {webhook_after:?}, first entry after {entry_after:?}; degraded: {:?}",
        degraded(&status)
    );
    ctl.stop();
    assert!(ctl.exited_cleanly(), "{}", ctl.logs());
    for kind in ["clusterspiffeids"] {
        for n in [format!("{name}-web"), format!("{name}-elsewhere")] {
            let _ = kubectl(&["delete", kind, &n, "--wait=false"]);
        }
    }
}

/// Eight hex digits from a name (the chart derives its Lease name from the release).
fn rand_u32(seed: &str) -> u32 {
    seed.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619))
}
