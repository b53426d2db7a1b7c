//! What SPIRE holds beyond the controller's fields survives the controller's updates:
//! updates carry an input mask of the managed fields (SPIRE's BatchUpdateEntry without
//! one replaces every field, e.g. an expiry set by an operator).

use std::time::Duration;

use scm_testkit::eventually;
use serde_json::json;

use crate::entries::Fixture;
use crate::harness::*;

#[tokio::test]
async fn updates_leave_fields_the_controller_does_not_manage() {
    let fx = Fixture::new("masked", "").await;
    fx.apply_cspiffeid(
        "masked",
        json!({"spiffeIDTemplate": "spiffe://example.org/masked/{{ .PodMeta.Name }}", "dnsNameTemplates": ["first"]}),
    )
    .await;
    let pod = create_pod(&fx.client, &fx.ns, "p0", &fx.node, "sa", &[]).await;
    let uid = pod.metadata.uid.clone().unwrap();
    let entries = fx.wait_entries("the entry", |e| e.iter().any(|e| e.dns_names == ["first"])).await;
    let entry = entries.iter().find(|e| e.dns_names == ["first"]).unwrap();

    // An operator sets an expiry (a field the controller does not manage).
    let expiry = "4102444800"; // 2100-01-01
    let out = fx.spire.cli(&[
        "entry",
        "update",
        "-entryID",
        &entry.id,
        "-spiffeID",
        &entry.spiffe_id.to_string(),
        "-parentID",
        &entry.parent_id.to_string(),
        "-selector",
        &format!("k8s:pod-uid:{uid}"),
        "-dns",
        "first",
        "-entryExpiry",
        expiry,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expiry_of = |id: &str| {
        let v = fx.spire.cli_json(&["entry", "show", "-entryID", id]);
        v["entries"][0]["expires_at"].as_i64().or_else(|| v["entries"][0]["expires_at"].as_str()?.parse().ok())
    };
    assert_eq!(expiry_of(&entry.id), Some(4102444800));

    // The controller updates the entry (a new DNS name): the expiry stays.
    let updates_before = fx.ctl.metric("spire_controller_manager_entry_writes_total", &["update", "ok"]).await;
    fx.apply_cspiffeid(
        "masked",
        json!({"spiffeIDTemplate": "spiffe://example.org/masked/{{ .PodMeta.Name }}", "dnsNameTemplates": ["second"]}),
    )
    .await;
    fx.wait_entries("the updated entry", |e| e.iter().any(|e| e.id == entry.id && e.dns_names == ["second"])).await;
    assert!(fx.ctl.metric("spire_controller_manager_entry_writes_total", &["update", "ok"]).await > updates_before);
    assert_eq!(expiry_of(&entry.id), Some(4102444800), "the expiry survived the controller's update");
}

fn spire_before_1_15() -> bool {
    std::env::var("SPIRE_VERSION").is_ok_and(|v| v.starts_with("v1.13") || v.starts_with("v1.14"))
}

/// A `Degraded` condition of a status, as (reason, message).
fn degraded(status: &serde_json::Value) -> Option<(String, String)> {
    let c = status["conditions"].as_array()?.iter().find(|c| c["type"] == "Degraded")?.clone();
    Some((c["reason"].as_str()?.to_owned(), c["message"].as_str()?.to_owned()))
}

/// The notes of the Warning Events about object `name` with `reason`.
fn event_notes(name: &str, reason: &str) -> Vec<String> {
    events_regarding(None, name)
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter_map(|e| e["note"].as_str().map(str::to_owned))
        .collect()
}

/// Upstream writes no entry at all when one federatesWith trust domain has no bundle
/// (SPIRE refuses it). Here the entry federates with the trust domains SPIRE holds, the
/// ClusterSPIFFEID says which are missing, and the bundle's arrival completes the entry
/// without a cluster change and long before gcInterval (1 h here).
#[tokio::test]
async fn a_trust_domain_without_a_bundle_costs_only_itself() {
    let fx = Fixture::new("fedmiss", "").await;
    let bundle = fx.spire.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let set_bundle = |td: &str| {
        let file = std::env::temp_dir().join(unique("bundle"));
        std::fs::write(&file, &bundle).unwrap();
        let out = fx.spire.cli(&[
            "bundle",
            "set",
            "-format",
            "spiffe",
            "-id",
            &format!("spiffe://{td}"),
            "-path",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "bundle set: {}", String::from_utf8_lossy(&out.stderr));
    };
    set_bundle("present.example");
    let name = unique("fedmiss");
    fx.apply_cspiffeid(
        &name,
        json!({"spiffeIDTemplate": "spiffe://example.org/fed/{{ .PodMeta.Name }}",
            "federatesWith": ["present.example", "later.example"]}),
    )
    .await;
    create_pod(&fx.client, &fx.ns, "p0", &fx.node, "sa", &[]).await;
    create_pod(&fx.client, &fx.ns, "p1", &fx.node, "sa", &[]).await;
    let federates = |e: &scm_spiffe::Entry| {
        let mut v: Vec<String> = e.federates_with.iter().map(|t| t.to_string()).collect();
        v.sort();
        v
    };
    fx.wait_entries("both pods' entries, federating with the trust domain that has a bundle", |e| {
        e.len() == 2 && e.iter().all(|e| federates(e) == ["present.example"])
    })
    .await;
    let status = eventually(Duration::from_secs(30), "the Degraded condition", || async {
        degraded(&fx.status("clusterspiffeids", &name).await)
    })
    .await;
    assert_eq!(status.0, "BundleMissing");
    assert!(status.1.contains("later.example") && !status.1.contains("present.example"), "{}", status.1);
    let notes = eventually(Duration::from_secs(30), "a BundleMissing Event", || async {
        let n = event_notes(&name, "BundleMissing");
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(notes[0].contains("later.example"), "{notes:?}");

    // The bundle arrives; nothing changes in the cluster.
    let arrived = std::time::Instant::now();
    set_bundle("later.example");
    fx.wait_entries("the entries completed", |e| {
        e.len() == 2 && e.iter().all(|e| federates(e) == ["later.example", "present.example"])
    })
    .await;
    let took = arrived.elapsed();
    eventually(Duration::from_secs(30), "the Degraded condition cleared", || async {
        degraded(&fx.status("clusterspiffeids", &name).await).is_none().then_some(())
    })
    .await;
    eprintln!("bundle set -> entries completed in {} ms", took.as_millis());
}

/// SPIRE 1.15's entry attributes: written when declared (and only then) on 1.15; on an
/// older server the probe finds them unsupported, the webhook refuses them naming the field
/// and what is needed, and objects that carry them anyway (not routed to the webhook) get
/// their entries without them and a Degraded condition.
#[tokio::test]
async fn spire_1_15_entry_attributes() {
    let client = kube().await;
    let name = unique("attrs");
    let spire = Spire::start(&name, "example.org");
    let ns = unique("attrs");
    create_namespace(&client, &ns, &[]).await;
    let node = create_node(&client, &unique("attrs-node")).await;
    let node_name = node.metadata.name.clone().unwrap();
    let (ctl, _port, _configs) = crate::hostile::webhook_controller(&name, &ns, &spire, "").await;
    let csid = |cr: &str, labelled: bool, extra: serde_json::Value| {
        let mut spec = json!({"className": name, "spiffeIDTemplate": format!("spiffe://example.org/{cr}/{{{{ .PodMeta.Name }}}}"),
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let mut meta = json!({"name": format!("{name}-{cr}")});
        if labelled {
            meta["labels"] = json!({"e2e-hostile": name});
        }
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": meta, "spec": spec})
    };
    let attrs = json!({"jwtSVIDIncludeJTI": true, "disableX509SVIDPrefetch": true});
    // Not routed to the webhook: the reconciler sees it whatever the server.
    apply_json(&client, "clusterspiffeids", csid("declared", false, attrs.clone())).await;
    apply_json(&client, "clusterspiffeids", csid("plain", false, json!({"dnsNameTemplates": ["first"]}))).await;
    create_pod(&client, &ns, "p0", &node_name, "sa", &[]).await;
    let sc = spire.client().await;
    let entries = || async {
        let mut v = sc.list_entries().await.unwrap();
        v.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        v
    };
    let got = eventually(Duration::from_secs(30), "both entries", || async {
        let e = entries().await;
        (e.len() == 2).then_some(e)
    })
    .await;
    let declared = got.iter().find(|e| e.spiffe_id.to_string().contains("/declared/")).unwrap();
    let plain = got.iter().find(|e| e.spiffe_id.to_string().contains("/plain/")).unwrap().clone();

    // Through the apiserver and the webhook (labelled objects are routed to it).
    let (admitted, out) = kubectl_apply(&csid("routed", true, json!({"jwtSVIDIncludeJTI": true})).to_string());
    if spire_before_1_15() {
        assert_eq!(declared.additional_attributes.unwrap_or_default(), Default::default(), "not stored by the server");
        assert!(!admitted, "refused by the webhook: {out}");
        assert!(out.contains("spec.jwtSVIDIncludeJTI") && out.contains("SPIRE Server 1.15"), "{out}");
        let status = eventually(Duration::from_secs(30), "the Degraded condition", || async {
            let out = kubectl(&["get", "clusterspiffeids", &format!("{name}-declared"), "-o", "json"]);
            degraded(&serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?["status"])
        })
        .await;
        assert_eq!(status.0, "FieldUnsupported", "{status:?}");
        return;
    }
    let a = declared.additional_attributes.expect("attributes stored");
    assert!(a.jwt_svid_include_jti && a.disable_x509_svid_prefetch, "{a:?}");
    assert!(admitted, "a 1.15 server stores them: {out}");
    assert!(plain.additional_attributes.unwrap_or_default() == Default::default());

    // Another tool sets an attribute on an entry whose object does not declare any: the
    // controller's next update of that entry leaves it alone.
    let uid = plain.selectors.iter().find(|s| s.value.starts_with("pod-uid:")).unwrap().value.clone();
    let out = spire.cli(&[
        "entry",
        "update",
        "-entryID",
        &plain.id,
        "-spiffeID",
        &plain.spiffe_id.to_string(),
        "-parentID",
        &plain.parent_id.to_string(),
        "-selector",
        &format!("k8s:{uid}"),
        "-dns",
        "first",
        "-jwtSVIDIncludeJTI",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let updates = ctl.metric("spire_controller_manager_entry_writes_total", &["update", "ok"]).await;
    apply_json(&client, "clusterspiffeids", csid("plain", false, json!({"dnsNameTemplates": ["second"]}))).await;
    let after = eventually(Duration::from_secs(30), "the controller's update", || async {
        entries().await.into_iter().find(|e| e.id == plain.id && e.dns_names == ["second"])
    })
    .await;
    assert!(ctl.metric("spire_controller_manager_entry_writes_total", &["update", "ok"]).await > updates);
    assert!(after.additional_attributes.is_some_and(|a| a.jwt_svid_include_jti), "survived: {after:?}");
    assert!(
        degraded(
            &serde_json::from_slice::<serde_json::Value>(
                &kubectl(&["get", "clusterspiffeids", &format!("{name}-declared"), "-o", "json"]).stdout
            )
            .unwrap()["status"]
        )
        .is_none()
    );
    let _ = kubectl(&["delete", "clusterspiffeid", &format!("{name}-routed"), "--ignore-not-found"]);
}
