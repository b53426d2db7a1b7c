//! Early registration: pod admissions (pod CREATE and `pods/binding`) are a *hint* that a
//! pod is about to be bound; the apiserver is the authority. Anyone who can reach the
//! webhook port can send an AdmissionReview, so nothing in one is believed: a hint makes
//! the controller GET the pod (same namespace and name, and the UID the hint named) until
//! the apiserver shows it bound to a node, and only that confirmed pod — as the apiserver
//! returned it — overlays the pod store in the next snapshot, so its entry can be written
//! before the watch delivers it.
//!
//! Bounded: at most [`MAX_PENDING`] pods are being confirmed at once and [`MAX_IN_FLIGHT`]
//! GETs run at a time; each confirmation gives up after [`CONFIRM_DELAYS`] (the watch
//! delivers the pod anyway). A confirmed pod is dropped once the store has it with its
//! node, or after a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use scm_core::PodInfo;
use scm_webhook::{ObservedPod, PodSink};

use crate::scope::NamespaceScope;
use crate::trigger::Trigger;

const TTL: Duration = Duration::from_secs(60);
/// Pods being confirmed at once; hints beyond this are dropped (the watch catches up).
pub const MAX_PENDING: usize = 256;
/// Concurrent GETs to the apiserver.
pub const MAX_IN_FLIGHT: usize = 8;
/// When to GET, counted from the hint: admission runs before the apiserver stores the
/// pod or its binding, so the first GETs usually find the old state.
pub const CONFIRM_DELAYS: [u64; 9] = [5, 15, 30, 60, 120, 250, 500, 1000, 2000];

/// Reads a pod from the apiserver: `Ok(None)` when it does not exist.
pub trait PodGetter: Send + Sync + 'static {
    fn get(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<Option<Pod>, String>>;
}

impl PodGetter for kube::Client {
    fn get(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<Option<Pod>, String>> {
        let api: kube::Api<Pod> = kube::Api::namespaced(self.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move { api.get_opt(&name).await.map_err(|e| e.to_string()) })
    }
}

/// What a hint claims, to be checked against the apiserver.
#[derive(Clone, Debug, Default, PartialEq)]
struct Claim {
    uid: Option<String>,
    node: Option<String>,
}

#[derive(Default)]
struct State {
    /// `namespace/name` → the pod as the apiserver confirmed it, and when.
    confirmed: HashMap<String, (Arc<PodInfo>, Instant)>,
    /// `namespace/name` → what the hints claim (merged), while a confirmation runs.
    pending: HashMap<String, Claim>,
    /// `namespace/name` → UID of a created pod not bound yet (for its binding's hint).
    created: HashMap<String, (String, Instant)>,
}

#[derive(Clone)]
pub struct EarlyPods {
    state: Arc<Mutex<State>>,
    trigger: Trigger,
    /// `cacheNamespaces`: pods the watches would not hold are not overlaid either.
    scope: Arc<Vec<NamespaceScope>>,
    getter: Arc<dyn PodGetter>,
    in_flight: Arc<tokio::sync::Semaphore>,
    metrics: Option<prometheus::IntCounterVec>,
}

impl EarlyPods {
    pub fn new(trigger: Trigger, scope: Vec<NamespaceScope>, getter: Arc<dyn PodGetter>) -> Self {
        Self {
            state: Arc::default(),
            trigger,
            scope: Arc::new(scope),
            getter,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            metrics: None,
        }
    }

    /// Counts hints by outcome (`confirmed`, `refuted`, `unconfirmed`, `dropped`).
    pub fn with_metrics(mut self, registry: &prometheus::Registry) -> Self {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new("early_registration_hints_total", "Pod admission hints by outcome")
                .namespace("spire_controller_manager"),
            &["outcome"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(c.clone()));
        self.metrics = Some(c);
        self
    }

    fn count(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.with_label_values(&[outcome]).inc();
        }
    }

    /// Merges confirmed pods into the pod list of a snapshot.
    pub fn overlay(&self, pods: &mut Vec<Arc<PodInfo>>) {
        let mut st = self.state.lock().unwrap();
        // A hint that expires leaves the snapshot without an event from the watch: the
        // next pass declares that pod again.
        let expired: Vec<Arc<PodInfo>> =
            st.confirmed.values().filter(|(_, at)| at.elapsed() >= TTL).map(|(p, _)| p.clone()).collect();
        st.confirmed.retain(|_, (_, at)| at.elapsed() < TTL);
        for pod in expired {
            self.trigger.notify_change(|c| {
                c.pod(
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                )
            });
        }
        st.created.retain(|_, (_, at)| at.elapsed() < TTL);
        if st.confirmed.is_empty() {
            return;
        }
        // Where each confirmed pod's name is in the snapshot: one pass over the pods without
        // an allocation per pod (a pass at 100k pods must not pay for a few hints).
        let confirmed: Vec<(String, Arc<PodInfo>)> =
            st.confirmed.iter().map(|(k, (p, _))| (k.clone(), p.clone())).collect();
        let mut found: HashMap<(&str, &str), usize> = HashMap::new();
        let wanted: std::collections::HashSet<(&str, &str)> =
            confirmed.iter().filter_map(|(k, _)| k.split_once('/')).collect();
        for (i, p) in pods.iter().enumerate() {
            let at = (p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""));
            if let Some(&key) = wanted.get(&at) {
                found.insert(key, i);
            }
        }
        let index: HashMap<String, usize> = found.into_iter().map(|((ns, n), i)| (format!("{ns}/{n}"), i)).collect();
        for (key, pod) in confirmed {
            match index.get(&key) {
                // The store caught up (same pod, bound): the hint has served its purpose.
                Some(&i) if pods[i].metadata.uid == pod.metadata.uid && !pods[i].node_name().is_empty() => {
                    st.confirmed.remove(&key);
                }
                // The store still has the pod unbound (or an older pod of that name).
                Some(&i) => pods[i] = pod,
                None => pods.push(pod),
            }
        }
    }

    /// Checks a hint with the apiserver (see the module docs).
    fn confirm(&self, key: String, namespace: String, name: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut outcome = "unconfirmed";
            for delay in CONFIRM_DELAYS {
                let due = Duration::from_millis(delay);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let got = {
                    let Ok(_permit) = this.in_flight.acquire().await else { break };
                    this.getter.get(&namespace, &name).await
                };
                let claim = this.state.lock().unwrap().pending.get(&key).cloned().unwrap_or_default();
                match got {
                    Ok(Some(pod)) => {
                        let uid = pod.metadata.uid.clone();
                        if claim.uid.is_some() && uid != claim.uid {
                            // Not the pod the hint named (forged, or replaced meanwhile).
                            outcome = "refuted";
                            break;
                        }
                        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                        if node.is_empty() {
                            continue; // not bound yet
                        }
                        if claim.node.as_ref().is_some_and(|n| *n != node) {
                            outcome = "refuted";
                            break;
                        }
                        if !this.scope.is_empty() && !this.scope.iter().any(|s| s.admits(&pod)) {
                            outcome = "refuted";
                            break;
                        }
                        this.state
                            .lock()
                            .unwrap()
                            .confirmed
                            .insert(key.clone(), (Arc::new(PodInfo::from(pod)), Instant::now()));
                        outcome = "confirmed";
                        this.trigger.notify_change(|c| c.pod(&namespace, &name));
                        break;
                    }
                    // Not stored yet (admission runs first), or a passing error: try again.
                    Ok(None) | Err(_) => continue,
                }
            }
            this.state.lock().unwrap().pending.remove(&key);
            tracing::debug!(pod = %key, outcome, elapsed_ms = started.elapsed().as_millis() as u64, "early registration hint");
            this.count(outcome);
        });
    }

    /// Records a hint; starts a confirmation unless one runs for the pod already.
    fn hint(&self, namespace: String, name: String, claim: Claim) {
        let key = format!("{namespace}/{name}");
        let start = {
            let mut st = self.state.lock().unwrap();
            let full = st.pending.len() >= MAX_PENDING;
            match st.pending.get_mut(&key) {
                Some(c) => {
                    c.uid = c.uid.take().or(claim.uid);
                    c.node = c.node.take().or(claim.node);
                    false
                }
                None if full => {
                    drop(st);
                    self.count("dropped");
                    return;
                }
                None => {
                    st.pending.insert(key.clone(), claim);
                    true
                }
            }
        };
        if start {
            self.confirm(key, namespace, name);
        }
    }
}

impl PodSink for EarlyPods {
    fn observed(&self, ev: ObservedPod) {
        match ev {
            ObservedPod::Created(pod) => {
                let (Some(namespace), Some(name), Some(uid)) =
                    (pod.metadata.namespace.clone(), pod.metadata.name.clone(), pod.metadata.uid.clone())
                else {
                    return;
                };
                if uid.is_empty() || (!self.scope.is_empty() && !self.scope.iter().any(|s| s.admits(&pod))) {
                    return;
                }
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
                if node.is_none() {
                    // Nothing to register before the binding; remember the UID it claims.
                    let mut st = self.state.lock().unwrap();
                    if st.created.len() < MAX_PENDING {
                        st.created.insert(format!("{namespace}/{name}"), (uid, Instant::now()));
                    }
                    return;
                }
                self.hint(namespace, name, Claim { uid: Some(uid), node });
            }
            ObservedPod::Bound { namespace, name, node_name } => {
                let uid =
                    self.state.lock().unwrap().created.get(&format!("{namespace}/{name}")).map(|(u, _)| u.clone());
                self.hint(namespace, name, Claim { uid, node: Some(node_name) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, uid: &str, node: Option<&str>) -> Pod {
        let mut spec = json!({"containers": []});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": uid}, "spec": spec}))
            .unwrap()
    }

    /// The apiserver as a map (a unit test of the confirmation logic; the e2e tests use
    /// the real apiserver).
    #[derive(Default)]
    struct Api(Mutex<HashMap<String, Pod>>);

    impl PodGetter for Api {
        fn get(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<Option<Pod>, String>> {
            let p = self.0.lock().unwrap().get(&format!("{namespace}/{name}")).cloned();
            Box::pin(async move { Ok(p) })
        }
    }

    fn early(api: &Arc<Api>) -> EarlyPods {
        EarlyPods::new(Trigger::new(), Vec::new(), api.clone())
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_forged_pod_is_never_overlaid() {
        let api = Arc::new(Api::default());
        let e = early(&api);
        e.observed(ObservedPod::Created(Box::new(pod("ghost", "uid-x", Some("node-1")))));
        settle().await;
        let mut pods = vec![];
        e.overlay(&mut pods);
        assert!(pods.is_empty(), "no such pod in the apiserver");
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_pods_uid_with_another_node_is_refuted() {
        let api = Arc::new(Api::default());
        api.0.lock().unwrap().insert("ns/web".into(), pod("web", "uid-1", Some("node-1")));
        let e = early(&api);
        // A forged binding of the real pod to the attacker's node.
        e.observed(ObservedPod::Bound { namespace: "ns".into(), name: "web".into(), node_name: "evil".into() });
        // A forged creation naming the real pod with another UID.
        e.observed(ObservedPod::Created(Box::new(pod("web", "uid-2", Some("node-1")))));
        settle().await;
        let mut pods = vec![];
        e.overlay(&mut pods);
        assert!(pods.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_binding_confirmed_by_the_apiserver_is_overlaid_as_the_apiserver_has_it() {
        let api = Arc::new(Api::default());
        let e = early(&api);
        e.observed(ObservedPod::Created(Box::new(pod("web", "uid-1", None))));
        e.observed(ObservedPod::Bound { namespace: "ns".into(), name: "web".into(), node_name: "node-1".into() });
        // The binding is stored a moment after admission.
        tokio::time::sleep(Duration::from_millis(40)).await;
        let mut stored = pod("web", "uid-1", Some("node-1"));
        stored.metadata.labels = Some([("from".to_string(), "apiserver".to_string())].into());
        api.0.lock().unwrap().insert("ns/web".into(), stored);
        settle().await;
        let mut pods = vec![Arc::new(PodInfo::from(pod("web", "uid-1", None)))];
        e.overlay(&mut pods);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].node_name(), "node-1");
        assert_eq!(pods[0].metadata.labels.as_ref().unwrap()["from"], "apiserver");
        // Once the store has it bound, the overlay is dropped.
        let mut pods = vec![Arc::new(PodInfo::from(pod("web", "uid-1", Some("node-1"))))];
        e.overlay(&mut pods);
        assert!(e.state.lock().unwrap().confirmed.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn hints_are_bounded() {
        let api = Arc::new(Api::default());
        let e = early(&api);
        for i in 0..(MAX_PENDING + 50) {
            e.observed(ObservedPod::Bound { namespace: "ns".into(), name: format!("p{i}"), node_name: "n".into() });
        }
        assert_eq!(e.state.lock().unwrap().pending.len(), MAX_PENDING);
        settle().await;
        assert!(e.state.lock().unwrap().pending.is_empty(), "every confirmation gives up");
    }

    #[tokio::test(start_paused = true)]
    async fn pods_outside_cache_namespaces_are_not_overlaid() {
        let api = Arc::new(Api::default());
        let scope = vec![NamespaceScope {
            namespace: "ns".into(),
            labels: [("track".to_string(), "yes".to_string())].into(),
            fields: Default::default(),
        }];
        let e = EarlyPods::new(Trigger::new(), scope, api.clone());
        let mut tracked = pod("tracked", "u1", Some("n1"));
        tracked.metadata.labels = Some([("track".to_string(), "yes".to_string())].into());
        let untracked = pod("untracked", "u2", Some("n1"));
        api.0.lock().unwrap().insert("ns/tracked".into(), tracked.clone());
        api.0.lock().unwrap().insert("ns/untracked".into(), untracked.clone());
        e.observed(ObservedPod::Created(Box::new(tracked)));
        e.observed(ObservedPod::Created(Box::new(untracked)));
        settle().await;
        let mut pods = vec![];
        e.overlay(&mut pods);
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, vec!["tracked"]);
    }
}
