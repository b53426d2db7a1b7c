//! The peers are real: CRDs install into the apiserver, a ClusterSPIFFEID round-trips
//! (schema pruning visible), and the project's SPIRE client agrees with `spire-server`.

use kube::api::{Api, PostParams};
use scm_api::ClusterSPIFFEID;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn crds_install_and_objects_round_trip() {
    let client = kube().await;
    let name = unique("smoke");
    let api: Api<kube::api::DynamicObject> = cr_api(&client, "ClusterSPIFFEID", "clusterspiffeids");
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
        "metadata": {"name": name},
        "spec": {
            "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
            "podSelector": {"matchLabels": {"app": "web"}},
            "ttl": "1h", "federatesWith": ["partner.example"], "fallback": true, "hint": "web",
            "notAField": "pruned by the structural schema"
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.expect("create ClusterSPIFFEID");
    let typed: Api<ClusterSPIFFEID> = Api::all(client.clone());
    let got = typed.get(&name).await.expect("get typed");
    assert_eq!(got.spec.ttl.as_deref(), Some("1h"));
    assert_eq!(got.spec.fallback, Some(true));
    let raw = api.get(&name).await.unwrap();
    assert!(raw.data["spec"].get("notAField").is_none(), "unknown fields are pruned: {}", raw.data);
    // Printer columns and short names are served.
    let out = kubectl(&["get", "cspiffeid", &name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PODS") && text.contains(&name), "{text}");
    typed.delete(&name, &Default::default()).await.unwrap();

    // Required fields are enforced by the schema.
    let (ok, out) = kubectl_apply(&format!(
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: {name}-bad\nspec:\n  spiffeID: spiffe://example.org/x\n"
    ));
    assert!(!ok && out.contains("parentID"), "{out}");
    let (ok, out) = kubectl_apply(&format!(
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterFederatedTrustDomain\nmetadata:\n  name: {name}-bad\nspec:\n  trustDomain: partner.example\n  bundleEndpointURL: https://127.0.0.1:8443\n  bundleEndpointProfile:\n    type: https_nope\n"
    ));
    assert!(!ok && out.contains("https_nope"), "{out}");
}

#[tokio::test]
async fn spire_client_agrees_with_spire_server_cli() {
    let spire = Spire::start(&unique("smoke-spire"), "example.org");
    let client = spire.client().await;
    let id = scm_spiffe::SpiffeId::parse("spiffe://example.org/smoke/workload").unwrap();
    let parent = scm_spiffe::SpiffeId::parse("spiffe://example.org/spire/agent/join_token/abc").unwrap();
    let mut entry = scm_spiffe::Entry::new(id.clone(), parent, vec![scm_spiffe::Selector::new("unix", "uid:1000")]);
    entry.dns_names = vec!["smoke.example.org".into()];
    let created = client.create_entries(&[entry]).await.expect("create rpc");
    let created = created.into_iter().next().unwrap().expect("created");
    assert!(!created.id.is_empty());
    let shown = spire.entry_show();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["id"].as_str(), Some(created.id.as_str()));
    assert_eq!(show_id(&shown[0]["spiffe_id"]), id.to_string());
    let listed = client.list_entries().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].dns_names, vec!["smoke.example.org".to_string()]);
    let deleted = client.delete_entries(std::slice::from_ref(&created.id)).await.expect("delete rpc");
    assert!(deleted[0].is_ok());
    assert!(spire.entry_show().is_empty());
}
