//! The whole webhook against REAL peers (kube-apiserver 1.36, etcd, spire-server 1.13.3):
//! the apiserver calls the webhook over TLS with the SPIRE-minted certificate, verified
//! against the `caBundle` the manager wrote.
//!
//! - `CaBundleManager` fills `caBundle` of a validating, a mutating and a pod-observer
//!   configuration (URL-style, `https://localhost:PORT/...`) and repairs it after an edit;
//! - `CertManager` mints for `localhost` (taken from the configurations' URLs);
//! - invalid ClusterSPIFFEID / ClusterStaticEntry / ClusterFederatedTrustDomain are refused
//!   by `kubectl`-equivalent creates with a message naming the field; a valid one passes
//!   and its default (the class-name label) appears;
//! - pod creation and binding reach the pod sink; with the webhook stopped pods are still
//!   created (failurePolicy Ignore).
//!
//! The webhooks are scoped (objectSelector on a per-run label, namespaceSelector on a
//! per-run namespace), so the test can share peers with other tests. Peers: the ones named
//! by `PEERS_ENV` (as under `make test`), else started here with `e2e/peers.sh up` and
//! stopped at the end. Without built peers: loud SKIP, or failure when
//! `SPIRE_TESTS_REQUIRE_PEERS` is set.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use scm_spiffe::TrustDomain;
use scm_spire_api::{Client as SpireClient, ClientOptions};
use scm_testkit::{Peers, eventually, require_peers};
use scm_webhook::cabundle::{BundleSource, ConfigKind, WebhookConfigRef};
use scm_webhook::{
    AdmissionSettings, CaBundleManager, CaBundleParams, CertManager, CertManagerParams, CertResolver, Metrics,
    ObservedPod, Route, Server, ServerConfig, Webhook,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Deletes this run's cluster objects even when the test panics.
struct Cleanup<'a> {
    peers: &'a Peers,
    args: Vec<Vec<String>>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for a in &self.args {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let _ = self.peers.env.kubectl(&a);
        }
    }
}

fn crd_webhook(name: &str, port: u16, route: Route, resource: &str, run: &str, fail: bool) -> Value {
    json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": if fail { "Fail" } else { "Ignore" },
        "timeoutSeconds": 5,
        "clientConfig": {"url": format!("https://localhost:{port}{}", route.path())},
        "objectSelector": {"matchLabels": {"scm-webhook-test": run}},
        "rules": [{"apiGroups": ["spire.spiffe.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"], "resources": [resource], "scope": "Cluster"}]
    })
}

fn api_error(r: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => s.message.clone(),
        other => panic!("expected an apiserver refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_calls_the_webhook_with_the_spire_certificate() {
    let Some(peers) =
        Peers::from_env().or_else(|| require_peers("real_cluster", &["etcd", "spire", "kubernetes"]).then(Peers::up))
    else {
        return;
    };
    let run = format!("r{}", std::process::id());
    let (vwc, mwc, pod_vwc, ns) = (
        format!("scmwh-{run}-validating"),
        format!("scmwh-{run}-mutating"),
        format!("scmwh-{run}-pods"),
        format!("scmwh-{run}"),
    );
    let _cleanup = Cleanup {
        peers: &peers,
        args: vec![
            vec![
                "delete".into(),
                "validatingwebhookconfiguration".into(),
                vwc.clone(),
                pod_vwc.clone(),
                "--ignore-not-found".into(),
            ],
            vec!["delete".into(), "mutatingwebhookconfiguration".into(), mwc.clone(), "--ignore-not-found".into()],
            vec![
                "delete".into(),
                "clusterspiffeids,clusterstaticentries,clusterfederatedtrustdomains".into(),
                "-l".into(),
                format!("scm-webhook-test={run}"),
                "--ignore-not-found".into(),
            ],
            vec!["delete".into(), "namespace".into(), ns.clone(), "--ignore-not-found".into(), "--wait=false".into()],
        ],
    };

    // CRDs (idempotent).
    peers.install_crds();

    let client = peers.env.kube_client().await;
    let spire = Arc::new(
        SpireClient::connect_lazy(format!("unix://{}", peers.env.get("SPIRE_SERVER_SOCKET")), ClientOptions::default())
            .unwrap(),
    );
    spire.wait_ready(Duration::from_secs(30)).await.unwrap();
    let td = TrustDomain::parse(peers.env.get("SPIRE_TRUST_DOMAIN")).unwrap();

    // The webhook, bound first so the configurations can name its port.
    let metrics = Metrics::unregistered().unwrap();
    let (pod_tx, mut pod_rx) = mpsc::unbounded_channel::<ObservedPod>();
    let mut settings = AdmissionSettings::new(td.clone(), "cluster1");
    settings.class_name = "blue".into();
    let webhook = Webhook::new(settings, Arc::new(pod_tx), metrics.clone());
    let resolver = Arc::new(CertResolver::with_metrics(&metrics));
    let server =
        Server::bind(ServerConfig { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() }, resolver.clone())
            .await
            .unwrap();
    let port = server.local_addr().unwrap().port();

    let vwc_api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mwc_api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let pp = PostParams::default();
    let vwc_obj: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": vwc},
        "webhooks": [
            crd_webhook("vclusterspiffeid.kb.io", port, Route::ValidateClusterSPIFFEID, "clusterspiffeids", &run, true),
            crd_webhook("vclusterstaticentry.spire.spiffe.io", port, Route::ValidateClusterStaticEntry, "clusterstaticentries", &run, true),
            crd_webhook("vclusterfederatedtrustdomain.kb.io", port, Route::ValidateClusterFederatedTrustDomain, "clusterfederatedtrustdomains", &run, true),
        ]
    }))
    .unwrap();
    vwc_api.create(&pp, &vwc_obj).await.unwrap();
    let mwc_obj: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": mwc},
        "webhooks": [
            crd_webhook("mclusterspiffeid.spire.spiffe.io", port, Route::MutateClusterSPIFFEID, "clusterspiffeids", &run, false),
            crd_webhook("mclusterstaticentry.spire.spiffe.io", port, Route::MutateClusterStaticEntry, "clusterstaticentries", &run, false),
        ]
    }))
    .unwrap();
    mwc_api.create(&pp, &mwc_obj).await.unwrap();
    let pod_obj: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": pod_vwc},
        "webhooks": [{
            "name": "observe-pods.spire.spiffe.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 2,
            "clientConfig": {"url": format!("https://localhost:{port}{}", Route::ObservePod.path())},
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}]},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods", "pods/binding"], "scope": "Namespaced"}]
        }]
    }))
    .unwrap();
    vwc_api.create(&pp, &pod_obj).await.unwrap();

    // Managers.
    let cancel = CancellationToken::new();
    let mut cab_params = CaBundleParams::new(vwc.clone(), mwc.clone(), pod_vwc.clone());
    cab_params.configs = vec![
        WebhookConfigRef { kind: ConfigKind::Validating, name: vwc.clone(), required: true },
        WebhookConfigRef { kind: ConfigKind::Mutating, name: mwc.clone(), required: false },
        WebhookConfigRef { kind: ConfigKind::Validating, name: pod_vwc.clone(), required: false },
        WebhookConfigRef { kind: ConfigKind::Mutating, name: format!("scmwh-{run}-absent"), required: false },
    ];
    cab_params.refresh_interval = Duration::from_secs(1);
    cab_params.check_interval = Duration::from_secs(1);
    let cab = CaBundleManager::spawn(client.clone(), cab_params, spire.clone(), cancel.clone());
    let certs = CertManager::spawn(
        CertManagerParams::new(td.clone()),
        spire.clone(),
        cab.hosts(),
        resolver.clone(),
        cancel.clone(),
    );
    let serving = tokio::spawn(server.serve(webhook.router(), cancel.clone()));

    assert!(tokio::time::timeout(Duration::from_secs(30), certs.wait_minted()).await.unwrap());
    assert_eq!(
        cab.hosts().borrow().clone(),
        Some(vec!["localhost".to_owned()]),
        "hosts come from the URL clientConfigs"
    );
    assert!(resolver.info().unwrap().dns_names.contains(&"localhost".to_owned()));
    assert!(tokio::time::timeout(Duration::from_secs(30), cab.wait_synced()).await.unwrap());

    let pem = BundleSource::get_bundle(spire.as_ref()).await.unwrap().x509_authorities_pem();
    let vwc_bundles = |o: &ValidatingWebhookConfiguration| -> Vec<Vec<u8>> {
        o.webhooks.iter().flatten().map(|w| w.client_config.ca_bundle.clone().unwrap_or_default().0).collect()
    };
    for name in [&vwc, &pod_vwc] {
        let o = vwc_api.get(name).await.unwrap();
        assert!(vwc_bundles(&o).iter().all(|b| b == pem.as_bytes()), "{name}: caBundle is not SPIRE's bundle");
    }
    let o = mwc_api.get(&mwc).await.unwrap();
    assert!(o.webhooks.iter().flatten().all(|w| w.client_config.ca_bundle.as_ref().unwrap().0 == pem.as_bytes()));

    // The apiserver now calls the webhook. Invalid objects are refused, naming the field.
    let labels = json!({"scm-webhook-test": run});
    let ar = |kind: &str, plural: &str| ApiResource {
        group: "spire.spiffe.io".into(),
        version: "v1alpha1".into(),
        api_version: "spire.spiffe.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let csid_api: Api<DynamicObject> = Api::all_with(client.clone(), &ar("ClusterSPIFFEID", "clusterspiffeids"));
    let cse_api: Api<DynamicObject> = Api::all_with(client.clone(), &ar("ClusterStaticEntry", "clusterstaticentries"));
    let cftd_api: Api<DynamicObject> =
        Api::all_with(client.clone(), &ar("ClusterFederatedTrustDomain", "clusterfederatedtrustdomains"));
    let obj = |kind: &str, name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": kind, "metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap()
    };

    let msg = api_error(
        csid_api
            .create(
                &pp,
                &obj(
                    "ClusterSPIFFEID",
                    &format!("{run}-bad"),
                    json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/{{ .PodMeta.Nmae }}"}),
                ),
            )
            .await,
    );
    eprintln!("real_cluster: {msg}");
    assert!(
        msg.contains("vclusterspiffeid.kb.io")
            && msg.contains("denied the request")
            && msg.contains("spec.spiffeIDTemplate")
            && msg.contains("Nmae"),
        "{msg}"
    );
    let msg = api_error(
        csid_api
            .create(
                &pp,
                &obj(
                    "ClusterSPIFFEID",
                    &format!("{run}-bad"),
                    json!({"spiffeIDTemplate": "spiffe://other.org/{{ .PodMeta.Name }}"}),
                ),
            )
            .await,
    );
    assert!(msg.contains("spec.spiffeIDTemplate") && msg.contains("trust domain"), "{msg}");
    let msg = api_error(
        cse_api
            .create(&pp, &obj("ClusterStaticEntry", &format!("{run}-bad"), json!({"spiffeID": "spiffe://example.org/a", "parentID": "spiffe://example.org/b", "selectors": ["nocolon"]})))
            .await,
    );
    eprintln!("real_cluster: {msg}");
    assert!(msg.contains("spec.selectors[0]"), "{msg}");
    let msg = api_error(
        cftd_api
            .create(&pp, &obj("ClusterFederatedTrustDomain", &format!("{run}-bad"), json!({"trustDomain": "other.org", "bundleEndpointURL": "http://other.org", "bundleEndpointProfile": {"type": "https_web"}})))
            .await,
    );
    eprintln!("real_cluster: {msg}");
    assert!(msg.contains("spec.bundleEndpointURL"), "{msg}");

    // A valid one passes, and its default appears.
    let created = csid_api
        .create(&pp, &obj("ClusterSPIFFEID", &format!("{run}-good"), json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}", "className": "blue"})))
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.as_ref().unwrap().get("spire.spiffe.io/class-name").map(String::as_str),
        Some("blue"),
        "{created:?}"
    );

    // Someone edits caBundle: repaired.
    let garbage = base64::engine::general_purpose::STANDARD.encode("garbage");
    vwc_api
        .patch(
            &vwc,
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"webhooks": [{"name": "vclusterspiffeid.kb.io", "clientConfig": {"caBundle": garbage}}]}),
            ),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "caBundle repaired", || {
        let api = vwc_api.clone();
        let (vwc, pem) = (vwc.clone(), pem.clone());
        async move {
            api.get(&vwc)
                .await
                .is_ok_and(|o| vwc_bundles(&o).iter().all(|b| b == pem.as_bytes()))
                .then_some(())
        }
    })
    .await;

    // Pods: creation and binding are observed.
    let ns_api: Api<Namespace> = Api::all(client.clone());
    ns_api.create(&pp, &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "web-", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "example.org/img"}], "serviceAccountName": "default"}
    }))
    .unwrap();
    let created = pods.create(&pp, &pod).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), pod_rx.recv()).await.unwrap().unwrap();
    let ObservedPod::Created(seen) = ev else { panic!("{ev:?}") };
    assert_eq!(seen.metadata.name.as_deref(), Some(name.as_str()), "validating webhooks see the generated name");
    assert_eq!(seen.metadata.uid, created.metadata.uid, "and the UID");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
    let _: Value = pods.create_subresource("binding", &name, &pp, &binding).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), pod_rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev, ObservedPod::Bound { namespace: ns.clone(), name: name.clone(), node_name: "node-a".into() });

    // Stop the webhook: pods are still created (failurePolicy Ignore, 2 s timeout).
    cancel.cancel();
    serving.await.unwrap().unwrap();
    let started = std::time::Instant::now();
    pods.create(&pp, &pod).await.expect("pod creation must not depend on the webhook");
    assert!(started.elapsed() < Duration::from_secs(5), "pod creation waited {:?}", started.elapsed());
    // ... while CRD writes fail closed (failurePolicy Fail), as upstream's shipped configuration.
    let msg = api_error(
        csid_api
            .create(
                &pp,
                &obj("ClusterSPIFFEID", &format!("{run}-down"), json!({"spiffeIDTemplate": "spiffe://example.org/x"})),
            )
            .await,
    );
    assert!(msg.contains("failed calling webhook"), "{msg}");

    let _ = csid_api.delete(&format!("{run}-good"), &DeleteParams::default()).await;
    cab.task.await.unwrap().unwrap();
    certs.task.await.unwrap();
}
