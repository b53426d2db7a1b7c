//! The effective configuration: every key upstream reads, after defaults and validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use scm_spiffe::TrustDomain;

pub const API_VERSION: &str = "spire.spiffe.io/v1alpha1";
pub const KIND: &str = "ControllerManagerConfig";

/// `ignoreNamespaces` when the file doesn't set it (a given list replaces this, it is not merged).
pub const DEFAULT_IGNORE_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "spire-system"];
pub const DEFAULT_VALIDATING_WEBHOOK_CONFIGURATION_NAME: &str = "spire-controller-manager-webhook";
/// Default of `mutatingWebhookConfigurationName` (this project's defaulting webhooks,
/// `webhooks/mutating.yaml`; not an upstream key).
pub const DEFAULT_MUTATING_WEBHOOK_CONFIGURATION_NAME: &str = "spire-controller-manager-mutating-webhook";
/// Default of `podObserverWebhookConfigurationName` (this project's pod-observation
/// ValidatingWebhookConfiguration, `webhooks/pod-observer.yaml`; not an upstream key).
pub const DEFAULT_POD_OBSERVER_WEBHOOK_CONFIGURATION_NAME: &str = "spire-controller-manager-pod-observer";
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(10);
/// `spireCheckMaxInterval`'s default (never below `gcInterval`).
pub const DEFAULT_SPIRE_CHECK_MAX_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_SPIRE_SERVER_SOCKET_PATH: &str = "/spire-server/api.sock";
/// controller-runtime's cache resync default.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(10 * 60 * 60);
/// controller-runtime's leader election defaults.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
pub const DEFAULT_RESOURCE_LOCK: &str = "leases";
/// controller-runtime's `CacheSyncTimeout` default.
pub const DEFAULT_CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// controller-runtime's metrics server default (`"0"` disables it).
pub const DEFAULT_METRICS_BIND_ADDRESS: &str = ":8080";
pub const DEFAULT_READINESS_ENDPOINT_NAME: &str = "/readyz";
pub const DEFAULT_LIVENESS_ENDPOINT_NAME: &str = "/healthz";
/// controller-runtime's webhook server port.
pub const DEFAULT_WEBHOOK_PORT: u16 = 9443;
/// The parent ID template used when `parentIDTemplate` is empty (`pkg/spireentry`).
pub use scm_template::DEFAULT_PARENT_ID_TEMPLATE;
pub const DEFAULT_ENTRY_RENDER_CACHE_SIZE: usize = 300_000;
/// Service whose CNAME reveals the cluster domain (see [`parse_cluster_domain_from_cname`]).
pub const K8S_DEFAULT_SERVICE: &str = "kubernetes.default.svc";

/// The effective controller configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `trustDomain` (required). A SPIFFE ID (`spiffe://td`) is accepted and reduced to its
    /// trust domain, as go-spiffe's `TrustDomainFromString` does.
    pub trust_domain: TrustDomain,
    /// `clusterName` (required, even in static mode).
    pub cluster_name: String,
    /// `clusterDomain`. Empty means "autodetect": that is the caller's job (DNS CNAME of
    /// [`K8S_DEFAULT_SERVICE`], then [`parse_cluster_domain_from_cname`]; on failure upstream
    /// only logs an error and keeps "").
    pub cluster_domain: String,
    /// `ignoreNamespaces`, compiled. Matching is **unanchored** (Go `MatchString`): use
    /// [`Config::is_namespace_ignored`]. `Regex::as_str` gives each source pattern back.
    pub ignore_namespaces: Vec<Regex>,
    /// `validatingWebhookConfigurationName` (non-empty).
    pub validating_webhook_configuration_name: String,
    /// `mutatingWebhookConfigurationName` (extension; non-empty): whose `caBundle` is kept.
    pub mutating_webhook_configuration_name: String,
    /// `podObserverWebhookConfigurationName` (extension; non-empty): whose `caBundle` is kept.
    pub pod_observer_webhook_configuration_name: String,
    /// `gcInterval`: always positive (≤ 0 in the file means the 10 s default).
    pub gc_interval: Duration,
    /// `spireCheckMaxInterval` (extension): how far apart the gcInterval reads of SPIRE's
    /// entries may grow while each finds SPIRE as the controller left it (the interval
    /// doubles from `gcInterval` up to this; a change found, a write error or a new leader
    /// returns it to `gcInterval`). Never less than `gcInterval`; equal to it, SPIRE is read
    /// every `gcInterval` as upstream does. Default 1 minute.
    pub spire_check_max_interval: Duration,
    /// `spireServerSocketPath`, else the deprecated `--spire-api-socket` flag, else the default.
    /// See [`Config::spire_server_socket_uri`].
    pub spire_server_socket_path: String,
    /// `spireServerAddress` (extension): `host:port` of the SPIRE Server API over TCP with
    /// SPIFFE mTLS. When set, `spire_server_socket_path` is unused.
    pub spire_server_address: Option<String>,
    /// `workloadAPISocketPath` (extension): the SPIRE agent's Workload API socket that gives
    /// the X.509-SVID and bundle for `spireServerAddress`. Set iff that is.
    pub workload_api_socket_path: Option<String>,
    /// `logLevel` (case-insensitive in the file). The zap command-line flags, when given, win
    /// over it: that is the caller's business.
    pub log_level: LogLevel,
    /// `logEncoding`.
    pub log_encoding: LogEncoding,
    /// `grpc.maxCallRecvMsgSize`; `None` (gRPC default, 4 MiB) unless > 0.
    pub grpc_max_call_recv_msg_size: Option<usize>,
    /// `syncPeriod`: informer resync period (0 disables resync).
    pub sync_period: Duration,
    /// `leaderElection`.
    pub leader_election: LeaderElection,
    /// `cacheNamespaces` (or the deprecated `cacheNamespace`, converted to a single entry with
    /// no selectors). Empty means all namespaces are cached.
    pub cache_namespaces: BTreeMap<String, NamespaceCacheConfig>,
    /// `controller`.
    pub controller: ControllerSettings,
    /// `metrics`.
    pub metrics: Metrics,
    /// `health`.
    pub health: Health,
    /// `webhook`.
    pub webhook: Webhook,
    /// `className`: CRs with this class are processed; "" means only classless ones (§3.3).
    pub class_name: String,
    /// `watchClassless`: also process CRs without a class.
    pub watch_classless: bool,
    /// `filterByClassName` (upstream #710): restrict the ClusterSPIFFEID informer cache to
    /// objects labelled `spire.spiffe.io/class-name: <className>`.
    pub filter_by_class_name: bool,
    /// `parentIDTemplate`, or [`DEFAULT_PARENT_ID_TEMPLATE`] when empty/unset.
    pub parent_id_template: String,
    /// `reconcile`, with upstream's defaulting already applied (see [`Reconcile`]).
    pub reconcile: Reconcile,
    /// `entryIDPrefix`, with a trailing `.` appended if missing; "" means no prefix (no
    /// ownership filtering).
    pub entry_id_prefix: String,
    /// `entryIDPrefixCleanup`: `None` = unset; `Some("")` = clean up unprefixed entries;
    /// otherwise ends with `.`. Never equal to a non-empty `entry_id_prefix`. Only effective
    /// when `entry_id_prefix` is non-empty.
    pub entry_id_prefix_cleanup: Option<String>,
    /// `staticManifestPath`: `Some` enables static manifest mode (no Kubernetes API).
    pub static_manifest_path: Option<PathBuf>,
    /// `expandEnvStaticManifests`: run Go `os.ExpandEnv` ([`crate::go_expand_env`]) over each
    /// static manifest before decoding.
    pub expand_env_static_manifests: bool,
    /// `enableEntryRenderCache`.
    pub enable_entry_render_cache: bool,
    /// `entryRenderCacheSize`: LRU capacity (≤ 0 in the file means 300000).
    pub entry_render_cache_size: usize,
    /// `deletionGuard` (extension): the mass-deletion circuit breaker.
    pub deletion_guard: DeletionGuard,
}

/// `deletionGuard` (extension): a pass that would delete more than `maxShare` of the
/// entries this controller owns, and at least `minEntries` of them, holds those deletes
/// until the same plan has persisted for `releaseAfter` or an operator acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletionGuard {
    /// `maxShare` (0.5); 1 turns the guard off.
    pub max_share: f64,
    /// `minEntries` (20).
    pub min_entries: usize,
    /// `releaseAfter` (10m); `0` means only an acknowledgement releases held deletes.
    pub release_after: Option<Duration>,
}

impl Default for DeletionGuard {
    fn default() -> Self {
        Self { max_share: 0.5, min_entries: 20, release_after: Some(Duration::from_secs(600)) }
    }
}

/// `logLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `logEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEncoding {
    Console,
    Json,
}

impl LogEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            LogEncoding::Console => "console",
            LogEncoding::Json => "json",
        }
    }
}

impl fmt::Display for LogEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `leaderElection` (component-base `LeaderElectionConfiguration`, controller-runtime defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// `leaderElect` (default false). Never true in static mode.
    pub leader_elect: bool,
    /// `resourceLock`: only `leases` exists in current client-go (checked when enabled).
    pub resource_lock: String,
    /// `resourceName`: the Lease name. Non-empty when `leader_elect`.
    pub resource_name: String,
    /// `resourceNamespace`; `None` means the pod's own namespace (the caller reads it from the
    /// service account mount; outside a cluster that is an error when leader election is on).
    pub resource_namespace: Option<String>,
    /// `leaseDuration` (0 in the file means the default).
    pub lease_duration: Duration,
    /// `renewDeadline` (0 in the file means the default).
    pub renew_deadline: Duration,
    /// `retryPeriod` (0 in the file means the default).
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    fn default() -> Self {
        Self {
            leader_elect: false,
            resource_lock: DEFAULT_RESOURCE_LOCK.to_owned(),
            resource_name: String::new(),
            resource_namespace: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

/// One `cacheNamespaces` entry: equality-based selectors applied to the informer cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceCacheConfig {
    pub label_selectors: BTreeMap<String, String>,
    pub field_selectors: BTreeMap<String, String>,
}

/// `controller`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// `controller.groupKindConcurrency` (`Kind.group` → workers; ≤ 0 in the file means 1).
    pub group_kind_concurrency: BTreeMap<String, usize>,
    /// `controller.cacheSyncTimeout` (0 in the file means the 2 min default).
    pub cache_sync_timeout: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self { group_kind_concurrency: BTreeMap::new(), cache_sync_timeout: DEFAULT_CACHE_SYNC_TIMEOUT }
    }
}

/// `metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// `metrics.bindAddress` (default `:8080`); `None` when set to `"0"` (disabled).
    pub bind_address: Option<String>,
}

/// `health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `health.healthProbeBindAddress`; `None` (no probe server) when unset, `""` or `"0"`.
    pub health_probe_bind_address: Option<String>,
    /// `health.readinessEndpointName` (default `/readyz`; the check itself is named `readyz`).
    pub readiness_endpoint_name: String,
    /// `health.livenessEndpointName` (default `/healthz`; the check itself is named `healthz`).
    pub liveness_endpoint_name: String,
}

/// `webhook`. Upstream decodes these but its webhook server always uses controller-runtime's
/// defaults (port 9443, all interfaces) and only logs that `certDir` is ignored; whether this
/// implementation honours `port`/`host` is the caller's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `webhook.port` (default 9443).
    pub port: u16,
    /// `webhook.host`; "" means all interfaces.
    pub host: String,
    /// `webhook.certDir`: ignored (certificates are minted from SPIRE and kept in memory).
    pub cert_dir: Option<String>,
}

/// Which CR kinds are reconciled.
///
/// Upstream rule: when the `reconcile:` block is **absent**, everything is on in Kubernetes
/// mode, and ClusterFederatedTrustDomains + ClusterStaticEntries are on (ClusterSPIFFEIDs off)
/// in static mode. When the block is **present**, each omitted key is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconcile {
    /// `reconcile.clusterSPIFFEIDs` (also enables the Pod and Endpoints watches).
    pub cluster_spiffe_ids: bool,
    /// `reconcile.clusterFederatedTrustDomains`.
    pub cluster_federated_trust_domains: bool,
    /// `reconcile.clusterStaticEntries`.
    pub cluster_static_entries: bool,
}

impl Config {
    /// Whether `namespace` matches any `ignoreNamespaces` pattern (unanchored, like Go's
    /// `regexp.MatchString`: `spire` also ignores `my-spire-ns`).
    pub fn is_namespace_ignored(&self, namespace: &str) -> bool {
        self.ignore_namespaces.iter().any(|r| r.is_match(namespace))
    }

    /// The `ignoreNamespaces` patterns as written.
    pub fn ignore_namespace_sources(&self) -> Vec<&str> {
        self.ignore_namespaces.iter().map(Regex::as_str).collect()
    }

    /// Static manifest mode (`staticManifestPath` set): no Kubernetes API, no webhooks.
    pub fn is_static_mode(&self) -> bool {
        self.static_manifest_path.is_some()
    }

    /// The gRPC target for the SPIRE Server socket as upstream builds it: `unix://<path>` for an
    /// absolute path, `unix:<path>` for a relative one.
    pub fn spire_server_socket_uri(&self) -> String {
        let p = &self.spire_server_socket_path;
        if p.starts_with('/') { format!("unix://{p}") } else { format!("unix:{p}") }
    }

    /// The SPIFFE ID the SPIRE server presents over mTLS: `spiffe://<trustDomain>/spire/server`.
    pub fn spire_server_id(&self) -> String {
        format!("spiffe://{}/spire/server", self.trust_domain.name())
    }

    /// Whether the parent ID template is the default one (`parentIDTemplate` empty/unset).
    pub fn uses_default_parent_id_template(&self) -> bool {
        self.parent_id_template == DEFAULT_PARENT_ID_TEMPLATE
    }

    /// The effective configuration as a `ControllerManagerConfig` YAML document (for
    /// `check-config`). Every key is written out with its effective value; loading the output
    /// again gives the same configuration.
    ///
    /// Durations are written as Go duration strings (`gcInterval: "10s"`). Note that this
    /// includes `gcInterval` and `controller.cacheSyncTimeout`, which upstream only accepts as
    /// integer nanoseconds: the output is meant for this loader (which accepts both), not for
    /// the Go controller.
    pub fn effective_yaml(&self) -> String {
        let mut y = Yaml::default();
        y.kv(0, "apiVersion", &q(API_VERSION));
        y.kv(0, "kind", &q(KIND));
        y.kv(0, "trustDomain", &q(self.trust_domain.name()));
        y.kv(0, "clusterName", &q(&self.cluster_name));
        if self.cluster_domain.is_empty() {
            y.comment(0, "empty: autodetected at startup from the kubernetes.default.svc CNAME");
        }
        y.kv(0, "clusterDomain", &q(&self.cluster_domain));
        if self.ignore_namespaces.is_empty() {
            y.kv(0, "ignoreNamespaces", "[]");
        } else {
            y.key(0, "ignoreNamespaces");
            for r in &self.ignore_namespaces {
                y.item(1, &q(r.as_str()));
            }
        }
        y.kv(0, "validatingWebhookConfigurationName", &q(&self.validating_webhook_configuration_name));
        y.kv(0, "mutatingWebhookConfigurationName", &q(&self.mutating_webhook_configuration_name));
        y.kv(0, "podObserverWebhookConfigurationName", &q(&self.pod_observer_webhook_configuration_name));
        y.comment(0, "upstream only accepts integer nanoseconds here; this loader also takes a Go duration");
        y.kv(0, "gcInterval", &qd(self.gc_interval));
        y.comment(0, "extension: how far apart idle reads of SPIRE may grow (never below gcInterval)");
        y.kv(0, "spireCheckMaxInterval", &qd(self.spire_check_max_interval));
        match (&self.spire_server_address, &self.workload_api_socket_path) {
            (Some(address), workload) => {
                y.comment(0, "extensions: the SPIRE Server API over TCP + SPIFFE mTLS (standalone)");
                y.kv(0, "spireServerAddress", &q(address));
                y.kv(0, "workloadAPISocketPath", &q(workload.as_deref().unwrap_or("")));
            }
            (None, _) => y.kv(0, "spireServerSocketPath", &q(&self.spire_server_socket_path)),
        }
        y.kv(0, "logLevel", &q(self.log_level.as_str()));
        y.kv(0, "logEncoding", &q(self.log_encoding.as_str()));
        match self.grpc_max_call_recv_msg_size {
            Some(n) => {
                y.key(0, "grpc");
                y.kv(1, "maxCallRecvMsgSize", &n.to_string());
            }
            None => y.comment(0, "grpc.maxCallRecvMsgSize: unset (gRPC default, 4 MiB)"),
        }
        y.kv(0, "syncPeriod", &qd(self.sync_period));

        let le = &self.leader_election;
        y.key(0, "leaderElection");
        y.kv(1, "leaderElect", &le.leader_elect.to_string());
        y.kv(1, "resourceLock", &q(&le.resource_lock));
        y.kv(1, "resourceName", &q(&le.resource_name));
        match &le.resource_namespace {
            Some(ns) => y.kv(1, "resourceNamespace", &q(ns)),
            None => y.comment(1, "resourceNamespace: unset (the pod's own namespace)"),
        }
        y.kv(1, "leaseDuration", &qd(le.lease_duration));
        y.kv(1, "renewDeadline", &qd(le.renew_deadline));
        y.kv(1, "retryPeriod", &qd(le.retry_period));

        if self.cache_namespaces.is_empty() {
            y.comment(0, "cacheNamespaces: unset (all namespaces)");
        } else {
            y.key(0, "cacheNamespaces");
            for (ns, c) in &self.cache_namespaces {
                if c.label_selectors.is_empty() && c.field_selectors.is_empty() {
                    y.kv(1, &q(ns), "{}");
                    continue;
                }
                y.key(1, &q(ns));
                for (name, map) in [("labelSelectors", &c.label_selectors), ("fieldSelectors", &c.field_selectors)] {
                    if map.is_empty() {
                        continue;
                    }
                    y.key(2, name);
                    for (k, v) in map {
                        y.kv(3, &q(k), &q(v));
                    }
                }
            }
        }

        y.key(0, "controller");
        if self.controller.group_kind_concurrency.is_empty() {
            y.kv(1, "groupKindConcurrency", "{}");
        } else {
            y.key(1, "groupKindConcurrency");
            for (k, v) in &self.controller.group_kind_concurrency {
                y.kv(2, &q(k), &v.to_string());
            }
        }
        y.comment(1, "upstream only accepts integer nanoseconds here; this loader also takes a Go duration");
        y.kv(1, "cacheSyncTimeout", &qd(self.controller.cache_sync_timeout));

        y.key(0, "metrics");
        if self.metrics.bind_address.is_none() {
            y.comment(1, "\"0\": disabled");
        }
        y.kv(1, "bindAddress", &q(self.metrics.bind_address.as_deref().unwrap_or("0")));
        y.key(0, "health");
        if self.health.health_probe_bind_address.is_none() {
            y.comment(1, "empty: no probe server");
        }
        y.kv(1, "healthProbeBindAddress", &q(self.health.health_probe_bind_address.as_deref().unwrap_or("")));
        y.kv(1, "readinessEndpointName", &q(&self.health.readiness_endpoint_name));
        y.kv(1, "livenessEndpointName", &q(&self.health.liveness_endpoint_name));
        y.key(0, "webhook");
        y.kv(1, "port", &self.webhook.port.to_string());
        if self.webhook.host.is_empty() {
            y.comment(1, "empty: all interfaces");
        }
        y.kv(1, "host", &q(&self.webhook.host));
        if let Some(dir) = &self.webhook.cert_dir {
            y.kv(1, "certDir", &q(dir));
        }

        y.kv(0, "className", &q(&self.class_name));
        y.kv(0, "watchClassless", &self.watch_classless.to_string());
        y.kv(0, "filterByClassName", &self.filter_by_class_name.to_string());
        y.kv(0, "parentIDTemplate", &q(&self.parent_id_template));
        y.key(0, "reconcile");
        y.kv(1, "clusterSPIFFEIDs", &self.reconcile.cluster_spiffe_ids.to_string());
        y.kv(1, "clusterFederatedTrustDomains", &self.reconcile.cluster_federated_trust_domains.to_string());
        y.kv(1, "clusterStaticEntries", &self.reconcile.cluster_static_entries.to_string());
        y.kv(0, "entryIDPrefix", &q(&self.entry_id_prefix));
        match &self.entry_id_prefix_cleanup {
            Some(c) => y.kv(0, "entryIDPrefixCleanup", &q(c)),
            None => y.comment(0, "entryIDPrefixCleanup: unset"),
        }
        match &self.static_manifest_path {
            Some(p) => y.kv(0, "staticManifestPath", &q(&p.to_string_lossy())),
            None => y.comment(0, "staticManifestPath: unset (Kubernetes mode)"),
        }
        y.kv(0, "expandEnvStaticManifests", &self.expand_env_static_manifests.to_string());
        y.kv(0, "enableEntryRenderCache", &self.enable_entry_render_cache.to_string());
        y.kv(0, "entryRenderCacheSize", &self.entry_render_cache_size.to_string());
        let g = &self.deletion_guard;
        y.key(0, "deletionGuard");
        y.kv(1, "maxShare", &g.max_share.to_string());
        y.kv(1, "minEntries", &g.min_entries.to_string());
        y.kv(
            1,
            "releaseAfter",
            &q(&g.release_after.map(|d| format!("{}s", d.as_secs())).unwrap_or_else(|| "0s".into())),
        );
        y.out
    }
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML double-quoted syntax).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

/// A Go duration string, quoted.
fn qd(d: Duration) -> String {
    q(&crate::duration::format_std_duration(d))
}

#[derive(Default)]
struct Yaml {
    out: String,
}

impl Yaml {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }
    fn key(&mut self, level: usize, key: &str) {
        self.indent(level);
        self.out.push_str(key);
        self.out.push_str(":\n");
    }
    fn kv(&mut self, level: usize, key: &str, value: &str) {
        self.indent(level);
        self.out.push_str(key);
        self.out.push_str(": ");
        self.out.push_str(value);
        self.out.push('\n');
    }
    fn item(&mut self, level: usize, value: &str) {
        self.indent(level);
        self.out.push_str("- ");
        self.out.push_str(value);
        self.out.push('\n');
    }
    fn comment(&mut self, level: usize, text: &str) {
        self.indent(level);
        self.out.push_str("# ");
        self.out.push_str(text);
        self.out.push('\n');
    }
}

/// The cluster domain from the CNAME of `kubernetes.default.svc` (upstream
/// `parseClusterDomainCNAME`): strip the `kubernetes.default.svc.` prefix and one trailing dot.
/// `None` when the prefix is missing or nothing is left.
pub fn parse_cluster_domain_from_cname(cname: &str) -> Option<String> {
    let rest = cname.strip_prefix(K8S_DEFAULT_SERVICE)?.strip_prefix('.')?;
    let domain = rest.strip_suffix('.').unwrap_or(rest);
    (!domain.is_empty()).then(|| domain.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream `cmd/config_test.go: TestParseClusterDomainCNAME`, plus a few more.
    #[test]
    fn cluster_domain_from_cname() {
        let cases: &[(&str, Option<&str>)] = &[
            ("kubernetes.default.svc.cluster.local.", Some("cluster.local")),
            ("kubernetes.default.svc.cluster2.local", Some("cluster2.local")),
            ("test.cluster.local", None),
            ("kubernetes.default.svc.", None),
            ("kubernetes.default.svc", None),
            ("kubernetes.default.svcx.cluster.local", None),
            ("kubernetes.default.svc.example", Some("example")),
            ("kubernetes.default.svc..", None),
            ("kubernetes.default.svc.cluster.local..", Some("cluster.local.")),
        ];
        for &(cname, want) in cases {
            assert_eq!(parse_cluster_domain_from_cname(cname).as_deref(), want, "{cname}");
        }
    }
}
