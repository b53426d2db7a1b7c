//! Federation end to end through the controller binary: ClusterFederatedTrustDomains in
//! the real apiserver → relationships in a real spire-server, with a second real
//! spire-server (partner.example) serving its bundle endpoint on loopback.

use std::time::Duration;

use serde_json::{Value, json};

use crate::entries::base_config;
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(45);

fn federation_list(spire: &Spire) -> String {
    let out = spire.cli(&["federation", "list"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cftd(name: &str, class: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["className"] = json!(class);
    json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterFederatedTrustDomain", "metadata": {"name": name}, "spec": spec})
}

async fn ready_condition(name: &str) -> Value {
    let out = kubectl(&["get", "clusterfederatedtrustdomain", name, "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["status"]["conditions"][0].clone()
}

#[tokio::test]
async fn federated_trust_domains_end_to_end() {
    let client = kube().await;
    let spire = Spire::start(&unique("fed"), "example.org");
    let partner_name = unique("partner");
    let partner = Spire::start_with(&partner_name, "partner.example", &["--bundle-endpoint"]);
    let partner_url = partner.env.get("SPIRE_BUNDLE_ENDPOINT_URL").to_owned();
    let partner_bundle =
        String::from_utf8_lossy(&partner.cli(&["bundle", "show", "-format", "spiffe"]).stdout).into_owned();
    let class = unique("fed");
    let mut ctl = Controller::start(&class, &base_config(&spire, &class, ""));
    let sc = spire.client().await;

    // https_spiffe to the partner, bootstrapped with its bundle; and an https_web one.
    let a = format!("{class}-partner");
    apply_json(
        &client,
        "clusterfederatedtrustdomains",
        cftd(&a, &class, json!({"trustDomain": "partner.example", "bundleEndpointURL": partner_url,
            "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": "spiffe://partner.example/spire/server"},
            "trustDomainBundle": partner_bundle})),
    )
    .await;
    let web = format!("{class}-web");
    apply_json(
        &client,
        "clusterfederatedtrustdomains",
        cftd(
            &web,
            &class,
            json!({"trustDomain": "web.example", "bundleEndpointURL": "https://127.0.0.1:1/bundle",
            "bundleEndpointProfile": {"type": "https_web"}}),
        ),
    )
    .await;
    let rels = eventually(WAIT, "two relationships", || async {
        let r = sc.list_federation_relationships().await.ok()?;
        (r.len() == 2).then_some(r)
    })
    .await;
    assert!(rels.iter().any(|r| r.trust_domain.name() == "partner.example" && r.bundle_endpoint_url == partner_url));
    let listed = federation_list(&spire);
    assert!(listed.contains("partner.example") && listed.contains("web.example"), "{listed}");
    // The first server holds the partner's bundle (from the CR, then refreshed from its endpoint).
    let out = spire.cli(&["bundle", "list", "-format", "spiffe"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("partner.example"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let refreshed = spire.cli(&["federation", "refresh", "-id", "partner.example"]);
    assert!(refreshed.status.success(), "bundle endpoint reachable: {}", String::from_utf8_lossy(&refreshed.stderr));
    assert_eq!(ready_condition(&a).await["status"], json!("True"));

    // Update: the URL of the web one.
    apply_json(
        &client,
        "clusterfederatedtrustdomains",
        cftd(
            &web,
            &class,
            json!({"trustDomain": "web.example", "bundleEndpointURL": "https://127.0.0.1:2/bundle",
            "bundleEndpointProfile": {"type": "https_web"}}),
        ),
    )
    .await;
    eventually(WAIT, "url updated", || async {
        let r = sc.list_federation_relationships().await.ok()?;
        r.iter().any(|r| r.bundle_endpoint_url == "https://127.0.0.1:2/bundle").then_some(())
    })
    .await;

    // A newer CR for the same trust domain is a conflict: oldest wins, reported.
    // (creationTimestamp has one-second precision.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dup = format!("{class}-dup");
    apply_json(
        &client,
        "clusterfederatedtrustdomains",
        cftd(
            &dup,
            &class,
            json!({"trustDomain": "web.example", "bundleEndpointURL": "https://127.0.0.1:3/bundle",
            "bundleEndpointProfile": {"type": "https_web"}}),
        ),
    )
    .await;
    let cond = eventually(WAIT, "conflict reported", || async {
        let c = ready_condition(&dup).await;
        (c["reason"] == json!("Conflict")).then_some(c)
    })
    .await;
    assert!(cond["message"].as_str().unwrap().contains(&web), "{cond}");
    // An invalid CR (no webhook in this test) is ignored and reported; its relationship is kept.
    apply_json(
        &client,
        "clusterfederatedtrustdomains",
        cftd(
            &web,
            &class,
            json!({"trustDomain": "web.example", "bundleEndpointURL": "http://127.0.0.1:2/bundle",
            "bundleEndpointProfile": {"type": "https_web"}}),
        ),
    )
    .await;
    let cond = eventually(WAIT, "invalid reported", || async {
        let c = ready_condition(&web).await;
        (c["reason"] == json!("Invalid")).then_some(c)
    })
    .await;
    assert!(cond["message"].as_str().unwrap().contains("spec.bundleEndpointURL"), "{cond}");
    // The next-oldest valid CR for that trust domain takes over.
    eventually(WAIT, "dup takes over", || async {
        let r = sc.list_federation_relationships().await.ok()?;
        r.iter()
            .any(|r| r.trust_domain.name() == "web.example" && r.bundle_endpoint_url == "https://127.0.0.1:3/bundle")
            .then_some(())
    })
    .await;
    // With no valid CR left for it, the relationship named by the invalid CR is kept.
    delete_cr(&client, "ClusterFederatedTrustDomain", "clusterfederatedtrustdomains", &dup).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = sc.list_federation_relationships().await.unwrap();
    assert!(
        r.iter().any(|r| r.trust_domain.name() == "web.example"),
        "kept: {:?}",
        r.iter().map(|r| r.trust_domain.name()).collect::<Vec<_>>()
    );
    let cond = ready_condition(&web).await;
    assert!(cond["message"].as_str().unwrap().contains("kept"), "{cond}");

    // Restart: zero writes.
    ctl.restart();
    eventually(WAIT, "a federation pass after restart", || async {
        (ctl.metric("spire_controller_manager_reconcile_passes_total", &["federation", "ok"]).await >= 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(ctl.metric("spire_controller_manager_federation_writes_total", &[]).await, 0.0, "{}", ctl.logs());

    // Deleting the CRs deletes the relationships (the invalid one first becomes deletable).
    delete_cr(&client, "ClusterFederatedTrustDomain", "clusterfederatedtrustdomains", &a).await;
    delete_cr(&client, "ClusterFederatedTrustDomain", "clusterfederatedtrustdomains", &web).await;
    delete_cr(&client, "ClusterFederatedTrustDomain", "clusterfederatedtrustdomains", &dup).await;
    eventually(WAIT, "relationships deleted", || async {
        sc.list_federation_relationships().await.ok()?.is_empty().then_some(())
    })
    .await;
    assert!(!federation_list(&spire).contains("partner.example"));
}
