//! manifests/ (the kubectl-appliable install) against the real kube-apiserver:
//!
//! - everything in it passes `kubectl apply --dry-run=server` (schema, CRD validation of the
//!   samples, RBAC objects), its copies of crds/ and webhooks/ are current, and its
//!   kustomizations list every file;
//! - its ControllerManagerConfig loads without warnings, agrees with the other manifests
//!   (Lease name in the Role, webhook configuration name, socket path, ports), and its
//!   samples pass the controller's own admission checks without a warning;
//! - its RBAC is least privilege (`kubectl auth can-i` as the spire-server ServiceAccount)
//!   and enough: the controller binary, running as a token user bound to exactly those roles,
//!   watches, writes SPIRE entries and federation relationships, patches status, records
//!   events and takes and releases the Lease without a single Forbidden.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// The ServiceAccount manifests/ runs the controller as (shared with the SPIRE server).
const SA_USER: &str = "system:serviceaccount:spire-system:spire-server";
/// The token user of the peers' kubeconfig (context "controller").
const TOKEN_USER: &str = "system:serviceaccount:spire-system:spire-controller-manager";
const WAIT: Duration = Duration::from_secs(60);

fn manifests() -> PathBuf {
    root().join("manifests")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `kubectl ARGS...` as admin, asserting success; its stdout and stderr.
fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {} failed:\n{}", args.join(" "), text(&out));
    text(&out)
}

/// The `*.yaml` file names directly in `dir`.
fn yaml_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect()
}

/// `dst` holds exactly the files of `src`, byte for byte.
fn assert_copy(src: &str, dst: &str) {
    let (s, d) = (root().join(src), root().join(dst));
    let (sf, df) = (yaml_files(&s), yaml_files(&d));
    assert_eq!(sf, df, "{dst}/ must hold the files of {src}/ (run: rm {dst}/*.yaml && cp {src}/*.yaml {dst}/)");
    for f in &sf {
        let a = std::fs::read(s.join(f)).unwrap();
        let b = std::fs::read(d.join(f)).unwrap();
        assert!(a == b, "{dst}/{f} differs from {src}/{f} (run: cp {src}/*.yaml {dst}/)");
    }
}

/// The `resources:` of a kustomization.yaml (a plain list of relative paths).
fn kustomize_resources(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut in_resources = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("resources:") {
            in_resources = true;
        } else if in_resources {
            match line.trim_start().strip_prefix("- ") {
                Some(item) if line.starts_with(' ') => {
                    out.insert(item.trim().to_owned());
                }
                _ if line.trim().is_empty() || line.trim_start().starts_with('#') => {}
                _ => in_resources = false,
            }
        }
    }
    out
}

/// The objects of a manifest file, parsed by kubectl (client side).
fn objects(path: &Path) -> Vec<Value> {
    let out = kubectl_ok_stdout(&["create", "--dry-run=client", "-o", "json", "-f", path.to_str().unwrap()]);
    // One JSON document per object (or a List).
    let mut objs = Vec::new();
    for v in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let v = v.unwrap_or_else(|e| panic!("kubectl JSON for {}: {e}", path.display()));
        match v["kind"].as_str() {
            Some("List") => objs.extend(v["items"].as_array().cloned().unwrap_or_default()),
            _ => objs.push(v),
        }
    }
    objs
}

fn kubectl_ok_stdout(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {} failed:\n{}", args.join(" "), text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The ControllerManagerConfig embedded in manifests/config.yaml, loaded as the controller
/// loads its --config file.
fn manifests_config() -> (String, scm_config::Config) {
    let cm = objects(&manifests().join("config.yaml"));
    assert_eq!(cm.len(), 1);
    let text = cm[0]["data"]["config.yaml"].as_str().expect("data.config.yaml").to_owned();
    let loaded = scm_config::from_str(&text, "manifests/config.yaml", &scm_config::LoadOptions::default(), |_| None)
        .unwrap_or_else(|e| panic!("manifests/config.yaml does not load: {e}"));
    assert!(loaded.warnings.is_empty(), "manifests/config.yaml loads with warnings: {:?}", loaded.warnings);
    (text, loaded.config)
}

/// The namespace manifests/ installs into, created for real (namespaced objects need it
/// even in a dry run).
fn ensure_namespace() {
    let path = manifests().join("namespace.yaml");
    // Another test may create it at the same moment (apply then fails with AlreadyExists).
    for _ in 0..3 {
        if kubectl(&["apply", "-f", path.to_str().unwrap()]).status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[tokio::test]
async fn manifests_apply_to_the_real_apiserver_and_agree_with_each_other() {
    let _ = peers();
    // The copies are current.
    assert_copy("crds", "manifests/crds");
    assert_copy("webhooks", "manifests/webhooks");

    // The kustomizations list every file.
    let m = manifests();
    let mut want: BTreeSet<String> = yaml_files(&m).into_iter().filter(|f| f != "kustomization.yaml").collect();
    for sub in ["crds", "webhooks"] {
        want.extend(yaml_files(&m.join(sub)).into_iter().map(|f| format!("{sub}/{f}")));
    }
    assert_eq!(
        kustomize_resources(&m.join("kustomization.yaml")),
        want,
        "manifests/kustomization.yaml must list every manifest"
    );
    let examples: BTreeSet<String> =
        yaml_files(&m.join("examples")).into_iter().filter(|f| f != "kustomization.yaml").collect();
    assert!(examples.len() >= 4, "examples: {examples:?}");
    assert_eq!(
        kustomize_resources(&m.join("examples/kustomization.yaml")),
        examples,
        "manifests/examples/kustomization.yaml must list every sample"
    );

    // Server-side dry run of the whole install, then of the samples (the CRDs are installed
    // from crds/, which manifests/crds equals).
    ensure_namespace();
    // (stdout only: kubectl warns on stderr about the CRDs the harness applied server-side)
    let out = kubectl_ok_stdout(&["apply", "--dry-run=server", "-k", m.to_str().unwrap()]);
    for needle in [
        "namespace/spire-system",
        "customresourcedefinition.apiextensions.k8s.io/clusterspiffeids.spire.spiffe.io",
        "customresourcedefinition.apiextensions.k8s.io/clusterstaticentries.spire.spiffe.io",
        "customresourcedefinition.apiextensions.k8s.io/clusterfederatedtrustdomains.spire.spiffe.io",
        "serviceaccount/spire-server",
        "clusterrole.rbac.authorization.k8s.io/spire-controller-manager",
        "clusterrolebinding.rbac.authorization.k8s.io/spire-controller-manager",
        "role.rbac.authorization.k8s.io/spire-controller-manager-leader-election",
        "rolebinding.rbac.authorization.k8s.io/spire-controller-manager-leader-election",
        "role.rbac.authorization.k8s.io/spire-controller-manager-events",
        "rolebinding.rbac.authorization.k8s.io/spire-controller-manager-events",
        "configmap/spire-controller-manager-config",
        "configmap/spire-server",
        "service/spire-controller-manager-webhook-service",
        "statefulset.apps/spire-server",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/spire-controller-manager-webhook",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/spire-controller-manager-mutating-webhook",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/spire-controller-manager-pod-observer",
    ] {
        assert!(out.contains(needle), "dry run output lacks {needle}:\n{out}");
    }
    assert!(out.lines().all(|l| l.contains("(server dry run)")), "every object is a server dry run:\n{out}");
    let out = kubectl_ok_stdout(&["apply", "--dry-run=server", "-k", m.join("examples").to_str().unwrap()]);
    assert_eq!(out.lines().filter(|l| l.contains("(server dry run)")).count(), 5, "five samples:\n{out}");

    // The configuration loads and agrees with the other manifests.
    let (_, config) = manifests_config();
    assert_eq!(config.trust_domain.name(), "example.org");
    assert_eq!(config.cluster_name, "demo");
    assert_eq!(config.class_name, "spire-system-spire");
    assert!(!config.watch_classless);
    assert!(config.leader_election.leader_elect);
    assert_eq!(config.leader_election.resource_namespace.as_deref(), Some("spire-system"));
    assert_eq!(config.gc_interval, Duration::from_secs(10));
    let rbac = objects(&m.join("rbac.yaml"));
    let role = rbac
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "spire-controller-manager-leader-election")
        .expect("the leader election Role in rbac.yaml");
    let named: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resourceNames"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(named, [config.leader_election.resource_name.as_str()], "the Role names the config's Lease");
    let vwc = objects(&m.join("webhooks/validating.yaml"));
    assert_eq!(vwc[0]["metadata"]["name"], config.validating_webhook_configuration_name.as_str());
    // The ClusterRole may touch exactly the webhook configurations the config names.
    let cluster_role = rbac.iter().find(|o| o["kind"] == "ClusterRole").expect("the ClusterRole");
    let webhook_names: BTreeSet<&str> = cluster_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"][0] == "admissionregistration.k8s.io")
        .flat_map(|r| r["resourceNames"].as_array().expect("webhook rules name their objects").iter())
        .filter_map(Value::as_str)
        .collect();
    let configured: BTreeSet<&str> = [
        config.validating_webhook_configuration_name.as_str(),
        config.mutating_webhook_configuration_name.as_str(),
        config.pod_observer_webhook_configuration_name.as_str(),
    ]
    .into();
    assert_eq!(webhook_names, configured, "the ClusterRole names the configured webhook configurations");
    let server = objects(&m.join("spire-server.yaml"));
    let server_conf = server
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "spire-server")
        .and_then(|o| o["data"]["server.conf"].as_str())
        .expect("spire-server ConfigMap");
    let socket_path =
        server_conf.lines().find(|l| l.trim_start().starts_with("socket_path")).and_then(|l| l.split('"').nth(1));
    assert_eq!(
        socket_path,
        Some(config.spire_server_socket_path.as_str()),
        "spireServerSocketPath is the server's socket_path"
    );
    assert!(server_conf.contains("trust_domain = \"example.org\""));
    let sts = server.iter().find(|o| o["kind"] == "StatefulSet").expect("StatefulSet");
    let containers = sts["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    let ctl = containers.iter().find(|c| c["name"] == "spire-controller-manager").expect("the controller sidecar");
    assert_eq!(ctl["args"], json!(["--config=/etc/spire-controller-manager/config.yaml"]));
    let port = |name: &str| {
        ctl["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].as_i64().unwrap())
    };
    assert_eq!(port("webhook"), Some(i64::from(config.webhook.port)));
    assert_eq!(config.metrics.bind_address.as_deref(), Some("0.0.0.0:8082"));
    assert_eq!(port("metrics"), Some(8082));
    assert_eq!(config.health.health_probe_bind_address.as_deref(), Some("0.0.0.0:8083"));
    assert_eq!(port("health"), Some(8083));
    assert_eq!(sts["spec"]["template"]["spec"]["serviceAccountName"], "spire-server");

    // The samples pass the controller's own admission checks, without a warning.
    let mut settings = scm_webhook::AdmissionSettings::new(config.trust_domain.clone(), config.cluster_name.clone());
    settings.cluster_domain = "cluster.local".into();
    settings.class_name = config.class_name.clone();
    settings.watch_classless = config.watch_classless;
    let mut kinds = Vec::new();
    for f in &examples {
        for obj in objects(&m.join("examples").join(f)) {
            let kind = obj["kind"].as_str().unwrap().to_owned();
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            let spec = obj["spec"].clone();
            let verdict = match kind.as_str() {
                "ClusterSPIFFEID" => {
                    scm_webhook::validate::validate_cluster_spiffe_id(&settings, &serde_json::from_value(spec).unwrap())
                }
                "ClusterStaticEntry" => scm_webhook::validate::validate_cluster_static_entry(
                    &settings,
                    &serde_json::from_value(spec).unwrap(),
                ),
                "ClusterFederatedTrustDomain" => scm_webhook::validate::validate_cluster_federated_trust_domain(
                    &settings,
                    &serde_json::from_value(spec).unwrap(),
                ),
                other => panic!("unexpected kind {other} in manifests/examples/{f}"),
            };
            assert!(verdict.errors.is_empty() && verdict.warnings.is_empty(), "{kind} {name} ({f}): {verdict:?}");
            assert_eq!(
                obj["metadata"]["labels"]["spire.spiffe.io/class-name"],
                config.class_name.as_str(),
                "{name}: class label"
            );
            kinds.push(kind);
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterFederatedTrustDomain",
            "ClusterFederatedTrustDomain",
            "ClusterSPIFFEID",
            "ClusterSPIFFEID",
            "ClusterStaticEntry"
        ]
    );
}

/// `kubectl auth can-i ARGS... --as USER`: the answer.
fn can_i(user: &str, args: &[&str]) -> bool {
    let mut a = vec!["auth", "can-i"];
    a.extend_from_slice(args);
    let as_user = format!("--as={user}");
    a.push(&as_user);
    let out = kubectl(&a);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(answer == "yes" || answer == "no", "kubectl {}: {}", a.join(" "), text(&out));
    answer == "yes"
}

/// Removes the test-only bindings of the token user, even when the test fails.
struct TokenUserBindings;

impl Drop for TokenUserBindings {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "clusterrolebinding", "e2e-manifests-token-user", "--ignore-not-found"]);
        let _ =
            kubectl(&["-n", "spire-system", "delete", "rolebinding", "e2e-manifests-token-user", "--ignore-not-found"]);
        let _ = kubectl(&["-n", "default", "delete", "rolebinding", "e2e-manifests-token-user", "--ignore-not-found"]);
    }
}

#[tokio::test]
async fn rbac_is_enough_for_the_controller_and_no_more() {
    let client = kube().await;
    ensure_namespace();
    kubectl_ok(&["apply", "-f", manifests().join("rbac.yaml").to_str().unwrap()]);
    let (_, config) = manifests_config();
    let lease = config.leader_election.resource_name.clone();
    let lease_ref = format!("leases.coordination.k8s.io/{lease}");

    // What the controller needs (manifests/rbac.yaml's comments say why).
    let allowed: &[&[&str]] = &[
        &["list", "pods", "-A"],
        &["watch", "pods", "-A"],
        &["list", "nodes"],
        &["watch", "nodes"],
        &["list", "namespaces"],
        &["watch", "namespaces"],
        &["list", "endpoints", "-A"],
        &["watch", "endpoints", "-A"],
        &["list", "endpointslices.discovery.k8s.io", "-A"],
        &["watch", "endpointslices.discovery.k8s.io", "-A"],
        &["list", "clusterspiffeids.spire.spiffe.io"],
        &["watch", "clusterspiffeids.spire.spiffe.io"],
        &["list", "clusterstaticentries.spire.spiffe.io"],
        &["watch", "clusterstaticentries.spire.spiffe.io"],
        &["list", "clusterfederatedtrustdomains.spire.spiffe.io"],
        &["watch", "clusterfederatedtrustdomains.spire.spiffe.io"],
        &["patch", "clusterspiffeids.spire.spiffe.io", "--subresource=status"],
        &["patch", "clusterstaticentries.spire.spiffe.io", "--subresource=status"],
        &["patch", "clusterfederatedtrustdomains.spire.spiffe.io", "--subresource=status"],
        &["update", "clusterspiffeids.spire.spiffe.io", "--subresource=status"],
        &["create", "leases.coordination.k8s.io", "-n", "spire-system"],
        &["get", &lease_ref, "-n", "spire-system"],
        &["update", &lease_ref, "-n", "spire-system"],
        &["list", "validatingwebhookconfigurations.admissionregistration.k8s.io/spire-controller-manager-webhook"],
        &["watch", "validatingwebhookconfigurations.admissionregistration.k8s.io/spire-controller-manager-webhook"],
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/spire-controller-manager-webhook"],
        &[
            "patch",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/spire-controller-manager-pod-observer",
        ],
        &[
            "patch",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io/spire-controller-manager-mutating-webhook",
        ],
        &["create", "events.events.k8s.io", "-n", "default"],
        &["patch", "events.events.k8s.io", "-n", "default"],
        &["create", "events", "-n", "default"],
        &["create", "events.events.k8s.io", "-n", "spire-system"],
    ];
    // What it must not be able to do.
    let denied: &[&[&str]] = &[
        &["delete", "pods", "-A"],
        &["create", "pods", "-n", "default"],
        &["patch", "pods", "-A"],
        &["delete", "nodes"],
        &["get", "secrets", "-A"],
        &["list", "secrets", "-n", "spire-system"],
        &["get", "configmaps", "-n", "spire-system"],
        &["create", "clusterspiffeids.spire.spiffe.io"],
        &["update", "clusterspiffeids.spire.spiffe.io"],
        &["patch", "clusterspiffeids.spire.spiffe.io"],
        &["delete", "clusterspiffeids.spire.spiffe.io"],
        &["create", "clusterstaticentries.spire.spiffe.io"],
        &["delete", "clusterfederatedtrustdomains.spire.spiffe.io"],
        &["update", "clusterspiffeids.spire.spiffe.io", "--subresource=finalizers"],
        &["create", "leases.coordination.k8s.io", "-n", "default"],
        &["list", "leases.coordination.k8s.io", "-n", "spire-system"],
        &["delete", "leases.coordination.k8s.io", "-n", "spire-system"],
        &["update", "leases.coordination.k8s.io/some-other-lease", "-n", "spire-system"],
        &["create", "validatingwebhookconfigurations.admissionregistration.k8s.io"],
        &["delete", "validatingwebhookconfigurations.admissionregistration.k8s.io"],
        &["update", "validatingwebhookconfigurations.admissionregistration.k8s.io"],
        &["delete", "events.events.k8s.io", "-n", "default"],
        &["create", "events.events.k8s.io", "-n", "kube-system"],
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses-webhook"],
        &["patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses-webhook"],
        &["list", "validatingwebhookconfigurations.admissionregistration.k8s.io"],
        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        &["impersonate", "serviceaccounts", "-A"],
        &["create", "serviceaccounts/token", "-n", "spire-system"],
    ];
    let mut wrong = Vec::new();
    for a in allowed {
        if !can_i(SA_USER, a) {
            wrong.push(format!("cannot {}", a.join(" ")));
        }
    }
    for a in denied {
        if can_i(SA_USER, a) {
            wrong.push(format!("can {}", a.join(" ")));
        }
    }
    assert!(wrong.is_empty(), "{SA_USER} with manifests/rbac.yaml:\n  {}", wrong.join("\n  "));

    // Enough: the controller as the token user bound to exactly those roles.
    let _bindings = TokenUserBindings;
    let (ok, out) = kubectl_apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-manifests-token-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: spire-controller-manager}
subjects: [{kind: ServiceAccount, name: spire-controller-manager, namespace: spire-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e2e-manifests-token-user, namespace: spire-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: spire-controller-manager-leader-election}
subjects: [{kind: ServiceAccount, name: spire-controller-manager, namespace: spire-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e2e-manifests-token-user, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: spire-controller-manager-events}
subjects: [{kind: ServiceAccount, name: spire-controller-manager, namespace: spire-system}]
"#,
    );
    assert!(ok, "binding the token user: {out}");
    assert!(can_i(TOKEN_USER, &["watch", "pods", "-A"]) && !can_i(TOKEN_USER, &["get", "secrets", "-A"]));

    let name = unique("rbac");
    let spire = Spire::start(&name, "example.org");
    let dir = peers().dir.join("t").join(format!("manifests-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig-controller");
    std::fs::copy(peers().env.get("KUBECONFIG"), &kubeconfig).unwrap();
    kubectl_ok(&["--kubeconfig", kubeconfig.to_str().unwrap(), "config", "use-context", "controller"]);

    // manifests/config.yaml's leader election (the Lease the Role names), on loopback, with
    // a class of its own so that other tests' objects are left alone. Webhooks off: the
    // mutating and pod-observer configurations have fixed names that the webhook tests
    // own while they run (the webhook rules are checked with can-i above, and `make demo`
    // runs the webhooks under the same roles).
    let le = &config.leader_election;
    let yaml = format!(
        "trustDomain: example.org\nclusterName: demo\nclusterDomain: cluster.local\nclassName: {name}\nentryIDPrefix: {name}\n\
         spireServerSocketPath: {sock}\ngcInterval: 2s\nleaderElection:\n  leaderElect: true\n  resourceName: {lease}\n  \
         resourceNamespace: {ns}\n  leaseDuration: 15s\n  renewDeadline: 10s\n  retryPeriod: 2s\n",
        sock = spire.socket(),
        lease = le.resource_name,
        ns = le.resource_namespace.as_deref().unwrap(),
    );
    let mut ctl = Controller::start_env(
        &name,
        &yaml,
        &[("ENABLE_WEBHOOKS", "false"), ("KUBECONFIG", kubeconfig.to_str().unwrap()), ("POD_NAME", &name)],
    );

    let ns = name.clone();
    create_namespace(&client, &ns, &[]).await;
    let node = create_node(&client, &format!("{name}-node")).await;
    let pod = create_pod(&client, &ns, "app", node.metadata.name.as_deref().unwrap(), "app-sa", &[("app", "x")]).await;
    let ns_selector = json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
    apply_json(
        &client,
        "clusterspiffeids",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": format!("{name}-good")},
            "spec": {"className": name, "namespaceSelector": ns_selector,
                "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"}}),
    )
    .await;
    // Renders outside the trust domain: a RenderFailed event.
    apply_json(
        &client,
        "clusterspiffeids",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": format!("{name}-bad")},
            "spec": {"className": name, "namespaceSelector": ns_selector, "workloadSelectorTemplates": ["k8s:container-name:app"],
                "spiffeIDTemplate": "spiffe://other.org/{{ .PodMeta.Name }}"}}),
    )
    .await;
    apply_json(
        &client,
        "clusterstaticentries",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterStaticEntry", "metadata": {"name": format!("{name}-static")},
            "spec": {"className": name, "spiffeID": format!("spiffe://example.org/{name}/static"),
                "parentID": "spiffe://example.org/spire/server", "selectors": ["unix:uid:1000"]}}),
    )
    .await;
    let federated = format!("{name}.example");
    apply_json(
        &client,
        "clusterfederatedtrustdomains",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterFederatedTrustDomain", "metadata": {"name": format!("{name}-fed")},
            "spec": {"className": name, "trustDomain": federated, "bundleEndpointURL": "https://127.0.0.1:1/bundle",
                "bundleEndpointProfile": {"type": "https_web"}}}),
    )
    .await;

    // Leader (Lease get/create/update in spire-system).
    let holder = eventually(WAIT, "the controller holds the Lease", || async {
        let out = kubectl(&["-n", "spire-system", "get", "lease", &lease, "-o", "jsonpath={.spec.holderIdentity}"]);
        let h = String::from_utf8_lossy(&out.stdout).into_owned();
        h.starts_with(&format!("{name}_")).then_some(h)
    })
    .await;
    // Watches of pods, nodes, namespaces, the CRs: entries and the relationship in SPIRE.
    let pod_id = format!("spiffe://example.org/ns/{ns}/sa/app-sa");
    let static_id = format!("spiffe://example.org/{name}/static");
    eventually(WAIT, "the pod's and the static entry in SPIRE", || async {
        let ids: Vec<String> = spire.entry_show().iter().map(|e| show_id(&e["spiffe_id"])).collect();
        (ids.contains(&pod_id) && ids.contains(&static_id)).then_some(())
    })
    .await;
    eventually(WAIT, "the federation relationship in SPIRE", || async {
        let out = spire.cli(&["federation", "list"]);
        String::from_utf8_lossy(&out.stdout).contains(&federated).then_some(())
    })
    .await;
    // Status subresources.
    let status = |kind: &str, obj: String| {
        let out = kubectl(&["get", kind, &obj, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).ok().map(|v| v["status"].clone()).unwrap_or(Value::Null)
    };
    let ready = |s: &Value| {
        s["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    eventually(WAIT, "status of the ClusterSPIFFEID", || async {
        let s = status("clusterspiffeids.spire.spiffe.io", format!("{name}-good"));
        (ready(&s) && s["stats"]["entriesToSet"] == 1).then_some(())
    })
    .await;
    eventually(WAIT, "status of the ClusterStaticEntry", || async {
        let s = status("clusterstaticentries.spire.spiffe.io", format!("{name}-static"));
        (ready(&s) && s["rendered"] == true).then_some(())
    })
    .await;
    eventually(WAIT, "status of the ClusterFederatedTrustDomain", || async {
        ready(&status("clusterfederatedtrustdomains.spire.spiffe.io", format!("{name}-fed"))).then_some(())
    })
    .await;
    eventually(WAIT, "a RenderFailed status and event for the bad ClusterSPIFFEID", || async {
        let s = status("clusterspiffeids.spire.spiffe.io", format!("{name}-bad"));
        let failed = s["conditions"].as_array().into_iter().flatten().any(|c| c["reason"] == "RenderFailed");
        let out = kubectl(&["-n", "default", "get", "events.events.k8s.io", "-o", "json"]);
        let events: Value = serde_json::from_slice(&out.stdout).ok()?;
        let event = events["items"].as_array()?.iter().any(|e| {
            e["regarding"]["name"] == format!("{name}-bad").as_str()
                && e["reason"] == "RenderFailed"
                && e["reportingController"] == "spire-controller-manager"
        });
        (failed && event).then_some(())
    })
    .await;

    let logs = ctl.logs();
    for bad in ["forbidden", "failed to publish event", "failed to update", "failed to release"] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.to_lowercase().contains(bad)).take(5).collect();
        assert!(hits.is_empty(), "controller log has {bad:?} under manifests/rbac.yaml:\n{}", hits.join("\n"));
    }

    // SIGTERM: a clean exit that hands the Lease back (update).
    ctl.stop();
    assert!(ctl.exited_cleanly(), "controller did not exit cleanly:\n{}", ctl.logs());
    let out =
        kubectl_ok_stdout(&["-n", "spire-system", "get", "lease", &lease, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert!(out.trim().is_empty(), "lease still held ({out}) after {holder} stopped:\n{}", ctl.logs());
    let logs = ctl.logs();
    assert!(!logs.to_lowercase().contains("forbidden"), "controller log has Forbidden:\n{logs}");

    let _ = pod;
    for (kind, n) in [
        ("ClusterSPIFFEID", format!("{name}-good")),
        ("ClusterSPIFFEID", format!("{name}-bad")),
        ("ClusterStaticEntry", format!("{name}-static")),
        ("ClusterFederatedTrustDomain", format!("{name}-fed")),
    ] {
        let plural = match kind {
            "ClusterSPIFFEID" => "clusterspiffeids",
            "ClusterStaticEntry" => "clusterstaticentries",
            _ => "clusterfederatedtrustdomains",
        };
        delete_cr(&client, kind, plural, &n).await;
    }
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

// ---------------------------------------------------------------- manifests/standalone

/// manifests/standalone (the controller as its own Deployment, TCP + mTLS to SPIRE): a
/// server-side dry run of the whole install, current copies, and the objects agree with
/// each other and with the sidecar install's least-privilege RBAC (same rules, own
/// ServiceAccount: `rbac_is_enough_for_the_controller_and_no_more` covers those rules).
#[tokio::test]
async fn standalone_manifests_apply_and_agree_with_each_other() {
    let _ = peers();
    assert_copy("crds", "manifests/standalone/crds");
    assert_copy("webhooks", "manifests/standalone/webhooks");
    let s = manifests().join("standalone");
    let mut want: BTreeSet<String> = yaml_files(&s).into_iter().filter(|f| f != "kustomization.yaml").collect();
    for sub in ["crds", "webhooks"] {
        want.extend(yaml_files(&s.join(sub)).into_iter().map(|f| format!("{sub}/{f}")));
    }
    assert_eq!(kustomize_resources(&s.join("kustomization.yaml")), want, "the kustomization lists every manifest");

    ensure_namespace();
    let out = kubectl_ok_stdout(&["apply", "--dry-run=server", "-k", s.to_str().unwrap()]);
    for needle in [
        "serviceaccount/spire-controller-manager",
        "clusterrolebinding.rbac.authorization.k8s.io/spire-controller-manager",
        "rolebinding.rbac.authorization.k8s.io/spire-controller-manager-leader-election",
        "configmap/spire-controller-manager-config",
        "deployment.apps/spire-controller-manager",
        "poddisruptionbudget.policy/spire-controller-manager",
        "service/spire-controller-manager-webhook-service",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/spire-controller-manager-webhook",
    ] {
        assert!(out.contains(needle), "dry run output lacks {needle}:\n{out}");
    }
    assert!(!out.contains("statefulset"), "no SPIRE server in the standalone install:\n{out}");
    assert!(out.lines().all(|l| l.contains("(server dry run)")), "every object is a server dry run:\n{out}");

    // The configuration: TCP + mTLS, a Lease, and an entry ID prefix (the hand-made admin
    // entries of the controller's own identity are then never its to delete).
    let cm = objects(&s.join("config.yaml"));
    let text = cm[0]["data"]["config.yaml"].as_str().unwrap();
    let loaded = scm_config::from_str(text, "standalone/config.yaml", &Default::default(), |_| None)
        .unwrap_or_else(|e| panic!("standalone config: {e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config;
    assert_eq!(config.spire_server_address.as_deref(), Some("spire-server.spire-system.svc:8081"));
    assert!(config.leader_election.leader_elect);
    assert!(!config.entry_id_prefix.is_empty(), "entryIDPrefix protects the controller's own entries");
    let workload = config.workload_api_socket_path.clone().unwrap();

    // The Deployment: two replicas under the ServiceAccount the bindings name, the agent
    // socket mounted where the config looks for it, the ports the config binds.
    let deploy = objects(&s.join("deployment.yaml"));
    let d = &deploy[0];
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"];
    let labels = pod["metadata"]["labels"].as_object().unwrap().clone();
    let sa = pod["spec"]["serviceAccountName"].as_str().unwrap();
    let rbac = objects(&s.join("rbac.yaml"));
    for b in rbac.iter().filter(|o| o["kind"].as_str().unwrap().ends_with("Binding")) {
        assert_eq!(b["subjects"], json!([{"kind": "ServiceAccount", "name": sa, "namespace": "spire-system"}]), "{b}");
    }
    // Same rules as the sidecar install (whose RBAC test runs the controller under them).
    let sidecar = objects(&manifests().join("rbac.yaml"));
    let rules = |objs: &[Value]| -> Vec<(String, Value)> {
        objs.iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
            .map(|o| (o["metadata"]["name"].as_str().unwrap().to_owned(), o["rules"].clone()))
            .collect()
    };
    assert_eq!(rules(&rbac), rules(&sidecar), "standalone/rbac.yaml grants what rbac.yaml grants");
    let ctl = &pod["spec"]["containers"][0];
    let mount = ctl["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| workload.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("no volume mounted over {workload}"));
    let volume = pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert_eq!(volume["csi"]["driver"], "csi.spiffe.io", "the Workload API via the SPIFFE CSI driver");
    let port = |name: &str| {
        ctl["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["containerPort"].clone())
    };
    assert_eq!(port("webhook"), Some(json!(config.webhook.port)));

    // The webhook Service and the PodDisruptionBudget select the controller's pods, and
    // the Service no SPIRE server pod.
    let selects = |sel: &Value| sel.as_object().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v));
    let svc = &objects(&s.join("service.yaml"))[0];
    assert!(selects(&svc["spec"]["selector"]), "{svc}");
    assert_ne!(svc["spec"]["selector"]["app.kubernetes.io/name"], "spire-server");
    let pdb = &objects(&s.join("pdb.yaml"))[0];
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"]), "{pdb}");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}
