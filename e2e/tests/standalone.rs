//! The controller as its own Deployment: the SPIRE Server API over TCP + SPIFFE mTLS with
//! an X.509-SVID from a real spire-agent (`peers.sh agent-up`). The entry and federation
//! suites run over this transport too (`SCM_E2E_TRANSPORT=mtls`, see `transport.rs`);
//! here: rotation under load, and the error a non-admin SVID gets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::entries::Fixture;
use crate::harness::*;
use crate::transport::{agent_up, mtls_keys};

const TD: &str = "example.org";
const WAIT: Duration = Duration::from_secs(30);

fn config(agent: &Env, class: &str) -> String {
    format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\n{}className: {class}\nwatchClassless: false\ngcInterval: 2s\n",
        mtls_keys(agent)
    )
}

/// Distinct SVID serial numbers the controller logged receiving.
fn logged_serials(logs: &str) -> BTreeSet<String> {
    logs.lines()
        .filter(|l| l.contains("X.509-SVID from the Workload API"))
        .filter_map(|l| l.split("serial=").nth(1)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// SVIDs of a 30 s TTL (the agent renews at half-life) rotate several times while a pod
/// is created every second and a full pass runs every 2 s: every pod gets its entry, no
/// SPIRE call of the controller fails, and new connections (a fresh client every 5 s,
/// with the SVID current then) are accepted after the first SVID has expired.
#[tokio::test]
async fn svid_rotation_under_continuous_reconciliation_fails_no_rpc() {
    let client = kube().await;
    let spire = Spire::start(&unique("rotate"), TD);
    let agent = agent_up(&spire, &["--ttl", "30"]);
    let class = unique("rotate");
    let ns = unique("rotate");
    create_namespace(&client, &ns, &[]).await;
    let node = unique("rotate-node");
    let n = create_node(&client, &node).await;
    let ctl = Controller::start(&class, &config(&agent, &class));
    let fx = Fixture { spire, ctl, client, ns, node, node_uid: n.metadata.uid.unwrap(), class };
    eventually(WAIT, "the first entry pass over mTLS", || async {
        (fx.ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await >= 1.0).then_some(())
    })
    .await;
    fx.apply_cspiffeid(
        &fx.class,
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/pod/{{ .PodMeta.Name }}"}),
    )
    .await;

    let source = scm_spire_api::SvidSource::start(agent.get("SPIRE_AGENT_SOCKET")).unwrap();
    let first = source.wait_ready(Duration::from_secs(10)).await.expect("an SVID for the test");
    let server_id = format!("spiffe://{TD}/spire/server");
    let mut serials = BTreeSet::new();
    let mut fresh_connections = 0;
    let started = Instant::now();
    let mut pods = 0;
    while started.elapsed() < Duration::from_secs(50) {
        create_pod(&fx.client, &fx.ns, &format!("p-{pods}"), &fx.node, "sa", &[]).await;
        pods += 1;
        if pods % 5 == 0 {
            let c = scm_spire_api::Client::connect_mtls(
                agent.get("SPIRE_SERVER_ADDRESS"),
                source.clone(),
                &server_id,
                Default::default(),
            )
            .unwrap();
            c.list_entries_by_spiffe_id(&scm_spiffe::SpiffeId::parse(&format!("spiffe://{TD}/nothing")).unwrap())
                .await
                .unwrap_or_else(|e| panic!("a new mTLS connection with the current SVID: {e}"));
            fresh_connections += 1;
        }
        serials.insert(source.current().unwrap().serial.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        std::time::SystemTime::now() > first.expires_at,
        "the test outlives its first SVID (the last fresh connections used a rotated one)"
    );
    fx.wait_entries(&format!("an entry for each of the {pods} pods"), |e| e.len() == pods).await;
    let logs = fx.ctl.logs();
    let seen = logged_serials(&logs);
    assert!(serials.len() >= 3 && seen.len() >= 3, "SVIDs rotated (test saw {serials:?}, controller {seen:?})");
    assert!(fresh_connections >= 9);
    let updates = fx.ctl.metric("spire_controller_manager_svid_updates_total", &[]).await;
    assert!(updates >= 3.0, "svid_updates_total {updates}");
    let expiry = fx.ctl.metric("spire_controller_manager_svid_expiry_timestamp_seconds", &[]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(expiry > now && expiry < now + 60.0, "the current SVID's notAfter: {expiry} (now {now})");
    let errors = fx.ctl.metric("spire_controller_manager_spire_rpc_errors_total", &[]).await;
    assert_eq!(errors, 0.0, "failed SPIRE calls:\n{}", fx.ctl.metrics().await);
    let passes = fx.ctl.metric("spire_controller_manager_reconcile_passes_total", &["entry", "ok"]).await;
    assert!(passes >= 20.0, "continuous reconciliation: {passes} passes");
    assert!(!logs.contains("SPIRE API call failed"), "{logs}");
}

/// An SVID whose entry is not admin: the controller says which SVID and what to do.
#[tokio::test]
async fn a_non_admin_svid_is_told_what_to_fix() {
    let spire = Spire::start(&unique("noadmin"), TD);
    let agent = agent_up(&spire, &["--no-admin"]);
    let class = unique("noadmin");
    let ctl = Controller::start(&class, &config(&agent, &class));
    let id = agent.get("SPIRE_CONTROLLER_ID").to_owned();
    let logs = eventually(WAIT, "the not-admin error", || async {
        let logs = ctl.logs();
        logs.contains("this controller is not admin in SPIRE").then_some(logs)
    })
    .await;
    let line = logs.lines().find(|l| l.contains("this controller is not admin in SPIRE")).unwrap();
    assert!(line.contains(&id) && line.contains("admin: true") && line.contains("entry create -admin"), "{line}");
    assert!(line.contains("PermissionDenied"), "{line}");
}
