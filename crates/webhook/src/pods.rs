//! Pod observation: `/observe-v1-pod` sees pod CREATE and `pods/binding` CREATE, always
//! allows them, and hands what it saw to a [`PodSink`] (the reconciler's early-registration
//! queue), so an entry can exist as soon as a pod is bound to a node.
//!
//! What arrives here is unauthenticated (anyone who reaches the port can POST a review):
//! an observation is a hint for the sink to check with the apiserver, never a fact.
//!
//! The configuration is a *validating* one (`webhooks/pod-observer.yaml`): validating
//! webhooks run after the apiserver has generated the pod's name (for `generateName`) and
//! UID and after mutating admission (e.g. the service account defaulting), so the sink gets
//! the pod as it will be stored. It has `failurePolicy: Ignore` and a 2 s timeout: pod
//! creation never waits on this controller being up.

use k8s_openapi::api::core::v1::Pod;

/// What the pod observer saw.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedPod {
    /// A pod is being created (it may already name its node in `spec.nodeName`).
    Created(Box<Pod>),
    /// The scheduler (or anyone) bound pod `namespace/name` to `node_name`.
    Bound { namespace: String, name: String, node_name: String },
}

/// Receives pod observations. Called on the request path: must not block (push to a
/// channel or queue and return).
pub trait PodSink: Send + Sync + 'static {
    fn observed(&self, ev: ObservedPod);
}

/// A sink that drops everything (pod observation disabled).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPodSink;

impl PodSink for NoPodSink {
    fn observed(&self, _ev: ObservedPod) {}
}

/// Forwards to an unbounded channel.
impl PodSink for tokio::sync::mpsc::UnboundedSender<ObservedPod> {
    fn observed(&self, ev: ObservedPod) {
        let _ = self.send(ev);
    }
}

/// Forwards to a bounded channel without waiting; drops (and logs) when the queue is full
/// (the reconciler's periodic pass catches up anyway).
impl PodSink for tokio::sync::mpsc::Sender<ObservedPod> {
    fn observed(&self, ev: ObservedPod) {
        if let Err(err) = self.try_send(ev) {
            tracing::debug!(%err, "pod observation queue full or closed; dropping observation");
        }
    }
}

/// Turns a pod or `pods/binding` admission request into an observation. Anything else
/// (other operations, other resources, undecodable objects) is ignored.
pub(crate) fn observe(sink: &dyn PodSink, req: &kube::core::admission::AdmissionRequest<kube::core::DynamicObject>) {
    use kube::core::admission::Operation;
    if !matches!(req.operation, Operation::Create) || req.resource.resource != "pods" || !req.resource.group.is_empty()
    {
        return;
    }
    // A dry run changes nothing, so it must not make the controller do anything either
    // (the configuration says `sideEffects: NoneOnDryRun`).
    if req.dry_run {
        return;
    }
    let Some(object) = req.object.as_ref() else {
        return;
    };
    match req.sub_resource.as_deref() {
        None | Some("") => match serde_json::to_value(object).and_then(serde_json::from_value::<Pod>) {
            Ok(mut pod) => {
                if pod.metadata.namespace.is_none() {
                    pod.metadata.namespace = req.namespace.clone();
                }
                sink.observed(ObservedPod::Created(Box::new(pod)));
            }
            Err(err) => tracing::debug!(uid = %req.uid, %err, "observed pod could not be decoded"),
        },
        Some("binding") => {
            // A core/v1 Binding: `target` names the node; the request names the pod.
            let node = object
                .data
                .get("target")
                .filter(|t| t.get("kind").and_then(|k| k.as_str()).is_none_or(|k| k == "Node"));
            let node_name = node.and_then(|t| t.get("name")).and_then(|n| n.as_str()).unwrap_or_default();
            let name =
                if req.name.is_empty() { object.metadata.name.clone().unwrap_or_default() } else { req.name.clone() };
            let namespace = req.namespace.clone().or_else(|| object.metadata.namespace.clone()).unwrap_or_default();
            if node_name.is_empty() || name.is_empty() {
                tracing::debug!(uid = %req.uid, "pod binding without pod or node name");
                return;
            }
            sink.observed(ObservedPod::Bound { namespace, name, node_name: node_name.to_owned() });
        }
        Some(_) => {}
    }
}
