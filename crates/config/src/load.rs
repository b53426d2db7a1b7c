//! Reading, decoding, defaulting and validating the `ControllerManagerConfig` file, as
//! upstream's `api/v1alpha1/controllermanagerconfig_loader.go` and `cmd/main.go: parseConfig`
//! (plus the checks upstream only makes later at startup: trust domain validity, leader
//! election settings).
//!
//! Decoding follows the Go path YAML → JSON → struct: keys are case-sensitive, unknown keys
//! are ignored (here: reported as warnings), present keys replace defaults (lists are replaced,
//! not merged), `null` leaves a scalar at its default but empties a list or map, and a value of
//! the wrong JSON type is an error (`clusterName: 123` fails; quote it).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::RegexBuilder;
use scm_spiffe::TrustDomain;

use crate::duration::parse_go_duration;
use crate::expand::go_expand_env;
use crate::model::*;
use crate::node::{self, Node};
use crate::template_check::check_parent_id_template;

/// Process inputs that shape the configuration besides the file text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--config`. Without it upstream uses only defaults, and startup then fails on the
    /// missing trust domain; [`load`] does the same.
    pub path: Option<PathBuf>,
    /// `--expand-env`: Go `os.ExpandEnv` over the whole file text before decoding.
    pub expand_env: bool,
    /// `--spire-api-socket` (deprecated): used only when the file doesn't set
    /// `spireServerSocketPath`.
    pub spire_api_socket_flag: Option<String>,
}

/// A loaded configuration and what the caller should log at WARN level (unknown keys with
/// their dotted path, deprecated or ignored settings, unset environment variables).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// One validation failure: the key (dotted path, `ignoreNamespaces[2]` for list items, empty
/// for the document itself) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Why the configuration could not be loaded. Every message starts with the file name.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: invalid YAML: {message}")]
    Yaml { source_name: String, message: String },
    /// One or more keys are invalid; `Display` prints one `<file>: <key>: <message>` line each.
    #[error("{}", ProblemList { source_name, problems })]
    Invalid { source_name: String, problems: Vec<Problem> },
}

impl ConfigError {
    /// The individual key problems (empty for read and YAML syntax errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

struct ProblemList<'a> {
    source_name: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if p.key.is_empty() {
                write!(f, "{}: {}", self.source_name, p.message)?;
            } else {
                write!(f, "{}: {}: {}", self.source_name, p.key, p.message)?;
            }
        }
        Ok(())
    }
}

/// Reads `opts.path` and loads it (see [`from_str`]). `env` looks up environment variables for
/// `--expand-env` (pass [`crate::process_env`] in production).
pub fn load(opts: &LoadOptions, env: impl Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    match &opts.path {
        None => from_str("", "(no --config file)", opts, env),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            from_str(&text, &path.display().to_string(), opts, env)
        }
    }
}

/// Loads configuration text. `source_name` prefixes every message (normally the file path);
/// `opts.path` is not used.
pub fn from_str(
    text: &str,
    source_name: &str,
    opts: &LoadOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut cx = Cx { source_name, problems: Vec::new(), warnings: Vec::new() };
    let expanded;
    let text = if opts.expand_env {
        let (out, unset) = go_expand_env(text, env);
        for name in unset {
            cx.warn("", format!("--expand-env: environment variable {name:?} is not set; expanded to \"\""));
        }
        expanded = out;
        expanded.as_str()
    } else {
        text
    };
    let (root, extra_docs) =
        node::parse(text).map_err(|message| ConfigError::Yaml { source_name: source_name.to_owned(), message })?;
    if extra_docs {
        cx.warn("", "only the first YAML document is used; the others are ignored");
    }
    let config = decode(&root, opts, &mut cx);
    match config {
        Some(config) if cx.problems.is_empty() => Ok(Loaded { config, warnings: cx.warnings }),
        _ => Err(ConfigError::Invalid { source_name: source_name.to_owned(), problems: cx.problems }),
    }
}

/// [`load`] for a path, with the process environment; convenience for tests and tools.
pub fn load_path(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
    let opts = LoadOptions { path: Some(path.as_ref().to_owned()), ..LoadOptions::default() };
    load(&opts, crate::expand::process_env)
}

struct Cx<'s> {
    source_name: &'s str,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Cx<'_> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem { key: key.to_owned(), message: message.into() });
    }
    fn has_problem(&self, key: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.key == key || p.key.starts_with(&format!("{key}.")) || p.key.starts_with(&format!("{key}[")))
    }
    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into();
        self.warnings.push(if key.is_empty() {
            format!("{}: {message}", self.source_name)
        } else {
            format!("{}: {key}: {message}", self.source_name)
        });
    }
    fn wrong_type(&mut self, key: &str, expected: &str, got: &Node) {
        let hint = match (expected, got) {
            ("a string", Node::Int(_) | Node::Float(_) | Node::Bool(_)) => " (quote the value)",
            _ => "",
        };
        let got_text = match got {
            Node::Null | Node::Seq(_) | Node::Map(_) => got.kind().to_owned(),
            scalar => format!("{} {scalar}", scalar.kind()),
        };
        self.problem(key, format!("expected {expected}, got {got_text}{hint}"));
    }
}

/// `parent.key`, or `parent["key"]` for keys that aren't plain identifiers (dots, slashes…).
fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// The fields of one mapping; remembers which keys were read so the rest can be reported.
struct Obj<'n> {
    path: String,
    entries: &'n [(String, Node)],
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'n> Obj<'n> {
    /// `None` (after recording a type problem) if `node` is neither a mapping nor null.
    fn new(path: &str, node: &'n Node, cx: &mut Cx) -> Option<Self> {
        let entries: &[(String, Node)] = match node {
            Node::Map(entries) => entries,
            Node::Null => &[],
            other => {
                cx.wrong_type(path, "a mapping", other);
                return None;
            }
        };
        Some(Self { path: path.to_owned(), entries, used: vec![false; entries.len()], known: Vec::new() })
    }

    /// The value of `key` (possibly `Null`) and its path; `None` when absent.
    fn raw(&mut self, key: &'static str) -> Option<(&'n Node, String)> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some((&self.entries[i].1, join(&self.path, key)))
    }

    /// Like [`Obj::raw`], but a `null` value counts as absent (Go leaves scalars untouched).
    fn get(&mut self, key: &'static str) -> Option<(&'n Node, String)> {
        self.raw(key).filter(|(n, _)| !matches!(n, Node::Null))
    }

    fn string(&mut self, key: &'static str, cx: &mut Cx) -> Option<String> {
        let (n, path) = self.get(key)?;
        as_string(n, &path, cx)
    }

    fn bool(&mut self, key: &'static str, cx: &mut Cx) -> Option<bool> {
        let (n, path) = self.get(key)?;
        match n {
            Node::Bool(b) => Some(*b),
            other => {
                cx.wrong_type(&path, "a boolean", other);
                None
            }
        }
    }

    fn int(&mut self, key: &'static str, cx: &mut Cx) -> Option<i64> {
        let (n, path) = self.get(key)?;
        as_int(n, &path, cx)
    }

    /// A Go `time.Duration` field: integer nanoseconds (upstream's format) or, as an extension,
    /// a Go duration string.
    fn nanos(&mut self, key: &'static str, cx: &mut Cx) -> Option<i64> {
        let (n, path) = self.get(key)?;
        match n {
            Node::Str(s) => parse_go_duration(s).map_err(|e| cx.problem(&path, e.to_string())).ok(),
            Node::Int(_) | Node::Float(_) => as_int(n, &path, cx),
            other => {
                cx.wrong_type(&path, "integer nanoseconds or a duration string such as \"10s\"", other);
                None
            }
        }
    }

    /// A `metav1.Duration` field: a Go duration string only (as upstream).
    fn meta_duration(&mut self, key: &'static str, cx: &mut Cx) -> Option<i64> {
        let (n, path) = self.get(key)?;
        match n {
            Node::Str(s) => parse_go_duration(s).map_err(|e| cx.problem(&path, e.to_string())).ok(),
            other => {
                cx.wrong_type(&path, "a duration string such as \"15s\"", other);
                None
            }
        }
    }

    fn obj(&mut self, key: &'static str, cx: &mut Cx) -> Option<Obj<'n>> {
        let (n, path) = self.get(key)?;
        Obj::new(&path, n, cx)
    }

    fn string_map(&mut self, key: &'static str, cx: &mut Cx) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some((n, path)) = self.get(key) else {
            return out;
        };
        let Some(entries) = map_entries(n, &path, cx) else {
            return out;
        };
        for (k, v) in entries {
            if let Some(s) = as_string(v, &join(&path, k), cx) {
                out.insert(k.clone(), s);
            }
        }
        out
    }

    /// Reports the keys nobody asked for. `silent` keys are accepted without a warning.
    fn finish(self, cx: &mut Cx, silent: &[&str]) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if *used || silent.contains(&key.as_str()) {
                continue;
            }
            let hint = self
                .known
                .iter()
                .find(|k| k.eq_ignore_ascii_case(key))
                .map(|k| format!(" (did you mean {k:?}? keys are case-sensitive)"))
                .unwrap_or_default();
            cx.warn(&join(&self.path, key), format!("unknown key, ignored{hint}"));
        }
    }
}

fn map_entries<'n>(n: &'n Node, path: &str, cx: &mut Cx) -> Option<&'n [(String, Node)]> {
    match n {
        Node::Map(e) => Some(e),
        Node::Null => Some(&[]),
        other => {
            cx.wrong_type(path, "a mapping", other);
            None
        }
    }
}

fn as_string(n: &Node, path: &str, cx: &mut Cx) -> Option<String> {
    match n {
        Node::Str(s) => Some(s.clone()),
        other => {
            cx.wrong_type(path, "a string", other);
            None
        }
    }
}

/// A Go `int`. Integral floats are accepted (`1e10`, `5.0`), as they are upstream after the
/// YAML→JSON step re-prints them as integers.
fn as_int(n: &Node, path: &str, cx: &mut Cx) -> Option<i64> {
    let v = match n {
        Node::Int(i) => i64::try_from(*i).ok(),
        Node::Float(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Some(*x as i64),
        _ => None,
    };
    if v.is_none() {
        match n {
            Node::Int(_) | Node::Float(_) => cx.problem(path, format!("expected an integer, got {n}")),
            other => cx.wrong_type(path, "an integer", other),
        }
    }
    v
}

fn nanos_to_std(n: i64) -> Duration {
    Duration::from_nanos(n.max(0) as u64)
}

/// `regex::Error`'s text is multi-line (pattern, caret, "error: …"); keep the reason.
/// Compiled size all `ignoreNamespaces` patterns share: each gets an equal part, at least
/// 16 KiB (a namespace pattern such as `^kube-.*` needs a few KiB); a lone pattern gets
/// the regex crate's default limit, as before.
const IGNORE_NAMESPACES_SIZE_BUDGET: usize = 10 << 20;

fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn add_dot_suffix(s: String) -> String {
    if !s.is_empty() && !s.ends_with('.') { s + "." } else { s }
}

/// Decodes the document and applies defaults and validation. Returns `None` only when the
/// document could not be decoded at all; problems are collected in `cx`.
fn decode(root: &Node, opts: &LoadOptions, cx: &mut Cx) -> Option<Config> {
    let mut o = match root {
        Node::Map(_) | Node::Null => Obj::new("", root, cx)?,
        other => {
            cx.problem("", format!("expected a {KIND} mapping at the top level, got {}", other.kind()));
            return None;
        }
    };

    // TypeMeta: absent or empty means "this kind" (the Go decoder defaults them from the target type).
    if let Some(v) = o.string("apiVersion", cx)
        && !v.is_empty()
        && v != API_VERSION
    {
        cx.problem("apiVersion", format!("expected {API_VERSION:?}, got {v:?}"));
    }
    if let Some(v) = o.string("kind", cx)
        && !v.is_empty()
        && v != KIND
    {
        cx.problem("kind", format!("expected {KIND:?}, got {v:?}"));
    }

    // ---- top-level SCM keys ----
    let cluster_name = o.string("clusterName", cx);
    let cluster_domain = o.string("clusterDomain", cx).unwrap_or_default();
    let trust_domain_text = o.string("trustDomain", cx);

    let ignore_sources: Vec<(String, String)> = match o.raw("ignoreNamespaces") {
        None => DEFAULT_IGNORE_NAMESPACES
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("ignoreNamespaces[{i}]"), (*s).to_owned()))
            .collect(),
        // Go: null into a slice sets it to nil; nothing is ignored.
        Some((Node::Null, _)) => Vec::new(),
        Some((Node::Seq(items), path)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let p = format!("{path}[{i}]");
                as_string(item, &p, cx).map(|s| (p, s))
            })
            .collect(),
        Some((other, path)) => {
            cx.wrong_type(&path, "a list of regular expressions", other);
            Vec::new()
        }
    };

    let webhook_name = o.string("validatingWebhookConfigurationName", cx);
    let mutating_name = o.string("mutatingWebhookConfigurationName", cx);
    let pod_observer_name = o.string("podObserverWebhookConfigurationName", cx);
    let gc_interval_nanos = o.nanos("gcInterval", cx);
    let spire_check_max_nanos = o.nanos("spireCheckMaxInterval", cx);
    let socket_from_file = o.string("spireServerSocketPath", cx).filter(|s| !s.is_empty());
    let address_from_file = o.string("spireServerAddress", cx).filter(|s| !s.is_empty());
    let workload_from_file = o.string("workloadAPISocketPath", cx).filter(|s| !s.is_empty());
    let log_level_text = o.string("logLevel", cx);
    let log_encoding_text = o.string("logEncoding", cx);
    let mut grpc_max_call_recv_msg_size = None;
    if let Some(mut g) = o.obj("grpc", cx) {
        if let Some(n) = g.int("maxCallRecvMsgSize", cx) {
            grpc_max_call_recv_msg_size = usize::try_from(n).ok().filter(|n| *n > 0);
        }
        g.finish(cx, &[]);
    }

    // ---- ControllerManagerConfigurationSpec (inline) ----
    let sync_period_nanos = o.meta_duration("syncPeriod", cx);

    let mut leader_election = LeaderElection::default();
    let mut leader_election_raw = (None, None, None);
    if let Some(mut le) = o.obj("leaderElection", cx) {
        leader_election.leader_elect = le.bool("leaderElect", cx).unwrap_or(false);
        if let Some(s) = le.string("resourceLock", cx).filter(|s| !s.is_empty()) {
            leader_election.resource_lock = s;
        }
        leader_election.resource_name = le.string("resourceName", cx).unwrap_or_default();
        leader_election.resource_namespace = le.string("resourceNamespace", cx).filter(|s| !s.is_empty());
        leader_election_raw = (
            le.meta_duration("leaseDuration", cx),
            le.meta_duration("renewDeadline", cx),
            le.meta_duration("retryPeriod", cx),
        );
        le.finish(cx, &[]);
    }

    let cache_namespace = o.string("cacheNamespace", cx).filter(|s| !s.is_empty());
    let mut cache_namespaces: BTreeMap<String, NamespaceCacheConfig> = BTreeMap::new();
    if let Some((n, path)) = o.get("cacheNamespaces")
        && let Some(entries) = map_entries(n, &path, cx)
    {
        for (ns, v) in entries {
            let p = join(&path, ns);
            let mut c = NamespaceCacheConfig::default();
            if let Some(mut nc) = Obj::new(&p, v, cx) {
                c.label_selectors = nc.string_map("labelSelectors", cx);
                c.field_selectors = nc.string_map("fieldSelectors", cx);
                nc.finish(cx, &[]);
            }
            cache_namespaces.insert(ns.clone(), c);
        }
    }

    // Accepted and ignored, as upstream (decoded, so a malformed value still fails).
    if o.meta_duration("gracefulShutDown", cx).is_some() {
        cx.warn("gracefulShutDown", "accepted but ignored (as upstream)");
    }

    let mut controller = ControllerSettings::default();
    let mut cache_sync_timeout_nanos = None;
    if let Some(mut c) = o.obj("controller", cx) {
        if let Some((n, path)) = c.get("groupKindConcurrency")
            && let Some(entries) = map_entries(n, &path, cx)
        {
            for (gk, v) in entries {
                if let Some(workers) = as_int(v, &join(&path, gk), cx) {
                    controller.group_kind_concurrency.insert(gk.clone(), usize::try_from(workers).unwrap_or(0).max(1));
                }
            }
        }
        cache_sync_timeout_nanos = c.nanos("cacheSyncTimeout", cx);
        if c.bool("recoverPanic", cx).is_some() {
            cx.warn("controller.recoverPanic", "accepted but ignored (as upstream)");
        }
        c.finish(cx, &[]);
    }

    let mut metrics = Metrics { bind_address: Some(DEFAULT_METRICS_BIND_ADDRESS.to_owned()) };
    if let Some(mut m) = o.obj("metrics", cx) {
        match m.string("bindAddress", cx).as_deref() {
            None | Some("") => {}
            Some("0") => metrics.bind_address = None,
            Some(addr) => metrics.bind_address = Some(addr.to_owned()),
        }
        m.finish(cx, &[]);
    }

    let mut health = Health {
        health_probe_bind_address: None,
        readiness_endpoint_name: DEFAULT_READINESS_ENDPOINT_NAME.to_owned(),
        liveness_endpoint_name: DEFAULT_LIVENESS_ENDPOINT_NAME.to_owned(),
    };
    if let Some(mut h) = o.obj("health", cx) {
        health.health_probe_bind_address = h.string("healthProbeBindAddress", cx).filter(|s| !s.is_empty() && s != "0");
        for (key, slot) in [
            ("readinessEndpointName", &mut health.readiness_endpoint_name),
            ("livenessEndpointName", &mut health.liveness_endpoint_name),
        ] {
            if let Some(v) = h.string(key, cx).filter(|s| !s.is_empty()) {
                if !v.starts_with('/') {
                    cx.warn(&join("health", key), format!("{v:?} does not start with '/'"));
                }
                *slot = v;
            }
        }
        h.finish(cx, &[]);
    }

    let mut webhook = Webhook { port: DEFAULT_WEBHOOK_PORT, host: String::new(), cert_dir: None };
    if let Some(mut w) = o.obj("webhook", cx) {
        if let Some(port) = w.int("port", cx) {
            match u16::try_from(port) {
                Ok(p) if p > 0 => webhook.port = p,
                _ => cx.warn("webhook.port", format!("{port} is not a valid port; using {DEFAULT_WEBHOOK_PORT}")),
            }
        }
        webhook.host = w.string("host", cx).unwrap_or_default();
        webhook.cert_dir = w.string("certDir", cx).filter(|s| !s.is_empty());
        if webhook.cert_dir.is_some() {
            cx.warn("webhook.certDir", "certDir configuration is ignored");
        }
        w.finish(cx, &[]);
    }

    let class_name = o.string("className", cx).unwrap_or_default();
    let watch_classless = o.bool("watchClassless", cx).unwrap_or(false);
    let filter_by_class_name = o.bool("filterByClassName", cx).unwrap_or(false);
    let parent_id_template = o.string("parentIDTemplate", cx).unwrap_or_default();

    let mut reconcile_block: Option<Reconcile> = None;
    if let Some(mut r) = o.obj("reconcile", cx) {
        // Present block: omitted keys are false.
        reconcile_block = Some(Reconcile {
            cluster_spiffe_ids: r.bool("clusterSPIFFEIDs", cx).unwrap_or(false),
            cluster_federated_trust_domains: r.bool("clusterFederatedTrustDomains", cx).unwrap_or(false),
            cluster_static_entries: r.bool("clusterStaticEntries", cx).unwrap_or(false),
        });
        r.finish(cx, &[]);
    }

    let entry_id_prefix = add_dot_suffix(o.string("entryIDPrefix", cx).unwrap_or_default());
    let entry_id_prefix_cleanup = o.string("entryIDPrefixCleanup", cx).map(add_dot_suffix);
    let static_manifest_path = o.string("staticManifestPath", cx).map(PathBuf::from);
    let expand_env_static_manifests = o.bool("expandEnvStaticManifests", cx).unwrap_or(false);
    let enable_entry_render_cache = o.bool("enableEntryRenderCache", cx).unwrap_or(false);
    let entry_render_cache_size = o
        .int("entryRenderCacheSize", cx)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_ENTRY_RENDER_CACHE_SIZE);

    let mut deletion_guard = DeletionGuard::default();
    if let Some(mut g) = o.obj("deletionGuard", cx) {
        if let Some((n, path)) = g.get("maxShare") {
            match n {
                Node::Int(_) | Node::Float(_) => {
                    let v = match n {
                        Node::Int(i) => *i as f64,
                        Node::Float(x) => *x,
                        _ => unreachable!(),
                    };
                    if (0.0..=1.0).contains(&v) {
                        deletion_guard.max_share = v;
                    } else {
                        cx.problem(&path, format!("must be between 0 and 1, got {v}"));
                    }
                }
                other => cx.wrong_type(&path, "a number between 0 and 1", other),
            }
        }
        if let Some(n) = g.int("minEntries", cx) {
            match usize::try_from(n) {
                Ok(n) if n >= 1 => deletion_guard.min_entries = n,
                _ => cx.problem("deletionGuard.minEntries", format!("must be at least 1, got {n}")),
            }
        }
        if let Some(n) = g.meta_duration("releaseAfter", cx) {
            deletion_guard.release_after = (n > 0).then(|| nanos_to_std(n));
        }
        g.finish(cx, &[]);
    }

    // `metadata` is not a field of upstream's type either, but it is what every example has.
    o.finish(cx, &["metadata"]);

    // ---- defaults and validation (cmd/main.go: parseConfig order) ----
    if cache_namespace.is_some() && !cache_namespaces.is_empty() {
        cx.problem("cacheNamespace", "cacheNamespace or cacheNamespaces can be used, but not both");
    } else if let Some(ns) = cache_namespace {
        cx.warn("cacheNamespace", "deprecated; use cacheNamespaces");
        cache_namespaces.insert(ns, NamespaceCacheConfig::default());
    }

    let gc_interval = match gc_interval_nanos {
        Some(n) if n > 0 => nanos_to_std(n),
        Some(n) => {
            cx.warn(
                "gcInterval",
                format!(
                    "{} is not positive; using {}",
                    crate::format_go_duration(n),
                    crate::format_std_duration(DEFAULT_GC_INTERVAL)
                ),
            );
            DEFAULT_GC_INTERVAL
        }
        None => DEFAULT_GC_INTERVAL,
    };
    let spire_check_max_interval = match spire_check_max_nanos {
        Some(n) if n < 0 => {
            cx.problem("spireCheckMaxInterval", format!("{} is negative", crate::format_go_duration(n)));
            gc_interval
        }
        Some(n) => nanos_to_std(n).max(gc_interval),
        None => DEFAULT_SPIRE_CHECK_MAX_INTERVAL.max(gc_interval),
    };

    // Compiling a pattern costs time in proportion to its compiled size (`\w{1000}` takes
    // ~100 ms to hit the regex crate's 10 MiB default and fail), so all the patterns share
    // one size budget: a file of many huge patterns fails fast instead of taking minutes.
    let size_limit =
        (IGNORE_NAMESPACES_SIZE_BUDGET / ignore_sources.len().max(1)).clamp(16 << 10, IGNORE_NAMESPACES_SIZE_BUDGET);
    let mut ignore_namespaces = Vec::with_capacity(ignore_sources.len());
    for (path, src) in ignore_sources {
        if src.is_empty() {
            cx.warn(&path, "an empty pattern matches (and so ignores) every namespace");
        }
        match RegexBuilder::new(&src).size_limit(size_limit).build() {
            Ok(r) => ignore_namespaces.push(r),
            Err(e) => cx.problem(&path, format!("invalid regex {src:?}: {}", regex_reason(&e))),
        }
    }

    let log_level = match log_level_text.as_deref() {
        None => LogLevel::Info,
        // An explicit "" skips upstream's level setting, leaving zap's development default.
        Some("") => LogLevel::Debug,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                cx.problem("logLevel", format!("invalid log level {s:?} (expected debug, info, warn or error)"));
                LogLevel::Info
            }
        },
    };
    let log_encoding = match log_encoding_text.as_deref() {
        None | Some("") | Some("console") => LogEncoding::Console,
        Some("json") => LogEncoding::Json,
        Some(s) => {
            cx.problem("logEncoding", format!("unrecognized log encoding {s:?} (expected console or json)"));
            LogEncoding::Console
        }
    };

    let flag = opts.spire_api_socket_flag.as_deref().filter(|s| !s.is_empty());
    let (spire_server_address, workload_api_socket_path) =
        check_transport(address_from_file, workload_from_file, socket_from_file.is_some(), flag.is_some(), cx);
    let spire_server_socket_path = match (socket_from_file, flag) {
        (None, None) => DEFAULT_SPIRE_SERVER_SOCKET_PATH.to_owned(),
        (Some(file), None) => file,
        (None, Some(flag)) => {
            cx.warnings.push(
                "the --spire-api-socket flag is deprecated and will be removed in a future release; use spireServerSocketPath in the configuration file instead".to_owned(),
            );
            flag.to_owned()
        }
        (Some(file), Some(_)) => {
            cx.warnings.push(format!(
                "ignoring the deprecated --spire-api-socket flag: the configuration file sets spireServerSocketPath ({file:?})"
            ));
            file
        }
    };

    let parent_id_template = if parent_id_template.is_empty() {
        DEFAULT_PARENT_ID_TEMPLATE.to_owned()
    } else {
        if let Err(e) = check_parent_id_template(&parent_id_template) {
            cx.problem("parentIDTemplate", format!("unable to parse parent ID template: {e}"));
        }
        parent_id_template
    };

    let static_mode = static_manifest_path.is_some();
    let reconcile = reconcile_block.unwrap_or(Reconcile {
        // Static mode can't reconcile ClusterSPIFFEIDs (no pods); off unless asked for.
        cluster_spiffe_ids: !static_mode,
        cluster_federated_trust_domains: true,
        cluster_static_entries: true,
    });
    if static_mode {
        if static_manifest_path.as_deref() == Some(Path::new("")) {
            cx.warn("staticManifestPath", "is empty; static manifest mode is on but no directory can be read");
        }
        if leader_election.leader_elect {
            cx.problem(
                "leaderElection.leaderElect",
                "leader election is not possible with static manifests (staticManifestPath is set)",
            );
        }
        if reconcile.cluster_spiffe_ids {
            cx.problem(
                "reconcile.clusterSPIFFEIDs",
                "ClusterSPIFFEID reconciliation is not possible with static manifests (staticManifestPath is set)",
            );
        }
    }

    if let Some(cleanup) = &entry_id_prefix_cleanup {
        if !entry_id_prefix.is_empty() && entry_id_prefix == *cleanup {
            cx.problem(
                "entryIDPrefixCleanup",
                format!("if entryIDPrefixCleanup is specified, it can not be the same value as entryIDPrefix ({entry_id_prefix:?})"),
            );
        } else if entry_id_prefix.is_empty() {
            cx.warn("entryIDPrefixCleanup", "has no effect unless entryIDPrefix is set");
        }
    }

    if filter_by_class_name && class_name.is_empty() {
        cx.warn(
            "filterByClassName",
            "is set but className is empty: only ClusterSPIFFEIDs labelled with an empty class name would be cached",
        );
    }

    let cluster_name = match cluster_name {
        Some(s) if !s.is_empty() => s,
        _ => {
            if !cx.has_problem("clusterName") {
                cx.problem("clusterName", "required");
            }
            String::new()
        }
    };
    let mut webhook_config_name = |key: &'static str, given: Option<String>, default: &str| match given {
        Some(s) if s.is_empty() => {
            cx.problem(key, "required (must not be empty)");
            s
        }
        Some(s) => s,
        None => default.to_owned(),
    };
    let validating_webhook_configuration_name = webhook_config_name(
        "validatingWebhookConfigurationName",
        webhook_name,
        DEFAULT_VALIDATING_WEBHOOK_CONFIGURATION_NAME,
    );
    let mutating_webhook_configuration_name = webhook_config_name(
        "mutatingWebhookConfigurationName",
        mutating_name,
        DEFAULT_MUTATING_WEBHOOK_CONFIGURATION_NAME,
    );
    let pod_observer_webhook_configuration_name = webhook_config_name(
        "podObserverWebhookConfigurationName",
        pod_observer_name,
        DEFAULT_POD_OBSERVER_WEBHOOK_CONFIGURATION_NAME,
    );
    let trust_domain = match trust_domain_text.as_deref() {
        Some("") | None => {
            if !cx.has_problem("trustDomain") {
                cx.problem("trustDomain", "required");
            }
            None
        }
        Some(s) => match TrustDomain::parse(s) {
            Ok(td) => Some(td),
            Err(e) => {
                cx.problem("trustDomain", format!("invalid trust domain {s:?}: {e}"));
                None
            }
        },
    };

    let sync_period = match sync_period_nanos {
        Some(n) if n < 0 => {
            cx.problem("syncPeriod", "must not be negative");
            DEFAULT_SYNC_PERIOD
        }
        Some(n) => nanos_to_std(n),
        None => DEFAULT_SYNC_PERIOD,
    };

    controller.cache_sync_timeout = match cache_sync_timeout_nanos {
        Some(n) if n < 0 => {
            cx.problem("controller.cacheSyncTimeout", "must not be negative");
            DEFAULT_CACHE_SYNC_TIMEOUT
        }
        Some(0) | None => DEFAULT_CACHE_SYNC_TIMEOUT,
        Some(n) => nanos_to_std(n),
    };

    // Leader election: zero means "default" (upstream compares with the zero Duration); the rest
    // is what client-go's leader elector and resource lock would reject at startup.
    let (lease, renew, retry) = leader_election_raw;
    for (key, raw, slot) in [
        ("leaderElection.leaseDuration", lease, &mut leader_election.lease_duration),
        ("leaderElection.renewDeadline", renew, &mut leader_election.renew_deadline),
        ("leaderElection.retryPeriod", retry, &mut leader_election.retry_period),
    ] {
        match raw {
            // Negative values only matter (and fail, in client-go) when leader election is on.
            Some(n) if n < 0 && leader_election.leader_elect => cx.problem(key, "must be greater than zero"),
            Some(n) if n > 0 => *slot = nanos_to_std(n),
            _ => {}
        }
    }
    if leader_election.leader_elect && !static_mode {
        let le = &leader_election;
        if le.resource_name.is_empty() && !cx.has_problem("leaderElection.resourceName") {
            cx.problem("leaderElection.resourceName", "required when leaderElect is true");
        }
        if le.resource_lock != DEFAULT_RESOURCE_LOCK {
            cx.problem(
                "leaderElection.resourceLock",
                format!("unsupported lock type {:?} (only \"leases\" is supported)", le.resource_lock),
            );
        }
        if !cx.has_problem("leaderElection") {
            if le.lease_duration <= le.renew_deadline {
                cx.problem("leaderElection.leaseDuration", "leaseDuration must be greater than renewDeadline");
            }
            // client-go: renewDeadline > JitterFactor (1.2) × retryPeriod.
            if le.renew_deadline.as_nanos() * 10 <= le.retry_period.as_nanos() * 12 {
                cx.problem(
                    "leaderElection.renewDeadline",
                    "renewDeadline must be greater than retryPeriod*JitterFactor (1.2)",
                );
            }
        }
    }

    Some(Config {
        trust_domain: trust_domain?,
        cluster_name,
        cluster_domain,
        ignore_namespaces,
        validating_webhook_configuration_name,
        mutating_webhook_configuration_name,
        pod_observer_webhook_configuration_name,
        gc_interval,
        spire_check_max_interval,
        spire_server_socket_path,
        spire_server_address,
        workload_api_socket_path,
        log_level,
        log_encoding,
        grpc_max_call_recv_msg_size,
        sync_period,
        leader_election,
        cache_namespaces,
        controller,
        metrics,
        health,
        webhook,
        class_name,
        watch_classless,
        filter_by_class_name,
        parent_id_template,
        reconcile,
        entry_id_prefix,
        entry_id_prefix_cleanup,
        static_manifest_path,
        expand_env_static_manifests,
        enable_entry_render_cache,
        entry_render_cache_size,
        deletion_guard,
    })
}

/// The transport keys: either the socket (`spireServerSocketPath`, or its default) or
/// `spireServerAddress` with `workloadAPISocketPath`, never both.
fn check_transport(
    address: Option<String>,
    workload: Option<String>,
    socket_in_file: bool,
    socket_flag: bool,
    cx: &mut Cx,
) -> (Option<String>, Option<String>) {
    match (&address, &workload) {
        (Some(a), _) => {
            if socket_in_file {
                cx.problem(
                    "spireServerAddress",
                    "set either spireServerSocketPath (the SPIRE server's admin socket, sidecar) or spireServerAddress (TCP + mTLS, standalone), not both",
                );
            } else if socket_flag {
                cx.problem(
                    "spireServerAddress",
                    "the --spire-api-socket flag and spireServerAddress exclude each other: drop one",
                );
            }
            if let Err(reason) = check_address(a) {
                cx.problem("spireServerAddress", format!("invalid address {a:?}: {reason}"));
            }
            if workload.is_none() {
                cx.problem(
                    "workloadAPISocketPath",
                    "required with spireServerAddress: the SPIRE agent's Workload API socket that gives this controller its X.509-SVID (e.g. /spiffe-workload-api/spire-agent.sock)",
                );
            }
        }
        (None, Some(_)) => cx.problem(
            "workloadAPISocketPath",
            "only used with spireServerAddress (TCP + mTLS); set spireServerAddress too, or remove it",
        ),
        (None, None) => {}
    }
    (address, workload)
}

/// `host:port` (a DNS name, an IPv4 address or a bracketed IPv6 address; port 1..=65535).
fn check_address(address: &str) -> Result<(), &'static str> {
    let rest = address.strip_prefix("tcp://").or_else(|| address.strip_prefix("dns:///")).unwrap_or(address);
    if rest.starts_with("unix:") || rest.starts_with('/') {
        return Err("a Unix socket belongs in spireServerSocketPath; this key takes host:port");
    }
    if rest.contains('/') {
        return Err("expected host:port (no scheme or path)");
    }
    let (host, port) = rest.rsplit_once(':').ok_or("expected host:port (the port is missing)")?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("the port is not a number from 1 to 65535"),
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or("unclosed [ in an IPv6 address")?,
        None if host.contains(':') => return Err("an IPv6 address must be in brackets ([::1]:8081)"),
        None => host,
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    Ok(())
}

#[cfg(test)]
mod transport_tests {
    use super::check_address;

    #[test]
    fn addresses() {
        for ok in ["spire-server.spire-server.svc:8081", "127.0.0.1:8081", "[::1]:8081", "tcp://h:1", "dns:///h:443"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in ["h", "h:0", "h:x", ":8081", "::1:8081", "unix:///x.sock", "/x.sock", "http://h:1/p", "[::1:8081"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
