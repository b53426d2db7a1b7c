//! The Kubernetes world of the entry and federation reconcilers: which kinds are
//! watched and how ([`Stores`]: pods kept as compact records with only the fields the
//! templates read, scoped by `cacheNamespaces`; ClusterSPIFFEIDs filtered by
//! `filterByClassName`), and the `World` snapshot the pure `declare` functions read.
//!
//! Nothing is declared until every store of an enabled kind has completed its first
//! list: the controller never acts on an unsynced cache.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::runtime::watcher;
use scm_api::{CLASS_NAME_LABEL, ClusterFederatedTrustDomain, ClusterSPIFFEID, ClusterStaticEntry};
use scm_core::{PodFields, PodInfo, World};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use super::pods::PodFieldsKept;
use super::pods::{SpecInterner, pod_changed};
pub use super::watch::Watched;
use super::watch::{
    Convert, Optional, Watches, cluster_api, content_changed, namespaced_apis, spec_changed, touches_everything,
    touches_its_namespace, trim_meta,
};
use crate::scope::NamespaceScope;
use crate::trigger::Trigger;

/// Which kinds to watch (from the config's `reconcile` block).
#[derive(Clone, Debug)]
pub struct WatchSet {
    pub cluster_spiffe_ids: bool,
    pub cluster_static_entries: bool,
    pub cluster_federated_trust_domains: bool,
    /// `className` and `watchClassless`: only ClusterSPIFFEIDs of this install decide
    /// which pod fields are kept.
    pub class_name: String,
    pub watch_classless: bool,
    /// `filterByClassName`: watch only the ClusterSPIFFEIDs labelled
    /// `spire.spiffe.io/class-name: <className>`.
    pub filter_by_class_name: bool,
    /// `cacheNamespaces`: where pods, Endpoints and EndpointSlices are watched (empty:
    /// the whole cluster).
    pub namespaces: Vec<NamespaceScope>,
}

impl WatchSet {
    /// What the configuration asks to watch.
    pub fn from_config(config: &scm_config::Config) -> Self {
        Self {
            cluster_spiffe_ids: config.reconcile.cluster_spiffe_ids,
            cluster_static_entries: config.reconcile.cluster_static_entries,
            cluster_federated_trust_domains: config.reconcile.cluster_federated_trust_domains,
            class_name: config.class_name.clone(),
            watch_classless: config.watch_classless,
            filter_by_class_name: config.filter_by_class_name,
            namespaces: NamespaceScope::from_config(&config.cache_namespaces),
        }
    }
}

/// Endpoints and EndpointSlices only add DNS names (`autoPopulateDNSNames`); either may
/// be missing from the RBAC (the SPIRE helm chart grants Endpoints only).
const ENDPOINTS: Optional = Optional {
    capability: "endpoints",
    missing_rule: "list/watch endpoints (core)",
    lost: "autoPopulateDNSNames takes Service names from EndpointSlices only",
};
const ENDPOINT_SLICES: Optional = Optional {
    capability: "endpointslices",
    missing_rule: "list/watch endpointslices.discovery.k8s.io",
    lost: "autoPopulateDNSNames takes Service names from Endpoints only",
};

/// All the stores the reconcilers read.
pub struct Stores {
    pub pods: Watched<PodInfo>,
    pub nodes: Watched<Node>,
    pub namespaces: Watched<Namespace>,
    pub endpoints: Watched<Endpoints>,
    pub endpoint_slices: Watched<EndpointSlice>,
    pub cluster_spiffe_ids: Watched<ClusterSPIFFEID>,
    pub cluster_static_entries: Watched<ClusterStaticEntry>,
    pub cluster_federated_trust_domains: Watched<ClusterFederatedTrustDomain>,
    pub pod_fields: PodFieldsKept,
}

impl Stores {
    /// Starts the watches. `entries` is poked on any change relevant to entries,
    /// `federation` on ClusterFederatedTrustDomain changes.
    ///
    /// The pod watch starts once the ClusterSPIFFEIDs are listed, keeping only the pod
    /// fields their templates read (see [`PodFieldsKept`]).
    pub fn spawn(
        client: &Client,
        set: WatchSet,
        entries: &Trigger,
        federation: &Trigger,
        cancel: &CancellationToken,
        degradations: &crate::degraded::Degradations,
    ) -> Arc<Self> {
        let pods_needed = set.cluster_spiffe_ids;
        let w = Watches { trigger: entries, cancel, degradations };
        let (pod_params, pod_rx) = watch::channel(None);
        let pod_apis = namespaced_apis::<Pod>(client, &set.namespaces, pods_needed);
        let pod_applied: Vec<_> = pod_apis.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let specs = SpecInterner::default();
        let convert: Convert<Pod, PodInfo, PodFields> = Arc::new(move |pod, keep| specs.pod_info(pod, keep));
        let pods = w.spawn("pods", pod_apis, convert, pod_rx, pod_applied.clone(), pod_changed, touches_pod, None);
        let pod_fields = PodFieldsKept {
            requested: pod_params,
            applied: pod_applied,
            per_cr: Mutex::default(),
            class_name: set.class_name.clone(),
            watch_classless: set.watch_classless,
        };
        let for_pods = |config: &watcher::Config| pods_needed.then(|| config.clone());
        let for_crs = |enabled: bool, config: &watcher::Config| enabled.then(|| config.clone());
        let all = watcher::Config::default();
        let cspiffeid_config = if set.filter_by_class_name {
            watcher::Config::default().labels(&format!("{CLASS_NAME_LABEL}={}", set.class_name))
        } else {
            watcher::Config::default()
        };
        let s = Stores {
            pods,
            nodes: w.fixed(
                "nodes",
                cluster_api(client, for_pods(&all)),
                trim_node,
                content_changed,
                touches_node,
                None,
            ),
            namespaces: w.fixed(
                "namespaces",
                cluster_api(client, for_pods(&all)),
                trim_meta,
                content_changed,
                touches_namespace,
                None,
            ),
            endpoints: w.fixed(
                "endpoints",
                namespaced_apis(client, &set.namespaces, pods_needed),
                trim_meta,
                content_changed,
                touches_its_namespace,
                Some(ENDPOINTS),
            ),
            endpoint_slices: w.fixed(
                "endpointslices",
                namespaced_apis(client, &set.namespaces, pods_needed),
                trim_meta,
                content_changed,
                touches_its_namespace,
                Some(ENDPOINT_SLICES),
            ),
            cluster_spiffe_ids: w.fixed(
                "clusterspiffeids",
                cluster_api(client, for_crs(set.cluster_spiffe_ids, &cspiffeid_config)),
                trim_meta,
                spec_changed,
                touches_everything,
                None,
            ),
            cluster_static_entries: w.fixed(
                "clusterstaticentries",
                cluster_api(client, for_crs(set.cluster_static_entries, &all)),
                trim_meta,
                spec_changed,
                touches_everything,
                None,
            ),
            cluster_federated_trust_domains: Watches { trigger: federation, ..w }.fixed(
                "clusterfederatedtrustdomains",
                cluster_api(client, for_crs(set.cluster_federated_trust_domains, &all)),
                trim_meta,
                spec_or_refresh_changed,
                touches_everything,
                None,
            ),
            pod_fields,
        };
        let s = Arc::new(s);
        if pods_needed {
            tokio::spawn(start_pod_watch(Arc::downgrade(&s), cancel.clone()));
        }
        s
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

/// Waits for the ClusterSPIFFEIDs to be listed, then starts the pod watch with the
/// fields their templates read (so a start lists the pods once, already trimmed).
async fn start_pod_watch(stores: std::sync::Weak<Stores>, cancel: CancellationToken) {
    loop {
        {
            let Some(s) = stores.upgrade() else { return };
            if s.cluster_spiffe_ids.is_synced() {
                let _ = s.pod_fields.ensure(&s.cluster_spiffe_ids.state());
                return;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// A pod's change touches that pod; a node's, the pods on it; a namespace's, its pods.
fn touches_pod(pod: &PodInfo, c: &mut scm_core::Changes) {
    c.pod(pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default());
}

fn touches_node(node: &Node, c: &mut scm_core::Changes) {
    c.node(node.metadata.name.as_deref().unwrap_or_default());
}

fn touches_namespace(ns: &Namespace, c: &mut scm_core::Changes) {
    c.namespace(ns.metadata.name.as_deref().unwrap_or_default());
}

fn trim_node(node: &mut Node) {
    trim_meta(node);
    node.status = None;
}

/// The Kubernetes world source for the entry reconciler, with pods observed at admission
/// overlaid (early registration).
pub struct KubeWorld(pub Arc<Stores>, pub Option<crate::k8s::early::EarlyPods>);

impl crate::reconcile::ports::WorldSource for KubeWorld {
    fn snapshot(&self) -> Result<World, String> {
        let unsynced = self.0.unsynced();
        let entry_unsynced: Vec<&str> = unsynced.into_iter().filter(|n| *n != "clusterfederatedtrustdomains").collect();
        if !entry_unsynced.is_empty() {
            return Err(format!("caches not synced: {}", entry_unsynced.join(", ")));
        }
        self.0.pod_fields.ensure(&self.0.cluster_spiffe_ids.state())?;
        let mut world = self.0.snapshot();
        if let Some(early) = &self.1 {
            early.overlay(&mut world.pods);
        }
        Ok(world)
    }
}

/// CRs from the Kubernetes watch (only once synced).
/// A ClusterFederatedTrustDomain's spec, or its refresh annotation, changed.
fn spec_or_refresh_changed(old: &ClusterFederatedTrustDomain, new: &ClusterFederatedTrustDomain) -> bool {
    let refresh = |cr: &ClusterFederatedTrustDomain| {
        cr.metadata.annotations.as_ref().and_then(|a| a.get(scm_api::REFRESH_BUNDLE_ANNOTATION)).cloned()
    };
    spec_changed(old, new) || refresh(old) != refresh(new)
}

pub struct KubeCftds(pub Arc<Stores>);

impl crate::reconcile::ports::CftdSource for KubeCftds {
    fn list(&self) -> Result<Vec<Arc<ClusterFederatedTrustDomain>>, String> {
        if !self.0.cluster_federated_trust_domains.is_synced() {
            return Err("ClusterFederatedTrustDomain cache not synced".into());
        }
        Ok(self.0.cluster_federated_trust_domains.state())
    }
}
