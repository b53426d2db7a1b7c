//! Watches feeding reflector stores, trimmed to what templates and selectors need,
//! and a `World` snapshot for the pure `declare` functions.
//!
//! Nothing is declared until every store of an enabled kind has completed its first
//! list: the controller never acts on an unsynced cache. A relist after a watch error
//! replaces a store atomically (kube's reflector buffers the list until it is complete).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use scm_api::{ClusterFederatedTrustDomain, ClusterSPIFFEID, ClusterStaticEntry};
use scm_core::World;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::reconcile::trigger::Trigger;

/// Which kinds to watch (from the config's `reconcile` block).
#[derive(Clone, Copy, Debug)]
pub struct WatchSet {
    pub cluster_spiffe_ids: bool,
    pub cluster_static_entries: bool,
    pub cluster_federated_trust_domains: bool,
}

/// One reflector store plus its sync state.
pub struct Watched<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub store: Store<K>,
    synced: Arc<AtomicBool>,
    enabled: bool,
}

impl<K: Resource + Clone + 'static> Watched<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    fn disabled() -> Self {
        let (store, _writer) = reflector::store();
        Self { store, synced: Arc::new(AtomicBool::new(true)), enabled: false }
    }

    pub fn is_synced(&self) -> bool {
        !self.enabled || self.synced.load(Ordering::Acquire)
    }

    pub fn state(&self) -> Vec<Arc<K>> {
        if self.enabled { self.store.state() } else { Vec::new() }
    }
}

/// All the stores the reconcilers read.
pub struct Stores {
    pub pods: Watched<Pod>,
    pub nodes: Watched<Node>,
    pub namespaces: Watched<Namespace>,
    pub endpoints: Watched<Endpoints>,
    pub endpoint_slices: Watched<EndpointSlice>,
    pub cluster_spiffe_ids: Watched<ClusterSPIFFEID>,
    pub cluster_static_entries: Watched<ClusterStaticEntry>,
    pub cluster_federated_trust_domains: Watched<ClusterFederatedTrustDomain>,
}

impl Stores {
    /// Starts the watches. `entries` is poked on any change relevant to entries,
    /// `federation` on ClusterFederatedTrustDomain changes.
    pub fn spawn(
        client: &Client,
        set: WatchSet,
        entries: &Trigger,
        federation: &Trigger,
        cancel: &CancellationToken,
    ) -> Arc<Self> {
        let pods_needed = set.cluster_spiffe_ids;
        let s = Stores {
            pods: watch_with(client, pods_needed, entries, cancel, "pods", trim_pod, None),
            nodes: watch_with(client, pods_needed, entries, cancel, "nodes", trim_node, None),
            namespaces: watch_with(client, pods_needed, entries, cancel, "namespaces", trim_meta, None),
            endpoints: watch_with(client, pods_needed, entries, cancel, "endpoints", trim_meta, None),
            endpoint_slices: watch_with(client, pods_needed, entries, cancel, "endpointslices", trim_meta, None),
            cluster_spiffe_ids: watch_specs(client, set.cluster_spiffe_ids, entries, cancel, "clusterspiffeids"),
            cluster_static_entries: watch_specs(
                client,
                set.cluster_static_entries,
                entries,
                cancel,
                "clusterstaticentries",
            ),
            cluster_federated_trust_domains: watch_specs(
                client,
                set.cluster_federated_trust_domains,
                federation,
                cancel,
                "clusterfederatedtrustdomains",
            ),
        };
        Arc::new(s)
    }

    /// True when every enabled watch has completed its first list.
    pub fn entries_synced(&self) -> bool {
        self.pods.is_synced()
            && self.nodes.is_synced()
            && self.namespaces.is_synced()
            && self.endpoints.is_synced()
            && self.endpoint_slices.is_synced()
            && self.cluster_spiffe_ids.is_synced()
            && self.cluster_static_entries.is_synced()
    }

    pub fn unsynced(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let checks: [(&'static str, bool); 8] = [
            ("pods", self.pods.is_synced()),
            ("nodes", self.nodes.is_synced()),
            ("namespaces", self.namespaces.is_synced()),
            ("endpoints", self.endpoints.is_synced()),
            ("endpointslices", self.endpoint_slices.is_synced()),
            ("clusterspiffeids", self.cluster_spiffe_ids.is_synced()),
            ("clusterstaticentries", self.cluster_static_entries.is_synced()),
            ("clusterfederatedtrustdomains", self.cluster_federated_trust_domains.is_synced()),
        ];
        for (name, ok) in checks {
            if !ok {
                out.push(name);
            }
        }
        out
    }

    pub fn snapshot(&self) -> World {
        World {
            pods: self.pods.state(),
            nodes: self.nodes.state(),
            namespaces: self.namespaces.state(),
            endpoints: self.endpoints.state(),
            endpoint_slices: self.endpoint_slices.state(),
            cluster_spiffe_ids: self.cluster_spiffe_ids.state(),
            cluster_static_entries: self.cluster_static_entries.state(),
        }
    }
}

/// A watch of one of our custom resources: only spec changes (a new `generation`),
/// creations and deletions trigger a pass. Our own status writes come back through the
/// watch and would otherwise cost one more whole pass each.
fn watch_specs<K>(
    client: &Client,
    enabled: bool,
    trigger: &Trigger,
    cancel: &CancellationToken,
    name: &'static str,
) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    watch_with(client, enabled, trigger, cancel, name, trim_meta, Some(spec_version::<K>))
}

fn spec_version<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!("{}/{}", m.uid.as_deref().unwrap_or(""), m.generation.unwrap_or(0))
}

fn watch_with<K>(
    client: &Client,
    enabled: bool,
    trigger: &Trigger,
    cancel: &CancellationToken,
    name: &'static str,
    trim: fn(&mut K),
    relevant: Option<fn(&K) -> String>,
) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    if !enabled {
        return Watched::disabled();
    }
    let api: Api<K> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let synced = Arc::new(AtomicBool::new(false));
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).modify(trim)).default_backoff();
    tokio::spawn(run_watch(stream, name, synced.clone(), trigger.clone(), cancel.clone(), relevant));
    Watched { store, synced, enabled: true }
}

async fn run_watch<K, S>(
    stream: S,
    name: &'static str,
    synced: Arc<AtomicBool>,
    trigger: Trigger,
    cancel: CancellationToken,
    relevant: Option<fn(&K) -> String>,
) where
    K: Resource + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut failing = false;
    // Last relevant version per object name, when `relevant` filters events.
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            None => return,
            Some(Ok(event)) => {
                if failing {
                    tracing::info!(watch = name, "watch recovered");
                    failing = false;
                }
                match event {
                    watcher::Event::InitDone => {
                        if !synced.swap(true, Ordering::AcqRel) {
                            tracing::debug!(watch = name, "initial list complete");
                        }
                        trigger.notify();
                    }
                    watcher::Event::Init => seen.clear(),
                    watcher::Event::InitApply(obj) => {
                        if let Some(f) = relevant {
                            seen.insert(obj.meta().name.clone().unwrap_or_default(), f(&obj));
                        }
                    }
                    watcher::Event::Apply(obj) => match relevant {
                        None => trigger.notify(),
                        Some(f) => {
                            let version = f(&obj);
                            if seen.insert(obj.meta().name.clone().unwrap_or_default(), version.clone()).as_ref()
                                != Some(&version)
                            {
                                trigger.notify();
                            }
                        }
                    },
                    watcher::Event::Delete(obj) => {
                        seen.remove(obj.meta().name.as_deref().unwrap_or_default());
                        trigger.notify();
                    }
                }
            }
            Some(Err(err)) => {
                if !failing {
                    tracing::warn!(watch = name, error = %err, "watch failed; retrying with backoff (the last complete list stays in use)");
                }
                failing = true;
            }
        }
    }
}

/// Drops what no template, selector or status write reads: managed fields, the
/// last-applied annotation and the status.
fn trim_pod(pod: &mut Pod) {
    trim_meta(pod);
    pod.status = None;
}

fn trim_node(node: &mut Node) {
    trim_meta(node);
    node.status = None;
}

fn trim_meta<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The Kubernetes world source for the entry reconciler, with pods observed at admission
/// overlaid (early registration).
pub struct KubeWorld(pub Arc<Stores>, pub Option<crate::k8s::early::EarlyPods>);

impl crate::reconcile::entries::WorldSource for KubeWorld {
    fn snapshot(&self) -> Result<World, String> {
        let unsynced = self.0.unsynced();
        let entry_unsynced: Vec<&str> = unsynced.into_iter().filter(|n| *n != "clusterfederatedtrustdomains").collect();
        if !entry_unsynced.is_empty() {
            return Err(format!("caches not synced: {}", entry_unsynced.join(", ")));
        }
        let mut world = self.0.snapshot();
        if let Some(early) = &self.1 {
            early.overlay(&mut world.pods);
        }
        Ok(world)
    }
}
