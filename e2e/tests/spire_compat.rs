//! What SPIRE holds beyond the controller's fields survives the controller's updates:
//! updates carry an input mask of the managed fields (SPIRE's BatchUpdateEntry without
//! one replaces every field, e.g. an expiry set by an operator).

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
