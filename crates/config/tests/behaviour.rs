//! Table-style checks of individual upstream rules, on inline documents.

use std::path::Path;
use std::time::Duration;

use scm_config::*;

const BASE: &str = "trustDomain: example.org\nclusterName: c1\n";

fn no_env(_: &str) -> Option<String> {
    None
}

fn ok_with(extra: &str, opts: &LoadOptions) -> Loaded {
    let text = format!("{BASE}{extra}");
    from_str(&text, "config.yaml", opts, no_env).unwrap_or_else(|e| panic!("{extra:?}: {e}"))
}

fn ok(extra: &str) -> Loaded {
    ok_with(extra, &LoadOptions::default())
}

fn cfg(extra: &str) -> Config {
    ok(extra).config
}

fn err(extra: &str) -> String {
    let text = format!("{BASE}{extra}");
    match from_str(&text, "config.yaml", &LoadOptions::default(), no_env) {
        Ok(_) => panic!("{extra:?}: loaded, expected an error"),
        Err(e) => e.to_string(),
    }
}

const ALL: Reconcile =
    Reconcile { cluster_spiffe_ids: true, cluster_federated_trust_domains: true, cluster_static_entries: true };
const STATIC_DEFAULT: Reconcile =
    Reconcile { cluster_spiffe_ids: false, cluster_federated_trust_domains: true, cluster_static_entries: true };
const NONE: Reconcile =
    Reconcile { cluster_spiffe_ids: false, cluster_federated_trust_domains: false, cluster_static_entries: false };

#[test]
fn reconcile_block_presence() {
    let cases: &[(&str, Reconcile)] = &[
        ("", ALL),
        ("reconcile:\n", ALL), // null: same as absent (a nil pointer upstream)
        ("reconcile: {}\n", NONE),
        ("reconcile:\n  clusterStaticEntries: true\n", Reconcile { cluster_static_entries: true, ..NONE }),
        (
            "reconcile:\n  clusterSPIFFEIDs: true\n  clusterFederatedTrustDomains: true\n",
            Reconcile { cluster_static_entries: false, ..ALL },
        ),
        ("staticManifestPath: /m\n", STATIC_DEFAULT),
        ("staticManifestPath: /m\nreconcile: {}\n", NONE),
        (
            "staticManifestPath: /m\nreconcile:\n  clusterSPIFFEIDs: false\n  clusterStaticEntries: true\n",
            Reconcile { cluster_static_entries: true, ..NONE },
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(cfg(extra).reconcile, *want, "{extra:?}");
    }
}

#[test]
fn ignore_namespaces_replace_not_merge() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["kube-system", "kube-public", "spire-system"]),
        ("ignoreNamespaces: [foo]\n", &["foo"]),
        ("ignoreNamespaces: []\n", &[]),
        ("ignoreNamespaces:\n", &[]), // null empties the list, as Go does for a slice
        ("ignoreNamespaces: ['^kube-', 'system$']\n", &["^kube-", "system$"]),
    ];
    for (extra, want) in cases {
        assert_eq!(cfg(extra).ignore_namespace_sources(), *want, "{extra:?}");
    }
    let l = ok("ignoreNamespaces: [\"\"]\n");
    assert!(l.config.is_namespace_ignored("anything"));
    assert_eq!(
        l.warnings,
        ["config.yaml: ignoreNamespaces[0]: an empty pattern matches (and so ignores) every namespace"]
    );
    assert_eq!(err("ignoreNamespaces: [a, ~]\n"), "config.yaml: ignoreNamespaces[1]: expected a string, got null");
    let c = cfg("ignoreNamespaces: [spire]\n");
    assert!(c.is_namespace_ignored("spire"));
    assert!(c.is_namespace_ignored("my-spire-ns"), "unanchored");
    assert!(!c.is_namespace_ignored("spir"));
}

/// Found by fuzzing: each `\w{1000}` took ~100 ms to compile (and fail), so a few
/// hundred of them took a minute. The patterns now share one compiled-size budget.
#[test]
fn many_huge_ignore_namespaces_patterns_fail_fast() {
    let e = err(&format!("ignoreNamespaces:\n{}", "  - '\\w{1000}'\n".repeat(300)));
    assert!(e.contains("ignoreNamespaces[299]: invalid regex"), "{e}");
    // A lone pattern keeps the regex crate's default limit.
    assert!(cfg("ignoreNamespaces: ['\\w{63}']\n").is_namespace_ignored(&"a".repeat(63)));
}

#[test]
fn gc_interval_forms() {
    let cases: &[(&str, Duration)] = &[
        ("", Duration::from_secs(10)),
        ("gcInterval: 10000000000\n", Duration::from_secs(10)),
        ("gcInterval: 60000000000\n", Duration::from_secs(60)),
        ("gcInterval: 1e10\n", Duration::from_secs(10)), // a float that Go's YAML→JSON prints as an integer
        ("gcInterval: \"10s\"\n", Duration::from_secs(10)),
        ("gcInterval: 1h30m\n", Duration::from_secs(5400)),
        ("gcInterval: 1.5s\n", Duration::from_millis(1500)),
        ("gcInterval: 300ms\n", Duration::from_millis(300)),
        ("gcInterval: 2h45m30.5s\n", Duration::from_millis(9_930_500)),
        ("gcInterval: 0\n", Duration::from_secs(10)),
        ("gcInterval: -5\n", Duration::from_secs(10)),
        ("gcInterval: \"-1m\"\n", Duration::from_secs(10)),
        ("gcInterval: \"0\"\n", Duration::from_secs(10)),
        ("gcInterval: ~\n", Duration::from_secs(10)),
    ];
    for (extra, want) in cases {
        assert_eq!(cfg(extra).gc_interval, *want, "{extra:?}");
    }
    assert_eq!(ok("gcInterval: 0\n").warnings, ["config.yaml: gcInterval: 0s is not positive; using 10s"]);
    assert_eq!(err("gcInterval: 10x\n"), "config.yaml: gcInterval: invalid duration \"10x\": unknown unit \"x\"");
    assert_eq!(err("gcInterval: \"10\"\n"), "config.yaml: gcInterval: invalid duration \"10\": missing unit");
    assert_eq!(err("gcInterval: 1.5\n"), "config.yaml: gcInterval: expected an integer, got 1.5");
    assert_eq!(
        err("gcInterval: [1]\n"),
        "config.yaml: gcInterval: expected integer nanoseconds or a duration string such as \"10s\", got a list"
    );
}

#[test]
fn controller_durations() {
    assert_eq!(cfg("").controller.cache_sync_timeout, Duration::from_secs(120));
    assert_eq!(cfg("controller:\n  cacheSyncTimeout: 0\n").controller.cache_sync_timeout, Duration::from_secs(120));
    assert_eq!(
        cfg("controller:\n  cacheSyncTimeout: 5000000000\n").controller.cache_sync_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(cfg("controller:\n  cacheSyncTimeout: 30s\n").controller.cache_sync_timeout, Duration::from_secs(30));
    assert_eq!(
        err("controller:\n  cacheSyncTimeout: -1\n"),
        "config.yaml: controller.cacheSyncTimeout: must not be negative"
    );
    assert_eq!(cfg("syncPeriod: 30m\n").sync_period, Duration::from_secs(1800));
    assert_eq!(cfg("syncPeriod: 0s\n").sync_period, Duration::ZERO);
}

#[test]
fn spire_api_socket_flag() {
    let flag = |f: Option<&str>| LoadOptions { spire_api_socket_flag: f.map(str::to_owned), ..LoadOptions::default() };
    // Neither: the default.
    let l = ok_with("", &flag(None));
    assert_eq!(l.config.spire_server_socket_path, "/spire-server/api.sock");
    assert!(l.warnings.is_empty());
    // File only.
    let l = ok_with("spireServerSocketPath: /file.sock\n", &flag(None));
    assert_eq!(l.config.spire_server_socket_path, "/file.sock");
    assert!(l.warnings.is_empty());
    // Flag only: used, with a deprecation warning.
    let l = ok_with("", &flag(Some("/flag.sock")));
    assert_eq!(l.config.spire_server_socket_path, "/flag.sock");
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].contains("--spire-api-socket flag is deprecated"), "{:?}", l.warnings);
    // Both: the file wins, the flag is reported as ignored.
    let l = ok_with("spireServerSocketPath: /file.sock\n", &flag(Some("/flag.sock")));
    assert_eq!(l.config.spire_server_socket_path, "/file.sock");
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].contains("ignoring the deprecated --spire-api-socket flag"), "{:?}", l.warnings);
    // An empty file value counts as unset.
    let l = ok_with("spireServerSocketPath: \"\"\n", &flag(Some("/flag.sock")));
    assert_eq!(l.config.spire_server_socket_path, "/flag.sock");
    assert_eq!(l.config.spire_server_socket_uri(), "unix:///flag.sock");
}

#[test]
fn log_settings() {
    let cases: &[(&str, LogLevel, LogEncoding)] = &[
        ("", LogLevel::Info, LogEncoding::Console),
        ("logLevel: DEBUG\n", LogLevel::Debug, LogEncoding::Console),
        ("logLevel: Warn\nlogEncoding: json\n", LogLevel::Warn, LogEncoding::Json),
        ("logLevel: error\nlogEncoding: console\n", LogLevel::Error, LogEncoding::Console),
        // An explicit "" skips upstream's level setting: zap's development default, debug.
        ("logLevel: \"\"\nlogEncoding: \"\"\n", LogLevel::Debug, LogEncoding::Console),
    ];
    for (extra, level, encoding) in cases {
        let c = cfg(extra);
        assert_eq!((c.log_level, c.log_encoding), (*level, *encoding), "{extra:?}");
    }
    assert!(err("logLevel: trace\n").contains("logLevel: invalid log level \"trace\""));
    assert!(err("logEncoding: Json\n").contains("logEncoding: unrecognized log encoding \"Json\""), "case-sensitive");
}

#[test]
fn servers() {
    let c = cfg("");
    assert_eq!(c.metrics.bind_address.as_deref(), Some(":8080"));
    assert_eq!(c.health.health_probe_bind_address, None);
    assert_eq!(cfg("metrics:\n  bindAddress: \"\"\n").metrics.bind_address.as_deref(), Some(":8080"));
    assert_eq!(cfg("metrics:\n  bindAddress: \"0\"\n").metrics.bind_address, None);
    assert_eq!(cfg("health:\n  healthProbeBindAddress: \"0\"\n").health.health_probe_bind_address, None);
    assert_eq!(
        cfg("health:\n  healthProbeBindAddress: :8081\n").health.health_probe_bind_address.as_deref(),
        Some(":8081")
    );
    let l = ok("webhook:\n  port: 70000\n");
    assert_eq!(l.config.webhook.port, 9443);
    assert_eq!(l.warnings, ["config.yaml: webhook.port: 70000 is not a valid port; using 9443"]);
    assert_eq!(cfg("grpc:\n  maxCallRecvMsgSize: 0\n").grpc_max_call_recv_msg_size, None);
    assert_eq!(cfg("grpc:\n  maxCallRecvMsgSize: -1\n").grpc_max_call_recv_msg_size, None);
    assert_eq!(cfg("grpc:\n  maxCallRecvMsgSize: 8388608\n").grpc_max_call_recv_msg_size, Some(8 << 20));
}

#[test]
fn render_cache_size() {
    assert_eq!(cfg("").entry_render_cache_size, 300_000);
    assert_eq!(cfg("entryRenderCacheSize: 0\n").entry_render_cache_size, 300_000);
    assert_eq!(cfg("entryRenderCacheSize: -3\n").entry_render_cache_size, 300_000);
    assert_eq!(cfg("entryRenderCacheSize: 5\n").entry_render_cache_size, 5);
}

#[test]
fn entry_id_prefixes() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("", "", None),
        ("entryIDPrefix: a\n", "a.", None),
        ("entryIDPrefix: a.\n", "a.", None),
        ("entryIDPrefix: a\nentryIDPrefixCleanup: \"\"\n", "a.", Some("")),
        ("entryIDPrefix: a\nentryIDPrefixCleanup: b\n", "a.", Some("b.")),
        ("entryIDPrefix: a\nentryIDPrefixCleanup: ~\n", "a.", None),
        // No prefix: cleanup is allowed (even equal) but has no effect.
        ("entryIDPrefixCleanup: \"\"\n", "", Some("")),
    ];
    for (extra, prefix, cleanup) in cases {
        let c = cfg(extra);
        assert_eq!(
            (c.entry_id_prefix.as_str(), c.entry_id_prefix_cleanup.as_deref()),
            (*prefix, *cleanup),
            "{extra:?}"
        );
    }
    assert_eq!(
        ok("entryIDPrefixCleanup: x\n").warnings,
        ["config.yaml: entryIDPrefixCleanup: has no effect unless entryIDPrefix is set"]
    );
    for extra in ["entryIDPrefix: a\nentryIDPrefixCleanup: a\n", "entryIDPrefix: a.\nentryIDPrefixCleanup: a\n"] {
        assert!(err(extra).contains("entryIDPrefixCleanup: if entryIDPrefixCleanup is specified"), "{extra:?}");
    }
}

#[test]
fn static_mode_rules() {
    let c = cfg("staticManifestPath: /m\nleaderElection:\n  leaderElect: false\n");
    assert_eq!(c.static_manifest_path.as_deref(), Some(Path::new("/m")));
    assert!(!c.leader_election.leader_elect);
    let l = ok("staticManifestPath: \"\"\n");
    assert!(l.config.is_static_mode(), "a present key enables static mode, even empty");
    assert_eq!(l.warnings.len(), 1);
    assert!(cfg("staticManifestPath: ~\n").static_manifest_path.is_none());
    // Both violations are reported at once.
    let e = err("staticManifestPath: /m\nleaderElection:\n  leaderElect: true\nreconcile:\n  clusterSPIFFEIDs: true\n");
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn leader_election_rules() {
    // Off: nothing else is checked.
    let c = cfg("leaderElection:\n  leaseDuration: -1s\n");
    assert_eq!(c.leader_election, LeaderElection::default());
    // Zero means default.
    let c = cfg("leaderElection:\n  leaderElect: yes\n  resourceName: x\n  leaseDuration: 0s\n");
    assert!(c.leader_election.leader_elect, "YAML 1.1 boolean");
    assert_eq!(c.leader_election.lease_duration, Duration::from_secs(15));
    assert_eq!(c.leader_election.resource_namespace, None);
    assert!(
        err("leaderElection:\n  leaderElect: true\n  resourceName: x\n  leaseDuration: -1s\n")
            .contains("leaderElection.leaseDuration: must be greater than zero")
    );
    assert!(
        err("leaderElection:\n  leaderElect: true\n  resourceName: x\n  renewDeadline: 2s\n").contains(
            "leaderElection.renewDeadline: renewDeadline must be greater than retryPeriod*JitterFactor (1.2)"
        )
    );
    assert!(
        err("leaderElection:\n  leaderElect: true\n  resourceName: x\n  retryPeriod: 1\n")
            .contains("leaderElection.retryPeriod: expected a duration string such as \"15s\", got a number 1")
    );
}

#[test]
fn cache_namespaces() {
    let l = ok("cacheNamespace: team-a\n");
    assert_eq!(l.config.cache_namespaces.keys().collect::<Vec<_>>(), ["team-a"]);
    assert_eq!(l.warnings, ["config.yaml: cacheNamespace: deprecated; use cacheNamespaces"]);
    // An empty map doesn't conflict with the deprecated key.
    assert_eq!(cfg("cacheNamespace: a\ncacheNamespaces: {}\n").cache_namespaces.len(), 1);
    assert_eq!(cfg("cacheNamespace: \"\"\ncacheNamespaces:\n  b:\n").cache_namespaces.len(), 1);
}

#[test]
fn unknown_keys_are_reported_with_their_path() {
    let l = ok(
        "metadata:\n  name: x\n  bogus: 1\nleaderElection:\n  leaseDurationn: 1s\ncacheNamespaces:\n  ns:\n    labelSelector: {}\nMetrics:\n  bindAddress: :1\nreconcile:\n  clusterSpiffeIds: true\ngrpc:\n  maxRecvMsgSize: 1\ncontroller:\n  groupKindConcurency: {}\n",
    );
    assert_eq!(
        sorted(&l.warnings),
        sorted(&[
            "config.yaml: leaderElection.leaseDurationn: unknown key, ignored".to_owned(),
            "config.yaml: cacheNamespaces.ns.labelSelector: unknown key, ignored".to_owned(),
            "config.yaml: controller.groupKindConcurency: unknown key, ignored".to_owned(),
            "config.yaml: reconcile.clusterSpiffeIds: unknown key, ignored (did you mean \"clusterSPIFFEIDs\"? keys are case-sensitive)".to_owned(),
            "config.yaml: grpc.maxRecvMsgSize: unknown key, ignored".to_owned(),
            "config.yaml: Metrics: unknown key, ignored (did you mean \"metrics\"? keys are case-sensitive)".to_owned(),
        ])
    );
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[test]
fn several_problems_are_reported_together() {
    let e = from_str("clusterName: 5\nlogLevel: loud\n", "c.yaml", &LoadOptions::default(), no_env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.yaml: clusterName: expected a string, got a number 5 (quote the value)\n\
         c.yaml: logLevel: invalid log level \"loud\" (expected debug, info, warn or error)\n\
         c.yaml: trustDomain: required"
    );
    assert_eq!(e.problems().len(), 3);
    assert_eq!(e.problems()[0].key, "clusterName");
    // A wrongly typed trust domain is not also reported as missing.
    let e = from_str("clusterName: c\ntrustDomain: true\n", "c.yaml", &LoadOptions::default(), no_env).unwrap_err();
    assert_eq!(e.problems().len(), 1, "{e}");
}

#[test]
fn documents_and_type_meta() {
    // apiVersion/kind may be absent (the Go decoder defaults them), JSON works, and only the
    // first YAML document is used.
    let c = from_str(
        r#"{"trustDomain": "spiffe://example.org", "clusterName": "c"}"#,
        "c.json",
        &LoadOptions::default(),
        no_env,
    )
    .unwrap()
    .config;
    assert_eq!(c.trust_domain.name(), "example.org");
    let l = from_str(&format!("{BASE}---\nclusterName: other\n"), "c.yaml", &LoadOptions::default(), no_env).unwrap();
    assert_eq!(l.config.cluster_name, "c1");
    assert_eq!(l.warnings, ["c.yaml: only the first YAML document is used; the others are ignored"]);
    let e = from_str("", "empty.yaml", &LoadOptions::default(), no_env).unwrap_err();
    assert_eq!(e.to_string(), "empty.yaml: clusterName: required\nempty.yaml: trustDomain: required");
}

#[test]
fn expand_env_runs_before_decoding() {
    let env = |n: &str| match n {
        "TD" => Some("example.org".to_owned()),
        "LE" => Some("true".to_owned()),
        _ => None,
    };
    let opts = LoadOptions { expand_env: true, ..LoadOptions::default() };
    let l = from_str(
        "trustDomain: $TD\nclusterName: c$$1\nleaderElection:\n  leaderElect: ${LE}\n  resourceName: x\nclassName: \"a$\"\n",
        "c.yaml",
        &opts,
        env,
    )
    .unwrap();
    assert_eq!(l.config.trust_domain.name(), "example.org");
    assert!(l.config.leader_election.leader_elect, "expanded text is typed after expansion");
    assert_eq!(l.config.cluster_name, "c1", "$$ is the (unset) variable named $");
    assert_eq!(l.config.class_name, "a$");
    assert_eq!(l.warnings, ["c.yaml: --expand-env: environment variable \"$\" is not set; expanded to \"\""]);
}

#[test]
fn webhook_configuration_names() {
    let c = cfg("");
    assert_eq!(c.validating_webhook_configuration_name, "spire-controller-manager-webhook");
    assert_eq!(c.mutating_webhook_configuration_name, "spire-controller-manager-mutating-webhook");
    assert_eq!(c.pod_observer_webhook_configuration_name, "spire-controller-manager-pod-observer");
    let c = cfg("mutatingWebhookConfigurationName: a-mutating\npodObserverWebhookConfigurationName: a-pods\n");
    assert_eq!(c.mutating_webhook_configuration_name, "a-mutating");
    assert_eq!(c.pod_observer_webhook_configuration_name, "a-pods");
    assert!(ok("mutatingWebhookConfigurationName: a\n").warnings.is_empty(), "a known key, not warned about");
    let e = err("podObserverWebhookConfigurationName: \"\"\n");
    assert!(e.contains("podObserverWebhookConfigurationName") && e.contains("must not be empty"), "{e}");
}

#[test]
fn deletion_guard() {
    assert_eq!(cfg("").deletion_guard, DeletionGuard::default());
    let g = cfg("deletionGuard:\n  maxShare: 0.25\n  minEntries: 5\n  releaseAfter: 0s\n").deletion_guard;
    assert_eq!(g, DeletionGuard { max_share: 0.25, min_entries: 5, release_after: None });
    assert_eq!(cfg("deletionGuard:\n  maxShare: 1\n").deletion_guard.max_share, 1.0);
    assert_eq!(
        cfg("deletionGuard:\n  releaseAfter: 90s\n").deletion_guard.release_after,
        Some(Duration::from_secs(90))
    );
    assert!(err("deletionGuard:\n  maxShare: 2\n").contains("deletionGuard.maxShare: must be between 0 and 1"));
    assert!(err("deletionGuard:\n  minEntries: 0\n").contains("deletionGuard.minEntries"));
    assert!(err("deletionGuard:\n  releaseAfter: soon\n").contains("deletionGuard.releaseAfter"));
}

#[test]
fn helm_chart_float_gc_interval() {
    // The SPIRE helm chart renders 10s as a YAML float.
    assert_eq!(cfg("gcInterval: 1e+10\n").gc_interval, Duration::from_secs(10));
}

#[test]
fn standalone_transport_keys() {
    // The sidecar default: the socket, no address.
    let c = cfg("");
    assert_eq!(c.spire_server_address, None);
    assert_eq!(c.workload_api_socket_path, None);

    let c = cfg(
        "spireServerAddress: spire-server.spire-server.svc:8081\nworkloadAPISocketPath: /spiffe-workload-api/spire-agent.sock\n",
    );
    assert_eq!(c.spire_server_address.as_deref(), Some("spire-server.spire-server.svc:8081"));
    assert_eq!(c.workload_api_socket_path.as_deref(), Some("/spiffe-workload-api/spire-agent.sock"));
    assert_eq!(c.spire_server_id(), "spiffe://example.org/spire/server");
    // check-config prints the extension keys instead of the socket, and loads again the same.
    let y = c.effective_yaml();
    assert!(y.contains("spireServerAddress: \"spire-server.spire-server.svc:8081\""), "{y}");
    assert!(y.contains("workloadAPISocketPath: \"/spiffe-workload-api/spire-agent.sock\""), "{y}");
    assert!(!y.contains("spireServerSocketPath"), "{y}");
    let again = from_str(&y, "effective.yaml", &LoadOptions::default(), no_env).unwrap().config;
    assert_eq!(again.spire_server_address, c.spire_server_address);
    assert_eq!(again.workload_api_socket_path, c.workload_api_socket_path);

    let e = err("spireServerAddress: h:8081\n");
    assert!(e.contains("workloadAPISocketPath") && e.contains("required with spireServerAddress"), "{e}");
    let e = err("workloadAPISocketPath: /a.sock\n");
    assert!(e.contains("workloadAPISocketPath") && e.contains("only used with spireServerAddress"), "{e}");
    let e = err("spireServerAddress: h:8081\nworkloadAPISocketPath: /a.sock\nspireServerSocketPath: /s.sock\n");
    assert!(e.contains("spireServerAddress") && e.contains("not both"), "{e}");
    let e = err("spireServerAddress: unix:///s.sock\nworkloadAPISocketPath: /a.sock\n");
    assert!(e.contains("spireServerAddress") && e.contains("spireServerSocketPath"), "{e}");
    let e = err("spireServerAddress: h\nworkloadAPISocketPath: /a.sock\n");
    assert!(e.contains("spireServerAddress") && e.contains("port is missing"), "{e}");

    // The deprecated flag and an address exclude each other too.
    let text = format!("{BASE}spireServerAddress: h:8081\nworkloadAPISocketPath: /a.sock\n");
    let opts = LoadOptions { spire_api_socket_flag: Some("/flag.sock".into()), ..Default::default() };
    let e = from_str(&text, "config.yaml", &opts, no_env).unwrap_err().to_string();
    assert!(e.contains("--spire-api-socket") && e.contains("spireServerAddress"), "{e}");
}

#[test]
fn spire_check_max_interval() {
    let s = std::time::Duration::from_secs;
    assert_eq!(cfg("").spire_check_max_interval, s(60));
    assert_eq!(cfg("spireCheckMaxInterval: 5m\n").spire_check_max_interval, s(300));
    // Never below gcInterval: 0s (or anything shorter) means every gcInterval, as upstream.
    assert_eq!(cfg("spireCheckMaxInterval: 0s\n").spire_check_max_interval, s(10));
    assert_eq!(cfg("gcInterval: 2m\nspireCheckMaxInterval: 30s\n").spire_check_max_interval, s(120));
    assert_eq!(cfg("gcInterval: 1h\n").spire_check_max_interval, s(3600));
    assert!(err("spireCheckMaxInterval: -1s\n").contains("spireCheckMaxInterval"));
    assert!(err("spireCheckMaxInterval: soon\n").contains("spireCheckMaxInterval"));
}
