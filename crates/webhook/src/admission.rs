//! The HTTP side of admission: routes, content-type and size checks, AdmissionReview v1
//! decoding, dispatch to validation / defaulting / pod observation, response shaping,
//! logging and metrics.
//!
//! Response shapes (controller-runtime compatible where upstream has a webhook):
//! - allowed: HTTP 200, `response.allowed=true`, optional `warnings`, optional JSONPatch;
//! - denied: HTTP 200, `allowed=false`, `status.code=403`, `status.reason="Forbidden"`,
//!   `status.message` naming the object and the field(s);
//! - object present but not decodable as the kind: HTTP 200, `allowed=false`, code 400
//!   (controller-runtime's `Errored(400)`);
//! - request itself unusable (not JSON, no `request`): HTTP 400, with an AdmissionReview
//!   body carrying `allowed=false`, code 400, so both plain HTTP clients and the apiserver
//!   see the failure; wrong `Content-Type`: HTTP 415; body over [`MAX_BODY_BYTES`]: HTTP 413.
//!
//! Budgets (the port is reachable by anything on the cluster network): at most
//! [`Limits::reading`] bodies are read at once, each within [`Limits::read_timeout`] and
//! [`Limits::max_body`] bytes (HTTP 408 / 413), and at most [`Limits::concurrent`]
//! requests are decided at once (a request that cannot start within
//! [`Limits::queue_wait`] gets HTTP 429); the decision runs on the blocking
//! pool, off the async workers, and is abandoned after [`Limits::deadline`] (HTTP 503,
//! below every webhook timeout), while its permit stays taken until it really ends, so
//! runaway work can never exceed the concurrency limit. Templates inside carry their own
//! execution budget (scm-template).
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};

use crate::{Inner, defaulting, pods, validate};

/// The largest AdmissionReview read. Our custom resources are a few KiB (an UPDATE review
/// carries two copies); a pod over 1 MiB is refused at the observer, whose failurePolicy
/// is Ignore: the watch still delivers it. Every byte here is memory a stranger can make
/// the controller hold.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The admission budgets (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bodies being read at once.
    pub reading: usize,
    /// Time to receive a whole body.
    pub read_timeout: std::time::Duration,
    /// Requests decoded and decided at once.
    pub concurrent: usize,
    /// How long a request may wait for its turn before HTTP 429.
    pub queue_wait: std::time::Duration,
    /// How long a decision may take before HTTP 503.
    pub deadline: std::time::Duration,
    /// Largest request body.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            reading: 16,
            read_timeout: std::time::Duration::from_secs(2),
            concurrent: 4,
            queue_wait: std::time::Duration::from_secs(1),
            deadline: std::time::Duration::from_millis(1500),
            max_body: MAX_BODY_BYTES,
        }
    }
}

/// One admission endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ValidateClusterSPIFFEID,
    ValidateClusterStaticEntry,
    ValidateClusterFederatedTrustDomain,
    MutateClusterSPIFFEID,
    MutateClusterStaticEntry,
    MutateClusterFederatedTrustDomain,
    ObservePod,
}

/// The three custom resource kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrdKind {
    ClusterSPIFFEID,
    ClusterStaticEntry,
    ClusterFederatedTrustDomain,
}

impl CrdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrdKind::ClusterSPIFFEID => "ClusterSPIFFEID",
            CrdKind::ClusterStaticEntry => "ClusterStaticEntry",
            CrdKind::ClusterFederatedTrustDomain => "ClusterFederatedTrustDomain",
        }
    }
}

impl Route {
    pub const ALL: [Route; 7] = [
        Route::ValidateClusterSPIFFEID,
        Route::ValidateClusterStaticEntry,
        Route::ValidateClusterFederatedTrustDomain,
        Route::MutateClusterSPIFFEID,
        Route::MutateClusterStaticEntry,
        Route::MutateClusterFederatedTrustDomain,
        Route::ObservePod,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Route::ValidateClusterSPIFFEID => "/validate-spire-spiffe-io-v1alpha1-clusterspiffeid",
            Route::ValidateClusterStaticEntry => "/validate-spire-spiffe-io-v1alpha1-clusterstaticentry",
            Route::ValidateClusterFederatedTrustDomain => {
                "/validate-spire-spiffe-io-v1alpha1-clusterfederatedtrustdomain"
            }
            Route::MutateClusterSPIFFEID => "/mutate-spire-spiffe-io-v1alpha1-clusterspiffeid",
            Route::MutateClusterStaticEntry => "/mutate-spire-spiffe-io-v1alpha1-clusterstaticentry",
            Route::MutateClusterFederatedTrustDomain => "/mutate-spire-spiffe-io-v1alpha1-clusterfederatedtrustdomain",
            Route::ObservePod => "/observe-v1-pod",
        }
    }

    fn crd_kind(self) -> Option<CrdKind> {
        match self {
            Route::ValidateClusterSPIFFEID | Route::MutateClusterSPIFFEID => Some(CrdKind::ClusterSPIFFEID),
            Route::ValidateClusterStaticEntry | Route::MutateClusterStaticEntry => Some(CrdKind::ClusterStaticEntry),
            Route::ValidateClusterFederatedTrustDomain | Route::MutateClusterFederatedTrustDomain => {
                Some(CrdKind::ClusterFederatedTrustDomain)
            }
            Route::ObservePod => None,
        }
    }

    fn is_mutating(self) -> bool {
        matches!(
            self,
            Route::MutateClusterSPIFFEID | Route::MutateClusterStaticEntry | Route::MutateClusterFederatedTrustDomain
        )
    }
}

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let mut router = Router::new();
    for route in Route::ALL {
        router = router.route(
            route.path(),
            post(move |State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Body| {
                handle(inner, route, headers, body)
            }),
        );
    }
    router.with_state(inner)
}

/// The outcome of validation or defaulting for one object.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// `(code, reason, message)` when not allowed.
    pub denial: Option<(u16, &'static str, String)>,
    pub warnings: Vec<String>,
    pub patch: Option<json_patch::Patch>,
}

impl Decision {
    pub fn allow() -> Self {
        Self::default()
    }
    pub fn forbidden(message: String) -> Self {
        Self { denial: Some((403, "Forbidden", message)), ..Self::default() }
    }
    pub fn bad_request(message: String) -> Self {
        Self { denial: Some((400, "BadRequest", message)), ..Self::default() }
    }
}

async fn handle(inner: Arc<Inner>, route: Route, headers: HeaderMap, body: Body) -> Response {
    let start = Instant::now();
    let path = route.path();
    let response = handle_inner(&inner, route, headers, body).await;
    inner.metrics.request_duration.with_label_values(&[path]).observe(start.elapsed().as_secs_f64());
    response
}

async fn handle_inner(inner: &Arc<Inner>, route: Route, headers: HeaderMap, body: Body) -> Response {
    let path = route.path();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return errored(
            inner,
            path,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("contentType={content_type}, expected application/json"),
        );
    }
    let limits = inner.limits;
    let busy = |what: &str, n: usize| {
        errored(inner, path, StatusCode::TOO_MANY_REQUESTS, format!("more than {n} admission requests {what} at once"))
    };
    let reading = match tokio::time::timeout(limits.queue_wait, inner.read_permits.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return busy("being read", limits.reading),
    };
    let bytes = match tokio::time::timeout(limits.read_timeout, axum::body::to_bytes(body, limits.max_body)).await {
        Err(_) => {
            return errored(
                inner,
                path,
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {:?}", limits.read_timeout),
            );
        }
        Ok(Ok(b)) => b,
        Ok(Err(err)) => {
            let too_large = std::error::Error::source(&err).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || err.to_string().contains("length limit");
            return if too_large {
                errored(
                    inner,
                    path,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds {} bytes", limits.max_body),
                )
            } else {
                errored(inner, path, StatusCode::BAD_REQUEST, format!("reading request body: {err}"))
            };
        }
    };
    if bytes.is_empty() {
        return errored(inner, path, StatusCode::BAD_REQUEST, "request body is empty".into());
    }
    let permit = match tokio::time::timeout(limits.queue_wait, inner.permits.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return busy("being decided", limits.concurrent),
    };
    drop(reading);
    // Decode and decide on the blocking pool; the permit is released only when the work
    // really ends, even if the answer was given up on.
    let worker = inner.clone();
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decode_and_decide(&worker, route, &bytes)
    });
    match tokio::time::timeout(limits.deadline, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => errored(inner, path, StatusCode::INTERNAL_SERVER_ERROR, format!("admission failed: {err}")),
        Err(_) => errored(
            inner,
            path,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("admission took longer than {:?}", limits.deadline),
        ),
    }
}

fn decode_and_decide(inner: &Inner, route: Route, bytes: &[u8]) -> Response {
    let path = route.path();
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(err) => {
            return errored(inner, path, StatusCode::BAD_REQUEST, format!("unable to decode the request: {err}"));
        }
    };
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return errored(inner, path, StatusCode::BAD_REQUEST, "AdmissionReview has no request".into());
        }
    };
    let decision = decide(inner, route, &req);
    respond(inner, route, &req, decision)
}

fn decide(inner: &Inner, route: Route, req: &AdmissionRequest<DynamicObject>) -> Decision {
    let Some(kind) = route.crd_kind() else {
        pods::observe(inner.pod_sink.as_ref(), req);
        return Decision::allow();
    };
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Decision::allow();
    }
    if !req.kind.group.eq_ignore_ascii_case(scm_api::GROUP) || req.kind.kind != kind.as_str() {
        return Decision::bad_request(format!(
            "this endpoint admits {}.{}, not {}.{}",
            kind.as_str(),
            scm_api::GROUP,
            req.kind.kind,
            req.kind.group
        ));
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::bad_request(format!("{} request without an object", operation_str(&req.operation)));
    };
    let old = if matches!(req.operation, Operation::Update) { req.old_object.as_ref() } else { None };
    if route.is_mutating() {
        defaulting::default_object(&inner.settings, kind, object, old)
    } else {
        validate::validate_object(&inner.settings, kind, object, &display_name(req))
    }
}

fn respond(inner: &Inner, route: Route, req: &AdmissionRequest<DynamicObject>, decision: Decision) -> Response {
    let path = route.path();
    let mut res = AdmissionResponse::from(req);
    let allowed = decision.denial.is_none();
    if let Some((code, reason, message)) = &decision.denial {
        res.allowed = false;
        res.result = Status::failure(message, reason).with_code(*code);
    }
    if !decision.warnings.is_empty() {
        res.warnings = Some(decision.warnings.clone());
    }
    let mut patched = false;
    if let Some(patch) = decision.patch.filter(|p| !p.0.is_empty()).filter(|_| allowed) {
        patched = true;
        res = match res.with_patch(patch) {
            Ok(r) => r,
            Err(err) => {
                let mut r = AdmissionResponse::from(req);
                r.allowed = false;
                r.result = Status::failure(&format!("encoding patch: {err}"), "InternalError").with_code(500);
                r
            }
        };
    }
    let allowed = res.allowed;
    let operation = operation_str(&req.operation);
    let kind = if req.kind.kind.is_empty() { "unknown" } else { req.kind.kind.as_str() };
    inner.metrics.requests.with_label_values(&[path, operation, if allowed { "true" } else { "false" }]).inc();
    if !allowed {
        inner.metrics.denials.with_label_values(&[path, kind]).inc();
    }
    let name = display_name(req);
    let message = if allowed { "" } else { res.result.message.as_str() };
    if route == Route::ObservePod {
        tracing::debug!(uid = %req.uid, kind, name = %name, namespace = ?req.namespace, sub_resource = ?req.sub_resource, operation, allowed, "pod admission observed");
    } else {
        tracing::info!(
            uid = %req.uid, kind, name = %name, operation, allowed, path,
            dry_run = req.dry_run,
            patched,
            warnings = decision.warnings.len(),
            message,
            "admission decision"
        );
    }
    (StatusCode::OK, axum::Json(review_json(res))).into_response()
}

/// The review as JSON, with `response.patch` as a base64 string like every Go webhook
/// sends it (kube-core serializes `Vec<u8>` as an array of numbers, which the apiserver
/// also accepts, but other clients may not).
fn review_json(res: AdmissionResponse) -> serde_json::Value {
    use base64::Engine as _;
    let mut v = serde_json::to_value(res.into_review()).unwrap_or_default();
    if let Some(patch) = v.pointer_mut("/response/patch")
        && let Some(items) = patch.as_array()
    {
        let bytes: Vec<u8> = items.iter().filter_map(|b| b.as_u64()).map(|b| b as u8).collect();
        *patch = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    v
}

/// A request that could not be understood: the given HTTP status, and an AdmissionReview
/// body with `allowed=false` and the same code.
fn errored(inner: &Inner, path: &'static str, status: StatusCode, message: String) -> Response {
    tracing::warn!(path, status = status.as_u16(), %message, "admission request rejected before decoding");
    inner.metrics.requests.with_label_values(&[path, "UNKNOWN", "false"]).inc();
    let mut res = AdmissionResponse::invalid(&message);
    res.result =
        Status::failure(&message, status.canonical_reason().unwrap_or("BadRequest")).with_code(status.as_u16());
    (status, axum::Json(res.into_review())).into_response()
}

fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The object's name: the request's, else the object's (or old object's) metadata.
fn display_name(req: &AdmissionRequest<DynamicObject>) -> String {
    if !req.name.is_empty() {
        return req.name.clone();
    }
    for obj in [req.object.as_ref(), req.old_object.as_ref()].into_iter().flatten() {
        if let Some(n) = obj.metadata.name.as_ref().filter(|n| !n.is_empty()) {
            return n.clone();
        }
        if let Some(g) = obj.metadata.generate_name.as_ref().filter(|n| !n.is_empty()) {
            return format!("{g}*");
        }
    }
    String::new()
}
