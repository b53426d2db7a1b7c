//! Generic list+watch machinery: a watch per kind (or per `cacheNamespaces` namespace)
//! feeding a reflector store, each object converted on arrival (trimmed, or turned into
//! a compact record), restartable with new conversion parameters, and which changes
//! deserve a pass.
//!
//! A store is replaced atomically by a complete list (kube's `Writer` buffers the list
//! until it is done), so a relist after a watch error, or with wider trimming, never
//! shows a partial view.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::degraded::{Degradations, RETRY_FORBIDDEN, watch_forbidden};
use crate::scope::NamespaceScope;
use crate::trigger::Trigger;

/// The stores of one kind (one per watched namespace under `cacheNamespaces`, else one)
/// plus their sync state.
pub struct Watched<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub(crate) parts: Vec<(Store<K>, Arc<AtomicBool>)>,
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

/// What every watch shares.
#[derive(Clone, Copy)]
pub(crate) struct Watches<'a> {
    pub trigger: &'a Trigger,
    pub cancel: &'a CancellationToken,
    pub degradations: &'a Degradations,
}

/// A kind the controller can do without: when listing it is forbidden (403) the store is
/// an empty, complete view, the gap is reported once (see `crate::degraded`), and the
/// list is tried again every [`RETRY_FORBIDDEN`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Optional {
    pub capability: &'static str,
    pub missing_rule: &'static str,
    pub lost: &'static str,
}

/// One list+watch: where, and with which selectors.
pub(crate) type ApiAndConfig<K> = (Api<K>, watcher::Config);

/// A cluster-wide watch (`None`: the kind is not watched).
pub(crate) fn cluster_api<K>(client: &Client, config: Option<watcher::Config>) -> Vec<ApiAndConfig<K>>
where
    K: Resource,
    K::DynamicType: Default,
{
    config.map(|c| (Api::all(client.clone()), c)).into_iter().collect()
}

/// A namespaced kind: cluster-wide, or one watch per `cacheNamespaces` entry (none when
/// not `enabled`).
pub(crate) fn namespaced_apis<K>(client: &Client, namespaces: &[NamespaceScope], enabled: bool) -> Vec<ApiAndConfig<K>>
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
pub(crate) trait Storable:
    Resource<DynamicType: Eq + std::hash::Hash + Clone + Default> + Clone + Send + Sync + 'static
{
}

impl<S> Storable for S where
    S: Resource<DynamicType: Eq + std::hash::Hash + Clone + Default> + Clone + Send + Sync + 'static
{
}

/// What a watch lists and decodes.
pub(crate) trait Watchable: Storable + DeserializeOwned + std::fmt::Debug {}

impl<K: Storable + DeserializeOwned + std::fmt::Debug> Watchable for K {}

/// Turns a watched object into what its store keeps, given the watch's parameters.
pub(crate) type Convert<K, S, T> = Arc<dyn Fn(K, &T) -> S + Send + Sync>;

/// What a change to an object of a kind touches (recorded with the trigger, so that the
/// pass declares again only that).
pub(crate) type Mark<S> = fn(&S, &mut scm_core::Changes);

/// A change to this kind can touch anything (custom resources).
pub(crate) fn touches_everything<S>(_: &S, c: &mut scm_core::Changes) {
    c.set_everything();
}

/// A change to a namespaced object touches the pods of its namespace (Endpoints and
/// EndpointSlices: the Service names of `autoPopulateDNSNames`).
pub(crate) fn touches_its_namespace<S: Resource>(obj: &S, c: &mut scm_core::Changes) {
    c.namespace(obj.meta().namespace.as_deref().unwrap_or_default());
}

impl Watches<'_> {
    /// A watch that stores its objects trimmed by `trim`, which never changes.
    pub(crate) fn fixed<K: Watchable>(
        self,
        name: &'static str,
        apis: Vec<ApiAndConfig<K>>,
        trim: fn(&mut K),
        changed: fn(&K, &K) -> bool,
        mark: Mark<K>,
        optional: Option<Optional>,
    ) -> Watched<K> {
        let (params, rx) = watch::channel(Some(()));
        // The sender is dropped: the watch is never restarted.
        drop(params);
        let applied = apis.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let convert: Convert<K, K, ()> = Arc::new(move |mut obj, _| {
            trim(&mut obj);
            obj
        });
        self.spawn(name, apis, convert, rx, applied, changed, mark, optional)
    }

    /// Watches of `K` stored as `S` by `convert` with parameters `T`, one per entry of
    /// `apis` (none: the kind is not watched): each new value of `params` restarts them
    /// (a fresh list, swapped into the store when complete); `applied[i]` is set to the
    /// parameters of the last complete list of `apis[i]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn<K: Watchable, S: Storable, T: Clone + Send + Sync + 'static>(
        self,
        name: &'static str,
        apis: Vec<ApiAndConfig<K>>,
        convert: Convert<K, S, T>,
        params: watch::Receiver<Option<T>>,
        applied: Vec<Arc<Mutex<Option<T>>>>,
        changed: fn(&S, &S) -> bool,
        mark: Mark<S>,
        optional: Option<Optional>,
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
                mark,
                optional: optional.map(|o| (o, self.degradations.clone())),
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
    mark: Mark<S>,
    optional: Option<(Optional, Degradations)>,
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
                        if matches!(event, watcher::Event::InitDone)
                            && let Some((o, degradations)) = &self.optional
                        {
                            degradations.restored(o.capability);
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
                    Some(Err(err)) if watch_forbidden(&err) && self.optional.is_some() => {
                        self.forbidden(&current);
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(RETRY_FORBIDDEN) => {}
                        }
                        break;
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

    /// An optional kind may not be listed: report it, and serve an empty, complete view.
    fn forbidden(&mut self, current: &T) {
        let Some((o, degradations)) = &self.optional else { return };
        degradations.degrade(o.capability, o.missing_rule, o.lost);
        self.writer.apply_watcher_event(&watcher::Event::Init);
        self.apply(watcher::Event::InitDone, current);
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
                    self.trigger.notify_change(|c| (self.mark)(obj, c));
                }
            }
            watcher::Event::Delete(obj) => {
                self.writer.apply_watcher_event(&event);
                self.trigger.notify_change(|c| (self.mark)(obj, c));
            }
        }
    }
}

/// Our custom resources: only spec changes (a new `generation`) trigger a pass. Our
/// own status writes come back through the watch and would otherwise cost one more
/// whole pass each.
pub(crate) fn spec_changed<K: Resource>(old: &K, new: &K) -> bool {
    spec_version(old) != spec_version(new)
}

pub(crate) fn spec_version<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    format!("{}/{}", m.uid.as_deref().unwrap_or(""), m.generation.unwrap_or(0))
}

/// Anything kept after trimming, other than the resourceVersion, changed (a node's or
/// namespace's status update does not trigger a pass).
pub(crate) fn content_changed<K: Resource + Clone + PartialEq>(old: &K, new: &K) -> bool {
    let mut a = old.clone();
    a.meta_mut().resource_version = new.meta().resource_version.clone();
    a != *new
}

/// Managed fields and the last-applied annotation.
pub(crate) fn trim_meta<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}
