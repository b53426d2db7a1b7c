//! Operations end to end: metrics move with writes, readiness follows SPIRE, leader
//! election hands over without double writes, SIGTERM releases the lease, JSON logs
//! at the configured level.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::entries::{Fixture, base_config};
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn metrics_move_with_writes() {
    let fx = Fixture::new("metrics", "").await;
    let series_list = [
        "cluster_static_entry_failures",
        "spire_controller_manager_reconcile_pass_duration_seconds",
        "spire_controller_manager_reconcile_passes_total",
        "spire_controller_manager_entries_declared",
        "spire_controller_manager_entries_current",
        "spire_controller_manager_leader",
        "process_resident_memory_bytes",
    ];
    eventually(WAIT, "all series exposed", || async {
        let text = fx.ctl.metrics().await;
        series_list.iter().all(|s| text.contains(s)).then_some(())
    })
    .await;
    fx.apply_cspiffeid(&fx.class, json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/p/{{ .PodMeta.Name }}"}))
        .await;
    for i in 0..3 {
        create_pod(&fx.client, &fx.ns, &format!("p{i}"), &fx.node, "sa", &[]).await;
    }
    eventually(WAIT, "3 creates counted", || async {
        (fx.ctl.metric("spire_controller_manager_entry_writes_total", &["create", "ok"]).await == 3.0).then_some(())
    })
    .await;
    eventually(WAIT, "gauges", || async {
        let declared = fx.ctl.metric("spire_controller_manager_entries_declared", &[]).await;
        let current = fx.ctl.metric("spire_controller_manager_entries_current", &[]).await;
        (declared == 3.0 && current == 3.0).then_some(())
    })
    .await;
    assert!(
        fx.ctl.metric("spire_controller_manager_spire_rpc_duration_seconds_count", &["BatchCreateEntry"]).await >= 1.0
    );
    assert!(fx.ctl.metric("spire_controller_manager_spire_rpc_duration_seconds_count", &["ListEntries"]).await >= 1.0);
    assert_eq!(fx.ctl.metric("spire_controller_manager_leader", &[]).await, 1.0);
    delete_pod(&fx.client, &fx.ns, "p0").await;
    eventually(WAIT, "delete counted", || async {
        (fx.ctl.metric("spire_controller_manager_entry_writes_total", &["delete", "ok"]).await == 1.0).then_some(())
    })
    .await;
}

/// Uses the shared peers' main spire-server, which `peers.sh spire-stop/spire-start`
/// can stop and restart with the same socket and data.
///
/// `/readyz` gates the SPIRE server's Service when this runs as its sidecar, so it must
/// not follow SPIRE: it stays 200 while `/status` and the `health_check` gauge say what
/// is wrong.
#[tokio::test]
async fn readiness_never_follows_spire_and_status_does() {
    let peers = peers();
    let class = unique("ready");
    let sock = peers.env.get("SPIRE_SERVER_SOCKET").to_owned();
    let config = format!(
        "trustDomain: example.org\nclusterName: e2e\nclusterDomain: cluster.local\nspireServerSocketPath: {sock}\nclassName: {class}\nentryIDPrefix: {class}\ngcInterval: 2s\n"
    );
    let ctl = Controller::start(&class, &config);
    let readyz = || async { http_get(&ctl.health_addr, "/readyz").await.map(|(code, _)| code) };
    let spire_ok = |want: bool| {
        let addr = ctl.health_addr.clone();
        async move { (check_ok(&addr, "spire").await? == want).then_some(()) }
    };
    eventually(WAIT, "ready", || async { (readyz().await? == 200).then_some(()) }).await;
    eventually(WAIT, "SPIRE reachable in /status", || spire_ok(true)).await;
    let (code, _) = http_get(&ctl.health_addr, "/healthz").await.unwrap();
    assert_eq!(code, 200);
    let stop = peers_sh().arg("spire-stop").arg(&peers.dir).output().unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    eventually(WAIT, "/status reports SPIRE down", || spire_ok(false)).await;
    let status = health_status(&ctl.health_addr).await.unwrap();
    assert!(status["checks"]["spire"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{status}");
    assert_eq!(ctl.metric("spire_controller_manager_health_check", &["check=\"spire\""]).await, 0.0);
    assert_eq!(readyz().await, Some(200), "readiness must not follow SPIRE: {status}");
    let start = peers_sh().arg("spire-start").arg(&peers.dir).output().unwrap();
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    eventually(WAIT, "/status reports SPIRE back", || spire_ok(true)).await;
    assert_eq!(readyz().await, Some(200));
    // Liveness never failed: the loop kept beating while SPIRE was down.
    let (code, _) = http_get(&ctl.health_addr, "/healthz").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn leader_election_failover_without_double_writes() {
    let client = kube().await;
    let spire = Spire::start(&unique("leader"), "example.org");
    let class = unique("leader");
    let lease_ns = unique("lease");
    create_namespace(&client, &lease_ns, &[]).await;
    let ns = unique("leader");
    create_namespace(&client, &ns, &[]).await;
    let node = unique("leader-node");
    create_node(&client, &node).await;
    let le = format!(
        "leaderElection:\n  leaderElect: true\n  resourceName: {class}.spiffe.io\n  resourceNamespace: {lease_ns}\n  leaseDuration: 4s\n  renewDeadline: 3s\n  retryPeriod: 1s\n"
    );
    let config = base_config(&spire, &class, &le);
    let mut a = Controller::start(&format!("{class}-a"), &config);
    eventually(WAIT, "a leads", || async {
        (a.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    let mut b = Controller::start(&format!("{class}-b"), &config);
    eventually(WAIT, "b serves metrics", || async { (!b.metrics().await.is_empty()).then_some(()) }).await;
    assert_eq!(b.metric("spire_controller_manager_leader", &[]).await, 0.0);

    let fx_spec = json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": class},
        "spec": {"className": class, "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/p/{{ .PodMeta.Name }}",
                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}});
    apply_json(&client, "clusterspiffeids", fx_spec).await;
    for i in 0..3 {
        create_pod(&client, &ns, &format!("p{i}"), &node, "sa", &[]).await;
    }
    let sc = spire.client().await;
    let before = eventually(WAIT, "a wrote 3 entries", || async {
        let e = sc.list_entries().await.ok()?;
        (e.len() == 3).then_some(e)
    })
    .await;
    assert_eq!(b.metric("spire_controller_manager_entry_writes_total", &[]).await, 0.0, "the standby never writes");

    // Kill the leader without letting it release the lease: b must take over on expiry.
    let killed_at = Instant::now();
    let _ = std::process::Command::new("kill").arg("-KILL").arg(a.pid().unwrap().to_string()).status();
    eventually(Duration::from_secs(20), "b leads", || async {
        (b.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    let took = killed_at.elapsed();
    eprintln!("failover after SIGKILL took {took:?} (leaseDuration 4s + retryPeriod 1s)");
    eventually(WAIT, "b ran a full pass", || async {
        (b.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 1.0).then_some(())
    })
    .await;
    let after = sc.list_entries().await.unwrap();
    let ids = |v: &[scm_spiffe::Entry]| {
        let mut x: Vec<String> = v.iter().map(|e| e.id.clone()).collect();
        x.sort();
        x
    };
    assert_eq!(ids(&after), ids(&before), "entries unchanged across failover");
    assert_eq!(b.metric("spire_controller_manager_entry_writes_total", &[]).await, 0.0, "no double writes");
    // The new leader does write when something changes.
    create_pod(&client, &ns, "p3", &node, "sa", &[]).await;
    eventually(WAIT, "b writes the new entry", || async { (sc.list_entries().await.ok()?.len() == 4).then_some(()) })
        .await;

    // Graceful handover: SIGTERM releases the lease, so a new replica leads at once.
    a.restart();
    b.stop();
    let released_at = Instant::now();
    eventually(Duration::from_secs(20), "a leads again after b's release", || async {
        (a.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    eprintln!("handover after SIGTERM took {:?}", released_at.elapsed());
    assert!(b.logs().contains("released the lease"), "{}", b.logs());
    drop(b);
}

/// `logEncoding: json` and `logLevel` as upstream's zap would take them (no RUST_LOG):
/// every line is one JSON object with a level, a target and a message; `debug` lines
/// appear only when `logLevel: debug`.
#[tokio::test]
async fn json_logs_at_the_configured_level() {
    let mut seen = Vec::new();
    for level in ["debug", "info"] {
        let spire = Spire::start(&unique("jsonlogs"), "example.org");
        let class = unique("jsonlogs");
        let config = base_config(&spire, &class, &format!("logEncoding: json\nlogLevel: {level}\n"));
        let ctl = Controller::start_env(&class, &config, &[("ENABLE_WEBHOOKS", "false"), ("RUST_LOG", "")]);
        eventually(WAIT, "the first entry pass", || async {
            (ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 1.0).then_some(())
        })
        .await;
        let logs = ctl.logs();
        let mut levels = std::collections::BTreeSet::new();
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            let l = v["level"].as_str().unwrap_or_else(|| panic!("no level: {line}"));
            assert!(v["target"].is_string() && v["message"].is_string(), "target and message: {line}");
            levels.insert(l.to_owned());
        }
        assert!(levels.contains("INFO"), "logLevel {level}: levels seen {levels:?}");
        seen.push((level, levels.contains("DEBUG")));
    }
    assert_eq!(seen, vec![("debug", true), ("info", false)]);
}
