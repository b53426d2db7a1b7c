//! Early registration, measured against a pod watch that is slow on purpose.
//!
//! On loopback the pod watch usually delivers a new pod as fast as the early path's GET
//! confirms it, so a test that only waits for the entry passes with or without the early
//! path. Here the controller reaches the real kube-apiserver through [`SlowPodWatchProxy`]:
//! plain HTTP from the controller (its own kubeconfig) to a proxy in this test, which
//! forwards every request over TLS as the harness's admin user and holds each byte of a
//! pod WATCH response for [`WATCH_DELAY`]. Everything else, the early path's GET of the
//! pod among it, passes at once. So:
//!
//! - a pod the pod observer sees has its entry in SPIRE before [`WATCH_DELAY`] has passed
//!   since its creation was sent: the watch cannot have delivered it yet, and with
//!   `gcInterval: 1h` no periodic pass runs; only the early path can have written it;
//! - a pod in a namespace the observer's configuration leaves out (the control case) gets
//!   its entry only after [`WATCH_DELAY`]: the delay is real, and nothing but the watch
//!   (and the early path) writes a new pod's entry.
//!
//! Before measuring, the test waits for the apiserver to call the observer (dry-run
//! creates, which store no pod) and for the controller's start-up passes to end, so that
//! no pass happens to run, for another reason, while the observed pod waits for one: the
//! test fails when the early path confirms the pod but does not trigger a pass, too.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::harness::*;

const TD: &str = "example.org";
const WAIT: Duration = Duration::from_secs(45);
/// How long the proxy holds each byte of a pod WATCH response.
const WATCH_DELAY: Duration = Duration::from_secs(3);

/// A plain-HTTP front for the real apiserver that delays pod WATCH responses.
struct SlowPodWatchProxy {
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// Pod WATCH requests forwarded so far (each one's response delayed).
    pod_watches: Arc<AtomicUsize>,
}

/// What every proxied request needs: the way to the apiserver and the delay.
#[derive(Clone)]
struct Upstream {
    /// The harness's client (TLS, admin client certificate): it authenticates every
    /// forwarded request, so the controller's kubeconfig carries no credentials.
    client: kube::Client,
    delay: Duration,
    pod_watches: Arc<AtomicUsize>,
}

impl SlowPodWatchProxy {
    /// Listens on a free loopback port; serves until the test's runtime ends.
    async fn start(client: kube::Client, delay: Duration) -> SlowPodWatchProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pod_watches = Arc::new(AtomicUsize::new(0));
        let upstream = Upstream { client, delay, pod_watches: pod_watches.clone() };
        let app = axum::Router::new().fallback(forward).with_state(upstream);
        tokio::spawn(async move { axum::serve(listener, app).await });
        SlowPodWatchProxy { url, pod_watches }
    }

    /// Writes a kubeconfig that sends a client to this proxy (no TLS, no credentials).
    fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: slow-pod-watch\n  cluster:\n    server: {}\n\
             users:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: slow-pod-watch\n  context:\n    cluster: slow-pod-watch\n    user: anonymous\n\
             current-context: slow-pod-watch\n",
            self.url
        );
        std::fs::write(path, text).expect("write the proxy's kubeconfig");
    }
}

/// Headers that describe one connection, not the message (RFC 9110, 7.6.1): the proxy's
/// two sides are separate connections, each framed by its own HTTP stack.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A WATCH of pods: `…/pods?…watch=true…`, cluster-wide or in one namespace (the pod
/// GETs of the early path name a pod, `…/pods/<name>`, and never watch).
fn is_pod_watch(uri: &axum::http::Uri) -> bool {
    let watch = uri.query().unwrap_or("").split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    watch && uri.path().ends_with("/pods")
}

/// Forwards one request to the apiserver; a pod WATCH's response body is delayed.
async fn forward(State(up): State<Upstream>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let pod_watch = is_pod_watch(&parts.uri);
    strip_hop_by_hop(&mut parts.headers);
    // The proxy's own address: the upstream client names the apiserver instead.
    parts.headers.remove(header::HOST);
    // The upstream client speaks HTTP/1.1 whatever the controller spoke to the proxy.
    parts.version = Version::HTTP_11;
    // Request bodies (creates, patches) are small: read them whole.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => kube::client::Body::from(bytes),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let response = match up.client.send(axum::http::Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let mut body = Body::new(body);
    if pod_watch {
        up.pod_watches.fetch_add(1, Ordering::Relaxed);
        body = delayed(body, up.delay);
    }
    Response::from_parts(parts, body)
}

/// `body` with each chunk handed on `delay` after it arrived (in order): the watch events
/// reach the controller `delay` late, and no event is lost or reordered.
fn delayed(body: Body, delay: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Reads the upstream body as it comes, stamping each chunk with when it is due; stops
    // when the controller goes away (the receiving side is dropped).
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            if tx.send((tokio::time::Instant::now() + delay, chunk)).is_err() {
                return;
            }
        }
    });
    let due_chunks = futures::stream::unfold(rx, |mut rx| async move {
        let (due, chunk) = rx.recv().await?;
        tokio::time::sleep_until(due).await;
        Some((chunk, rx))
    });
    Body::from_stream(due_chunks)
}

/// Deletes the test's webhook configurations even when it fails.
struct WebhookConfigs(Vec<String>);

impl Drop for WebhookConfigs {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = kubectl(&["delete", "validatingwebhookconfiguration", name, "--ignore-not-found"]);
        }
    }
}

/// Polls SPIRE (every 20 ms) until an entry for `spiffe_id` exists; the time since `t0`.
/// The entry was written no later than it is seen, so this bounds the real time above.
async fn time_to_entry(spire: &scm_spire_api::Client, spiffe_id: &str, t0: Instant) -> Duration {
    loop {
        let entries = spire.list_entries().await.unwrap_or_default();
        if entries.iter().any(|e| e.spiffe_id.as_str() == spiffe_id) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < WAIT, "no entry for {spiffe_id} after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_registration_writes_the_entry_before_the_pod_watch_delivers_the_pod() {
    let client = kube().await;
    let name = unique("early");
    let spire = Spire::start(&name, TD);
    // Two namespaces selected by the ClusterSPIFFEID; the pod observer sees only the first.
    let (observed, unobserved) = (format!("{name}-seen"), format!("{name}-unseen"));
    for ns in [&observed, &unobserved] {
        create_namespace(&client, ns, &[("e2e-early", &name)]).await;
    }
    // The node, namespaces and ClusterSPIFFEID exist before the controller starts: its
    // first lists hold them (only pod watches are slow), and a pod is all a pass awaits.
    let node = unique("early-node");
    create_node(&client, &node).await;
    let template = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/pod/{{ .PodMeta.Name }}";
    apply_json(
        &client,
        "clusterspiffeids",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": name},
            "spec": {"className": name, "spiffeIDTemplate": template,
                "namespaceSelector": {"matchLabels": {"e2e-early": name}}}}),
    )
    .await;

    // The controller requires its validating configuration (scoped here to objects no one
    // labels) and keeps the pod observer's caBundle; the observer sees one namespace.
    let port = free_port();
    let (validating_config, pods_config) = (format!("{name}-validating"), format!("{name}-pods"));
    let base = format!("https://localhost:{port}");
    let validating = cluster_spiffe_id_validating_config(&validating_config, &base, "e2e-early", &name);
    let observer = pod_observer_config(&pods_config, &base, &observed);
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let _configs = WebhookConfigs(vec![validating_config.clone(), pods_config.clone()]);
    for c in [&validating, &observer] {
        vapi.create(&PostParams::default(), c).await.expect("create a webhook configuration");
    }

    // The controller talks to the apiserver only through the proxy.
    let proxy = SlowPodWatchProxy::start(client.clone(), WATCH_DELAY).await;
    let kubeconfig = peers().dir.join("t").join(format!("{name}.kubeconfig"));
    proxy.write_kubeconfig(&kubeconfig);
    let config = format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\n{}className: {name}\n\
         validatingWebhookConfigurationName: {validating_config}\nmutatingWebhookConfigurationName: {name}-none\n\
         podObserverWebhookConfigurationName: {pods_config}\nwebhook:\n  host: 127.0.0.1\n  port: {port}\ngcInterval: 1h\n",
        crate::transport::server_keys(&spire)
    );
    let kubeconfig = kubeconfig.to_str().unwrap();
    let ctl = Controller::start_env(&name, &config, &[("ENABLE_WEBHOOKS", "true"), ("KUBECONFIG", kubeconfig)]);
    eventually(WAIT, "caches synced and the webhook serving with a certificate", || async {
        let ready =
            check_ok(&ctl.health_addr, "caches").await? && check_ok(&ctl.health_addr, "webhook-certificate").await?;
        ready.then_some(())
    })
    .await;
    eventually(WAIT, "caBundle of the pod observer's configuration filled", || async {
        let v = vapi.get(&pods_config).await.ok()?;
        let filled = v.webhooks?.iter().all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty()));
        filled.then_some(())
    })
    .await;

    // Warm-up: the apiserver trusts the new caBundle a moment after it is written (until
    // then its calls fail, ignored). Dry-run creates reach the observer, which counts them
    // and does nothing else: no pod is stored, so no (delayed) watch event can trigger a
    // pass in the middle of the measurements below.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &observed);
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    let probe: Pod = serde_json::from_value(json!({"metadata": {"name": "probe"},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "example/app:1"}]}}))
    .unwrap();
    eventually(WAIT, "the apiserver calling the pod observer", || async {
        pods.create(&dry_run, &probe).await.ok()?;
        let calls = ctl.metric("spire_controller_manager_webhook_requests_total", &["/observe-v1-pod"]).await;
        (calls >= 1.0).then_some(())
    })
    .await;
    let confirmed = || async {
        let metrics = ctl.metrics().await;
        parse_metric(&metrics, "spire_controller_manager_early_registration_hints_total", &["outcome=\"confirmed\""])
    };
    // Quiet: the passes of the start (the first, and those its own writes trigger, such as
    // ClusterSPIFFEID status) are over, so no pass is due when the pod below is created.
    // Else one could pick up the confirmed pod without the early path's own trigger.
    let passes = || ctl.metric("spire_controller_manager_reconcile_passes_total", &["reconciler=\"entry\""]);
    let mut last = passes().await;
    for quiet in 0.. {
        assert!(quiet < 30, "the entry reconciler never went quiet for a second:\n{}", ctl.logs());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = passes().await;
        if now == last && now >= 1.0 {
            break;
        }
        last = now;
    }
    let sc = spire.client().await;

    // The early path: a pod the observer sees has its entry before its watch event could
    // have reached the controller (the apiserver emits that event after the create was
    // sent, and the proxy holds it WATCH_DELAY from then).
    let confirmed_before = confirmed().await;
    let t0 = Instant::now();
    create_pod(&client, &observed, "early", &node, "sa", &[]).await;
    let early = time_to_entry(&sc, &format!("spiffe://{TD}/ns/{observed}/pod/early"), t0).await;

    // The control: unobserved, the pod's entry waits for the slow watch.
    let t0 = Instant::now();
    create_pod(&client, &unobserved, "late", &node, "sa", &[]).await;
    let late = time_to_entry(&sc, &format!("spiffe://{TD}/ns/{unobserved}/pod/late"), t0).await;

    let pod_watches = proxy.pod_watches.load(Ordering::Relaxed);
    eprintln!(
        "early registration: entry after {early:?} through the observer, {late:?} through the pod watch \
         (held {WATCH_DELAY:?} by the proxy; {pod_watches} pod watches proxied)"
    );
    assert!(pod_watches >= 1, "the controller's pod watch went through the proxy");
    assert!(confirmed().await > confirmed_before, "the observed pod was confirmed through the early path");
    assert!(
        early < WATCH_DELAY,
        "the observed pod's entry came after {early:?}, not before the pod watch ({WATCH_DELAY:?}) could deliver it\n{}",
        ctl.logs()
    );
    assert!(late >= WATCH_DELAY, "the unobserved pod's entry came after {late:?}: the pod watch is not held back");
    drop(ctl);
    delete_cr(&client, "ClusterSPIFFEID", "clusterspiffeids", &name).await;
}
