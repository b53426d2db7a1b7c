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

/// Two ClusterFederatedTrustDomains of `class`: `<class>-partner`, https_spiffe to the
/// partner's bundle endpoint bootstrapped with its bundle, and `<class>-web`, https_web to
/// an address where nothing listens. Returns their names.
async fn apply_partner_and_web(client: &kube::Client, class: &str, partner: &Spire) -> (String, String) {
    let partner_url = partner.env.get("SPIRE_BUNDLE_ENDPOINT_URL").to_owned();
    let partner_bundle = partner.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let (a, web) = (format!("{class}-partner"), format!("{class}-web"));
    apply_json(
        client,
        "clusterfederatedtrustdomains",
        cftd(&a, class, json!({"trustDomain": "partner.example", "bundleEndpointURL": partner_url,
            "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": "spiffe://partner.example/spire/server"},
            "trustDomainBundle": partner_bundle})),
    )
    .await;
    apply_json(
        client,
        "clusterfederatedtrustdomains",
        cftd(
            &web,
            class,
            json!({"trustDomain": "web.example", "bundleEndpointURL": "https://127.0.0.1:1/bundle",
            "bundleEndpointProfile": {"type": "https_web"}}),
        ),
    )
    .await;
    (a, web)
}

#[tokio::test]
async fn federated_trust_domains_end_to_end() {
    let client = kube().await;
    let spire = Spire::start(&unique("fed"), "example.org");
    let partner_name = unique("partner");
    let partner = Spire::start_with(&partner_name, "partner.example", &["--bundle-endpoint"]);
    let partner_url = partner.env.get("SPIRE_BUNDLE_ENDPOINT_URL").to_owned();
    let class = unique("fed");
    let mut ctl = Controller::start(&class, &base_config(&spire, &class, ""));
    let sc = spire.client().await;

    // https_spiffe to the partner, bootstrapped with its bundle; and an https_web one.
    let (a, web) = apply_partner_and_web(&client, &class, &partner).await;
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

fn cftd_status(name: &str) -> Value {
    let out = kubectl(&["get", "clusterfederatedtrustdomain", name, "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)["status"].clone()
}

/// "Is federation working?": the status says whether SPIRE holds each trust domain's bundle,
/// its sequence number, authorities and when it changed (also as `kubectl get` columns);
/// after the partner rotates its CA, the refresh annotation makes SPIRE fetch the new bundle
/// at once (gcInterval is an hour here), and a refresh that cannot succeed says why.
#[tokio::test]
async fn bundle_status_and_refresh_on_request() {
    let client = kube().await;
    let spire = Spire::start(&unique("fedst"), "example.org");
    let partner = Spire::start_with(&unique("partner"), "partner.example", &["--bundle-endpoint"]);
    let class = unique("fedst");
    let _ctl = Controller::start(&class, &base_config(&spire, &class, "gcInterval: 1h\n"));
    let (a, web) = apply_partner_and_web(&client, &class, &partner).await;
    let before = eventually(WAIT, "the partner's bundle in the status", || async {
        let s = cftd_status(&a);
        (s["bundle"]["present"] == true).then_some(s["bundle"].clone())
    })
    .await;
    let authorities = before["x509Authorities"].as_i64().unwrap();
    assert!(authorities >= 1 && before["sequenceNumber"].is_i64() && before["lastChanged"].is_string(), "{before}");
    eventually(WAIT, "web.example: no bundle", || async {
        (cftd_status(&web)["bundle"]["present"] == false).then_some(())
    })
    .await;
    let table = String::from_utf8_lossy(&kubectl(&["get", "clusterfederatedtrustdomain", &a]).stdout).into_owned();
    assert!(table.contains("BUNDLE") && table.contains("SEQUENCE") && table.contains("true"), "{table}");

    // The partner prepares a new CA: its bundle endpoint serves one more authority.
    partner.cli_ok(&["localauthority", "x509", "prepare"]);
    let asked = std::time::Instant::now();
    let out = kubectl(&[
        "annotate",
        "clusterfederatedtrustdomain",
        &a,
        "spire.spiffe.io/refresh-bundle=rotation-1",
        "--overwrite",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = eventually(WAIT, "the refresh answered and the new authority seen", || async {
        let s = cftd_status(&a);
        (s["lastRefresh"]["request"] == "rotation-1" && s["bundle"]["x509Authorities"].as_i64() > Some(authorities))
            .then_some(s)
    })
    .await;
    eprintln!("refresh annotation -> new bundle in the status in {} ms", asked.elapsed().as_millis());
    assert_eq!(after["lastRefresh"]["result"], "Refreshed", "{after}");
    assert_ne!(after["bundle"]["digest"], before["digest"], "{after}");
    assert_ne!(after["bundle"]["lastChanged"], Value::Null);
    let held = spire.cli_ok(&["bundle", "list", "-id", "spiffe://partner.example", "-format", "spiffe"]);
    assert!(held.matches("\"x5c\"").count() as i64 > authorities, "SPIRE holds the new authority: {held}");

    // A refresh that cannot succeed (nothing listens there) says why, on the status and in an Event.
    kubectl(&["annotate", "clusterfederatedtrustdomain", &web, "spire.spiffe.io/refresh-bundle=now", "--overwrite"]);
    let failed = eventually(WAIT, "the failed refresh reported", || async {
        let s = cftd_status(&web);
        (s["lastRefresh"]["request"] == "now").then_some(s["lastRefresh"].clone())
    })
    .await;
    assert_eq!(failed["result"], "Failed", "{failed}");
    assert!(failed["message"].as_str().unwrap().contains("web.example"), "{failed}");
    assert!(events_regarding(None, &web).iter().any(|e| e["reason"] == "RefreshFailed"), "a RefreshFailed Event");
}
