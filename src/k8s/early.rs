//! Early registration: pods seen by the admission webhook (pod CREATE and `pods/binding`)
//! before the watch delivers them. They overlay the pod store in the next snapshot, so an
//! entry can be written as soon as the pod is bound, and a pass is triggered at once.
//!
//! The overlay only ever adds information the watch will confirm a moment later; an
//! observed pod is dropped once the store has it with the same node, or after a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scm_core::PodInfo;
use scm_webhook::{ObservedPod, PodSink};

use crate::k8s::world::NamespaceScope;
use crate::reconcile::trigger::Trigger;

const TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    /// `namespace/name` → (pod as admitted, when).
    created: HashMap<String, (Arc<PodInfo>, Instant)>,
    /// `namespace/name` → (node, when), from `pods/binding`.
    bound: HashMap<String, (String, Instant)>,
}

#[derive(Clone)]
pub struct EarlyPods {
    state: Arc<Mutex<State>>,
    trigger: Trigger,
    /// `cacheNamespaces`: pods the watches would not hold are not overlaid either.
    scope: Arc<Vec<NamespaceScope>>,
}

impl EarlyPods {
    pub fn new(trigger: Trigger, scope: Vec<NamespaceScope>) -> Self {
        Self { state: Arc::default(), trigger, scope: Arc::new(scope) }
    }

    /// Merges observations into the pod list of a snapshot.
    pub fn overlay(&self, pods: &mut Vec<Arc<PodInfo>>) {
        let mut st = self.state.lock().unwrap();
        st.created.retain(|_, (_, at)| at.elapsed() < TTL);
        st.bound.retain(|_, (_, at)| at.elapsed() < TTL);
        if st.created.is_empty() && st.bound.is_empty() {
            return;
        }
        let mut index: HashMap<String, usize> = HashMap::with_capacity(pods.len());
        for (i, p) in pods.iter().enumerate() {
            index.insert(key_of(p), i);
        }
        let bound: Vec<(String, String)> = st.bound.iter().map(|(k, (n, _))| (k.clone(), n.clone())).collect();
        let mut settled = Vec::new();
        for (key, node) in bound {
            match index.get(&key) {
                Some(&i) => {
                    let stored = &pods[i];
                    if stored.spec.node_name.is_some() {
                        settled.push(key);
                    } else {
                        let mut p = (**stored).clone();
                        Arc::make_mut(&mut p.spec).node_name = Some(node);
                        pods[i] = Arc::new(p);
                    }
                }
                None => {
                    if let Some((p, _)) = st.created.get(&key) {
                        let mut p = (**p).clone();
                        Arc::make_mut(&mut p.spec).node_name = Some(node);
                        index.insert(key.clone(), pods.len());
                        pods.push(Arc::new(p));
                    }
                }
            }
        }
        for key in settled {
            st.bound.remove(&key);
        }
        let created: Vec<(String, Arc<PodInfo>)> =
            st.created.iter().map(|(k, (p, _))| (k.clone(), p.clone())).collect();
        for (key, p) in created {
            if index.contains_key(&key) {
                st.created.remove(&key);
            } else if !p.node_name().is_empty() {
                pods.push(p);
            }
        }
    }
}

fn key_of(p: &PodInfo) -> String {
    format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""))
}

impl PodSink for EarlyPods {
    fn observed(&self, ev: ObservedPod) {
        let now = Instant::now();
        {
            let mut st = self.state.lock().unwrap();
            match ev {
                ObservedPod::Created(pod) => {
                    if pod.metadata.uid.as_deref().unwrap_or("").is_empty() {
                        return;
                    }
                    if !self.scope.is_empty() && !self.scope.iter().any(|s| s.admits(&pod)) {
                        return;
                    }
                    let pod = PodInfo::from(*pod);
                    let key = key_of(&pod);
                    st.created.insert(key, (Arc::new(pod), now));
                }
                ObservedPod::Bound { namespace, name, node_name } => {
                    st.bound.insert(format!("{namespace}/{name}"), (node_name, now));
                }
            }
        }
        self.trigger.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>) -> Pod {
        let mut spec = json!({"containers": []});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn binding_before_the_watch_sees_it() {
        let early = EarlyPods::new(Trigger::new(), Vec::new());
        early.observed(ObservedPod::Created(Box::new(pod("a", None))));
        let mut pods = vec![];
        early.overlay(&mut pods);
        assert!(pods.is_empty(), "an unbound pod adds nothing");
        early.observed(ObservedPod::Bound { namespace: "ns".into(), name: "a".into(), node_name: "n1".into() });
        early.overlay(&mut pods);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].spec.node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn binding_applies_to_a_stored_unbound_pod_and_settles() {
        let early = EarlyPods::new(Trigger::new(), Vec::new());
        early.observed(ObservedPod::Bound { namespace: "ns".into(), name: "a".into(), node_name: "n1".into() });
        let mut pods = vec![Arc::new(PodInfo::from(pod("a", None)))];
        early.overlay(&mut pods);
        assert_eq!(pods[0].spec.node_name.as_deref(), Some("n1"));
        // Once the store has the node, the observation is dropped.
        let mut pods = vec![Arc::new(PodInfo::from(pod("a", Some("n1"))))];
        early.overlay(&mut pods);
        assert!(early.state.lock().unwrap().bound.is_empty());
    }

    #[test]
    fn pods_outside_cache_namespaces_are_not_overlaid() {
        let scope = vec![NamespaceScope {
            namespace: "ns".into(),
            labels: [("track".to_string(), "yes".to_string())].into(),
            fields: Default::default(),
        }];
        let early = EarlyPods::new(Trigger::new(), scope);
        let mut tracked = pod("tracked", Some("n1"));
        tracked.metadata.labels = Some([("track".to_string(), "yes".to_string())].into());
        let mut elsewhere = tracked.clone();
        elsewhere.metadata.namespace = Some("other".into());
        elsewhere.metadata.name = Some("elsewhere".into());
        for p in [tracked, elsewhere, pod("unlabelled", Some("n1"))] {
            early.observed(ObservedPod::Created(Box::new(p)));
        }
        let mut pods = vec![];
        early.overlay(&mut pods);
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, vec!["tracked"]);
    }
}
