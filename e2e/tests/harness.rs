//! The e2e harness: one set of real peers (etcd, kube-apiserver, spire-server) per test
//! binary run, a fresh spire-server per test, the controller binary as a child process,
//! and helpers to make nodes, namespaces, pods and endpoints and to read SPIRE.
//!
//! Under `make test` the peers are already up (`PEERS_ENV` names their env file). Run
//! alone (`cargo test --test e2e`), the harness starts them itself and a watchdog stops
//! them when the test process exits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
/// Exports read from a `peers.sh` env file (the harness's name for it).
#[allow(unused_imports)]
pub use scm_testkit::PeersEnv as Env;
pub use scm_testkit::{Peers, SpireServer, eventually, free_port, peers_sh};
use serde_json::json;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared peers (`PEERS_ENV`'s, or started on first use), with the CRDs installed.
pub fn peers() -> &'static Peers {
    static CRDS: Once = Once::new();
    let peers = Peers::shared();
    CRDS.call_once(|| peers.install_crds());
    peers
}

pub async fn kube() -> Client {
    peers().env.kube_client().await
}

pub fn kubectl(args: &[&str]) -> std::process::Output {
    peers().env.kubectl(args)
}

/// The Events (events.k8s.io) regarding the object named `name`, in `namespace` (`None`:
/// every namespace).
pub fn events_regarding(namespace: Option<&str>, name: &str) -> Vec<serde_json::Value> {
    let mut args = vec!["get", "events.events.k8s.io", "-o", "json"];
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("-A"),
    }
    let out = kubectl(&args);
    assert!(out.status.success(), "kubectl get events: {}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("an event list");
    list["items"].as_array().into_iter().flatten().filter(|e| e["regarding"]["name"] == name).cloned().collect()
}

/// `kubectl apply -f -` with the given YAML/JSON; returns (success, stdout+stderr).
pub fn kubectl_apply(doc: &str) -> (bool, String) {
    use std::io::Write;
    let peers = peers();
    let mut child = Command::new(peers.env.get("KUBECTL"))
        .env("KUBECONFIG", peers.env.get("KUBECONFIG"))
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().unwrap().write_all(doc.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A unique, DNS-safe name for this test run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id() % 100000)
}

/// A spire-server of its own for one test (fresh state), under the shared peers' directory.
pub struct Spire(pub SpireServer);

impl Spire {
    pub fn start(name: &str, trust_domain: &str) -> Spire {
        Self::start_with(name, trust_domain, &[])
    }

    pub fn start_with(name: &str, trust_domain: &str, extra: &[&str]) -> Spire {
        Spire(SpireServer::start_in(&peers().dir.join("t"), name, trust_domain, extra))
    }

    pub async fn client(&self) -> scm_spire_api::Client {
        scm_spire_api::Client::connect_lazy(self.socket(), Default::default()).expect("spire client")
    }
}

impl Deref for Spire {
    type Target = SpireServer;

    fn deref(&self) -> &SpireServer {
        &self.0
    }
}

/// Renders `spiffe://td/path` strings of `spire-server entry show` JSON.
pub fn show_id(v: &serde_json::Value) -> String {
    format!("spiffe://{}{}", v["trust_domain"].as_str().unwrap_or(""), v["path"].as_str().unwrap_or(""))
}

/// The controller binary running as a child process with a config file.
pub struct Controller {
    child: Option<Child>,
    last_exit: Option<bool>,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log: PathBuf,
    pub metrics_addr: String,
    pub health_addr: String,
    /// Command-line arguments; `None`: `--config <config_path>`.
    pub args: Option<Vec<String>>,
}

pub fn controller_bin() -> PathBuf {
    std::env::var("CONTROLLER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/debug/spire-controller-manager"))
}

impl Controller {
    /// Writes `config` (YAML body without apiVersion/kind; metrics and health addresses
    /// are added) and starts the controller with webhooks off.
    pub fn start(name: &str, config: &str) -> Controller {
        Self::start_env(name, config, &[("ENABLE_WEBHOOKS", "false")])
    }

    pub fn start_env(name: &str, config: &str, env: &[(&str, &str)]) -> Controller {
        let mut ctl = Self::prepare(name, config);
        ctl.spawn(env);
        ctl
    }

    /// Writes the config file (as [`Controller::start`]) without starting anything.
    fn prepare(name: &str, config: &str) -> Controller {
        let peers = peers();
        let dir = peers.dir.join("t").join(format!("ctl-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let health_addr = format!("127.0.0.1:{}", free_port());
        let config_path = dir.join("config.yaml");
        let text = format!(
            "apiVersion: spire.spiffe.io/v1alpha1\nkind: ControllerManagerConfig\nmetrics:\n  bindAddress: {metrics_addr}\nhealth:\n  healthProbeBindAddress: {health_addr}\n{config}"
        );
        std::fs::write(&config_path, text).unwrap();
        let log = dir.join("controller.log");
        Controller { child: None, last_exit: None, dir, config_path, log, metrics_addr, health_addr, args: None }
    }

    /// Like [`Controller::start_env`], with the command line given by `args(config_path)`
    /// (the harness adds no flag of its own and no KUBECONFIG).
    pub fn start_args(
        name: &str,
        config: &str,
        args: impl Fn(&std::path::Path) -> Vec<String>,
        env: &[(&str, &str)],
    ) -> Controller {
        let mut ctl = Self::prepare(name, config);
        ctl.args = Some(args(&ctl.config_path));
        ctl.spawn(env);
        ctl
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let peers = peers();
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(controller_bin());
        match &self.args {
            Some(args) => {
                cmd.args(args).env_remove("KUBECONFIG");
            }
            None => {
                cmd.arg("--config").arg(&self.config_path).env("KUBECONFIG", peers.env.get("KUBECONFIG"));
            }
        }
        cmd.env("RUST_LOG", "info,spire_controller_manager=debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(logf.try_clone().unwrap()).stderr(logf).spawn().expect("start controller");
        self.child = Some(child);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn(&[("ENABLE_WEBHOOKS", "false")]);
    }

    /// SIGTERM, then up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_sigterm(child.id());
            for _ in 0..200 {
                if let Ok(Some(status)) = child.try_wait() {
                    self.last_exit = Some(status.success());
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            self.last_exit = Some(false);
        }
    }

    /// Whether the last `stop` ended in a clean, successful exit (no SIGKILL needed).
    pub fn exited_cleanly(&self) -> bool {
        self.last_exit == Some(true)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub async fn metrics(&self) -> String {
        http_get(&self.metrics_addr, "/metrics").await.map(|(_, b)| b).unwrap_or_default()
    }

    /// The sum of a counter/gauge over all label sets matching `filter` substrings.
    pub async fn metric(&self, name: &str, filter: &[&str]) -> f64 {
        let text = self.metrics().await;
        parse_metric(&text, name, filter)
    }
}

pub fn parse_metric(text: &str, name: &str, filter: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter(|l| filter.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tiny HTTP/1.1 GET over plain TCP (metrics and health endpoints).
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

/// The `/status` health document of a controller (see src/health.rs).
pub async fn health_status(addr: &str) -> Option<serde_json::Value> {
    let (code, body) = http_get(addr, "/status").await?;
    if code != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// Whether the named `/status` check passes (`None`: no answer or no such check).
pub async fn check_ok(addr: &str, check: &str) -> Option<bool> {
    health_status(addr).await?["checks"][check]["ok"].as_bool()
}

// ---------------------------------------------------------------- objects

pub async fn create_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> Namespace {
    let api: Api<Namespace> = Api::all(client.clone());
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &ns).await.expect("create namespace")
}

pub async fn create_node(client: &Client, name: &str) -> Node {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
            .unwrap();
    api.create(&PostParams::default(), &node).await.expect("create node")
}

pub async fn create_pod(client: &Client, ns: &str, name: &str, node: &str, sa: &str, labels: &[(&str, &str)]) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut spec = json!({"containers": [{"name": "app", "image": "example/app:1"}], "serviceAccountName": sa});
    if !node.is_empty() {
        spec["nodeName"] = json!(node);
    }
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &pod).await.expect("create pod")
}

pub async fn delete_pod(client: &Client, ns: &str, name: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    // No kubelet: delete immediately.
    let _ = api.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
}

pub async fn create_endpoints(client: &Client, ns: &str, svc: &str, pods: &[&Pod]) -> Endpoints {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let addresses: Vec<serde_json::Value> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"ip": format!("10.1.0.{}", i + 1), "targetRef": {"kind": "Pod", "namespace": ns,
                "name": p.metadata.name, "uid": p.metadata.uid}})
        })
        .collect();
    let ep: Endpoints = serde_json::from_value(
        json!({"metadata": {"name": svc}, "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]}),
    )
    .unwrap();
    api.create(&PostParams::default(), &ep).await.expect("create endpoints")
}

/// The untyped API of one of our `spire.spiffe.io/v1alpha1` kinds.
pub fn cr_api(client: &Client, kind: &str, kind_plural: &str) -> Api<kube::api::DynamicObject> {
    let ar = kube::api::ApiResource {
        group: "spire.spiffe.io".into(),
        version: "v1alpha1".into(),
        api_version: "spire.spiffe.io/v1alpha1".into(),
        kind: kind.into(),
        plural: kind_plural.into(),
    };
    Api::all_with(client.clone(), &ar)
}

/// Applies a custom resource from JSON (server-side apply as the test user).
pub async fn apply_json(client: &Client, kind_plural: &str, obj: serde_json::Value) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    let api = cr_api(client, obj["kind"].as_str().unwrap(), kind_plural);
    api.patch(&name, &kube::api::PatchParams::apply("e2e").force(), &kube::api::Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("apply {kind_plural}/{name}: {e}"));
}

pub async fn delete_cr(client: &Client, kind: &str, kind_plural: &str, name: &str) {
    let api = cr_api(client, kind, kind_plural);
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// The pod observer's configuration `name`: pod CREATEs (and bindings) in namespace `ns`,
/// sent to `base` (`https://localhost:<port>`), never blocking a pod.
pub fn pod_observer_config(
    name: &str,
    base: &str,
    ns: &str,
) -> k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "observe-pods.spire.spiffe.io", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Ignore", "timeoutSeconds": 2, "clientConfig": {"url": format!("{base}/observe-v1-pod")},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods", "pods/binding"], "scope": "Namespaced"}]
        }]
    }))
    .expect("a pod observer configuration")
}

/// A validating configuration `name` for the ClusterSPIFFEIDs labelled `label: value`
/// only (the controller requires one; this keeps it from judging other tests' objects).
pub fn cluster_spiffe_id_validating_config(
    name: &str,
    base: &str,
    label: &str,
    value: &str,
) -> k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "vclusterspiffeid.kb.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": {"url": format!("{base}/validate-spire-spiffe-io-v1alpha1-clusterspiffeid")},
            "objectSelector": {"matchLabels": {label: value}},
            "rules": [{"apiGroups": ["spire.spiffe.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"], "resources": ["clusterspiffeids"]}]
        }]
    }))
    .expect("a validating configuration")
}
