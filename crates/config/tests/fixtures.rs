//! Loads every fixture in `testdata/` and checks the effective configuration, the warnings,
//! and (for `testdata/bad/`) the exact error each file must produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scm_config::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_fixture(name: &str) -> Loaded {
    let opts = LoadOptions { path: Some(testdata(name)), ..LoadOptions::default() };
    load(&opts, no_env).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Warnings with the (machine-specific) file path prefix removed.
fn warnings(loaded: &Loaded, name: &str) -> Vec<String> {
    let prefix = format!("{}: ", testdata(name).display());
    loaded.warnings.iter().map(|w| w.strip_prefix(&prefix).unwrap_or(w).to_owned()).collect()
}

fn sources(c: &Config) -> Vec<&str> {
    c.ignore_namespace_sources()
}

#[test]
fn helm_chart_rendered_config() {
    let loaded = load_fixture("helm-chart.yaml");
    assert_eq!(warnings(&loaded, "helm-chart.yaml"), Vec::<String>::new(), "metadata is not an unknown key");
    let c = &loaded.config;
    assert_eq!(c.trust_domain.name(), "example.org");
    assert_eq!(c.cluster_name, "example-cluster");
    assert_eq!(c.cluster_domain, "", "left for autodetection");
    assert_eq!(c.metrics.bind_address.as_deref(), Some("0.0.0.0:8082"));
    assert_eq!(c.health.health_probe_bind_address.as_deref(), Some("0.0.0.0:8083"));
    assert_eq!(c.health.readiness_endpoint_name, "/readyz");
    assert_eq!(c.health.liveness_endpoint_name, "/healthz");
    assert_eq!(c.gc_interval, Duration::from_secs(10), "integer nanoseconds");
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_encoding, LogEncoding::Console);
    assert_eq!(
        c.leader_election,
        LeaderElection {
            leader_elect: true,
            resource_lock: "leases".into(),
            resource_name: "5f3b2c1d.spiffe.io".into(),
            resource_namespace: Some("spire-server".into()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    );
    assert_eq!(c.validating_webhook_configuration_name, "spire-server-spire-controller-manager-webhook");
    assert_eq!(c.entry_id_prefix, "example-cluster.", "a dot is appended");
    assert_eq!(c.entry_id_prefix_cleanup.as_deref(), Some(""), "\"\" = clean up unprefixed entries");
    assert_eq!(sources(c), ["kube-system", "kube-public", "local-path-storage", "openshift-.*", "ibm-.*"]);
    assert!(c.is_namespace_ignored("openshift-monitoring"));
    assert!(c.is_namespace_ignored("my-openshift-thing"), "unanchored, like Go MatchString");
    assert!(c.is_namespace_ignored("kube-system"));
    assert!(!c.is_namespace_ignored("spire-system"), "the given list replaces the defaults");
    assert!(!c.is_namespace_ignored("default"));
    assert_eq!(c.spire_server_socket_path, "/tmp/spire-server/private/api.sock");
    assert_eq!(c.spire_server_socket_uri(), "unix:///tmp/spire-server/private/api.sock");
    assert_eq!(c.class_name, "spire-server-spire");
    assert!(!c.watch_classless);
    assert!(c.filter_by_class_name);
    assert_eq!(c.parent_id_template, DEFAULT_PARENT_ID_TEMPLATE);
    assert!(c.uses_default_parent_id_template());
    assert_eq!(
        c.reconcile,
        Reconcile { cluster_spiffe_ids: true, cluster_federated_trust_domains: true, cluster_static_entries: true }
    );
    assert!(!c.is_static_mode());
    // Untouched defaults.
    assert_eq!(c.sync_period, Duration::from_secs(36_000));
    assert_eq!(c.grpc_max_call_recv_msg_size, None);
    assert!(c.cache_namespaces.is_empty());
    assert_eq!(c.controller.cache_sync_timeout, Duration::from_secs(120));
    assert_eq!(c.webhook, Webhook { port: 9443, host: String::new(), cert_dir: None });
    assert!(!c.enable_entry_render_cache);
    assert_eq!(c.entry_render_cache_size, 300_000);
    assert!(!c.expand_env_static_manifests);
}

#[test]
fn helm_chart_static_mode() {
    let loaded = load_fixture("helm-chart-static.yaml");
    assert_eq!(warnings(&loaded, "helm-chart-static.yaml"), Vec::<String>::new());
    let c = &loaded.config;
    assert!(c.is_static_mode());
    assert_eq!(c.static_manifest_path.as_deref(), Some(Path::new("/manifests")));
    assert!(!c.leader_election.leader_elect);
    assert_eq!(c.validating_webhook_configuration_name, "spire-controller-manager-webhook", "default");
    assert_eq!(c.log_encoding, LogEncoding::Json);
    assert_eq!(
        c.reconcile,
        Reconcile { cluster_spiffe_ids: false, cluster_federated_trust_domains: true, cluster_static_entries: true },
        "present block: the omitted clusterSPIFFEIDs is false"
    );
}

#[test]
fn upstream_demo_cluster1() {
    let loaded = load_fixture("demo-cluster1.yaml");
    assert_eq!(warnings(&loaded, "demo-cluster1.yaml"), Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(c.metrics.bind_address.as_deref(), Some("127.0.0.1:8082"));
    assert_eq!(c.health.health_probe_bind_address.as_deref(), Some("0.0.0.0:8083"));
    assert!(c.leader_election.leader_elect);
    assert_eq!(c.leader_election.resource_name, "98c9c988.spiffe.io");
    assert_eq!(c.leader_election.resource_namespace.as_deref(), Some("spire-system"));
    assert_eq!(c.leader_election.lease_duration, DEFAULT_LEASE_DURATION);
    assert_eq!(c.cluster_name, "cluster1");
    assert_eq!(c.trust_domain.name(), "cluster1.demo");
    assert_eq!(sources(c), ["kube-system", "kube-public", "spire-system", "local-path-storage"]);
    assert_eq!(c.gc_interval, Duration::from_secs(10));
    assert_eq!(c.validating_webhook_configuration_name, "spire-controller-manager-webhook");
    assert_eq!(c.spire_server_socket_path, "/spire-server/api.sock");
    assert_eq!(
        c.reconcile,
        Reconcile { cluster_spiffe_ids: true, cluster_federated_trust_domains: true, cluster_static_entries: true },
        "absent block in Kubernetes mode: everything on"
    );
    assert_eq!(c.entry_id_prefix, "");
    assert_eq!(c.entry_id_prefix_cleanup, None);
}

#[test]
fn static_mode_without_reconcile_block() {
    let loaded = load_fixture("static-mode.yaml");
    assert_eq!(warnings(&loaded, "static-mode.yaml"), Vec::<String>::new());
    let c = &loaded.config;
    assert!(c.is_static_mode());
    assert_eq!(c.static_manifest_path.as_deref(), Some(Path::new("/etc/spire/server/main/manifests")));
    assert!(c.expand_env_static_manifests);
    assert_eq!(
        c.reconcile,
        Reconcile { cluster_spiffe_ids: false, cluster_federated_trust_domains: true, cluster_static_entries: true },
        "absent block in static mode: ClusterSPIFFEIDs off"
    );
    assert_eq!(c.cluster_domain, "local");
    assert_eq!(c.entry_id_prefix, "scm.");
    assert!(c.watch_classless);
    assert_eq!(sources(c), DEFAULT_IGNORE_NAMESPACES);
}

#[test]
fn expand_env_fixture() {
    let env = |name: &str| -> Option<String> {
        Some(
            match name {
                "TRUST_DOMAIN" => "example.org",
                "CLUSTER_NAME" => "prod",
                "CLUSTER_DOMAIN" => "cluster.local",
                "NAMESPACE" => "spire-server",
                "EXTRA_IGNORED" => "istio-system",
                "SOCKET_DIR" => "/run/spire/sockets",
                _ => return None,
            }
            .to_owned(),
        )
    };
    let opts = LoadOptions { path: Some(testdata("expand-env.yaml")), expand_env: true, spire_api_socket_flag: None };
    let loaded = load(&opts, env).unwrap();
    let c = &loaded.config;
    assert_eq!(c.trust_domain.name(), "example.org");
    assert_eq!(c.cluster_name, "prod");
    assert_eq!(c.cluster_domain, "cluster.local");
    assert_eq!(c.class_name, "spire-server-spire");
    assert_eq!(c.leader_election.resource_namespace.as_deref(), Some("spire-server"));
    assert_eq!(sources(c), ["^kube-.*$", "istio-system"], "the regex `$` survives expansion");
    assert!(c.is_namespace_ignored("kube-system"));
    assert!(!c.is_namespace_ignored("my-kube-system"), "anchored pattern");
    assert_eq!(c.entry_id_prefix, "", "unset variable expands to empty");
    assert_eq!(c.spire_server_socket_path, "/run/spire/sockets/api.sock");
    assert_eq!(
        warnings(&loaded, "expand-env.yaml"),
        ["--expand-env: environment variable \"UNSET_PREFIX\" is not set; expanded to \"\""]
    );

    // Without --expand-env the text is taken literally, and `${TRUST_DOMAIN}` is no trust domain.
    let opts = LoadOptions { expand_env: false, ..opts };
    let err = load(&opts, env).unwrap_err();
    assert!(err.to_string().contains("trustDomain: invalid trust domain \"${TRUST_DOMAIN}\""), "{err}");
}

#[test]
fn every_key_set() {
    let loaded = load_fixture("everything.yaml");
    let c = &loaded.config;
    assert_eq!(c.trust_domain.name(), "prod.example.com", "a SPIFFE ID is reduced to its trust domain");
    assert_eq!(c.cluster_name, "prod-1");
    assert_eq!(c.cluster_domain, "cluster.prod");
    assert_eq!(sources(c), ["^kube-", "spire"]);
    assert!(c.is_namespace_ignored("my-spire-ns"));
    assert!(c.is_namespace_ignored("kube-system-x"));
    assert!(!c.is_namespace_ignored("default"));
    assert_eq!(c.validating_webhook_configuration_name, "my-webhook");
    assert_eq!(c.gc_interval, Duration::from_secs(5400), "Go duration string accepted too");
    assert_eq!(c.spire_server_socket_path, "run/api.sock");
    assert_eq!(c.spire_server_socket_uri(), "unix:run/api.sock");
    assert_eq!(c.log_level, LogLevel::Warn, "case-insensitive");
    assert_eq!(c.log_encoding, LogEncoding::Json);
    assert_eq!(c.grpc_max_call_recv_msg_size, Some(16 * 1024 * 1024));
    assert_eq!(c.sync_period, Duration::from_secs(3600));
    assert_eq!(
        c.leader_election,
        LeaderElection {
            leader_elect: true,
            resource_lock: "leases".into(),
            resource_name: "my-lease".into(),
            resource_namespace: Some("spire-mgmt".into()),
            lease_duration: Duration::from_secs(60),
            renew_deadline: Duration::from_secs(40),
            retry_period: Duration::from_secs(5),
        }
    );
    let mut want_cache = BTreeMap::new();
    want_cache.insert("default".to_owned(), NamespaceCacheConfig::default());
    want_cache.insert(
        "labelled".to_owned(),
        NamespaceCacheConfig {
            label_selectors: [("app.kubernetes.io/name".to_owned(), "web".to_owned())].into(),
            field_selectors: BTreeMap::new(),
        },
    );
    want_cache.insert(
        "fielded".to_owned(),
        NamespaceCacheConfig {
            label_selectors: BTreeMap::new(),
            field_selectors: [("metadata.name".to_owned(), "x".to_owned())].into(),
        },
    );
    assert_eq!(c.cache_namespaces, want_cache);
    assert_eq!(
        c.controller,
        ControllerSettings {
            group_kind_concurrency: [("ClusterSPIFFEID.spire.spiffe.io".to_owned(), 4), ("Pod".to_owned(), 1)].into(),
            cache_sync_timeout: Duration::from_secs(300),
        }
    );
    assert_eq!(c.metrics.bind_address, None, "\"0\" disables metrics");
    assert_eq!(
        c.health,
        Health {
            health_probe_bind_address: Some("127.0.0.1:9000".into()),
            readiness_endpoint_name: "/ready".into(),
            liveness_endpoint_name: "/live".into(),
        }
    );
    assert_eq!(c.webhook, Webhook { port: 10443, host: "127.0.0.1".into(), cert_dir: Some("/tmp/certs".into()) });
    assert_eq!(c.class_name, "prod");
    assert!(c.watch_classless);
    assert!(c.filter_by_class_name);
    assert_eq!(c.parent_id_template, "spiffe://{{ .TrustDomain }}/agent/{{ .NodeMeta.Name }}");
    assert!(!c.uses_default_parent_id_template());
    assert_eq!(
        c.reconcile,
        Reconcile { cluster_spiffe_ids: true, cluster_federated_trust_domains: false, cluster_static_entries: false },
        "present block: omitted keys are false"
    );
    assert_eq!(c.entry_id_prefix, "prod.", "no second dot");
    assert_eq!(c.entry_id_prefix_cleanup.as_deref(), Some("old."));
    assert_eq!(c.static_manifest_path, None);
    assert!(c.expand_env_static_manifests);
    assert!(c.enable_entry_render_cache);
    assert_eq!(c.entry_render_cache_size, 1000);

    assert_eq!(
        warnings(&loaded, "everything.yaml"),
        [
            "gracefulShutDown: accepted but ignored (as upstream)",
            "controller.recoverPanic: accepted but ignored (as upstream)",
            "webhook.certDir: certDir configuration is ignored",
            "webhook.certDirr: unknown key, ignored",
            "GCInterval: unknown key, ignored (did you mean \"gcInterval\"? keys are case-sensitive)",
            "someFutureKey: unknown key, ignored",
        ]
    );
}

/// `effective_yaml` is loadable and is a fixed point: loading it gives the same configuration.
#[test]
fn effective_yaml_round_trips() {
    for name in
        ["helm-chart.yaml", "helm-chart-static.yaml", "demo-cluster1.yaml", "static-mode.yaml", "everything.yaml"]
    {
        let first = load_fixture(name).config;
        let yaml = first.effective_yaml();
        let second = from_str(&yaml, "effective.yaml", &LoadOptions::default(), no_env)
            .unwrap_or_else(|e| panic!("{name}: effective YAML does not load: {e}\n{yaml}"));
        let unexpected: Vec<_> =
            second.warnings.iter().filter(|w| !w.contains("certDir configuration is ignored")).collect();
        assert!(unexpected.is_empty(), "{name}: {unexpected:?}\n{yaml}");
        assert_eq!(second.config.effective_yaml(), yaml, "{name}");
        assert_eq!(format!("{:?}", second.config), format!("{first:?}"), "{name}");
    }
}

#[test]
fn effective_yaml_text() {
    let yaml = load_fixture("demo-cluster1.yaml").config.effective_yaml();
    for line in [
        "apiVersion: \"spire.spiffe.io/v1alpha1\"\n",
        "kind: \"ControllerManagerConfig\"\n",
        "trustDomain: \"cluster1.demo\"\n",
        "ignoreNamespaces:\n  - \"kube-system\"\n  - \"kube-public\"\n  - \"spire-system\"\n  - \"local-path-storage\"\n",
        "gcInterval: \"10s\"\n",
        "syncPeriod: \"10h0m0s\"\n",
        "  leaseDuration: \"15s\"\n  renewDeadline: \"10s\"\n  retryPeriod: \"2s\"\n",
        "  cacheSyncTimeout: \"2m0s\"\n",
        "  bindAddress: \"127.0.0.1:8082\"\n",
        "parentIDTemplate: \"spiffe://{{ .TrustDomain }}/spire/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.UID }}\"\n",
        "reconcile:\n  clusterSPIFFEIDs: true\n  clusterFederatedTrustDomains: true\n  clusterStaticEntries: true\n",
        "entryRenderCacheSize: 300000\n",
    ] {
        assert!(yaml.contains(line), "missing {line:?} in:\n{yaml}");
    }
}

/// Every file in `testdata/bad/` starts with `# expect: <text>`; loading it must fail with
/// exactly one problem whose `<file>: <key>: <message>` line contains that text.
#[test]
fn bad_fixtures() {
    let dir = testdata("bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 20, "bad fixtures missing: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no '# expect:' line", path.display()));
        let name = path.file_name().unwrap().to_str().unwrap();
        let err =
            from_str(&text, name, &LoadOptions::default(), no_env).map(|l| l.config.effective_yaml()).expect_err(name);
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{name}: ")), "{name}: error doesn't name the file: {msg}");
        assert!(msg.contains(expect), "{name}: expected {expect:?} in:\n{msg}");
        if let ConfigError::Invalid { problems, .. } = &err {
            assert_eq!(problems.len(), 1, "{name}: expected exactly one problem, got:\n{msg}");
        }
    }
}

#[test]
fn read_errors_name_the_file() {
    let opts = LoadOptions { path: Some(testdata("does-not-exist.yaml")), ..LoadOptions::default() };
    let err = load(&opts, no_env).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with("could not read config file "), "{err}");
    assert!(err.to_string().contains("does-not-exist.yaml"), "{err}");
}

#[test]
fn no_config_file_fails_on_the_trust_domain() {
    let err = load(&LoadOptions::default(), no_env).unwrap_err();
    assert_eq!(err.to_string(), "(no --config file): clusterName: required\n(no --config file): trustDomain: required");
}
