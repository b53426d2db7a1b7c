//! World snapshot + settings → the entries SPIRE should hold, per-object stats, render
//! failures and what must be protected from deletion (ARCHITECTURE.md §2–§5).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use scm_api::{ClusterSPIFFEID, ClusterSPIFFEIDSpec, ClusterSPIFFEIDStats};
use scm_spiffe::{Entry, SpiffeId};

use crate::fast::FastMap;
use crate::key::{EntryKey, entry_key, pod_uid_of};
use crate::labels::LabelSelectorMatcher;
use crate::parse::{FieldError, ParsedClusterSPIFFEID, class_matches, parse_cluster_spiffe_id};
use crate::render::{RenderError, render_parent_id, render_pod_entry};
use crate::settings::Settings;
use crate::world::{PodInfo, World};

/// Which kind of object declared an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    ClusterSPIFFEID,
    ClusterStaticEntry,
}

/// The object an entry (or failure) comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    pub kind: SourceKind,
    pub name: String,
    /// `metadata.uid`; empty when the object has none (static manifests, tests).
    pub uid: String,
}

/// A declared entry that won precedence for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredEntry {
    pub key: EntryKey,
    /// `id` is empty; `plan` fills it. Shared with the render cache (one copy).
    pub entry: Arc<Entry>,
    pub source: SourceRef,
    /// Set for ClusterSPIFFEID entries.
    pub pod_uid: Option<String>,
}

/// What happened to one ClusterStaticEntry this pass (status: `rendered`, `masked`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticEntryOutcome {
    pub rendered: bool,
    pub masked: bool,
    pub key: Option<EntryKey>,
    /// The parse error (`spec.x: message`) when not rendered.
    pub error: Option<String>,
}

/// A spec that failed to parse (`pod` = None) or an entry that failed to render for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    pub source: SourceRef,
    /// `(namespace, name)` of the pod, for render failures.
    pub pod: Option<(String, String)>,
    /// JSON path of the field at fault, e.g. `spec.dnsNameTemplates[0]`, `spec.nodeName`,
    /// or `parentIDTemplate` (configuration).
    pub field: String,
    pub message: String,
}

/// Existing entries that must not be deleted this pass because the source that would
/// declare them failed (BETTER than upstream, which deletes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// Pod UID → why. Entries carrying a `k8s:pod-uid:<uid>` selector for these pods are
    /// kept. Only pods that exist in the snapshot are ever listed.
    pub pods: HashMap<String, Arc<str>>,
    /// When set, every entry without a `k8s:pod-uid` selector is kept (a
    /// ClusterStaticEntry failed to parse).
    pub non_pod_entries: Option<Arc<str>>,
    /// SPIFFE IDs whose entries are never deleted, like join-token entries (the
    /// controller's own identity when it reaches SPIRE over mTLS: deleting its entry would
    /// lock the controller out). Not "kept" entries: they are simply not this pass's.
    pub spiffe_ids: std::collections::HashSet<String>,
}

impl Protection {
    /// Why `e` must be kept, if it must.
    pub fn reason_for(&self, e: &Entry) -> Option<&str> {
        match pod_uid_of(e) {
            Some(uid) => self.pods.get(uid).map(|r| &**r),
            None => self.non_pod_entries.as_deref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.non_pod_entries.is_none() && self.spiffe_ids.is_empty()
    }

    /// Never deletes an entry whose SPIFFE ID is `spiffe_id` (see [`Protection::spiffe_ids`]).
    pub fn protect_spiffe_id(&mut self, spiffe_id: impl Into<String>) {
        self.spiffe_ids.insert(spiffe_id.into());
    }

    /// Whether `e` is never deleted because of its SPIFFE ID.
    pub fn is_untouchable(&self, e: &Entry) -> bool {
        !self.spiffe_ids.is_empty() && self.spiffe_ids.contains(e.spiffe_id.as_str())
    }
}

/// The result of one declare pass.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Precedence winners only, one per entry key, sorted by key.
    pub entries: Vec<DeclaredEntry>,
    /// Per class-matched ClusterSPIFFEID (by name). `entry_failures` is left 0 for the
    /// runtime to fill from write results.
    pub spiffe_id_stats: BTreeMap<String, ClusterSPIFFEIDStats>,
    /// Per class-matched ClusterStaticEntry (by name).
    pub static_entries: BTreeMap<String, StaticEntryOutcome>,
    pub failures: Vec<RenderFailure>,
    pub protect: Protection,
}

/// Render results kept across passes (BETTER than upstream's one slot per pod): one slot per
/// (pod, ClusterSPIFFEID), valid while the pod's and node's resourceVersions, the CR's spec
/// and the set of Services referencing the pod are unchanged. Objects without a
/// resourceVersion are never cached. A whole declaration evicts the slots it did not use,
/// and an incremental one those of the pods it declared again, so the cache never outgrows
/// the live (CR × selected pod) set for long. The rendered entries are shared with the
/// declaration (`Arc`): one copy of each.
///
/// The cache resets itself when the trust domain, cluster name, cluster domain or parent
/// ID template (source) change.
#[derive(Debug, Default)]
pub struct RenderCache {
    identity: Option<[String; 4]>,
    pass: u64,
    next_epoch: u64,
    specs: FastMap<String, SpecSlot>,
    /// Pod UID → a slot per ClusterSPIFFEID (by cache key) that rendered for it.
    renders: FastMap<String, Vec<(Arc<str>, RenderSlot)>>,
    parents: FastMap<String, ParentSlot>,
    stats: CacheStats,
}

/// Counters of the last pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Render slots held after eviction.
    pub size: usize,
}

#[derive(Debug)]
struct SpecSlot {
    spec: ClusterSPIFFEIDSpec,
    epoch: u64,
    parsed: Result<Arc<ParsedClusterSPIFFEID>, FieldError>,
    pass: u64,
}

#[derive(Debug)]
struct RenderSlot {
    pod_rv: String,
    node_rv: String,
    spec_epoch: u64,
    services: Vec<String>,
    result: Result<(EntryKey, Arc<Entry>), RenderError>,
    pass: u64,
}

#[derive(Debug)]
struct ParentSlot {
    node_rv: String,
    result: Result<SpiffeId, RenderError>,
    pass: u64,
}

impl RenderCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        *self = Self { pass: self.pass, next_epoch: self.next_epoch, ..Self::default() };
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Starts a pass; `false` when the settings that every render depends on changed
    /// (the cache is then cleared).
    fn start(&mut self, settings: &Settings) -> bool {
        let identity = [
            settings.trust_domain.name().to_owned(),
            settings.cluster_name.clone(),
            settings.cluster_domain.clone(),
            settings.parent_id_template.source().to_owned(),
        ];
        let same = self.identity.as_ref() == Some(&identity);
        if !same {
            self.clear();
            self.identity = Some(identity);
        }
        self.pass += 1;
        self.stats = CacheStats::default();
        same
    }

    pub(crate) fn begin_pass(&mut self, settings: &Settings) {
        self.start(settings);
    }

    /// An incremental declaration starts: `false` when it cannot (the settings changed).
    pub(crate) fn begin_update(&mut self, settings: &Settings) -> bool {
        self.start(settings)
    }

    /// Evicts what this pass did not use.
    pub(crate) fn end_pass(&mut self) {
        let pass = self.pass;
        self.specs.retain(|_, s| s.pass == pass);
        self.parents.retain(|_, s| s.pass == pass);
        self.renders.retain(|_, m| {
            m.retain(|(_, s)| s.pass == pass);
            !m.is_empty()
        });
        self.stats.size = self.renders.values().map(Vec::len).sum();
    }

    /// Evicts the slots of `pods` (UIDs) this incremental pass did not use.
    pub(crate) fn end_update(&mut self, pods: &std::collections::HashSet<String>) {
        let pass = self.pass;
        for uid in pods {
            if let Some(m) = self.renders.get_mut(uid) {
                m.retain(|(_, s)| s.pass == pass);
                if m.is_empty() {
                    self.renders.remove(uid);
                }
            }
        }
    }

    /// The parsed spec and its epoch (changes whenever the spec does).
    pub(crate) fn parsed(
        &mut self,
        key: &str,
        spec: &ClusterSPIFFEIDSpec,
    ) -> (u64, Result<Arc<ParsedClusterSPIFFEID>, FieldError>) {
        let pass = self.pass;
        if let Some(slot) = self.specs.get_mut(key)
            && slot.spec == *spec
        {
            slot.pass = pass;
            return (slot.epoch, slot.parsed.clone());
        }
        self.next_epoch += 1;
        let parsed = parse_cluster_spiffe_id(spec).map(Arc::new);
        let slot = SpecSlot { spec: spec.clone(), epoch: self.next_epoch, parsed: parsed.clone(), pass };
        self.specs.insert(key.to_owned(), slot);
        (self.next_epoch, parsed)
    }

    fn parent_id(&mut self, settings: &Settings, node_name: &str, node: &Node) -> Result<SpiffeId, RenderError> {
        let pass = self.pass;
        let rv = node.metadata.resource_version.as_deref().unwrap_or_default();
        if let Some(slot) = self.parents.get_mut(node_name)
            && slot.node_rv == rv
            && (!rv.is_empty() || slot.pass == pass)
        {
            slot.pass = pass;
            return slot.result.clone();
        }
        // Rendered at most once per node per pass even without a resourceVersion.
        let result = render_parent_id(settings, node);
        self.parents.insert(node_name.to_owned(), ParentSlot { node_rv: rv.to_owned(), result: result.clone(), pass });
        result
    }

    /// The entry ClusterSPIFFEID `cr` (cache key, parsed spec and its epoch) declares for
    /// `pod` on `node`, from the cache when nothing it depends on changed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn render(
        &mut self,
        settings: &Settings,
        cr: &Arc<str>,
        spec: &ParsedClusterSPIFFEID,
        epoch: u64,
        pod: &PodInfo,
        node: &Node,
        node_name: &str,
        services: &[&str],
    ) -> Result<(EntryKey, Arc<Entry>), RenderError> {
        let pass = self.pass;
        let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let pod_rv = pod.metadata.resource_version.as_deref().unwrap_or_default();
        let node_rv = node.metadata.resource_version.as_deref().unwrap_or_default();
        let cacheable = !pod_rv.is_empty() && !node_rv.is_empty() && !pod_uid.is_empty();
        if cacheable
            && let Some(slots) = self.renders.get_mut(pod_uid)
            && let Some((_, slot)) = slots.iter_mut().find(|(k, _)| k == cr)
            && slot.pod_rv == pod_rv
            && slot.node_rv == node_rv
            && slot.spec_epoch == epoch
            && slot.services.len() == services.len()
            && slot.services.iter().zip(services).all(|(a, b)| a == b)
        {
            slot.pass = pass;
            self.stats.hits += 1;
            return slot.result.clone();
        }
        self.stats.misses += 1;
        let result = self
            .parent_id(settings, node_name, node)
            .and_then(|parent| render_pod_entry(spec, settings, pod, node, &parent, services))
            .map(|entry| (entry_key(&entry), Arc::new(entry)));
        if cacheable {
            let slot = RenderSlot {
                pod_rv: pod_rv.to_owned(),
                node_rv: node_rv.to_owned(),
                spec_epoch: epoch,
                services: services.iter().map(|s| (*s).to_owned()).collect(),
                result: result.clone(),
                pass,
            };
            let slots = self.renders.entry(pod_uid.to_owned()).or_default();
            match slots.iter_mut().find(|(k, _)| k == cr) {
                Some((_, s)) => *s = slot,
                None => slots.push((cr.clone(), slot)),
            }
        }
        result
    }
}

/// Precedence data of a declaring object (ARCHITECTURE.md §4).
pub(crate) struct Prec<'w> {
    pub(crate) created: Option<&'w Timestamp>,
    pub(crate) deleted: Option<&'w Timestamp>,
    pub(crate) uid: &'w str,
    pub(crate) kind: SourceKind,
    pub(crate) name: &'w str,
}

impl<'w> Prec<'w> {
    pub(crate) fn of(meta: &'w ObjectMeta, kind: SourceKind) -> Self {
        Prec {
            created: meta.creation_timestamp.as_ref().map(|t| &t.0),
            deleted: meta.deletion_timestamp.as_ref().map(|t| &t.0),
            uid: meta.uid.as_deref().unwrap_or_default(),
            kind,
            name: meta.name.as_deref().unwrap_or_default(),
        }
    }
}

/// Upstream `objectCmp` (Less = preferred): older creationTimestamp; not being deleted
/// before being deleted; of two being deleted the later deletionTimestamp; smaller UID.
/// Then, deterministic where upstream is arbitrary: kind, name, pod UID.
pub(crate) fn prec_cmp(a: &Prec<'_>, b: &Prec<'_>) -> Ordering {
    a.created
        .cmp(&b.created)
        .then_with(|| match (a.deleted, b.deleted) {
            (None, None) => Ordering::Equal,
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (Some(x), Some(y)) => y.cmp(x),
        })
        .then_with(|| a.uid.cmp(b.uid))
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.name.cmp(b.name))
}

pub(crate) fn source_of(meta: &ObjectMeta, kind: SourceKind) -> SourceRef {
    SourceRef { kind, name: meta.name.clone().unwrap_or_default(), uid: meta.uid.clone().unwrap_or_default() }
}

pub(crate) fn cache_key(meta: &ObjectMeta) -> String {
    match meta.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => format!("name/{}", meta.name.as_deref().unwrap_or_default()),
    }
}

pub(crate) fn labels_match(sel: Option<&LabelSelectorMatcher>, meta: &ObjectMeta) -> bool {
    sel.is_none_or(|s| s.matches(meta.labels.as_ref()))
}

/// The ClusterSPIFFEIDs a pass walks, in the order it walks them: those of our class
/// (ARCHITECTURE.md §2), fallback objects last, otherwise in snapshot order (stable).
/// Shared with `explain`, so that both see the same objects in the same order.
pub(crate) fn spiffe_id_sources<'w>(world: &'w World, settings: &Settings) -> Vec<&'w Arc<ClusterSPIFFEID>> {
    if !settings.reconcile_cluster_spiffe_ids {
        return Vec::new();
    }
    let mut crs: Vec<&Arc<ClusterSPIFFEID>> = world
        .cluster_spiffe_ids
        .iter()
        .filter(|cr| class_matches(cr.spec.class_name.as_deref(), &settings.class_name, settings.watch_classless))
        .collect();
    crs.sort_by_key(|cr| cr.spec.fallback.unwrap_or(false));
    crs
}

/// The render failure of a pod whose node is not in the snapshot.
pub(crate) fn node_missing(node_name: &str) -> RenderError {
    RenderError { field: "spec.nodeName".into(), message: format!("node {node_name:?} not found") }
}

/// Computes the declared entries for one pass (the whole world; see
/// [`Declaration`](crate::Declaration) for declarations kept between passes). Pure apart
/// from updating `cache`.
pub fn declare_entries(world: &World, settings: &Settings, cache: &mut RenderCache) -> Declared {
    crate::declaration::Declaration::build(world, settings, cache).declared()
}
