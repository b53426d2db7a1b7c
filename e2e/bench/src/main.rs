//! `scm-bench`: the driver behind `e2e/bench/run.sh` (`make bench`). Measurements, not
//! tests: nothing here passes or fails on a number; it records numbers.
//!
//! ```text
//! scm-bench world      --peers-env F [--pods N --nodes N --namespaces N]
//! scm-bench controller --peers-env F --bin PATH --flavor ours|upstream --label L --rep N
//!                      --out DIR [--idle-secs 60] [--one-pod 20] [--no-idle]
//! scm-bench report     DIR
//! ```
//!
//! `world` creates namespaces, nodes, pods (with `spec.nodeName`) and three ClusterSPIFFEIDs
//! through the real kube-apiserver and writes `world.json` next to the peers env file.
//! `controller` runs one repetition: a fresh spire-server (`peers.sh spire-up`), the
//! controller binary against it, convergence, an idle window, single-pod latencies; it
//! writes `DIR/<label>-rep<N>.json`. `report` turns every JSON (and `admission-*.txt`) in
//! DIR into markdown tables (median and min–max over repetitions).
//!
//! Every loop is bounded by a count and a deadline; all traffic is on loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const TD: &str = "example.org";
const CLASS: &str = "bench";
const CLUSTER: &str = "bench";
const NS_PREFIX: &str = "bench-ns-";
const FALLBACK_LABEL: &str = "bench.spire.io/fallback";
const ONEPOD_LABEL: &str = "bench.spire.io/onepod";

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        bail!("usage: scm-bench world|controller|report ... (see the source header)");
    }
    let cmd = args.remove(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cmd.as_str() {
        "world" => rt.block_on(world(Flags::parse(&args)?)),
        "controller" => rt.block_on(controller(Flags::parse(&args)?)),
        "report" => report(Path::new(args.first().context("report DIR")?)),
        other => bail!("unknown command {other}"),
    }
}

// ------------------------------------------------------------------ flags and env

struct Flags(BTreeMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        let mut m = BTreeMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let k = a.strip_prefix("--").with_context(|| format!("unexpected argument {a}"))?;
            if k.starts_with("no-") {
                m.insert(k.to_owned(), "true".to_owned());
                continue;
            }
            let v = it.next().with_context(|| format!("--{k} needs a value"))?;
            m.insert(k.to_owned(), v.clone());
        }
        Ok(Flags(m))
    }
    fn str(&self, k: &str) -> Result<&str> {
        self.0.get(k).map(|s| s.as_str()).with_context(|| format!("--{k} is required"))
    }
    fn num(&self, k: &str, default: u64) -> Result<u64> {
        match self.0.get(k) {
            Some(v) => v.parse().with_context(|| format!("--{k} {v}: not a number")),
            None => Ok(default),
        }
    }
    fn flag(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

/// Exports of a `peers.sh` env file (`export K=V`, values quoted by `printf %q`).
fn read_env(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("export ") else { continue };
        let Some((k, v)) = rest.split_once('=') else { continue };
        map.insert(k.to_owned(), unquote(v));
    }
    Ok(map)
}

fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix("$'").and_then(|s| s.strip_suffix('\'')) {
        return inner.replace("\\'", "'").replace("\\\\", "\\");
    }
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn env_get<'a>(env: &'a BTreeMap<String, String>, k: &str) -> Result<&'a str> {
    env.get(k).map(|s| s.as_str()).with_context(|| format!("{k} missing from the peers env"))
}

async fn kube_client(env: &BTreeMap<String, String>) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(env_get(env, "KUBECONFIG")?)?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    config.read_timeout = Some(Duration::from_secs(60));
    Ok(kube::Client::try_from(config)?)
}

// ------------------------------------------------------------------ the world

/// The shape of the synthetic cluster; `expected_entries` follows from it.
#[derive(Clone, Copy)]
struct Shape {
    pods: usize,
    nodes: usize,
    namespaces: usize,
}

impl Shape {
    fn ns_of(&self, i: usize) -> usize {
        i % self.namespaces
    }
    /// Half of the pods of every namespace carry `half=yes`.
    fn half(&self, i: usize) -> bool {
        (i / self.namespaces) % 2 == 0
    }
    fn fallback_ns(&self) -> usize {
        self.namespaces - 1
    }
    /// `bench-all` selects every namespace but the last; `bench-half` the `half=yes` pods
    /// everywhere; `bench-fallback` (fallback) every pod left without an entry.
    fn expected_entries(&self) -> usize {
        (0..self.pods)
            .map(|i| {
                let in_fb = self.ns_of(i) == self.fallback_ns();
                let half = self.half(i);
                usize::from(!in_fb) + usize::from(half) + usize::from(in_fb && !half)
            })
            .sum()
    }
}

/// `minimal`: one container, no env/probes/resources/volumes/annotations/owner (to show how
/// the controller's memory depends on the size of the pods it caches).
static MINIMAL_PODS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn pod_json(ns: &str, name: &str, node: &str, sa: &str, app: &str, half: bool, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({
        "app": app, "half": if half { "yes" } else { "no" },
        "pod-template-hash": "7d9f8b6c5d", "app.kubernetes.io/part-of": "bench",
    });
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    if MINIMAL_PODS.load(std::sync::atomic::Ordering::Relaxed) {
        return json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "serviceAccountName": sa, "containers": [{"name": "app", "image": "registry.example/app:1.2.3"}]}
        });
    }
    // About what a Deployment's pod with a sidecar looks like (2 containers, env, probes,
    // resources, a CSI volume for the SPIFFE socket), so that trimming is measured too.
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "labels": labels,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                             "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d9f8b6c5d"),
                                  "uid": "8b0c7a52-3f7e-4c1e-9a7e-2f4c3b1d0e9f", "controller": true}]
        },
        "spec": {
            "nodeName": node, "serviceAccountName": sa,
            "containers": [
                {"name": "app", "image": "registry.example/app:1.2.3",
                 "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"},
                         {"name": "SPIFFE_ENDPOINT_SOCKET", "value": "unix:///run/spire/sockets/agent.sock"},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 5},
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                 "volumeMounts": [{"name": "spiffe", "mountPath": "/run/spire/sockets", "readOnly": true}]},
                {"name": "proxy", "image": "registry.example/envoy:1.30.1", "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"],
                 "ports": [{"name": "proxy", "containerPort": 15001}],
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                 "volumeMounts": [{"name": "spiffe", "mountPath": "/run/spire/sockets", "readOnly": true}]}
            ],
            "volumes": [{"name": "spiffe", "csi": {"driver": "csi.spiffe.io", "readOnly": true}}]
        }
    })
}

fn cspiffeids(shape: &Shape) -> Vec<Value> {
    let fb = format!("{NS_PREFIX}{}", shape.fallback_ns());
    let _ = fb;
    let cr = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["className"] = json!(CLASS);
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": name}, "spec": spec})
    };
    vec![
        cr("bench-all", json!({
            "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
            "namespaceSelector": {"matchLabels": {"bench.spire.io/world": "true"},
                                  "matchExpressions": [{"key": FALLBACK_LABEL, "operator": "DoesNotExist"}]},
        })),
        cr("bench-half", json!({
            "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/app/{{ index .PodMeta.Labels \"app\" }}",
            "namespaceSelector": {"matchLabels": {"bench.spire.io/world": "true"}},
            "podSelector": {"matchLabels": {"half": "yes"}},
            "dnsNameTemplates": ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc.cluster.local",
                                 "{{ index .PodMeta.Labels \"app\" }}.{{ .PodMeta.Namespace }}.svc"],
            "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace }}", "k8s:sa:{{ .PodSpec.ServiceAccountName }}"],
            "ttl": "1h",
        })),
        cr("bench-fallback", json!({
            "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/fallback/ns/{{ .PodMeta.Namespace }}/pod/{{ .PodMeta.Name }}",
            "namespaceSelector": {"matchLabels": {"bench.spire.io/world": "true"}},
            "fallback": true,
        })),
    ]
}

/// Runs `f` up to 6 times on apiserver throttling, 5xx or transport errors; AlreadyExists is success.
async fn create_retrying<F, Fut, T>(what: &str, f: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 0..6 {
        match f().await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => bail!("creating {what}: {s:?}"),
            Err(e) if attempt == 5 => bail!("creating {what}: {e}"),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    unreachable!()
}

static PP: std::sync::LazyLock<PostParams> = std::sync::LazyLock::new(PostParams::default);

async fn world(f: Flags) -> Result<()> {
    let env_path = PathBuf::from(f.str("peers-env")?);
    let env = read_env(&env_path)?;
    let shape = Shape {
        pods: f.num("pods", 10_000)? as usize,
        nodes: f.num("nodes", 50)? as usize,
        namespaces: f.num("namespaces", 20)? as usize,
    };
    let shape_name = f.0.get("pod-shape").cloned().unwrap_or_else(|| "full".into());
    match shape_name.as_str() {
        "full" => {}
        "minimal" => MINIMAL_PODS.store(true, std::sync::atomic::Ordering::Relaxed),
        other => bail!("--pod-shape {other}: full or minimal"),
    }
    let client = kube_client(&env).await?;
    let started = Instant::now();

    let nss: Api<Namespace> = Api::all(client.clone());
    for i in 0..shape.namespaces {
        let mut labels = json!({"bench.spire.io/world": "true", "team": format!("team-{}", i % 4)});
        if i == shape.fallback_ns() {
            labels[FALLBACK_LABEL] = json!("true");
        }
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": format!("{NS_PREFIX}{i}"), "labels": labels}}))?;
        create_retrying("namespace", || nss.create(&PP, &ns)).await?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node_uids = Vec::new();
    for i in 0..shape.nodes {
        let name = format!("bench-node-{i}");
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}}}))?;
        create_retrying("node", || nodes.create(&PP, &node)).await?;
        node_uids.push(nodes.get(&name).await?.metadata.uid.unwrap_or_default());
    }
    let ns_done = started.elapsed();

    // Pods: 32 requests in flight; each retried on throttling.
    let pods_started = Instant::now();
    let results: Vec<Result<()>> = stream::iter(0..shape.pods)
        .map(|i| {
            let client = client.clone();
            async move {
                let ns = format!("{NS_PREFIX}{}", shape.ns_of(i));
                let doc = pod_json(
                    &ns,
                    &format!("p-{i}"),
                    &format!("bench-node-{}", i % shape.nodes),
                    &format!("sa-{}", i % 10),
                    &format!("app-{}", i % 25),
                    shape.half(i),
                    &[],
                );
                let pod: Pod = serde_json::from_value(doc)?;
                let api: Api<Pod> = Api::namespaced(client, &ns);
                create_retrying("pod", || api.create(&PP, &pod)).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<&anyhow::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = failed.first() {
        bail!("{} pod creations failed; first: {e}", failed.len());
    }
    let pods_secs = pods_started.elapsed().as_secs_f64();

    let ar = ApiResource {
        group: "spire.spiffe.io".into(),
        version: "v1alpha1".into(),
        api_version: "spire.spiffe.io/v1alpha1".into(),
        kind: "ClusterSPIFFEID".into(),
        plural: "clusterspiffeids".into(),
    };
    let crs: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    for cr in cspiffeids(&shape) {
        let name = cr["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        crs.patch(&name, &PatchParams::apply("scm-bench").force(), &Patch::Apply(&cr)).await.with_context(|| format!("applying {name}"))?;
    }

    // What the apiserver holds now (the count the controller will list).
    let mut total = 0usize;
    let mut bytes = 0usize;
    for i in 0..shape.namespaces {
        let api: Api<Pod> = Api::namespaced(client.clone(), &format!("{NS_PREFIX}{i}"));
        let list = api.list(&ListParams::default().labels("app.kubernetes.io/part-of=bench")).await?;
        total += list.items.iter().filter(|p| p.metadata.labels.as_ref().is_none_or(|l| !l.contains_key(ONEPOD_LABEL))).count();
        if i == 0 {
            bytes = list.items.first().map(|p| serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0)).unwrap_or(0);
        }
    }
    if total != shape.pods {
        bail!("the apiserver holds {total} bench pods, expected {}", shape.pods);
    }
    let out = json!({
        "pods": shape.pods, "nodes": shape.nodes, "namespaces": shape.namespaces, "pod_shape": shape_name,
        "expected_entries": shape.expected_entries(),
        "pod_json_bytes": bytes,
        "create_seconds": {"namespaces_and_nodes": ns_done.as_secs_f64(), "pods": pods_secs, "total": started.elapsed().as_secs_f64()},
        "pods_per_second": shape.pods as f64 / pods_secs,
    });
    let path = env_path.with_file_name("world.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&out)?)?;
    println!(
        "world: {} {shape_name} pods ({} B as JSON each, managedFields included) on {} nodes in {} namespaces, 3 ClusterSPIFFEIDs; {} entries expected; pods created in {:.1} s ({:.0}/s)",
        shape.pods,
        bytes,
        shape.nodes,
        shape.namespaces,
        shape.expected_entries(),
        pods_secs,
        shape.pods as f64 / pods_secs
    );
    Ok(())
}

// ------------------------------------------------------------------ /proc

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of PID in seconds.
fn cpu_secs(pid: u32, tck: f64) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / tck)
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...), in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?.split_whitespace().nth(1)?.parse().ok()
}

fn smaps_rollup(pid: u32) -> Value {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let mut m = serde_json::Map::new();
    for l in s.lines().skip(1) {
        let mut it = l.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next())
            && let Ok(v) = v.parse::<u64>()
        {
            m.insert(k.trim_end_matches(':').to_owned(), json!(v));
        }
    }
    Value::Object(m)
}

/// Machine-wide (busy, total) jiffies from /proc/stat.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn busy_pct(a: (u64, u64), b: (u64, u64)) -> f64 {
    let dt = b.1.saturating_sub(a.1) as f64;
    if dt == 0.0 { 0.0 } else { 100.0 * b.0.saturating_sub(a.0) as f64 / dt }
}

fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].chars().next() != Some('Z')))
        .unwrap_or(false)
}

// ------------------------------------------------------------------ metrics

async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.ok().flatten()
}

/// The sum of the samples of `name` (exact series name) whose label text contains every `filter`.
fn metric(text: &str, name: &str, filter: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter(|l| filter.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Default, Clone, Debug)]
struct Hist {
    /// (upper bound, cumulative count)
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

fn hist(text: &str, name: &str, filter: &[&str]) -> Hist {
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let bucket = format!("{name}_bucket");
    for l in text.lines().filter(|l| l.starts_with(&bucket) && filter.iter().all(|f| l.contains(f))) {
        let Some(le) = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
        let v: f64 = l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
        e.1 += v;
    }
    let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Hist { buckets, sum: metric(text, &format!("{name}_sum"), filter), count: metric(text, &format!("{name}_count"), filter) }
}

impl Hist {
    fn minus(&self, before: &Hist) -> Hist {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| (*le, c - before.buckets.iter().find(|(l, _)| l == le).map(|(_, c)| *c).unwrap_or(0.0)))
            .collect();
        Hist { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }
    /// The upper bound of the bucket holding quantile q (seconds), or None when empty.
    fn quantile_le(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        self.buckets.iter().find(|(_, c)| *c >= q * self.count).map(|(le, _)| *le)
    }
    fn to_json(&self) -> Value {
        let le = |q| self.quantile_le(q).map(|v| if v.is_finite() { json!(v * 1e3) } else { json!("+Inf") }).unwrap_or(Value::Null);
        json!({
            "count": self.count,
            "mean_ms": if self.count > 0.0 { json!(self.sum / self.count * 1e3) } else { Value::Null },
            "p50_le_ms": le(0.5), "p90_le_ms": le(0.9), "p99_le_ms": le(0.99),
        })
    }
}

// ------------------------------------------------------------------ the controller

struct Controller {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl Controller {
    fn stop(&mut self) -> Option<bool> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        for _ in 0..300 {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Some(false)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Log lines appended since byte `from`, ANSI escapes removed.
fn log_since(path: &Path, from: u64) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = (from as usize).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[from..]).into_owned();
    text.lines().map(strip_ansi).collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field_num(line: &str, key: &str) -> Option<f64> {
    let i = line.find(&format!("{key}="))? + key.len() + 1;
    line[i..].split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?.parse().ok()
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// (id → revision_number) of every entry, via `spire-server entry show -output json`.
fn spire_snapshot(bin: &str, socket: &str) -> Result<BTreeMap<String, String>> {
    let out = Command::new(bin).args(["entry", "show", "-output", "json", "-socketPath", socket]).output()?;
    if !out.status.success() {
        bail!("entry show: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let mut m = BTreeMap::new();
    for e in v["entries"].as_array().cloned().unwrap_or_default() {
        let rev = match &e["revision_number"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => "0".into(),
        };
        m.insert(e["id"].as_str().unwrap_or_default().to_owned(), rev);
    }
    Ok(m)
}

fn snapshot_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Value {
    let created = b.keys().filter(|k| !a.contains_key(*k)).count();
    let deleted = a.keys().filter(|k| !b.contains_key(*k)).count();
    let updated = b.iter().filter(|(k, v)| a.get(*k).is_some_and(|r| r != *v)).count();
    json!({"created": created, "deleted": deleted, "updated": updated})
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn controller(f: Flags) -> Result<()> {
    let env_path = PathBuf::from(f.str("peers-env")?);
    let env = read_env(&env_path)?;
    let world: Value = serde_json::from_slice(&std::fs::read(env_path.with_file_name("world.json")).context("world.json (run `scm-bench world` first)")?)?;
    let expected = world["expected_entries"].as_u64().context("world.json: expected_entries")? as usize;
    if world["pod_shape"] == "minimal" {
        MINIMAL_PODS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let bin = f.str("bin")?.to_owned();
    let flavor = f.str("flavor")?.to_owned();
    let label = f.str("label")?.to_owned();
    let rep = f.num("rep", 1)?;
    let out_dir = PathBuf::from(f.str("out")?);
    let idle_secs = f.num("idle-secs", 60)?;
    let one_pod_n = f.num("one-pod", 20)? as usize;
    // Churn: pods created at each rate (per second) for `churn-seconds`, each deleted
    // `churn-life` seconds after its creation (empty: no churn phase).
    let churn_rates: Vec<u64> = f.0.get("churn-rates").map(|v| v.split([',', ' ']).filter_map(|r| r.parse().ok()).collect()).unwrap_or_default();
    let churn_secs = f.num("churn-seconds", 60)?;
    let churn_life = f.num("churn-life", 5)?;
    let do_idle = !f.flag("no-idle");
    let converge_timeout = Duration::from_secs(f.num("converge-timeout", 900)?);
    std::fs::create_dir_all(&out_dir)?;
    let peers_dir = PathBuf::from(env_get(&env, "PEERS_DIR")?);
    let peers_sh = PathBuf::from(f.str("peers-sh")?);
    let spire_bin = env_get(&env, "SPIRE_SERVER_BIN")?.to_owned();
    let tck = clk_tck();
    let mut result = serde_json::Map::new();
    result.insert("label".into(), json!(label));
    result.insert("flavor".into(), json!(flavor));
    result.insert("rep".into(), json!(rep));
    result.insert("bin".into(), json!(bin));
    result.insert("expected_entries".into(), json!(expected));
    result.insert("world".into(), world.clone());
    result.insert("load_start".into(), json!(loadavg()));
    let say = |s: String| eprintln!("[{label} rep {rep}] {s}");

    // A fresh spire-server for this repetition.
    // BENCH_DATASTORE=postgres: an HA pair on the peers' PostgreSQL (`peers.sh
    // spire-ha-up`); the controller talks to server A, whose CPU is the one measured.
    let postgres = std::env::var("BENCH_DATASTORE").is_ok_and(|d| d == "postgres");
    let (up, down) = if postgres { ("spire-ha-up", "spire-ha-down") } else { ("spire-up", "spire-down") };
    result.insert("datastore".into(), json!(if postgres { "postgres" } else { "sqlite" }));
    // (`_`, not `-`: an HA pair's name is also its PostgreSQL database's.)
    let inst_name = format!("bench_{label}_r{rep}");
    let st = Command::new(&peers_sh).arg(up).arg(&peers_dir).arg(&inst_name).arg(TD).stdout(Stdio::null()).status()?;
    if !st.success() {
        bail!("peers.sh {up} {inst_name} failed");
    }
    struct SpireGuard(PathBuf, PathBuf, String, &'static str);
    impl Drop for SpireGuard {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).arg(self.3).arg(&self.1).arg(&self.2).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
    let _spire_guard = SpireGuard(peers_sh.clone(), peers_dir.clone(), inst_name.clone(), down);
    let inst = peers_dir.join(&inst_name);
    let spire_env = read_env(&inst.join("env"))?;
    let socket = env_get(&spire_env, "SPIRE_SERVER_SOCKET")?.to_owned();
    let pid_file = if postgres { inst.join("a").join("spire-server.pid") } else { inst.join("spire-server.pid") };
    let spire_pid: u32 = std::fs::read_to_string(pid_file)?.trim().parse()?;
    let spire = scm_spire_api::Client::connect_lazy(&socket, Default::default())?;
    spire.wait_ready(Duration::from_secs(30)).await?;
    if spire.count_entries().await? != 0 {
        bail!("fresh spire-server is not empty");
    }

    // The controller.
    let run_dir = out_dir.join(format!("{label}-rep{rep}"));
    std::fs::create_dir_all(&run_dir)?;
    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    let health_addr = format!("127.0.0.1:{}", free_port()?);
    let config_path = run_dir.join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "apiVersion: spire.spiffe.io/v1alpha1\nkind: ControllerManagerConfig\nmetrics:\n  bindAddress: {metrics_addr}\nhealth:\n  healthProbeBindAddress: {health_addr}\ntrustDomain: {TD}\nclusterName: {CLUSTER}\nclusterDomain: cluster.local\nspireServerSocketPath: {socket}\nclassName: {CLASS}\nwatchClassless: false\n"
        ),
    )?;
    let log = run_dir.join("controller.log");
    let logf = std::fs::File::create(&log)?;
    let mut cmd = Command::new(&bin);
    match flavor.as_str() {
        "ours" => {
            cmd.arg("--config").arg(&config_path).env("RUST_LOG", "info,spire_controller_manager=debug");
        }
        "upstream" => {
            cmd.arg("-config").arg(&config_path).arg("-zap-devel=false").arg("-zap-log-level=info").arg("-zap-encoder=console");
        }
        other => bail!("--flavor {other}: ours or upstream"),
    }
    cmd.env("KUBECONFIG", env_get(&env, "KUBECONFIG")?).env("ENABLE_WEBHOOKS", "false");
    let m0 = machine_jiffies();
    let spire_cpu0 = cpu_secs(spire_pid, tck).unwrap_or(0.0);
    let t0 = Instant::now();
    let child = cmd.stdin(Stdio::null()).stdout(logf.try_clone()?).stderr(logf).spawn().with_context(|| format!("starting {bin}"))?;
    let pid = child.id();
    let mut ctl = Controller { child: Some(child), pid, log: log.clone() };
    std::fs::write(out_dir.join("controller.pid"), pid.to_string())?;
    say(format!("controller pid {pid}, spire-server {inst_name} (pid {spire_pid}), expecting {expected} entries"));

    // ---- convergence: SPIRE's entry count reaches the expected number.
    let deadline = t0 + converge_timeout;
    let mut first_entry: Option<f64> = None;
    let mut rss_samples: Vec<(f64, u64, u64)> = Vec::new(); // (t, VmRSS, count)
    let mut last_sample = Instant::now() - Duration::from_secs(10);
    let converge_s = loop {
        if !pid_alive(pid) {
            bail!("controller exited during convergence; see {}", log.display());
        }
        let n = spire.count_entries().await.unwrap_or(0) as usize;
        let t = t0.elapsed().as_secs_f64();
        if n > 0 && first_entry.is_none() {
            first_entry = Some(t);
        }
        if last_sample.elapsed() >= Duration::from_millis(500) {
            rss_samples.push((t, status_kib(pid, "VmRSS").unwrap_or(0), n as u64));
            last_sample = Instant::now();
        }
        if n >= expected {
            if n > expected {
                say(format!("SPIRE holds {n} entries, more than the {expected} expected"));
            }
            break t;
        }
        if Instant::now() >= deadline {
            bail!("not converged after {converge_timeout:?}: {n} of {expected} entries; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu_converge = cpu_secs(pid, tck).unwrap_or(f64::NAN);
    let spire_cpu_converge = cpu_secs(spire_pid, tck).unwrap_or(0.0) - spire_cpu0;
    let hwm_converge = status_kib(pid, "VmHWM").unwrap_or(0);
    let rss_converge = status_kib(pid, "VmRSS").unwrap_or(0);
    let m1 = machine_jiffies();
    let mtext = http_get(&metrics_addr, "/metrics").await.unwrap_or_default();
    say(format!(
        "converged in {converge_s:.2} s (first entry at {:.2} s); CPU {cpu_converge:.2} s; VmHWM {:.1} MiB; spire-server CPU {spire_cpu_converge:.2} s",
        first_entry.unwrap_or(f64::NAN),
        hwm_converge as f64 / 1024.0
    ));
    result.insert(
        "converge".into(),
        json!({
            "seconds": converge_s, "first_entry_seconds": first_entry, "cpu_seconds": cpu_converge,
            "vm_hwm_kib": hwm_converge, "vm_rss_kib": rss_converge, "spire_server_cpu_seconds": spire_cpu_converge,
            "machine_busy_pct": busy_pct(m0, m1), "load": loadavg(),
            "rss_curve": rss_samples.iter().map(|(t, r, n)| json!([t, r, n])).collect::<Vec<_>>(),
            "entry_writes": metric(&mtext, "spire_controller_manager_entry_writes_total", &[]),
            "entry_writes_failed": metric(&mtext, "spire_controller_manager_entry_writes_total", &["result=\"failed\""]),
            "batch_create_rpc": hist(&mtext, "spire_controller_manager_spire_rpc_duration_seconds", &["method=\"BatchCreateEntry\""]).to_json(),
            "batch_create_rpc_sum_s": hist(&mtext, "spire_controller_manager_spire_rpc_duration_seconds", &["method=\"BatchCreateEntry\""]).sum,
            "passes": metric(&mtext, "spire_controller_manager_reconcile_passes_total", &["reconciler=\"entry\""]),
        }),
    );

    // ---- idle: let the post-convergence passes (statuses) finish, then measure a window.
    if do_idle {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let snap0 = spire_snapshot(&spire_bin, &socket)?;
        let before = http_get(&metrics_addr, "/metrics").await.unwrap_or_default();
        let log0 = file_len(&log);
        let cpu0 = cpu_secs(pid, tck).unwrap_or(f64::NAN);
        let spire_idle0 = cpu_secs(spire_pid, tck).unwrap_or(f64::NAN);
        let m0 = machine_jiffies();
        let w0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle_secs / 2)).await;
        let mid = http_get(&metrics_addr, "/metrics").await.unwrap_or_default();
        let w_mid = w0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(idle_secs - idle_secs / 2)).await;
        let cpu1 = cpu_secs(pid, tck).unwrap_or(f64::NAN);
        let spire_idle1 = cpu_secs(spire_pid, tck).unwrap_or(f64::NAN);
        let window = w0.elapsed().as_secs_f64();
        let spire_cpu_per_min = (spire_idle1 - spire_idle0) / window * 60.0;
        let m1 = machine_jiffies();
        let after = http_get(&metrics_addr, "/metrics").await.unwrap_or_default();
        let rss = status_kib(pid, "VmRSS").unwrap_or(0);
        let hwm = status_kib(pid, "VmHWM").unwrap_or(0);
        let rollup = smaps_rollup(pid);
        let snap1 = spire_snapshot(&spire_bin, &socket)?;
        let lines = log_since(&log, log0);
        let nothing: Vec<f64> = lines.iter().filter(|l| l.contains("pass: nothing to change") && l.contains("reconciler=\"entry\"")).filter_map(|l| field_num(l, "elapsed_ms")).collect();
        let listed: Vec<f64> = lines.iter().filter(|l| l.contains("listed SPIRE entries")).filter_map(|l| field_num(l, "elapsed_ms")).collect();
        let writes = |t: &str| metric(t, "spire_controller_manager_entry_writes_total", &[]);
        let pd = hist(&after, "spire_controller_manager_reconcile_pass_duration_seconds", &["reconciler=\"entry\"", "result=\"ok\""])
            .minus(&hist(&before, "spire_controller_manager_reconcile_pass_duration_seconds", &["reconciler=\"entry\"", "result=\"ok\""]));
        let cpu_per_min = (cpu1 - cpu0) / window * 60.0;
        say(format!(
            "idle {window:.0} s: CPU {:.2} s/min (spire-server {spire_cpu_per_min:.2} s/min), RSS {:.1} MiB, {} passes (mean {:.1} ms), writes {} (first {w_mid:.0} s: {}), SPIRE-side {}",
            cpu_per_min,
            rss as f64 / 1024.0,
            pd.count,
            if pd.count > 0.0 { pd.sum / pd.count * 1e3 } else { f64::NAN },
            writes(&after) - writes(&before),
            writes(&mid) - writes(&before),
            snapshot_diff(&snap0, &snap1)
        ));
        result.insert(
            "idle".into(),
            json!({
                "window_seconds": window, "cpu_seconds": cpu1 - cpu0, "cpu_seconds_per_minute": cpu_per_min,
                "spire_server_cpu_seconds_per_minute": spire_cpu_per_min,
                "vm_rss_kib": rss, "vm_hwm_kib": hwm, "rss_anon_kib": status_kib(pid, "RssAnon"), "smaps_rollup": rollup,
                "machine_busy_pct": busy_pct(m0, m1), "load": loadavg(),
                "writes_first_half": writes(&mid) - writes(&before), "first_half_seconds": w_mid,
                "writes_window": writes(&after) - writes(&before),
                "spire_side_changes": snapshot_diff(&snap0, &snap1), "spire_entries": snap1.len(),
                "pass_hist": pd.to_json(),
                "passes_ok": pd.count,
                "passes_all": metric(&after, "spire_controller_manager_reconcile_passes_total", &["reconciler=\"entry\""])
                    - metric(&before, "spire_controller_manager_reconcile_passes_total", &["reconciler=\"entry\""]),
                "pass_ms_from_log": nothing, "list_ms_from_log": listed,
                "trigger_lag": hist(&after, "spire_controller_manager_reconcile_trigger_lag_seconds", &["reconciler=\"entry\""])
                    .minus(&hist(&before, "spire_controller_manager_reconcile_trigger_lag_seconds", &["reconciler=\"entry\""])).to_json(),
            }),
        );
    }

    // ---- one pod among the world: apiserver response → entries visible in SPIRE.
    if one_pod_n > 0 {
        let client = kube_client(&env).await?;
        let ns = format!("{NS_PREFIX}0");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let before = http_get(&metrics_addr, "/metrics").await.unwrap_or_default();
        let log0 = file_len(&log);
        let mut lat_resp = Vec::new();
        let mut lat_sent = Vec::new();
        let mut create_ms = Vec::new();
        let mut timeouts = 0;
        for i in 0..one_pod_n {
            let name = format!("onepod-{label}-r{rep}-{i}");
            let doc = pod_json(&ns, &name, "bench-node-0", &name, &name, true, &[(ONEPOD_LABEL, "true")]);
            let pod: Pod = serde_json::from_value(doc)?;
            let want_all = scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/ns/{ns}/sa/{name}"))?;
            let want_half = scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/app/{name}"))?;
            let sent = Instant::now();
            pods.create(&PostParams::default(), &pod).await.with_context(|| format!("creating {name}"))?;
            let resp = Instant::now();
            let deadline = resp + Duration::from_secs(30);
            let mut seen = false;
            for _ in 0..20_000 {
                let (a, b) = tokio::join!(spire.list_entries_by_spiffe_id(&want_all), spire.list_entries_by_spiffe_id(&want_half));
                if a.map(|v| !v.is_empty()).unwrap_or(false) && b.map(|v| !v.is_empty()).unwrap_or(false) {
                    seen = true;
                    break;
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if seen {
                lat_resp.push(resp.elapsed().as_secs_f64() * 1e3);
                lat_sent.push(sent.elapsed().as_secs_f64() * 1e3);
                create_ms.push((resp - sent).as_secs_f64() * 1e3);
            } else {
                timeouts += 1;
                say(format!("{name}: entries not in SPIRE within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        let after = http_get(&metrics_addr, "/metrics").await.unwrap_or_default();
        let lines = log_since(&log, log0);
        let applied: Vec<f64> = lines
            .iter()
            .filter(|l| l.contains("pass applied changes") && l.contains("reconciler=\"entry\"") && field_num(l, "created").is_some_and(|c| c > 0.0))
            .filter_map(|l| field_num(l, "elapsed_ms"))
            .collect();
        let lag = hist(&after, "spire_controller_manager_reconcile_trigger_lag_seconds", &["reconciler=\"entry\""])
            .minus(&hist(&before, "spire_controller_manager_reconcile_trigger_lag_seconds", &["reconciler=\"entry\""]));
        let pd = hist(&after, "spire_controller_manager_reconcile_pass_duration_seconds", &["reconciler=\"entry\"", "result=\"ok\""])
            .minus(&hist(&before, "spire_controller_manager_reconcile_pass_duration_seconds", &["reconciler=\"entry\"", "result=\"ok\""]));
        let mut sorted = lat_resp.clone();
        sorted.sort_by(f64::total_cmp);
        say(format!(
            "one pod x{}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} timeouts); trigger lag mean {:.1} ms over {} passes",
            lat_resp.len(),
            pct(&sorted, 0.5),
            pct(&sorted, 0.9),
            sorted.last().copied().unwrap_or(f64::NAN),
            timeouts,
            if lag.count > 0.0 { lag.sum / lag.count * 1e3 } else { f64::NAN },
            lag.count
        ));
        result.insert(
            "one_pod".into(),
            json!({
                "n": one_pod_n, "timeouts": timeouts,
                "latency_ms_from_response": lat_resp, "latency_ms_from_send": lat_sent, "create_request_ms": create_ms,
                "p50_ms": pct(&sorted, 0.5), "p90_ms": pct(&sorted, 0.9), "max_ms": sorted.last().copied(),
                "trigger_lag": lag.to_json(), "pass_hist": pd.to_json(),
                "creating_pass_ms_from_log": applied,
                "load": loadavg(),
            }),
        );
        // Remove the extra pods again (no kubelet: delete at once) so every repetition
        // starts from the same world.
        let _ = pods
            .delete_collection(&DeleteParams { grace_period_seconds: Some(0), ..Default::default() }, &ListParams::default().labels(&format!("{ONEPOD_LABEL}=true")))
            .await;
        for _ in 0..60 {
            let left = pods.list(&ListParams::default().labels(&format!("{ONEPOD_LABEL}=true"))).await.map(|l| l.items.len()).unwrap_or(1);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // ---- churn: pods created and deleted at a rate while the world stands.
    if !churn_rates.is_empty() {
        let postgres_db = std::env::var("BENCH_DATASTORE").is_ok_and(|d| d == "postgres");
        if postgres_db {
            bail!("the churn phase reads SPIRE's sqlite datastore: run it with the sqlite datastore");
        }
        let db = inst.join("data").join("datastore.sqlite3");
        let client = kube_client(&env).await?;
        let mut runs = serde_json::Map::new();
        for &rate in &churn_rates {
            let r = churn(&client, &db, &label, rep, rate, churn_secs, churn_life, pid, tck).await?;
            say(format!(
                "churn {rate}/s for {churn_secs} s: {} pods, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} never seen; controller CPU {:.2} s, RSS {} MiB",
                r["pods"], r["p50_ms"].as_f64().unwrap_or(f64::NAN), r["p99_ms"].as_f64().unwrap_or(f64::NAN),
                r["max_ms"].as_f64().unwrap_or(f64::NAN), r["missing"], r["controller_cpu_seconds"].as_f64().unwrap_or(f64::NAN),
                r["rss_kib_end"].as_u64().unwrap_or(0) / 1024
            ));
            runs.insert(rate.to_string(), r);
        }
        result.insert("churn".into(), Value::Object(runs));
    }

    let final_hwm = status_kib(pid, "VmHWM");
    result.insert("vm_hwm_kib_final".into(), json!(final_hwm));
    result.insert("load_end".into(), json!(loadavg()));
    let clean = ctl.stop();
    let _ = std::fs::remove_file(out_dir.join("controller.pid"));
    result.insert("clean_exit".into(), json!(clean));
    let errors = std::fs::read_to_string(&ctl.log)
        .unwrap_or_default()
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN ") || l.contains("\"level\":\"error\"") || l.contains("\terror\t"))
        .take(20)
        .collect::<Vec<_>>();
    result.insert("log_warnings".into(), json!(errors));
    let path = out_dir.join(format!("{label}-rep{rep}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&Value::Object(result))?)?;
    say(format!("wrote {}", path.display()));
    Ok(())
}

// ------------------------------------------------------------------ churn

/// One churn run: `rate` pods a second for `secs` seconds in namespace 0 on node 1, each
/// with a service account of its own (one entry, `ns/<ns>/sa/<name>`, from `bench-all`),
/// each deleted `life` seconds after it was created. Latency = the entry's `created_at` in
/// SPIRE's datastore (the database row, nanosecond timestamps, read every 250 ms while the
/// pods live: no load on SPIRE's API) minus the time the apiserver answered the create.
#[allow(clippy::too_many_arguments)]
async fn churn(client: &kube::Client, db: &Path, label: &str, rep: u64, rate: u64, secs: u64, life: u64, pid: u32, tck: f64) -> Result<Value> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let ns = format!("{NS_PREFIX}0");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let prefix = format!("churn-{label}-r{rep}-{rate}-");
    let id_prefix = format!("spiffe://{TD}/ns/{ns}/sa/{prefix}");
    // SPIFFE ID → when the apiserver answered (UNIX seconds).
    let answered: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let now_unix = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The reader: new rows of our pods since the last read.
    let reader = {
        let (db, seen, stop, id_prefix) = (db.to_path_buf(), seen.clone(), stop.clone(), id_prefix.clone());
        tokio::spawn(async move {
            loop {
                let q = format!("SELECT spiffe_id, created_at FROM registered_entries WHERE spiffe_id LIKE '{id_prefix}%';");
                if let Ok(out) = tokio::process::Command::new("sqlite3").arg("-readonly").arg(&db).arg(q).output().await {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let mut seen = seen.lock().unwrap();
                    for line in text.lines() {
                        let Some((id, at)) = line.split_once('|') else { continue };
                        if seen.contains_key(id) {
                            continue;
                        }
                        if let Some(t) = parse_sqlite_time(at) {
                            seen.insert(id.to_owned(), t);
                        }
                    }
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let cpu0 = cpu_secs(pid, tck).unwrap_or(0.0);
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let name = format!("{prefix}{i}");
        let doc = pod_json(&ns, &name, "bench-node-1", &name, &name, false, &[(ONEPOD_LABEL, "true")]);
        let (pods, answered, failed) = (pods.clone(), answered.clone(), failed.clone());
        let id = format!("{id_prefix}{i}");
        tasks.push(tokio::spawn(async move {
            let Ok(pod) = serde_json::from_value::<Pod>(doc) else { return };
            if pods.create(&PostParams::default(), &pod).await.is_err() {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            answered.lock().unwrap().insert(id, now_unix());
            tokio::time::sleep(Duration::from_secs(life)).await;
            let _ = pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.await;
    let cpu = cpu_secs(pid, tck).unwrap_or(0.0) - cpu0;
    let answered = answered.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let mut lat: Vec<f64> = answered.iter().filter_map(|(id, t)| Some((seen.get(id)? - t) * 1e3)).collect();
    lat.sort_by(f64::total_cmp);
    let missing = answered.len() - lat.len();
    // Let the deletes settle before the next run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(json!({
        "rate_per_second": rate, "seconds": secs, "life_seconds": life, "pods": answered.len(),
        "create_failures": failed.load(std::sync::atomic::Ordering::Relaxed), "missing": missing,
        "p50_ms": pct(&lat, 0.5), "p90_ms": pct(&lat, 0.9), "p99_ms": pct(&lat, 0.99), "max_ms": lat.last().copied(),
        "latency_ms": lat, "controller_cpu_seconds": cpu, "rss_kib_end": status_kib(pid, "VmRSS"),
        "resolution": "SPIRE's created_at (ns) minus the apiserver's answer (the driver's clock, same machine)",
    }))
}

/// `2026-12-05 00:11:03.081777989+00:00` (how SPIRE's sqlite datastore stores times) as
/// UNIX seconds.
fn parse_sqlite_time(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches("+00:00");
    let (date, time) = s.split_once(' ')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (y, m, day) = (d.first()?, d.get(1)?, d.get(2)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t.first()? * 3600 + t.get(1)? * 60 + t.get(2)?;
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    Some(secs as f64 + frac)
}

// ------------------------------------------------------------------ report

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        let s = format!("{v:.digits$}");
        if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() { s[1..].to_owned() } else { s }
    }
}

/// "median (min–max)" over the values.
fn summary(vals: &[f64], digits: usize) -> String {
    let mut v: Vec<f64> = vals.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return "–".into();
    }
    let m = median(&mut v);
    if v.len() == 1 {
        return fmt(m, digits);
    }
    format!("{} ({}–{})", fmt(m, digits), fmt(v[0], digits), fmt(v[v.len() - 1], digits))
}

fn get(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    match cur {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => s.parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

fn arr(v: &Value, path: &str) -> Vec<f64> {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default()
}

fn report(dir: &Path) -> Result<()> {
    let mut runs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut admission: Vec<(String, String)> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".json") && name.contains("-rep") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p)?)?;
            runs.entry(v["label"].as_str().unwrap_or("?").to_owned()).or_default().push(v);
        } else if name.starts_with("admission-") && name.ends_with(".txt") {
            admission.push((name, std::fs::read_to_string(&p)?));
        }
    }
    let mut out = String::new();
    let mib = 1.0 / 1024.0;
    if let Some(first) = runs.values().flatten().next() {
        let w = &first["world"];
        out += &format!(
            "World: {} {} pods ({} B each as JSON, managedFields included) on {} nodes in {} namespaces, 3 ClusterSPIFFEIDs, {} entries expected; pods created at {:.0}/s.\n\n",
            w["pods"], w["pod_shape"].as_str().unwrap_or("full"), w["pod_json_bytes"], w["nodes"], w["namespaces"], w["expected_entries"], get(w, "pods_per_second")
        );
    }
    if runs.values().flatten().any(|r| r.get("converge").is_some()) {
        out += "### scale (median (min–max) over repetitions)\n\n";
        let labels: Vec<&String> = runs.keys().collect();
        out += &format!("| metric | {} |\n|---|{}\n", labels.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(" | "), "---|".repeat(labels.len()));
        // (name, value, digits, only for our binary: the series are ours)
        type Row = (&'static str, Box<dyn Fn(&Value) -> f64>, usize, bool);
        let idle_label: &'static str = Box::leak(
            format!("steady RSS after the {:.0} s idle window (MiB)", runs.values().flatten().find_map(|r| r["idle"]["window_seconds"].as_f64()).unwrap_or(60.0))
                .into_boxed_str(),
        );
        let rows: Vec<Row> = vec![
            ("repetitions", Box::new(|_| 1.0), 0, false),
            ("time to converge (s)", Box::new(|r| get(r, "converge.seconds")), 2, false),
            ("first entry in SPIRE after start (s)", Box::new(|r| get(r, "converge.first_entry_seconds")), 2, false),
            ("CPU for convergence (s)", Box::new(|r| get(r, "converge.cpu_seconds")), 2, false),
            ("spire-server CPU during convergence (s)", Box::new(|r| get(r, "converge.spire_server_cpu_seconds")), 2, false),
            ("BatchCreateEntry RPC time, sum (s)", Box::new(|r| get(r, "converge.batch_create_rpc_sum_s")), 2, true),
            ("peak RSS, VmHWM (MiB)", Box::new(move |r| get(r, "vm_hwm_kib_final") * mib), 1, false),
            ("RSS at convergence (MiB)", Box::new(move |r| get(r, "converge.vm_rss_kib") * mib), 1, false),
            (idle_label, Box::new(move |r| get(r, "idle.vm_rss_kib") * mib), 1, false),
            ("  of which anonymous, RssAnon (MiB)", Box::new(move |r| get(r, "idle.rss_anon_kib") * mib), 1, false),
            ("CPU per idle minute (s)", Box::new(|r| get(r, "idle.cpu_seconds_per_minute")), 3, false),
            ("spire-server CPU per idle minute (s)", Box::new(|r| get(r, "idle.spire_server_cpu_seconds_per_minute")), 3, false),
            ("entry passes in the idle window", Box::new(|r| get(r, "idle.passes_all")), 0, true),
            ("idle pass duration, mean from histogram (ms)", Box::new(|r| get(r, "idle.pass_hist.mean_ms")), 1, true),
            ("idle pass duration, median from log (ms)", Box::new(|r| median(&mut arr(r, "idle.pass_ms_from_log"))), 1, true),
            ("  of which ListEntries, median from log (ms)", Box::new(|r| median(&mut arr(r, "idle.list_ms_from_log"))), 1, true),
            ("writes in the first 30 s idle (metric)", Box::new(|r| get(r, "idle.writes_first_half")), 0, true),
            ("writes in the whole idle window (metric)", Box::new(|r| get(r, "idle.writes_window")), 0, true),
            (
                "entries changed in SPIRE during idle (create+update+delete, from revision numbers)",
                Box::new(|r| get(r, "idle.spire_side_changes.created") + get(r, "idle.spire_side_changes.updated") + get(r, "idle.spire_side_changes.deleted")),
                0,
                false,
            ),
            ("machine busy during convergence (%)", Box::new(|r| get(r, "converge.machine_busy_pct")), 0, false),
            ("machine busy during idle window (%)", Box::new(|r| get(r, "idle.machine_busy_pct")), 0, false),
            ("1-min load at start", Box::new(|r| arr(r, "load_start").first().copied().unwrap_or(f64::NAN)), 2, false),
        ];
        for (name, f, digits, ours_only) in &rows {
            let mut line = format!("| {name} |");
            for l in &labels {
                let v: Vec<f64> = runs[*l].iter().map(|r| if *ours_only && r["flavor"] != "ours" { f64::NAN } else { f(r) }).collect();
                if *name == "repetitions" {
                    line += &format!(" {} |", v.len());
                } else {
                    line += &format!(" {} |", summary(&v, *digits));
                }
            }
            out += &line;
            out += "\n";
        }
        out += "\n";
    }
    if runs.values().flatten().any(|r| r.get("churn").is_some()) {
        out += "### churn (pods created and deleted at a rate while the world stands; pod created → its entry's row in SPIRE's datastore, ms)\n\n";
        out += "| run | rate (pods/s) | pods | p50 | p90 | p99 | max | never seen | controller CPU (s) | RSS at the end (MiB) |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for (l, rs) in &runs {
            for r in rs {
                let Some(c) = r.get("churn").and_then(Value::as_object) else { continue };
                for c in c.values() {
                    out += &format!(
                        "| {l} rep {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        r["rep"], c["rate_per_second"], c["pods"],
                        fmt(get(c, "p50_ms"), 1), fmt(get(c, "p90_ms"), 1), fmt(get(c, "p99_ms"), 1), fmt(get(c, "max_ms"), 1),
                        c["missing"], fmt(get(c, "controller_cpu_seconds"), 2), fmt(get(c, "rss_kib_end") * mib, 1),
                    );
                }
            }
        }
        out += "\n";
    }
    if runs.values().flatten().any(|r| r.get("one_pod").is_some()) {
        out += "### one-pod (pod created → all its entries visible in SPIRE, ms from the apiserver's response)\n\n";
        out += "| run | n | p50 | p90 | p99 | max | create request | trigger lag mean (hist) | trigger lag p90 ≤ | creating pass, median from log |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for (l, rs) in &runs {
            let mut pooled = Vec::new();
            for r in rs {
                if r.get("one_pod").is_none() {
                    continue;
                }
                let mut lat = arr(r, "one_pod.latency_ms_from_response");
                pooled.extend(lat.iter().copied());
                lat.sort_by(f64::total_cmp);
                out += &format!(
                    "| {l} rep {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    r["rep"],
                    lat.len(),
                    if get(r, "one_pod.timeouts") > 0.0 { format!(" ({} timed out)", r["one_pod"]["timeouts"]) } else { String::new() },
                    fmt(pct(&lat, 0.5), 1),
                    fmt(pct(&lat, 0.9), 1),
                    fmt(pct(&lat, 0.99), 1),
                    fmt(lat.last().copied().unwrap_or(f64::NAN), 1),
                    fmt(median(&mut arr(r, "one_pod.create_request_ms")), 1),
                    fmt(get(r, "one_pod.trigger_lag.mean_ms"), 2),
                    r["one_pod"]["trigger_lag"]["p90_le_ms"].as_f64().map(|v| fmt(v, 1)).unwrap_or("–".into()),
                    fmt(median(&mut arr(r, "one_pod.creating_pass_ms_from_log")), 1),
                );
            }
            pooled.sort_by(f64::total_cmp);
            if !pooled.is_empty() {
                out += &format!(
                    "| **{l} pooled** | {} | **{}** | **{}** | **{}** | **{}** | | | | |\n",
                    pooled.len(),
                    fmt(pct(&pooled, 0.5), 1),
                    fmt(pct(&pooled, 0.9), 1),
                    fmt(pct(&pooled, 0.99), 1),
                    fmt(pooled.last().copied().unwrap_or(f64::NAN), 1)
                );
            }
        }
        out += "\n";
    }
    if !admission.is_empty() {
        out += "### admission (webhook over TLS on loopback, kept-alive connections; ms)\n\n";
        out += "| run | 1-min load | achieved req/s | errors | p50 | p90 | p99 | p99.9 | max | p99 from scheduled send |\n|---|---|---|---|---|---|---|---|---|---|\n";
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for (name, text) in &admission {
            let achieved = text.lines().find(|l| l.starts_with("achieved")).unwrap_or_default();
            let rate = achieved.split_whitespace().nth(1).unwrap_or("?");
            let errors = achieved.split(", ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("?");
            let mut sections = text.split("latency from ");
            let _ = sections.next();
            let sent = sections.next().unwrap_or_default();
            let sched = sections.next().unwrap_or_default();
            // "p50=   0.062ms" → "p50=0.062ms"
            let all_line = |s: &str| {
                let l = s.lines().find(|l| l.trim_start().starts_with("all ")).unwrap_or_default();
                let mut out = String::new();
                let mut after_eq = false;
                for c in l.chars() {
                    if after_eq && c == ' ' {
                        continue;
                    }
                    after_eq = c == '=';
                    out.push(c);
                }
                out
            };
            let val = |l: &str, k: &str| -> f64 {
                l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).and_then(|v| v.trim_end_matches("ms").parse().ok()).unwrap_or(f64::NAN)
            };
            let a = all_line(sent);
            let s = all_line(sched);
            p50s.push(val(&a, "p50"));
            p99s.push(val(&a, "p99"));
            out += &format!(
                "| {} | {} | {rate} | {errors} | {} | {} | {} | {} | {} | {} |\n",
                name.trim_end_matches(".txt"),
                text.lines().find_map(|l| l.strip_prefix("load: ")).and_then(|l| l.split_whitespace().next()).unwrap_or("?"),
                fmt(val(&a, "p50"), 3),
                fmt(val(&a, "p90"), 3),
                fmt(val(&a, "p99"), 3),
                fmt(val(&a, "p99.9"), 3),
                fmt(val(&a, "max"), 3),
                fmt(val(&s, "p99"), 3)
            );
        }
        out += &format!("| **median (min–max)** | | | | {} | | {} | | | |\n\n", summary(&p50s, 3), summary(&p99s, 3));
    }
    print!("{out}");
    std::fs::write(dir.join("results.md"), &out)?;
    Ok(())
}
