//! Admission budgets, in process: a body that never arrives, a body too large, a flood
//! beyond the concurrency limit, and dry runs that must have no side effect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use scm_spiffe::TrustDomain;
use scm_webhook::{AdmissionSettings, Limits, Metrics, ObservedPod, PodSink, Route, Webhook};
use serde_json::json;
use tower::ServiceExt;

#[derive(Default)]
struct Recorder(Mutex<Vec<ObservedPod>>);

impl PodSink for Recorder {
    fn observed(&self, ev: ObservedPod) {
        self.0.lock().unwrap().push(ev);
    }
}

fn webhook(limits: Limits) -> (Webhook, Arc<Recorder>) {
    let settings = AdmissionSettings::new(TrustDomain::parse("example.org").unwrap(), "c1");
    let rec = Arc::new(Recorder::default());
    (Webhook::with_limits(settings, rec.clone(), Metrics::unregistered().unwrap(), limits), rec)
}

fn pod_review(dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web", "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "x"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop", "uid": "pod-uid"},
                "spec": {"nodeName": "node-1", "containers": []}},
            "dryRun": dry_run
        }
    }))
    .unwrap()
}

async fn send(wh: &Webhook, body: Body) -> StatusCode {
    let req = Request::post(Route::ObservePod.path()).header("content-type", "application/json").body(body).unwrap();
    let res = wh.router().oneshot(req).await.unwrap();
    let status = res.status();
    let _ = res.into_body().collect().await;
    status
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out_and_frees_its_place() {
    let limits = Limits { reading: 1, read_timeout: Duration::from_millis(200), ..Limits::default() };
    let (wh, rec) = webhook(limits);
    // A stream that sends a few bytes and then nothing.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tx.send(Ok(bytes::Bytes::from_static(b"{\"apiVersion\""))).await.unwrap();
    let stalled = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let slow = tokio::spawn({
        let wh = wh.clone();
        async move { send(&wh, stalled).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The only reading place is taken: this one waits for it, then is answered.
    let ok = send(&wh, Body::from(pod_review(false))).await;
    assert_eq!(slow.await.unwrap(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(ok, StatusCode::OK);
    assert_eq!(rec.0.lock().unwrap().len(), 1);
    drop(tx);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let (wh, rec) = webhook(Limits::default());
    let mut big = pod_review(false);
    big.extend(std::iter::repeat_n(b' ', scm_webhook::MAX_BODY_BYTES));
    assert_eq!(send(&wh, Body::from(big)).await, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(rec.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn beyond_the_queue_requests_get_429_not_a_wait() {
    let limits = Limits {
        reading: 1,
        read_timeout: Duration::from_secs(5),
        queue_wait: Duration::from_millis(50),
        ..Limits::default()
    };
    let (wh, _) = webhook(limits);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stalled = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let holder = tokio::spawn({
        let wh = wh.clone();
        async move { send(&wh, stalled).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    assert_eq!(send(&wh, Body::from(pod_review(false))).await, StatusCode::TOO_MANY_REQUESTS);
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once, not after the holder");
    drop(tx);
    let _ = holder.await;
}

#[tokio::test]
async fn dry_runs_are_not_observed() {
    let (wh, rec) = webhook(Limits::default());
    assert_eq!(send(&wh, Body::from(pod_review(true))).await, StatusCode::OK);
    assert!(rec.0.lock().unwrap().is_empty(), "a dry run has no side effect");
    assert_eq!(send(&wh, Body::from(pod_review(false))).await, StatusCode::OK);
    assert_eq!(rec.0.lock().unwrap().len(), 1);
}
