//! In-process admission tests: the router is called with `oneshot`, no sockets.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine as _;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use scm_spiffe::TrustDomain;
use scm_webhook::{AdmissionSettings, Metrics, ObservedPod, PodSink, Route, Webhook};
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Default)]
struct Recorder(Mutex<Vec<ObservedPod>>);

impl PodSink for Recorder {
    fn observed(&self, ev: ObservedPod) {
        self.0.lock().unwrap().push(ev);
    }
}

fn settings() -> AdmissionSettings {
    let mut s = AdmissionSettings::new(TrustDomain::parse("example.org").unwrap(), "cluster1");
    s.cluster_domain = "cluster.local".into();
    s
}

fn webhook_with(settings: AdmissionSettings) -> (Webhook, Arc<Recorder>, Metrics) {
    let rec = Arc::new(Recorder::default());
    let metrics = Metrics::unregistered().unwrap();
    (Webhook::new(settings, rec.clone(), metrics.clone()), rec, metrics)
}

fn webhook() -> Webhook {
    webhook_with(settings()).0
}

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn crd_review(kind: &str, resource: &str, op: &str, name: &str, object: Option<Value>, old: Option<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "spire.spiffe.io", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "spire.spiffe.io", "version": "v1alpha1", "resource": resource},
            "name": name,
            "operation": op,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

fn csid(name: &str, spec: Value) -> Value {
    crd_review("ClusterSPIFFEID", "clusterspiffeids", "CREATE", name, Some(object("ClusterSPIFFEID", name, spec)), None)
}

fn cse(name: &str, spec: Value) -> Value {
    crd_review(
        "ClusterStaticEntry",
        "clusterstaticentries",
        "CREATE",
        name,
        Some(object("ClusterStaticEntry", name, spec)),
        None,
    )
}

fn cftd(name: &str, spec: Value) -> Value {
    crd_review(
        "ClusterFederatedTrustDomain",
        "clusterfederatedtrustdomains",
        "CREATE",
        name,
        Some(object("ClusterFederatedTrustDomain", name, spec)),
        None,
    )
}

async fn call_raw(wh: &Webhook, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = Request::post(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = wh.router().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (status, v)
}

/// POSTs a review and returns `.response`, checking the HTTP status is 200 and the uid echoed.
async fn call(wh: &Webhook, route: Route, review: Value) -> Value {
    let (status, body) =
        call_raw(wh, route.path(), Some("application/json"), serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{body}");
    assert_eq!(body["kind"], "AdmissionReview", "{body}");
    let res = body["response"].clone();
    assert_eq!(res["uid"], UID, "{body}");
    res
}

fn assert_allowed(res: &Value) {
    assert_eq!(res["allowed"], true, "{res}");
}

/// Denied with 403/Forbidden and a message naming the object and the field.
fn assert_forbidden(res: &Value, kind: &str, name: &str, field: &str) -> String {
    assert_eq!(res["allowed"], false, "{res}");
    assert_eq!(res["status"]["code"], 403, "{res}");
    assert_eq!(res["status"]["reason"], "Forbidden", "{res}");
    let msg = res["status"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains(&format!("{kind} \"{name}\"")), "message does not name the object: {msg}");
    assert!(msg.contains(&format!("{field}: ")), "message does not name {field}: {msg}");
    msg
}

fn warnings(res: &Value) -> Vec<String> {
    res["warnings"].as_array().map(|a| a.iter().map(|w| w.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

fn patch_of(res: &Value) -> Option<Value> {
    let p = res["patch"].as_str()?;
    assert_eq!(res["patchType"], "JSONPatch", "{res}");
    Some(serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(p).unwrap()).unwrap())
}

const GOOD_TEMPLATE: &str =
    "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}";

// ------------------------------------------------------------------ ClusterSPIFFEID

#[tokio::test]
async fn cluster_spiffe_id_valid_is_allowed_without_warnings() {
    let wh = webhook();
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid(
            "web",
            json!({
                "spiffeIDTemplate": GOOD_TEMPLATE,
                "podSelector": {"matchLabels": {"app": "web"}},
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
                "federatesWith": ["other.org"],
                "ttl": "1h",
                "jwtTtl": "5m",
            }),
        ),
    )
    .await;
    assert_allowed(&res);
    assert!(warnings(&res).is_empty(), "{res}");
    assert!(res.get("patch").is_none(), "{res}");
}

#[tokio::test]
async fn cluster_spiffe_id_invalid_fields_are_denied_naming_the_field() {
    let wh = webhook();
    let cases = [
        (json!({"spiffeIDTemplate": ""}), "spec.spiffeIDTemplate"),
        (json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/{{ nofunc . }}"}), "spec.spiffeIDTemplate"),
        (json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain"}), "spec.spiffeIDTemplate"),
        (json!({"spiffeIDTemplate": GOOD_TEMPLATE, "federatesWith": ["ok.org", "Bad.Org"]}), "spec.federatesWith[1]"),
        (
            json!({"spiffeIDTemplate": GOOD_TEMPLATE, "podSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}),
            "spec.podSelector",
        ),
        (
            json!({"spiffeIDTemplate": GOOD_TEMPLATE, "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
            "spec.namespaceSelector",
        ),
        (
            json!({"spiffeIDTemplate": GOOD_TEMPLATE, "dnsNameTemplates": ["ok", "{{ .PodMeta.Name"]}),
            "spec.dnsNameTemplates[1]",
        ),
        (
            json!({"spiffeIDTemplate": GOOD_TEMPLATE, "workloadSelectorTemplates": ["{{ nofunc }}"]}),
            "spec.workloadSelectorTemplates[0]",
        ),
        (json!({"spiffeIDTemplate": GOOD_TEMPLATE, "ttl": "one hour"}), "spec.ttl"),
        (json!({"spiffeIDTemplate": GOOD_TEMPLATE, "jwtTtl": "-5m"}), "spec.jwtTtl"),
    ];
    for (spec, field) in cases {
        let res = call(&wh, Route::ValidateClusterSPIFFEID, csid("bad", spec.clone())).await;
        assert_forbidden(&res, "ClusterSPIFFEID", "bad", field);
    }
}

#[tokio::test]
async fn unknown_function_message_carries_the_template_error() {
    let wh = webhook();
    let res =
        call(&wh, Route::ValidateClusterSPIFFEID, csid("nf", json!({"spiffeIDTemplate": "spiffe://x/{{ nofunc . }}"})))
            .await;
    let msg = assert_forbidden(&res, "ClusterSPIFFEID", "nf", "spec.spiffeIDTemplate");
    assert!(msg.contains("\"nofunc\""), "{msg}");
    assert!(msg.contains("spiffeIDTemplate:1"), "{msg}");
    eprintln!("denial message: {msg}");
}

#[tokio::test]
async fn cluster_spiffe_id_warnings() {
    let mut s = settings();
    s.class_name = "blue".into();
    let (wh, _, _) = webhook_with(s);
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("w", json!({"spiffeIDTemplate": GOOD_TEMPLATE, "ttl": "30s", "className": "green"})),
    )
    .await;
    assert_allowed(&res);
    let w = warnings(&res).join("\n");
    assert!(w.contains("spec.ttl"), "{w}");
    assert!(w.contains("\"green\"") && w.contains("\"blue\""), "{w}");

    // Classless object, install with a class and watchClassless=false: ignored ⇒ warned.
    let res = call(&wh, Route::ValidateClusterSPIFFEID, csid("w", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).await;
    assert_allowed(&res);
    assert!(warnings(&res).join("\n").contains("spec.className is empty"), "{res}");

    // This install's class: no warning.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("w", json!({"spiffeIDTemplate": GOOD_TEMPLATE, "className": "blue"})),
    )
    .await;
    assert_allowed(&res);
    assert!(warnings(&res).is_empty(), "{res}");
}

#[tokio::test]
async fn cluster_spiffe_id_templates_are_rendered_against_a_synthetic_pod() {
    let wh = webhook();
    // Unknown field.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("r", json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/{{ .PodMeta.Nmae }}"})),
    )
    .await;
    assert_forbidden(&res, "ClusterSPIFFEID", "r", "spec.spiffeIDTemplate");
    // Outside the trust domain.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("r", json!({"spiffeIDTemplate": "spiffe://other.org/ns/{{ .PodMeta.Namespace }}"})),
    )
    .await;
    let msg = assert_forbidden(&res, "ClusterSPIFFEID", "r", "spec.spiffeIDTemplate");
    assert!(msg.contains("example.org"), "{msg}");
    // Not a SPIFFE ID at all.
    let res =
        call(&wh, Route::ValidateClusterSPIFFEID, csid("r", json!({"spiffeIDTemplate": "{{ .PodMeta.Name }}"}))).await;
    assert_forbidden(&res, "ClusterSPIFFEID", "r", "spec.spiffeIDTemplate");
    // Selector not type:value.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("r", json!({"spiffeIDTemplate": GOOD_TEMPLATE, "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace }}", "novalue"]})),
    )
    .await;
    assert_forbidden(&res, "ClusterSPIFFEID", "r", "spec.workloadSelectorTemplates[1]");
    // DNS name that is not one: warning only.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("r", json!({"spiffeIDTemplate": GOOD_TEMPLATE, "dnsNameTemplates": ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc", "not a dns name"]})),
    )
    .await;
    assert_allowed(&res);
    let w = warnings(&res).join("\n");
    assert!(w.contains("spec.dnsNameTemplates[1]") && !w.contains("spec.dnsNameTemplates[0]"), "{w}");
    // Label-dependent templates: the value is unknowable for a synthetic pod ⇒ allowed
    // (with a warning when the synthetic pod does not render to a valid ID).
    for t in [
        "spiffe://{{ .TrustDomain }}/app/{{ index .PodMeta.Labels \"app\" }}",
        "spiffe://{{ .TrustDomain }}/team/{{ index .PodMeta.Labels \"no-such-label\" }}",
        "spiffe://{{ .TrustDomain }}/team/{{ .PodMeta.Labels.team }}",
        "spiffe://{{ .TrustDomain }}/owner/{{ (index .PodMeta.OwnerReferences 3).Name }}",
    ] {
        let res = call(&wh, Route::ValidateClusterSPIFFEID, csid("r", json!({"spiffeIDTemplate": t}))).await;
        assert_allowed(&res);
    }
    // A construct the engine cannot render (whole struct): the controller would fail on
    // every pod ⇒ denied.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("r", json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/{{ .PodMeta }}"})),
    )
    .await;
    assert_forbidden(&res, "ClusterSPIFFEID", "r", "spec.spiffeIDTemplate");
    // The issue's example.
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("r", json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/{{ .PodMeta.Nmae }}"})),
    )
    .await;
    let msg = assert_forbidden(&res, "ClusterSPIFFEID", "r", "spec.spiffeIDTemplate");
    assert!(msg.contains("Nmae"), "{msg}");
    eprintln!("denial message: {msg}");
}

// ------------------------------------------------------------------ ClusterStaticEntry

fn good_cse() -> Value {
    json!({
        "spiffeID": "spiffe://example.org/vm/db",
        "parentID": "spiffe://example.org/spire/agent/x509pop/host1",
        "selectors": ["unix:uid:1000", "unix:gid:0"],
        "federatesWith": ["other.org"],
        "x509SVIDTTL": "1h",
        "jwtSVIDTTL": "10m",
        "dnsNames": ["db.example.org"],
    })
}

#[tokio::test]
async fn cluster_static_entry_valid_and_invalid() {
    let wh = webhook();
    let res = call(&wh, Route::ValidateClusterStaticEntry, cse("db", good_cse())).await;
    assert_allowed(&res);
    assert!(warnings(&res).is_empty(), "{res}");

    let with = |k: &str, v: Value| {
        let mut s = good_cse();
        s[k] = v;
        s
    };
    let cases = [
        (with("spiffeID", json!("spiffe://example.org/")), "spec.spiffeID"),
        (with("spiffeID", json!("db")), "spec.spiffeID"),
        (with("parentID", json!("http://example.org/x")), "spec.parentID"),
        (with("selectors", json!(["unix:uid:1", "nocolon"])), "spec.selectors[1]"),
        (with("selectors", json!([":v"])), "spec.selectors[0]"),
        (with("federatesWith", json!(["x y"])), "spec.federatesWith[0]"),
        (with("x509SVIDTTL", json!("10")), "spec.x509SVIDTTL"),
        (with("jwtSVIDTTL", json!("-1h")), "spec.jwtSVIDTTL"),
    ];
    for (spec, field) in cases {
        let res = call(&wh, Route::ValidateClusterStaticEntry, cse("bad", spec)).await;
        assert_forbidden(&res, "ClusterStaticEntry", "bad", field);
    }
}

#[tokio::test]
async fn cluster_static_entry_warnings() {
    let wh = webhook();
    // Parent outside the trust domain: admitted (upstream admits it), but SPIRE 1.13.3
    // refuses such entries ("invalid parent ID: ... is not a member of trust domain"),
    // so the user is told.
    let mut spec = good_cse();
    spec["parentID"] = json!("spiffe://upstream.org/spire/server");
    let res = call(&wh, Route::ValidateClusterStaticEntry, cse("nested", spec)).await;
    assert_allowed(&res);
    let w = warnings(&res).join("\n");
    assert!(w.contains("spec.parentID") && !w.contains("spec.spiffeID"), "{w}");
    // Nested servers register under a parent in the same trust domain: no warning.
    let mut spec = good_cse();
    spec["parentID"] = json!("spiffe://example.org/spire/server");
    let res = call(&wh, Route::ValidateClusterStaticEntry, cse("nested", spec)).await;
    assert_allowed(&res);
    assert!(warnings(&res).is_empty(), "{res}");

    let mut spec = good_cse();
    spec["spiffeID"] = json!("spiffe://other.org/x");
    spec["x509SVIDTTL"] = json!("10s");
    spec["dnsNames"] = json!(["ok.example", "not_ok"]);
    let res = call(&wh, Route::ValidateClusterStaticEntry, cse("w", spec)).await;
    assert_allowed(&res);
    let w = warnings(&res).join("\n");
    assert!(w.contains("spec.spiffeID"), "{w}");
    assert!(w.contains("spec.x509SVIDTTL"), "{w}");
    assert!(w.contains("spec.dnsNames[1]") && !w.contains("spec.dnsNames[0]"), "{w}");
}

// ------------------------------------------------------------------ ClusterFederatedTrustDomain

fn good_cftd() -> Value {
    json!({
        "trustDomain": "other.org",
        "bundleEndpointURL": "https://other.org:8443",
        "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": "spiffe://other.org/spire/server"},
        "trustDomainBundle": "{\"keys\":[]}",
    })
}

#[tokio::test]
async fn cluster_federated_trust_domain_valid_and_invalid() {
    let wh = webhook();
    let res = call(&wh, Route::ValidateClusterFederatedTrustDomain, cftd("other", good_cftd())).await;
    assert_allowed(&res);
    assert!(warnings(&res).is_empty(), "{res}");
    let web = json!({"trustDomain": "web.org", "bundleEndpointURL": "https://web.org/bundle", "bundleEndpointProfile": {"type": "https_web"}});
    assert_allowed(&call(&wh, Route::ValidateClusterFederatedTrustDomain, cftd("web", web)).await);

    let with = |ptr: &str, v: Value| {
        let mut s = good_cftd();
        *s.pointer_mut(ptr).unwrap() = v;
        s
    };
    let cases = [
        (with("/trustDomain", json!("Other.org")), "spec.trustDomain"),
        (with("/bundleEndpointURL", json!("http://other.org")), "spec.bundleEndpointURL"),
        (with("/bundleEndpointURL", json!("https://u:p@other.org")), "spec.bundleEndpointURL"),
        (with("/bundleEndpointURL", json!("")), "spec.bundleEndpointURL"),
        (
            with("/bundleEndpointProfile/endpointSPIFFEID", json!("other.org")),
            "spec.bundleEndpointProfile.endpointSPIFFEID",
        ),
        (with("/bundleEndpointProfile/type", json!("https_bogus")), "spec.bundleEndpointProfile.type"),
        (with("/bundleEndpointProfile/type", json!("https_web")), "spec.bundleEndpointProfile.endpointSPIFFEID"),
        (with("/trustDomainBundle", json!("{not json")), "spec.trustDomainBundle"),
    ];
    for (spec, field) in cases {
        let res = call(&wh, Route::ValidateClusterFederatedTrustDomain, cftd("bad", spec)).await;
        assert_forbidden(&res, "ClusterFederatedTrustDomain", "bad", field);
    }
}

#[tokio::test]
async fn cluster_federated_trust_domain_warnings() {
    let wh = webhook();
    let mut spec = good_cftd();
    spec.as_object_mut().unwrap().remove("trustDomainBundle");
    let res = call(&wh, Route::ValidateClusterFederatedTrustDomain, cftd("nb", spec)).await;
    assert_allowed(&res);
    assert!(warnings(&res).join("\n").contains("spec.trustDomainBundle"), "{res}");
}

// ------------------------------------------------------------------ request handling

#[tokio::test]
async fn delete_and_connect_are_allowed_without_looking() {
    let wh = webhook();
    let old = object("ClusterSPIFFEID", "gone", json!({"spiffeIDTemplate": ""}));
    let review = crd_review("ClusterSPIFFEID", "clusterspiffeids", "DELETE", "gone", None, Some(old));
    assert_allowed(&call(&wh, Route::ValidateClusterSPIFFEID, review.clone()).await);
    assert_allowed(&call(&wh, Route::MutateClusterSPIFFEID, review).await);
}

#[tokio::test]
async fn update_is_validated() {
    let wh = webhook();
    let old = object("ClusterStaticEntry", "db", good_cse());
    let mut bad = good_cse();
    bad["selectors"] = json!(["bad"]);
    let review = crd_review(
        "ClusterStaticEntry",
        "clusterstaticentries",
        "UPDATE",
        "db",
        Some(object("ClusterStaticEntry", "db", bad)),
        Some(old),
    );
    let res = call(&wh, Route::ValidateClusterStaticEntry, review).await;
    assert_forbidden(&res, "ClusterStaticEntry", "db", "spec.selectors[0]");
}

#[tokio::test]
async fn undecodable_requests_get_400() {
    let wh = webhook();
    for body in [
        b"{not json".to_vec(),
        b"".to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
    ] {
        let (status, v) = call_raw(&wh, Route::ValidateClusterSPIFFEID.path(), Some("application/json"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["response"]["allowed"], false, "{v}");
        assert_eq!(v["response"]["status"]["code"], 400, "{v}");
    }
    // A spec that is not the kind's shape: controller-runtime's Errored(400) in a 200.
    let res = call(&wh, Route::ValidateClusterStaticEntry, cse("x", json!({"spiffeID": 5}))).await;
    assert_eq!(res["allowed"], false, "{res}");
    assert_eq!(res["status"]["code"], 400, "{res}");
    // The wrong kind on a path.
    let res = call(&wh, Route::ValidateClusterStaticEntry, csid("x", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).await;
    assert_eq!(res["allowed"], false, "{res}");
    assert_eq!(res["status"]["code"], 400, "{res}");
}

#[tokio::test]
async fn content_type_must_be_json() {
    let wh = webhook();
    let body = serde_json::to_vec(&csid("x", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).unwrap();
    for ct in [None, Some("text/plain"), Some("application/yaml")] {
        let (status, v) = call_raw(&wh, Route::ValidateClusterSPIFFEID.path(), ct, body.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?} {v}");
        assert_eq!(v["response"]["allowed"], false, "{v}");
    }
    let (status, _) =
        call_raw(&wh, Route::ValidateClusterSPIFFEID.path(), Some("application/json; charset=utf-8"), body).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn body_over_7_mib_is_refused() {
    let wh = webhook();
    let mut spec = json!({"spiffeIDTemplate": GOOD_TEMPLATE});
    spec["hint"] = json!("x".repeat(scm_webhook::MAX_BODY_BYTES));
    let body = serde_json::to_vec(&csid("big", spec)).unwrap();
    let (status, v) = call_raw(&wh, Route::ValidateClusterSPIFFEID.path(), Some("application/json"), body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
}

#[tokio::test]
async fn only_post_is_served() {
    let wh = webhook();
    let res = wh
        .router()
        .oneshot(Request::get(Route::ValidateClusterSPIFFEID.path()).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let res = wh.router().oneshot(Request::post("/nope").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn decisions_are_counted() {
    let (wh, _, metrics) = webhook_with(settings());
    call(&wh, Route::ValidateClusterSPIFFEID, csid("ok", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).await;
    call(&wh, Route::ValidateClusterSPIFFEID, csid("bad", json!({"spiffeIDTemplate": ""}))).await;
    let p = Route::ValidateClusterSPIFFEID.path();
    assert_eq!(metrics.requests.with_label_values(&[p, "CREATE", "true"]).get(), 1.0);
    assert_eq!(metrics.requests.with_label_values(&[p, "CREATE", "false"]).get(), 1.0);
    assert_eq!(metrics.denials.with_label_values(&[p, "ClusterSPIFFEID"]).get(), 1.0);
    assert_eq!(metrics.request_duration.with_label_values(&[p]).get_sample_count(), 2);
}

// ------------------------------------------------------------------ defaulting

#[tokio::test]
async fn defaulting_mirrors_the_class_label_and_leaves_unchanged_objects_alone() {
    let wh = webhook();
    // className set, label missing ⇒ label added.
    let review = crd_review(
        "ClusterStaticEntry",
        "clusterstaticentries",
        "CREATE",
        "db",
        Some(
            json!({"apiVersion":"spire.spiffe.io/v1alpha1","kind":"ClusterStaticEntry","metadata":{"name":"db","labels":{"team":"a"}},"spec":{"className":"blue","spiffeID":"x","parentID":"y","selectors":[]}}),
        ),
        None,
    );
    let res = call(&wh, Route::MutateClusterStaticEntry, review).await;
    assert_allowed(&res);
    assert_eq!(
        patch_of(&res).unwrap(),
        json!([{"op":"add","path":"/metadata/labels/spire.spiffe.io~1class-name","value":"blue"}])
    );

    // Already consistent ⇒ plain allowed, no patch.
    let review = crd_review(
        "ClusterSPIFFEID",
        "clusterspiffeids",
        "CREATE",
        "web",
        Some(
            json!({"apiVersion":"spire.spiffe.io/v1alpha1","kind":"ClusterSPIFFEID","metadata":{"name":"web","labels":{"spire.spiffe.io/class-name":"blue"}},"spec":{"className":"blue","spiffeIDTemplate":"x"}}),
        ),
        None,
    );
    let res = call(&wh, Route::MutateClusterSPIFFEID, review).await;
    assert_allowed(&res);
    assert!(res.get("patch").is_none() && res.get("patchType").is_none(), "{res}");

    // No class anywhere (install without className) ⇒ nothing to default.
    let res = call(&wh, Route::MutateClusterFederatedTrustDomain, cftd("o", good_cftd())).await;
    assert_allowed(&res);
    assert!(res.get("patch").is_none(), "{res}");
}

#[tokio::test]
async fn class_name_default_is_opt_in() {
    let mut s = settings();
    s.class_name = "blue".into();
    let (wh, _, _) = webhook_with(s.clone());
    let res = call(&wh, Route::MutateClusterSPIFFEID, csid("web", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).await;
    assert_allowed(&res);
    assert!(res.get("patch").is_none(), "className defaulting must be off unless opted in: {res}");

    s.default_class_name = true;
    let (wh, _, _) = webhook_with(s.clone());
    let res = call(&wh, Route::MutateClusterSPIFFEID, csid("web", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).await;
    assert_eq!(
        patch_of(&res).unwrap(),
        json!([
            {"op":"add","path":"/metadata/labels","value":{"spire.spiffe.io/class-name":"blue"}},
            {"op":"add","path":"/spec/className","value":"blue"}
        ])
    );
    // watchClassless: this install already processes classless objects; stamping would only
    // take them from other installs ⇒ no default.
    s.watch_classless = true;
    let (wh, _, _) = webhook_with(s);
    let res = call(&wh, Route::MutateClusterSPIFFEID, csid("web", json!({"spiffeIDTemplate": GOOD_TEMPLATE}))).await;
    assert!(res.get("patch").is_none(), "{res}");
}

// ------------------------------------------------------------------ pod observation

fn pod_review(op: &str, sub_resource: Option<&str>, name: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": if sub_resource.is_some() { "Binding" } else { "Pod" }},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": sub_resource,
            "name": name,
            "namespace": "default",
            "operation": op,
            "userInfo": {"username": "system:kube-scheduler"},
            "object": object,
        }
    })
}

#[tokio::test]
async fn pod_creation_is_observed_and_allowed() {
    let (wh, rec, _) = webhook_with(settings());
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "uid": "u-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "i"}], "serviceAccountName": "web", "nodeName": "node-a"}
    });
    let res = call(&wh, Route::ObservePod, pod_review("CREATE", None, "web-1", pod)).await;
    assert_allowed(&res);
    assert!(res.get("patch").is_none());
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let ObservedPod::Created(pod) = &seen[0] else { panic!("{seen:?}") };
    assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
    assert_eq!(pod.metadata.uid.as_deref(), Some("u-1"));
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("node-a"));
}

#[tokio::test]
async fn pod_binding_is_observed_and_allowed() {
    let (wh, rec, _) = webhook_with(settings());
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web-1", "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-b"}
    });
    let res = call(&wh, Route::ObservePod, pod_review("CREATE", Some("binding"), "web-1", binding)).await;
    assert_allowed(&res);
    assert_eq!(
        rec.0.lock().unwrap().clone(),
        vec![ObservedPod::Bound { namespace: "default".into(), name: "web-1".into(), node_name: "node-b".into() }]
    );
}

#[tokio::test]
async fn pod_observation_allows_even_what_it_cannot_read() {
    let (wh, rec, _) = webhook_with(settings());
    // A pod object that does not decode as a Pod.
    let res = call(
        &wh,
        Route::ObservePod,
        pod_review("CREATE", None, "odd", json!({"metadata": {"name": "odd"}, "spec": {"containers": 7}})),
    )
    .await;
    assert_allowed(&res);
    // Other operations are allowed and not observed.
    let res = call(&wh, Route::ObservePod, pod_review("UPDATE", None, "p", json!({"metadata": {"name": "p"}}))).await;
    assert_allowed(&res);
    assert!(rec.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_template_bomb_is_refused_naming_the_field() {
    let wh = webhook();
    let started = std::time::Instant::now();
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid("bomb", json!({"spiffeIDTemplate": "spiffe://example.org/{{range 2000000000}}aaaaaaaa{{end}}"})),
    )
    .await;
    let msg = assert_forbidden(&res, "ClusterSPIFFEID", "bomb", "spec.spiffeIDTemplate");
    assert!(msg.contains("template: spiffeIDTemplate: execution budget exceeded: "), "{msg}");
    eprintln!("template bomb refused in {:?}: {msg}", started.elapsed());
    let res = call(
        &wh,
        Route::ValidateClusterSPIFFEID,
        csid(
            "bomb2",
            json!({"spiffeIDTemplate": "spiffe://example.org/x", "dnsNameTemplates": [r#"{{printf "%0999999999d" 1}}"#]}),
        ),
    )
    .await;
    assert_forbidden(&res, "ClusterSPIFFEID", "bomb2", "spec.dnsNameTemplates[0]");
}

#[tokio::test]
async fn spire_1_15_attributes_are_refused_when_the_server_does_not_store_them() {
    let settings = settings();
    let fields = settings.spire_fields.clone();
    let wh = webhook_with(settings).0;
    let mut spec = good_cse();
    spec["jwtSVIDIncludeJTI"] = json!(true);
    let csid_spec =
        json!({"spiffeIDTemplate": "spiffe://example.org/{{ .PodMeta.Name }}", "disableX509SVIDPrefetch": true});

    // Not probed yet (a replica that does not lead): admitted; the reconciler reports it.
    assert_allowed(&call(&wh, Route::ValidateClusterStaticEntry, cse("db", spec.clone())).await);
    // A 1.15 server.
    fields.set(scm_spire_api::UnsupportedFields::default());
    assert_allowed(&call(&wh, Route::ValidateClusterStaticEntry, cse("db", spec.clone())).await);
    assert_allowed(&call(&wh, Route::ValidateClusterSPIFFEID, csid("web", csid_spec.clone())).await);
    // An older server: refused, naming the field and what is needed.
    fields.set(scm_spire_api::UnsupportedFields { additional_attributes: true, ..Default::default() });
    let msg = assert_forbidden(
        &call(&wh, Route::ValidateClusterStaticEntry, cse("db", spec.clone())).await,
        "ClusterStaticEntry",
        "db",
        "spec.jwtSVIDIncludeJTI",
    );
    assert!(msg.contains("SPIRE Server 1.15"), "{msg}");
    assert_forbidden(
        &call(&wh, Route::ValidateClusterSPIFFEID, csid("web", csid_spec)).await,
        "ClusterSPIFFEID",
        "web",
        "spec.disableX509SVIDPrefetch",
    );
    // Objects without them are unaffected.
    assert_allowed(&call(&wh, Route::ValidateClusterStaticEntry, cse("db", good_cse())).await);
}

#[tokio::test]
async fn disabling_prefetch_of_a_stored_svid_is_refused() {
    let wh = webhook();
    let mut spec = good_cse();
    spec["storeSVID"] = json!(true);
    spec["disableX509SVIDPrefetch"] = json!(true);
    let msg = assert_forbidden(
        &call(&wh, Route::ValidateClusterStaticEntry, cse("stored", spec)).await,
        "ClusterStaticEntry",
        "stored",
        "spec.disableX509SVIDPrefetch",
    );
    assert!(msg.contains("storeSVID"), "{msg}");
}
