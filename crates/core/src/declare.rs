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

use crate::fast::{FastMap, FastSet};
use crate::key::{EntryKey, entry_key, pod_uid_of};
use crate::labels::LabelSelectorMatcher;
use crate::parse::{
    FieldError, ParsedClusterSPIFFEID, class_matches, parse_cluster_spiffe_id, parse_selectors, parse_static_entry,
};
use crate::render::{RenderError, ServiceIndex, render_parent_id, render_pod_entry};
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
    /// `id` is empty; `plan` fills it.
    pub entry: Entry,
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

    fn protect_pod(&mut self, uid: &str, reason: &Arc<str>) {
        if !uid.is_empty() && !self.pods.contains_key(uid) {
            self.pods.insert(uid.to_owned(), reason.clone());
        }
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
/// (ClusterSPIFFEID, pod), valid while the pod's and node's resourceVersions, the CR's spec
/// and the set of Services referencing the pod are unchanged. Objects without a
/// resourceVersion are never cached. Slots not used in a pass are evicted at its end, so
/// the cache never outgrows the live (CR × selected pod) set.
///
/// The cache resets itself when the trust domain, cluster name, cluster domain or parent
/// ID template (source) change.
#[derive(Debug, Default)]
pub struct RenderCache {
    identity: Option<[String; 4]>,
    pass: u64,
    next_epoch: u64,
    specs: FastMap<String, SpecSlot>,
    renders: FastMap<String, FastMap<String, RenderSlot>>,
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
    result: Result<(EntryKey, Entry), RenderError>,
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

    fn begin_pass(&mut self, settings: &Settings) {
        let identity = [
            settings.trust_domain.name().to_owned(),
            settings.cluster_name.clone(),
            settings.cluster_domain.clone(),
            settings.parent_id_template.source().to_owned(),
        ];
        if self.identity.as_ref() != Some(&identity) {
            self.clear();
            self.identity = Some(identity);
        }
        self.pass += 1;
        self.stats = CacheStats::default();
    }

    fn end_pass(&mut self) {
        let pass = self.pass;
        self.specs.retain(|_, s| s.pass == pass);
        self.parents.retain(|_, s| s.pass == pass);
        self.renders.retain(|_, m| {
            m.retain(|_, s| s.pass == pass);
            !m.is_empty()
        });
        self.stats.size = self.renders.values().map(FastMap::len).sum();
    }

    /// The parsed spec and its epoch (changes whenever the spec does).
    fn parsed(
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
}

/// Precedence data of a declaring object (ARCHITECTURE.md §4).
struct Prec<'w> {
    created: Option<&'w Timestamp>,
    deleted: Option<&'w Timestamp>,
    uid: &'w str,
    kind: SourceKind,
    name: &'w str,
}

impl<'w> Prec<'w> {
    fn of(meta: &'w ObjectMeta, kind: SourceKind) -> Self {
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
fn prec_cmp(a: &Prec<'_>, b: &Prec<'_>) -> Ordering {
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

enum Origin {
    /// Index into the class-matched ClusterSPIFFEID list.
    SpiffeId(usize),
    /// Name of the ClusterStaticEntry.
    Static,
}

struct Candidate<'w> {
    key: EntryKey,
    entry: Entry,
    prec: Prec<'w>,
    origin: Origin,
    source: SourceRef,
    pod_uid: Option<&'w str>,
}

/// The first 16 hex digits of a key as a number; ordering agrees with the string order
/// (lowercase hex, same length).
fn key_prefix(k: &EntryKey) -> u64 {
    k.0.get(..16).and_then(|p| u64::from_str_radix(p, 16).ok()).unwrap_or(0)
}

fn source_of(meta: &ObjectMeta, kind: SourceKind) -> SourceRef {
    SourceRef { kind, name: meta.name.clone().unwrap_or_default(), uid: meta.uid.clone().unwrap_or_default() }
}

fn cache_key(meta: &ObjectMeta) -> String {
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

/// Computes the declared entries for one pass. Pure apart from updating `cache`.
pub fn declare_entries(world: &World, settings: &Settings, cache: &mut RenderCache) -> Declared {
    cache.begin_pass(settings);
    let mut out = Declared::default();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();

    if settings.reconcile_cluster_static_entries {
        declare_static_entries(world, settings, &mut out, &mut candidates);
    }
    let spiffe_ids = spiffe_id_sources(world, settings);
    let mut stats = vec![ClusterSPIFFEIDStats::default(); spiffe_ids.len()];
    if !spiffe_ids.is_empty() {
        declare_spiffe_id_entries(world, settings, cache, &spiffe_ids, &mut stats, &mut out, &mut candidates);
    }

    // Masking: per key, the preferred candidate wins; the others are masked.
    // Sorted by (key, precedence); a numeric key prefix keeps most comparisons cheap.
    let mut order: Vec<(u64, usize)> = candidates.iter().enumerate().map(|(i, c)| (key_prefix(&c.key), i)).collect();
    order.sort_unstable_by(|&(pa, a), &(pb, b)| {
        pa.cmp(&pb).then_with(|| {
            let (ca, cb) = (&candidates[a], &candidates[b]);
            ca.key.cmp(&cb.key).then_with(|| prec_cmp(&ca.prec, &cb.prec)).then_with(|| ca.pod_uid.cmp(&cb.pod_uid))
        })
    });
    let mut slots: Vec<Option<Candidate<'_>>> = candidates.into_iter().map(Some).collect();
    for (_, i) in order {
        let c = slots[i].take().expect("each candidate is visited once");
        // The first of each key group wins; winners are pushed, so the last output entry
        // holds the current group's key.
        let winner = out.entries.last().map(|e| &e.key) != Some(&c.key);
        match (&c.origin, winner) {
            (Origin::SpiffeId(idx), true) => stats[*idx].entries_to_set += 1,
            (Origin::SpiffeId(idx), false) => stats[*idx].entries_masked += 1,
            (Origin::Static, false) => {
                if let Some(o) = out.static_entries.get_mut(&c.source.name) {
                    o.masked = true;
                }
            }
            (Origin::Static, true) => {}
        }
        if winner {
            out.entries.push(DeclaredEntry {
                key: c.key,
                entry: c.entry,
                source: c.source,
                pod_uid: c.pod_uid.map(str::to_owned),
            });
        }
    }

    for (cr, s) in spiffe_ids.iter().zip(stats) {
        out.spiffe_id_stats.insert(cr.metadata.name.clone().unwrap_or_default(), s);
    }
    cache.end_pass();
    out
}

fn declare_static_entries<'w>(
    world: &'w World,
    settings: &Settings,
    out: &mut Declared,
    candidates: &mut Vec<Candidate<'w>>,
) {
    for cse in &world.cluster_static_entries {
        if !class_matches(cse.spec.class_name.as_deref(), &settings.class_name, settings.watch_classless) {
            continue;
        }
        let source = source_of(&cse.metadata, SourceKind::ClusterStaticEntry);
        match parse_static_entry(&cse.spec) {
            Ok(entry) => {
                let key = entry_key(&entry);
                out.static_entries.insert(
                    source.name.clone(),
                    StaticEntryOutcome { rendered: true, masked: false, key: Some(key.clone()), error: None },
                );
                candidates.push(Candidate {
                    key,
                    entry,
                    prec: Prec::of(&cse.metadata, SourceKind::ClusterStaticEntry),
                    origin: Origin::Static,
                    source,
                    pod_uid: None,
                });
            }
            Err(e) => {
                let reason: Arc<str> = format!(
                    "ClusterStaticEntry {:?} failed to parse ({e}); entries without a pod-uid selector are kept",
                    source.name
                )
                .into();
                if out.protect.non_pod_entries.is_none() {
                    out.protect.non_pod_entries = Some(reason);
                }
                out.static_entries.insert(
                    source.name.clone(),
                    StaticEntryOutcome { rendered: false, masked: false, key: None, error: Some(e.to_string()) },
                );
                out.failures.push(RenderFailure { source, pod: None, field: e.field, message: e.message });
            }
        }
    }
}

fn declare_spiffe_id_entries<'w>(
    world: &'w World,
    settings: &Settings,
    cache: &mut RenderCache,
    crs: &[&'w Arc<ClusterSPIFFEID>],
    stats: &mut [ClusterSPIFFEIDStats],
    out: &mut Declared,
    candidates: &mut Vec<Candidate<'w>>,
) {
    let nodes: FastMap<&str, &Node> =
        world.nodes.iter().filter_map(|n| Some((n.metadata.name.as_deref()?, &**n))).collect();
    let mut pods_by_ns: FastMap<&str, Vec<&PodInfo>> = FastMap::default();
    for p in &world.pods {
        pods_by_ns.entry(p.metadata.namespace.as_deref().unwrap_or_default()).or_default().push(p);
    }
    let mut services: Option<ServiceIndex<'w>> = None;
    let mut non_fallback_applied: FastSet<&str> = FastSet::default();
    let pass = cache.pass;

    for (idx, cr) in crs.iter().enumerate() {
        let source = source_of(&cr.metadata, SourceKind::ClusterSPIFFEID);
        let cr_key = cache_key(&cr.metadata);
        let (epoch, parsed) = cache.parsed(&cr_key, &cr.spec);
        let spec = match parsed {
            Ok(spec) => spec,
            Err(e) => {
                protect_selected_pods(world, settings, cr, &source, &e, &mut out.protect);
                out.failures.push(RenderFailure { source, pod: None, field: e.field, message: e.message });
                continue;
            }
        };
        if spec.auto_populate_dns_names && services.is_none() {
            services = Some(ServiceIndex::build(world));
        }
        let fallback = spec.fallback;
        let st = &mut stats[idx];
        let mut slots = cache.renders.remove(&cr_key).unwrap_or_default();

        for ns in &world.namespaces {
            if !labels_match(spec.namespace_selector.as_ref(), &ns.metadata) {
                continue;
            }
            st.namespaces_selected += 1;
            let ns_name = ns.metadata.name.as_deref().unwrap_or_default();
            if settings.is_namespace_ignored(ns_name) {
                st.namespaces_ignored += 1;
                continue;
            }
            let Some(pods) = pods_by_ns.get(ns_name) else {
                continue;
            };
            for pod in pods {
                if !labels_match(spec.pod_selector.as_ref(), &pod.metadata) {
                    continue;
                }
                st.pods_selected += 1;
                let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
                if fallback && non_fallback_applied.contains(pod_uid) {
                    continue;
                }
                // BETTER (#741): unscheduled pods are skipped silently.
                let node_name = pod.node_name();
                if node_name.is_empty() {
                    continue;
                }
                let svc: Vec<&str> = match (&services, spec.auto_populate_dns_names) {
                    (Some(index), true) => index.services(pod_uid, ns_name),
                    _ => Vec::new(),
                };
                let result = match nodes.get(node_name) {
                    None => Err(node_missing(node_name)),
                    Some(node) => {
                        render_cached(cache, &mut slots, settings, &spec, epoch, pod, node, node_name, &svc, pass)
                    }
                };
                match result {
                    Ok((key, entry)) => {
                        if !fallback {
                            non_fallback_applied.insert(pod_uid);
                        }
                        candidates.push(Candidate {
                            key,
                            entry,
                            prec: Prec::of(&cr.metadata, SourceKind::ClusterSPIFFEID),
                            origin: Origin::SpiffeId(idx),
                            source: source.clone(),
                            pod_uid: Some(pod_uid),
                        });
                    }
                    Err(e) => {
                        st.pod_entry_render_failures += 1;
                        let pod_ns = ns_name.to_owned();
                        let pod_name = pod.metadata.name.clone().unwrap_or_default();
                        let reason: Arc<str> = format!(
                            "entry for pod {pod_ns}/{pod_name} from ClusterSPIFFEID {:?} failed to render: {}: {}",
                            source.name, e.field, e.message
                        )
                        .into();
                        out.protect.protect_pod(pod_uid, &reason);
                        out.failures.push(RenderFailure {
                            source: source.clone(),
                            pod: Some((pod_ns, pod_name)),
                            field: e.field,
                            message: e.message,
                        });
                    }
                }
            }
        }
        if !slots.is_empty() {
            cache.renders.insert(cr_key, slots);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn render_cached(
    cache: &mut RenderCache,
    slots: &mut FastMap<String, RenderSlot>,
    settings: &Settings,
    spec: &ParsedClusterSPIFFEID,
    epoch: u64,
    pod: &PodInfo,
    node: &Node,
    node_name: &str,
    services: &[&str],
    pass: u64,
) -> Result<(EntryKey, Entry), RenderError> {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let pod_rv = pod.metadata.resource_version.as_deref().unwrap_or_default();
    let node_rv = node.metadata.resource_version.as_deref().unwrap_or_default();
    let cacheable = !pod_rv.is_empty() && !node_rv.is_empty() && !pod_uid.is_empty();
    if cacheable
        && let Some(slot) = slots.get_mut(pod_uid)
        && slot.pod_rv == pod_rv
        && slot.node_rv == node_rv
        && slot.spec_epoch == epoch
        && slot.services.len() == services.len()
        && slot.services.iter().zip(services).all(|(a, b)| a == b)
    {
        slot.pass = pass;
        cache.stats.hits += 1;
        return slot.result.clone();
    }
    cache.stats.misses += 1;
    let result = cache
        .parent_id(settings, node_name, node)
        .and_then(|parent| render_pod_entry(spec, settings, pod, node, &parent, services))
        .map(|entry| (entry_key(&entry), entry));
    if cacheable {
        slots.insert(
            pod_uid.to_owned(),
            RenderSlot {
                pod_rv: pod_rv.to_owned(),
                node_rv: node_rv.to_owned(),
                spec_epoch: epoch,
                services: services.iter().map(|s| (*s).to_owned()).collect(),
                result: result.clone(),
                pass,
            },
        );
    }
    result
}

/// A ClusterSPIFFEID that fails to parse: protect the pods it selects if its selectors
/// parse, else every pod.
fn protect_selected_pods(
    world: &World,
    settings: &Settings,
    cr: &ClusterSPIFFEID,
    source: &SourceRef,
    err: &FieldError,
    protect: &mut Protection,
) {
    let reason: Arc<str> =
        format!("ClusterSPIFFEID {:?} failed to parse ({err}); its pods' entries are kept", source.name).into();
    match parse_selectors(&cr.spec) {
        Ok((ns_sel, pod_sel)) => {
            let selected_ns: FastSet<&str> = world
                .namespaces
                .iter()
                .filter(|ns| labels_match(ns_sel.as_ref(), &ns.metadata))
                .filter_map(|ns| ns.metadata.name.as_deref())
                .filter(|name| !settings.is_namespace_ignored(name))
                .collect();
            for pod in &world.pods {
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                if selected_ns.contains(ns) && labels_match(pod_sel.as_ref(), &pod.metadata) {
                    protect.protect_pod(pod.metadata.uid.as_deref().unwrap_or_default(), &reason);
                }
            }
        }
        Err(_) => {
            for pod in &world.pods {
                protect.protect_pod(pod.metadata.uid.as_deref().unwrap_or_default(), &reason);
            }
        }
    }
}
