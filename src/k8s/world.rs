//! Watches feeding reflector stores, trimmed to what declaration and the templates read
//! (pods: [`PodFieldsKept`]), scoped by `cacheNamespaces` and `filterByClassName`,
//! and a `World` snapshot for the pure `declare` functions.
//!
//! Nothing is declared until every store of an enabled kind has completed its first
//! list: the controller never acts on an unsynced cache. A relist after a watch error
//! replaces a store atomically (kube's reflector buffers the list until it is complete).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, PodSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use scm_api::{ClusterFederatedTrustDomain, ClusterSPIFFEID, ClusterStaticEntry};
use scm_core::World;
use scm_core::{PodFields, PodInfo};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::reconcile::trigger::Trigger;

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

/// One namespace of `cacheNamespaces`, with its equality selectors (`{key: value}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceScope {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
}

impl NamespaceScope {
    /// From the config's `cacheNamespaces` map.
    pub fn from_config(namespaces: &BTreeMap<String, scm_config::NamespaceCacheConfig>) -> Vec<Self> {
        namespaces
            .iter()
            .map(|(ns, c)| NamespaceScope {
                namespace: ns.clone(),
                labels: c.label_selectors.clone(),
                fields: c.field_selectors.clone(),
            })
            .collect()
    }

    fn selector(m: &BTreeMap<String, String>) -> Option<String> {
        (!m.is_empty()).then(|| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
    }

    /// Whether the watch of this namespace would hold `pod`. Field selectors other than
    /// `metadata.name` / `metadata.namespace` cannot be judged from an admitted pod: no.
    pub fn admits(&self, pod: &Pod) -> bool {
        let m = &pod.metadata;
        let labels_ok = self.labels.iter().all(|(k, v)| m.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
        let fields_ok = self.fields.iter().all(|(k, v)| match k.as_str() {
            "metadata.name" => m.name.as_ref() == Some(v),
            "metadata.namespace" => m.namespace.as_ref() == Some(v),
            _ => false,
        });
        m.namespace.as_deref() == Some(self.namespace.as_str()) && labels_ok && fields_ok
    }
}

/// The label upstream's `filterByClassName` selects on.
pub const CLASS_NAME_LABEL: &str = "spire.spiffe.io/class-name";

/// The stores of one kind (one per watched namespace under `cacheNamespaces`, else one)
/// plus their sync state.
pub struct Watched<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    parts: Vec<(Store<K>, Arc<AtomicBool>)>,
}

impl<K: Resource + Clone + 'static> Watched<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    pub fn is_synced(&self) -> bool {
        self.parts.iter().all(|(_, synced)| synced.load(Ordering::Acquire))
    }

    pub fn state(&self) -> Vec<Arc<K>> {
        match self.parts.as_slice() {
            [(store, _)] => store.state(),
            parts => parts.iter().flat_map(|(store, _)| store.state()).collect(),
        }
    }
}

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
    ) -> Arc<Self> {
        let pods_needed = set.cluster_spiffe_ids;
        let w = Watches { trigger: entries, cancel };
        let (pod_params, pod_rx) = watch::channel(None);
        let pod_apis = namespaced_apis::<Pod>(client, &set.namespaces, pods_needed);
        let pod_applied: Vec<_> = pod_apis.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let specs = SpecInterner::default();
        let convert: Convert<Pod, PodInfo, PodFields> = Arc::new(move |pod, keep| specs.pod_info(pod, keep));
        let pods = w.spawn("pods", pod_apis, convert, pod_rx, pod_applied.clone(), pod_changed);
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
            nodes: w.fixed("nodes", cluster_api(client, for_pods(&all)), trim_node, content_changed),
            namespaces: w.fixed("namespaces", cluster_api(client, for_pods(&all)), trim_meta, content_changed),
            endpoints: w.fixed(
                "endpoints",
                namespaced_apis(client, &set.namespaces, pods_needed),
                trim_meta,
                content_changed,
            ),
            endpoint_slices: w.fixed(
                "endpointslices",
                namespaced_apis(client, &set.namespaces, pods_needed),
                trim_meta,
                content_changed,
            ),
            cluster_spiffe_ids: w.fixed(
                "clusterspiffeids",
                cluster_api(client, for_crs(set.cluster_spiffe_ids, &cspiffeid_config)),
                trim_meta,
                spec_changed,
            ),
            cluster_static_entries: w.fixed(
                "clusterstaticentries",
                cluster_api(client, for_crs(set.cluster_static_entries, &all)),
                trim_meta,
                spec_changed,
            ),
            cluster_federated_trust_domains: Watches { trigger: federation, ..w }.fixed(
                "clusterfederatedtrustdomains",
                cluster_api(client, for_crs(set.cluster_federated_trust_domains, &all)),
                trim_meta,
                spec_changed,
            ),
            pod_fields,
        };
        let s = Arc::new(s);
        if pods_needed {
            tokio::spawn(start_pod_watch(Arc::downgrade(&s), cancel.clone()));
        }
        s
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

/// The pod fields the pod store keeps: what declaration itself reads plus what the
/// templates of the ClusterSPIFFEIDs can read ([`scm_core::pod_fields_needed`]); the
/// rest of each pod (containers, volumes, status, annotations, ...) is dropped as it
/// arrives. When a ClusterSPIFFEID starts reading a field the store does not hold, the
/// pods are listed again with the wider set, and no pass runs until that list is
/// complete. The set only grows while the process runs.
pub struct PodFieldsKept {
    /// What the pod watch trims to (`None` until the ClusterSPIFFEIDs are listed).
    requested: watch::Sender<Option<PodFields>>,
    /// What every pod in each store holds (set when a list trimmed that way completes).
    applied: Vec<Arc<Mutex<Option<PodFields>>>>,
    /// Per ClusterSPIFFEID `uid/generation`: the fields its templates read.
    per_cr: Mutex<HashMap<String, PodFields>>,
    class_name: String,
    watch_classless: bool,
}

impl PodFieldsKept {
    fn needed(&self, crs: &[Arc<ClusterSPIFFEID>]) -> PodFields {
        let mut per_cr = self.per_cr.lock().unwrap();
        let mut fresh = HashMap::with_capacity(crs.len());
        let mut out = scm_core::pod_fields_always();
        let mine = crs.iter().filter(|cr| {
            scm_core::class_matches(cr.spec.class_name.as_deref(), &self.class_name, self.watch_classless)
        });
        for cr in mine {
            let key = spec_version(cr.as_ref());
            let fields = per_cr.remove(&key).unwrap_or_else(|| scm_core::pod_fields_of(&cr.spec));
            out.union(&fields);
            fresh.insert(key, fields);
        }
        *per_cr = fresh;
        out
    }

    /// `Ok` when the pod store holds every field `crs` can read; otherwise asks for a
    /// list with the wider set (once) and says what is missing.
    fn ensure(&self, crs: &[Arc<ClusterSPIFFEID>]) -> Result<(), String> {
        let need = self.needed(crs);
        if self.applied.iter().all(|a| a.lock().unwrap().as_ref().is_some_and(|a| a.covers(&need))) {
            return Ok(());
        }
        let mut widened = None;
        self.requested.send_if_modified(|req| {
            let mut wider = req.clone().unwrap_or_default();
            if req.is_some() && wider.covers(&need) {
                return false;
            }
            wider.union(&need);
            widened = Some(wider.clone());
            *req = Some(wider);
            true
        });
        if let Some(w) = widened {
            tracing::info!(keep = %w, "listing pods, keeping the fields the ClusterSPIFFEID templates read");
        }
        Err(format!("pods are being listed again to keep {need}"))
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

/// What every watch shares.
#[derive(Clone, Copy)]
struct Watches<'a> {
    trigger: &'a Trigger,
    cancel: &'a CancellationToken,
}

/// One list+watch: where, and with which selectors.
type ApiAndConfig<K> = (Api<K>, watcher::Config);

/// A cluster-wide watch (`None`: the kind is not watched).
fn cluster_api<K>(client: &Client, config: Option<watcher::Config>) -> Vec<ApiAndConfig<K>>
where
    K: Resource,
    K::DynamicType: Default,
{
    config.map(|c| (Api::all(client.clone()), c)).into_iter().collect()
}

/// A namespaced kind: cluster-wide, or one watch per `cacheNamespaces` entry (none when
/// not `enabled`).
fn namespaced_apis<K>(client: &Client, namespaces: &[NamespaceScope], enabled: bool) -> Vec<ApiAndConfig<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if !enabled {
        return Vec::new();
    }
    if namespaces.is_empty() {
        return vec![(Api::all(client.clone()), watcher::Config::default())];
    }
    namespaces
        .iter()
        .map(|n| {
            let mut c = watcher::Config::default();
            if let Some(l) = NamespaceScope::selector(&n.labels) {
                c = c.labels(&l);
            }
            if let Some(f) = NamespaceScope::selector(&n.fields) {
                c = c.fields(&f);
            }
            (Api::namespaced(client.clone(), &n.namespace), c)
        })
        .collect()
}

/// What a store holds.
trait Storable: Resource<DynamicType: Eq + std::hash::Hash + Clone + Default> + Clone + Send + Sync + 'static {}

impl<S> Storable for S where
    S: Resource<DynamicType: Eq + std::hash::Hash + Clone + Default> + Clone + Send + Sync + 'static
{
}

/// What a watch lists and decodes.
trait Watchable: Storable + DeserializeOwned + std::fmt::Debug {}

impl<K: Storable + DeserializeOwned + std::fmt::Debug> Watchable for K {}

/// Turns a watched object into what its store keeps, given the watch's parameters.
type Convert<K, S, T> = Arc<dyn Fn(K, &T) -> S + Send + Sync>;

impl Watches<'_> {
    /// A watch that stores its objects trimmed by `trim`, which never changes.
    fn fixed<K: Watchable>(
        self,
        name: &'static str,
        apis: Vec<ApiAndConfig<K>>,
        trim: fn(&mut K),
        changed: fn(&K, &K) -> bool,
    ) -> Watched<K> {
        let (params, rx) = watch::channel(Some(()));
        // The sender is dropped: the watch is never restarted.
        drop(params);
        let applied = apis.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let convert: Convert<K, K, ()> = Arc::new(move |mut obj, _| {
            trim(&mut obj);
            obj
        });
        self.spawn(name, apis, convert, rx, applied, changed)
    }

    /// Watches of `K` stored as `S` by `convert` with parameters `T`, one per entry of
    /// `apis` (none: the kind is not watched): each new value of `params` restarts them
    /// (a fresh list, swapped into the store when complete); `applied[i]` is set to the
    /// parameters of the last complete list of `apis[i]`.
    fn spawn<K: Watchable, S: Storable, T: Clone + Send + Sync + 'static>(
        self,
        name: &'static str,
        apis: Vec<ApiAndConfig<K>>,
        convert: Convert<K, S, T>,
        params: watch::Receiver<Option<T>>,
        applied: Vec<Arc<Mutex<Option<T>>>>,
        changed: fn(&S, &S) -> bool,
    ) -> Watched<S> {
        let mut parts = Vec::with_capacity(apis.len());
        for ((api, config), applied) in apis.into_iter().zip(applied) {
            let writer = reflector::store::Writer::default();
            let store = writer.as_reader();
            let synced = Arc::new(AtomicBool::new(false));
            let w = WatchTask {
                api,
                config,
                name,
                writer,
                store: store.clone(),
                synced: synced.clone(),
                trigger: self.trigger.clone(),
                convert: convert.clone(),
                applied,
                changed,
            };
            tokio::spawn(w.run(params.clone(), self.cancel.clone()));
            parts.push((store, synced));
        }
        Watched { parts }
    }
}

struct WatchTask<K, S, T>
where
    K: Resource + Clone + 'static,
    S: Resource + Clone + 'static,
    S::DynamicType: Eq + std::hash::Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    writer: reflector::store::Writer<S>,
    store: Store<S>,
    synced: Arc<AtomicBool>,
    trigger: Trigger,
    convert: Convert<K, S, T>,
    applied: Arc<Mutex<Option<T>>>,
    changed: fn(&S, &S) -> bool,
}

impl<K: Watchable, S: Storable, T: Clone + Send + Sync + 'static> WatchTask<K, S, T> {
    async fn run(mut self, mut params: watch::Receiver<Option<T>>, cancel: CancellationToken) {
        let mut restartable = true;
        loop {
            // Wait for parameters (the pod watch waits for the ClusterSPIFFEIDs).
            let current = loop {
                if let Some(p) = params.borrow_and_update().clone() {
                    break p;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = params.changed() => if r.is_err() { return },
                }
            };
            let stream = watcher(self.api.clone(), self.config.clone()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            let mut failing = false;
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = params.changed(), if restartable => {
                        match r {
                            Ok(()) => {
                                tracing::info!(watch = self.name, "restarting the watch with new trimming");
                                break;
                            }
                            Err(_) => { restartable = false; continue; }
                        }
                    }
                    next = stream.next() => next,
                };
                match next {
                    None => return,
                    Some(Ok(event)) => {
                        if failing {
                            tracing::info!(watch = self.name, "watch recovered");
                            failing = false;
                        }
                        let convert = |obj| (self.convert)(obj, &current);
                        let event = match event {
                            watcher::Event::Apply(o) => watcher::Event::Apply(convert(o)),
                            watcher::Event::Delete(o) => watcher::Event::Delete(convert(o)),
                            watcher::Event::InitApply(o) => watcher::Event::InitApply(convert(o)),
                            watcher::Event::Init => watcher::Event::Init,
                            watcher::Event::InitDone => watcher::Event::InitDone,
                        };
                        self.apply(event, &current);
                    }
                    Some(Err(err)) => {
                        if !failing {
                            tracing::warn!(watch = self.name, error = %err, "watch failed; retrying with backoff (the last complete list stays in use)");
                        }
                        failing = true;
                    }
                }
            }
        }
    }

    fn apply(&mut self, event: watcher::Event<S>, current: &T) {
        match &event {
            watcher::Event::Init | watcher::Event::InitApply(_) => self.writer.apply_watcher_event(&event),
            watcher::Event::InitDone => {
                self.writer.apply_watcher_event(&event);
                *self.applied.lock().unwrap() = Some(current.clone());
                if !self.synced.swap(true, Ordering::AcqRel) {
                    tracing::debug!(watch = self.name, "initial list complete");
                }
                self.trigger.notify();
            }
            watcher::Event::Apply(obj) => {
                let old = self.store.get(&reflector::ObjectRef::from_obj(obj));
                self.writer.apply_watcher_event(&event);
                if old.is_none_or(|old| (self.changed)(&old, obj)) {
                    self.trigger.notify();
                }
            }
            watcher::Event::Delete(_) => {
                self.writer.apply_watcher_event(&event);
                self.trigger.notify();
            }
        }
    }
}

/// Our custom resources: only spec changes (a new `generation`) trigger a pass. Our
/// own status writes come back through the watch and would otherwise cost one more
/// whole pass each.
fn spec_changed<K: Resource>(old: &K, new: &K) -> bool {
    spec_version(old) != spec_version(new)
}

fn spec_version<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!("{}/{}", m.uid.as_deref().unwrap_or(""), m.generation.unwrap_or(0))
}

/// Anything kept after trimming, other than the resourceVersion, changed (a node's or
/// namespace's status update does not trigger a pass).
fn content_changed<K: Resource + Clone + PartialEq>(old: &K, new: &K) -> bool {
    let mut a = old.clone();
    a.meta_mut().resource_version = new.meta().resource_version.clone();
    a != *new
}

/// Pods: the same, without cloning a whole pod per event (kubelet status updates are
/// the most frequent events in a cluster and, trimmed, usually change nothing kept).
fn pod_changed(old: &PodInfo, new: &PodInfo) -> bool {
    let (a, b) = (&old.metadata, &new.metadata);
    let meta_same =
        ObjectMeta { resource_version: None, ..a.clone() } == ObjectMeta { resource_version: None, ..b.clone() };
    !(meta_same && old.spec == new.spec)
}

/// Shares one copy of each distinct trimmed pod spec: with the usual templates a spec
/// is a node name and a service account, the same for many pods.
#[derive(Default)]
struct SpecInterner {
    table: Mutex<InternTable>,
}

#[derive(Default)]
struct InternTable {
    by_hash: HashMap<u64, Vec<std::sync::Weak<PodSpec>>>,
    /// Sweep dead entries when the table has grown past this.
    sweep_at: usize,
}

impl SpecInterner {
    /// Trims `pod` to `keep` (status dropped) and returns it as a [`PodInfo`] with a
    /// shared spec.
    fn pod_info(&self, mut pod: Pod, keep: &PodFields) -> PodInfo {
        keep.retain_meta(&mut pod.metadata);
        let mut spec = pod.spec.take().unwrap_or_default();
        keep.retain_spec(&mut spec);
        PodInfo { metadata: pod.metadata, spec: self.intern(spec) }
    }

    fn intern(&self, spec: PodSpec) -> Arc<PodSpec> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&spec).unwrap_or_default().hash(&mut h);
        let hash = h.finish();
        let mut t = self.table.lock().unwrap();
        let bucket = t.by_hash.entry(hash).or_default();
        if let Some(shared) = bucket.iter().filter_map(|w| w.upgrade()).find(|s| **s == spec) {
            return shared;
        }
        let shared = Arc::new(spec);
        bucket.push(Arc::downgrade(&shared));
        if t.by_hash.len() > t.sweep_at {
            t.by_hash.retain(|_, bucket| {
                bucket.retain(|w| w.strong_count() > 0);
                !bucket.is_empty()
            });
            t.sweep_at = (t.by_hash.len() * 2).max(1024);
        }
        shared
    }
}

fn trim_node(node: &mut Node) {
    trim_meta(node);
    node.status = None;
}

/// Managed fields and the last-applied annotation.
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
        self.0.pod_fields.ensure(&self.0.cluster_spiffe_ids.state())?;
        let mut world = self.0.snapshot();
        if let Some(early) = &self.1 {
            early.overlay(&mut world.pods);
        }
        Ok(world)
    }
}
