//! The declaration kept between passes, so that a change costs what it touches
//! (ARCHITECTURE.md §2–§5 for the rules; this module only decides how much of the world
//! is looked at again).
//!
//! - [`Declaration::build`] declares the whole world: the authoritative pass (gcInterval,
//!   after a read of SPIRE, and whenever a ClusterSPIFFEID or ClusterStaticEntry changed).
//! - [`Declaration::update`] declares again only the pods a set of [`Changes`] touches (a
//!   pod, the pods of a namespace, of a node, or of a namespace whose Endpoints changed)
//!   and returns their entries as a [`Delta`]; everything else stays as declared. It
//!   answers `None` when only a whole declaration can be right (the ClusterSPIFFEIDs or
//!   ClusterStaticEntries differ from the ones declared, a static entry names a touched
//!   pod, the settings changed).
//!
//! Both go through the same per-pod function (`declare_pod`), and masking is decided per
//! pod: a ClusterSPIFFEID entry always carries its pod's `k8s:pod-uid` selector, so two
//! pods never declare the same entry key; only a ClusterStaticEntry naming that selector
//! can compete with a pod's entry, and such pods are always declared whole. Whether the
//! two ways agree is checked by [`Declaration::disagreements`] at every whole pass.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use scm_api::{ClusterSPIFFEIDStats, ClusterStaticEntrySpec};
use scm_spiffe::Entry;

use crate::declare::{
    Declared, DeclaredEntry, Prec, Protection, RenderCache, RenderFailure, SourceKind, SourceRef, StaticEntryOutcome,
    cache_key, labels_match, node_missing, prec_cmp, source_of, spiffe_id_sources,
};
use crate::fast::{FastMap, FastSet};
use crate::key::{EntryKey, entry_key, pod_uid_of};
use crate::labels::LabelSelectorMatcher;
use crate::parse::{FieldError, ParsedClusterSPIFFEID, class_matches, parse_selectors, parse_static_entry};
use crate::render::{RenderError, ServiceIndex};
use crate::settings::Settings;
use crate::world::{PodInfo, World};

/// What changed in the world since the last pass, as the watches saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Anything else (a ClusterSPIFFEID, a ClusterStaticEntry, a relist, a manifest):
    /// only a whole declaration answers.
    pub everything: bool,
    /// `(namespace, name)` of pods added, changed or deleted.
    pub pods: HashSet<(String, String)>,
    /// Namespaces whose labels, or whose Endpoints/EndpointSlices, changed: their pods.
    pub namespaces: HashSet<String>,
    /// Nodes added, changed or deleted: the pods on them.
    pub nodes: HashSet<String>,
}

impl Changes {
    /// More named objects than this and the change is treated as [`Changes::everything`]
    /// (a relist, a mass rollout: one whole declaration is cheaper than many lookups).
    pub const MAX_NAMED: usize = 4096;

    pub fn everything() -> Self {
        Changes { everything: true, ..Default::default() }
    }

    pub fn is_empty(&self) -> bool {
        !self.everything && self.pods.is_empty() && self.namespaces.is_empty() && self.nodes.is_empty()
    }

    pub fn pod(&mut self, namespace: &str, name: &str) {
        if !self.everything {
            self.pods.insert((namespace.to_owned(), name.to_owned()));
            self.cap();
        }
    }

    pub fn namespace(&mut self, name: &str) {
        if !self.everything {
            self.namespaces.insert(name.to_owned());
            self.cap();
        }
    }

    pub fn node(&mut self, name: &str) {
        if !self.everything {
            self.nodes.insert(name.to_owned());
            self.cap();
        }
    }

    pub fn set_everything(&mut self) {
        *self = Changes::everything();
    }

    /// Adds `other` (changes taken for a pass that did not use them).
    pub fn merge(&mut self, other: Changes) {
        if other.everything {
            self.set_everything();
            return;
        }
        if self.everything {
            return;
        }
        self.pods.extend(other.pods);
        self.namespaces.extend(other.namespaces);
        self.nodes.extend(other.nodes);
        self.cap();
    }

    fn cap(&mut self) {
        if self.pods.len() + self.namespaces.len() + self.nodes.len() > Self::MAX_NAMED {
            self.set_everything();
        }
    }
}

/// What to plan after a declaration: the entries of the pods it covers.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// `None`: the whole world (every entry this controller may own is in question).
    /// `Some`: the UIDs of the pods declared again, before and after the change; SPIRE
    /// entries of other pods, and entries without a pod, are not this delta's.
    pub pods: Option<HashSet<String>>,
    /// The winning entries of those pods (of everything, for `None`).
    pub entries: Vec<DeclaredEntry>,
    /// What must not be deleted among them.
    pub protect: Protection,
}

impl Delta {
    /// Whether `e` (an entry SPIRE holds) is this delta's to plan.
    pub fn covers(&self, e: &Entry) -> bool {
        match &self.pods {
            None => true,
            Some(uids) => pod_uid_of(e).is_some_and(|uid| uids.contains(uid)),
        }
    }
}

/// A ClusterSPIFFEID as a declaration walks it.
struct CrCtx<'w> {
    name: Arc<str>,
    source: SourceRef,
    prec: Prec<'w>,
    cache_key: Arc<str>,
    epoch: u64,
    spec: Result<Arc<ParsedClusterSPIFFEID>, FieldError>,
    /// Selected namespaces that are not ignored (for a spec that failed to parse: those
    /// its selectors pick, whose pods are protected).
    namespaces: FastSet<&'w str>,
    namespaces_selected: i64,
    namespaces_ignored: i64,
    /// A spec that failed to parse: the pod selector that picks the protected pods, or
    /// every pod when even the selectors fail.
    broken_pod_selector: Option<LabelSelectorMatcher>,
    protect_all: bool,
    protect_reason: Option<Arc<str>>,
}

/// What every pod of a declaration shares.
struct Ctx<'w, 's> {
    settings: &'s Settings,
    crs: Vec<CrCtx<'w>>,
    nodes: FastMap<&'w str, &'w Node>,
    services: Option<ServiceIndex<'w>>,
}

fn context<'w, 's>(world: &'w World, settings: &'s Settings, cache: &mut RenderCache) -> Ctx<'w, 's> {
    let mut crs = Vec::new();
    for cr in spiffe_id_sources(world, settings) {
        let source = source_of(&cr.metadata, SourceKind::ClusterSPIFFEID);
        let key: Arc<str> = cache_key(&cr.metadata).into();
        let (epoch, spec) = cache.parsed(&key, &cr.spec);
        let mut c = CrCtx {
            name: source.name.as_str().into(),
            prec: Prec::of(&cr.metadata, SourceKind::ClusterSPIFFEID),
            source,
            cache_key: key,
            epoch,
            spec,
            namespaces: FastSet::default(),
            namespaces_selected: 0,
            namespaces_ignored: 0,
            broken_pod_selector: None,
            protect_all: false,
            protect_reason: None,
        };
        let ns_selector = match &c.spec {
            Ok(spec) => spec.namespace_selector.clone(),
            Err(e) => {
                c.protect_reason = Some(
                    format!("ClusterSPIFFEID {:?} failed to parse ({e}); its pods' entries are kept", c.source.name)
                        .into(),
                );
                match parse_selectors(&cr.spec) {
                    Ok((ns, pods)) => {
                        c.broken_pod_selector = pods;
                        ns
                    }
                    Err(_) => {
                        c.protect_all = true;
                        None
                    }
                }
            }
        };
        for ns in &world.namespaces {
            if !labels_match(ns_selector.as_ref(), &ns.metadata) {
                continue;
            }
            let name = ns.metadata.name.as_deref().unwrap_or_default();
            let ignored = settings.is_namespace_ignored(name);
            if c.spec.is_ok() {
                c.namespaces_selected += 1;
                c.namespaces_ignored += i64::from(ignored);
            }
            if !ignored {
                c.namespaces.insert(name);
            }
        }
        crs.push(c);
    }
    let nodes = world.nodes.iter().filter_map(|n| Some((n.metadata.name.as_deref()?, &**n))).collect();
    let services = crs
        .iter()
        .any(|c| c.spec.as_ref().is_ok_and(|s| s.auto_populate_dns_names))
        .then(|| ServiceIndex::build(world));
    Ctx { settings, crs, nodes, services }
}

/// One rendered entry of a pod before masking.
struct PodCandidate {
    key: EntryKey,
    entry: Arc<Entry>,
    cr: usize,
}

/// What one pod declares, before masking.
#[derive(Default)]
struct PodDecl {
    candidates: Vec<PodCandidate>,
    /// The ClusterSPIFFEIDs (indexes into `Ctx::crs`) that select the pod.
    selected_by: Vec<usize>,
    failures: Vec<(usize, RenderError)>,
    protect: Option<Arc<str>>,
}

/// ClusterSPIFFEIDs × one pod: selection, fallback, rendering (through the cache).
fn declare_pod(ctx: &Ctx<'_, '_>, cache: &mut RenderCache, pod: &PodInfo) -> PodDecl {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = PodDecl::default();
    // A non-fallback ClusterSPIFFEID rendered an entry for this pod (fallback ones come last).
    let mut applied = false;
    for (idx, c) in ctx.crs.iter().enumerate() {
        let spec = match &c.spec {
            Ok(spec) => spec,
            Err(_) => {
                let selected = c.protect_all
                    || (c.namespaces.contains(ns) && labels_match(c.broken_pod_selector.as_ref(), &pod.metadata));
                if selected && out.protect.is_none() {
                    out.protect = c.protect_reason.clone();
                }
                continue;
            }
        };
        if !c.namespaces.contains(ns) || !labels_match(spec.pod_selector.as_ref(), &pod.metadata) {
            continue;
        }
        out.selected_by.push(idx);
        if spec.fallback && applied {
            continue;
        }
        // BETTER (#741): unscheduled pods are skipped silently.
        let node_name = pod.node_name();
        if node_name.is_empty() {
            continue;
        }
        let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let services: Vec<&str> = match (&ctx.services, spec.auto_populate_dns_names) {
            (Some(index), true) => index.services(pod_uid, ns),
            _ => Vec::new(),
        };
        let result = match ctx.nodes.get(node_name) {
            None => Err(node_missing(node_name)),
            Some(node) => cache.render(ctx.settings, &c.cache_key, spec, c.epoch, pod, node, node_name, &services),
        };
        match result {
            Ok((key, entry)) => {
                applied |= !spec.fallback;
                out.candidates.push(PodCandidate { key, entry, cr: idx });
            }
            Err(e) => {
                if out.protect.is_none() {
                    out.protect = Some(
                        format!(
                            "entry for pod {ns}/{} from ClusterSPIFFEID {:?} failed to render: {}: {}",
                            pod.metadata.name.as_deref().unwrap_or_default(),
                            c.source.name,
                            e.field,
                            e.message
                        )
                        .into(),
                    );
                }
                out.failures.push((idx, e));
            }
        }
    }
    out
}

/// What one pod adds to a ClusterSPIFFEID's stats (it is selected by it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PodStats {
    to_set: i64,
    masked: i64,
    failures: i64,
}

/// One pod as declared.
#[derive(Debug, Clone)]
struct PodRecord {
    namespace: String,
    name: String,
    node: String,
    /// Its winning entries, sorted by key.
    entries: Vec<DeclaredEntry>,
    /// Per ClusterSPIFFEID that selects it (by name).
    stats: Vec<(Arc<str>, PodStats)>,
    failures: Vec<RenderFailure>,
    protect: Option<Arc<str>>,
}

/// Masks one pod's candidates (per key the preferred object wins) into its record.
fn pod_record(ctx: &Ctx<'_, '_>, pod: &PodInfo, decl: PodDecl) -> PodRecord {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut stats: Vec<(usize, PodStats)> = decl.selected_by.iter().map(|&i| (i, PodStats::default())).collect();
    // Every candidate and failure comes from a ClusterSPIFFEID that selected the pod.
    fn stat(stats: &mut [(usize, PodStats)], cr: usize, f: impl FnOnce(&mut PodStats)) {
        if let Some((_, s)) = stats.iter_mut().find(|(c, _)| *c == cr) {
            f(s);
        }
    }
    let mut candidates = decl.candidates;
    candidates.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| prec_cmp(&ctx.crs[a.cr].prec, &ctx.crs[b.cr].prec)));
    let mut entries: Vec<DeclaredEntry> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if entries.last().is_some_and(|e| e.key == c.key) {
            stat(&mut stats, c.cr, |s| s.masked += 1);
            continue;
        }
        stat(&mut stats, c.cr, |s| s.to_set += 1);
        entries.push(DeclaredEntry {
            key: c.key,
            entry: c.entry,
            source: ctx.crs[c.cr].source.clone(),
            pod_uid: Some(uid.to_owned()),
        });
    }
    let mut failures = Vec::with_capacity(decl.failures.len());
    for (cr, e) in decl.failures {
        stat(&mut stats, cr, |s| s.failures += 1);
        failures.push(RenderFailure {
            source: ctx.crs[cr].source.clone(),
            pod: Some((ns.clone(), name.clone())),
            field: e.field,
            message: e.message,
        });
    }
    PodRecord {
        node: pod.node_name().to_owned(),
        namespace: ns,
        name,
        entries,
        stats: stats.into_iter().map(|(cr, s)| (ctx.crs[cr].name.clone(), s)).collect(),
        failures,
        protect: decl.protect,
    }
}

/// The identity of a ClusterSPIFFEID as declared: a different one needs a whole declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CrMark {
    name: String,
    uid: String,
    epoch: u64,
    created: Option<Timestamp>,
    deleted: Option<Timestamp>,
}

/// The same for a ClusterStaticEntry.
#[derive(Debug, Clone, PartialEq)]
struct StaticMark {
    name: String,
    uid: String,
    spec: ClusterStaticEntrySpec,
    created: Option<Timestamp>,
    deleted: Option<Timestamp>,
}

fn cr_marks(ctx: &Ctx<'_, '_>) -> Vec<CrMark> {
    ctx.crs
        .iter()
        .map(|c| CrMark {
            name: c.source.name.clone(),
            uid: c.source.uid.clone(),
            epoch: c.epoch,
            created: c.prec.created.cloned(),
            deleted: c.prec.deleted.cloned(),
        })
        .collect()
}

fn static_marks(world: &World, settings: &Settings) -> Vec<StaticMark> {
    if !settings.reconcile_cluster_static_entries {
        return Vec::new();
    }
    world
        .cluster_static_entries
        .iter()
        .filter(|cse| class_matches(cse.spec.class_name.as_deref(), &settings.class_name, settings.watch_classless))
        .map(|cse| StaticMark {
            name: cse.metadata.name.clone().unwrap_or_default(),
            uid: cse.metadata.uid.clone().unwrap_or_default(),
            spec: cse.spec.clone(),
            created: cse.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleted: cse.metadata.deletion_timestamp.as_ref().map(|t| t.0),
        })
        .collect()
}

/// The key of a pod record: its UID, or its name for a pod without one.
fn record_key(pod: &PodInfo) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => format!(
            "\0{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// The ClusterStaticEntries of a declaration (declared whole every time they change).
#[derive(Debug, Clone, Default)]
struct Statics {
    winners: Vec<DeclaredEntry>,
    outcomes: BTreeMap<String, StaticEntryOutcome>,
    failures: Vec<RenderFailure>,
    non_pod: Option<Arc<str>>,
    /// Pods named by a static entry's `k8s:pod-uid` selector: such a pod's entries may
    /// compete with a static one, so a change to it needs a whole declaration.
    pod_uids: FastSet<String>,
}

fn declare_statics(world: &World, settings: &Settings) -> Statics {
    let mut out = Statics::default();
    if !settings.reconcile_cluster_static_entries {
        return out;
    }
    let mut candidates: Vec<(EntryKey, Entry, Prec<'_>, SourceRef)> = Vec::new();
    for cse in &world.cluster_static_entries {
        if !class_matches(cse.spec.class_name.as_deref(), &settings.class_name, settings.watch_classless) {
            continue;
        }
        let source = source_of(&cse.metadata, SourceKind::ClusterStaticEntry);
        match parse_static_entry(&cse.spec) {
            Ok(entry) => {
                let key = entry_key(&entry);
                if let Some(uid) = pod_uid_of(&entry) {
                    out.pod_uids.insert(uid.to_owned());
                }
                out.outcomes.insert(
                    source.name.clone(),
                    StaticEntryOutcome { rendered: true, masked: false, key: Some(key.clone()), error: None },
                );
                candidates.push((key, entry, Prec::of(&cse.metadata, SourceKind::ClusterStaticEntry), source));
            }
            Err(e) => {
                if out.non_pod.is_none() {
                    out.non_pod = Some(
                        format!(
                            "ClusterStaticEntry {:?} failed to parse ({e}); entries without a pod-uid selector are kept",
                            source.name
                        )
                        .into(),
                    );
                }
                out.outcomes.insert(
                    source.name.clone(),
                    StaticEntryOutcome { rendered: false, masked: false, key: None, error: Some(e.to_string()) },
                );
                out.failures.push(RenderFailure { source, pod: None, field: e.field, message: e.message });
            }
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| prec_cmp(&a.2, &b.2)));
    for (key, entry, _, source) in candidates {
        if out.winners.last().is_some_and(|w| w.key == key) {
            if let Some(o) = out.outcomes.get_mut(&source.name) {
                o.masked = true;
            }
            continue;
        }
        out.winners.push(DeclaredEntry { key, entry: Arc::new(entry), source, pod_uid: None });
    }
    out
}

/// The declaration of the world, kept between passes (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Declaration {
    crs: Vec<CrMark>,
    statics_marks: Vec<StaticMark>,
    statics: Statics,
    /// Per class-matched ClusterSPIFFEID, by name: namespace counts plus the pods' sums.
    stats: BTreeMap<String, ClusterSPIFFEIDStats>,
    /// ClusterSPIFFEIDs that failed to parse, in walk order.
    cr_failures: Vec<RenderFailure>,
    pods: FastMap<String, PodRecord>,
    /// `(namespace, name)` → record key.
    names: FastMap<(String, String), String>,
    /// Records with render failures.
    failing: BTreeSet<String>,
    /// Pods' winning entries, in all.
    pod_entries: usize,
}

impl Declaration {
    /// Declares the whole world. Pure apart from updating `cache`.
    pub fn build(world: &World, settings: &Settings, cache: &mut RenderCache) -> Self {
        cache.begin_pass(settings);
        let ctx = context(world, settings, cache);
        let mut d = Declaration {
            crs: cr_marks(&ctx),
            statics_marks: static_marks(world, settings),
            statics: declare_statics(world, settings),
            ..Default::default()
        };
        d.set_cr_stats(&ctx);
        if !ctx.crs.is_empty() {
            d.pods.reserve(world.pods.len());
            d.names.reserve(world.pods.len());
            for pod in &world.pods {
                let decl = declare_pod(&ctx, cache, pod);
                d.insert(record_key(pod), pod_record(&ctx, pod, decl));
            }
        }
        d.mask_statics_against_pods();
        cache.end_pass();
        d
    }

    /// Declares again the pods `changes` touches (see the module docs); `None` when only
    /// [`Declaration::build`] can answer. Nothing is changed when it answers `None`.
    pub fn update(
        &mut self,
        world: &World,
        settings: &Settings,
        cache: &mut RenderCache,
        changes: &Changes,
    ) -> Option<Delta> {
        if changes.everything || !cache.begin_update(settings) {
            return None;
        }
        let ctx = context(world, settings, cache);
        if cr_marks(&ctx) != self.crs || static_marks(world, settings) != self.statics_marks {
            return None;
        }
        // The pods as they are now, and the records they replace.
        let now: Vec<&Arc<PodInfo>> = if changes.is_empty() || ctx.crs.is_empty() {
            Vec::new()
        } else {
            let named: FastSet<(&str, &str)> = changes.pods.iter().map(|(ns, n)| (ns.as_str(), n.as_str())).collect();
            world
                .pods
                .iter()
                .filter(|p| {
                    let ns = p.metadata.namespace.as_deref().unwrap_or_default();
                    changes.namespaces.contains(ns)
                        || changes.nodes.contains(p.node_name())
                        || named.contains(&(ns, p.metadata.name.as_deref().unwrap_or_default()))
                })
                .collect()
        };
        let mut before: FastSet<String> = FastSet::default();
        for (ns, name) in &changes.pods {
            if let Some(key) = self.names.get(&(ns.clone(), name.clone())) {
                before.insert(key.clone());
            }
        }
        if !changes.namespaces.is_empty() || !changes.nodes.is_empty() {
            for (key, r) in &self.pods {
                if changes.namespaces.contains(&r.namespace) || changes.nodes.contains(&r.node) {
                    before.insert(key.clone());
                }
            }
        }
        let after: Vec<(String, &Arc<PodInfo>)> = now.into_iter().map(|p| (record_key(p), p)).collect();
        let uid_of = |key: &String| (!key.starts_with('\0')).then(|| key.clone());
        let touched: HashSet<String> = before.iter().chain(after.iter().map(|(k, _)| k)).filter_map(uid_of).collect();
        if touched.iter().any(|uid| self.statics.pod_uids.contains(uid)) {
            return None;
        }

        self.set_cr_stats(&ctx);
        for key in &before {
            self.remove(key);
        }
        let mut delta = Delta { pods: Some(touched), ..Default::default() };
        for (key, pod) in after {
            let decl = declare_pod(&ctx, cache, pod);
            let record = pod_record(&ctx, pod, decl);
            delta.entries.extend(record.entries.iter().cloned());
            if let (Some(reason), Some(uid)) = (&record.protect, uid_of(&key)) {
                delta.protect.pods.insert(uid, reason.clone());
            }
            // A pod seen twice (a name reused while the store still has the old one)
            // keeps its last record, as a whole declaration would.
            self.remove(&key);
            self.insert(key, record);
        }
        if let Some(uids) = &delta.pods {
            cache.end_update(uids);
        }
        delta.entries.sort_by(|a, b| a.key.cmp(&b.key));
        Some(delta)
    }

    /// Every entry, for planning against all of SPIRE.
    pub fn everything(&self) -> Delta {
        let declared = self.declared();
        Delta { pods: None, entries: declared.entries, protect: declared.protect }
    }

    /// The flat form `plan`, `explain` and the tooling read.
    pub fn declared(&self) -> Declared {
        let mut entries: Vec<DeclaredEntry> = Vec::with_capacity(self.len());
        entries.extend(self.statics.winners.iter().cloned());
        for r in self.pods.values() {
            entries.extend(r.entries.iter().cloned());
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let mut protect = Protection { non_pod_entries: self.statics.non_pod.clone(), ..Default::default() };
        for (key, r) in &self.pods {
            if let Some(reason) = r.protect.as_ref().filter(|_| !key.starts_with('\0')) {
                protect.pods.insert(key.clone(), reason.clone());
            }
        }
        Declared {
            entries,
            spiffe_id_stats: self.stats.clone(),
            static_entries: self.statics.outcomes.clone(),
            failures: self.failures().into_iter().cloned().collect(),
            protect,
        }
    }

    /// Winning entries in all.
    pub fn len(&self) -> usize {
        self.statics.winners.len() + self.pod_entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per class-matched ClusterSPIFFEID, by name (`entry_failures` left 0).
    pub fn spiffe_id_stats(&self) -> &BTreeMap<String, ClusterSPIFFEIDStats> {
        &self.stats
    }

    /// Per class-matched ClusterStaticEntry, by name.
    pub fn static_entries(&self) -> &BTreeMap<String, StaticEntryOutcome> {
        &self.statics.outcomes
    }

    /// Every render failure: static entries', then per ClusterSPIFFEID (walk order) its
    /// parse failure and its pods' (by namespace and name).
    pub fn failures(&self) -> Vec<&RenderFailure> {
        let mut out: Vec<&RenderFailure> = self.statics.failures.iter().chain(&self.cr_failures).collect();
        let order: FastMap<&str, usize> = self.crs.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
        let mut pods: Vec<&RenderFailure> =
            self.failing.iter().filter_map(|k| self.pods.get(k)).flat_map(|r| &r.failures).collect();
        pods.sort_by_key(|f| (order.get(f.source.name.as_str()).copied(), f.pod.clone()));
        out.extend(pods);
        out
    }

    /// How many entries, stats and protections differ from `other`, a declaration of the
    /// same world (0 when incremental updates kept this one right).
    pub fn disagreements(&self, other: &Declaration) -> usize {
        let mut n = 0;
        let mine: FastMap<&EntryKey, &DeclaredEntry> = self.all_entries().map(|e| (&e.key, e)).collect();
        let mut seen = 0;
        for e in other.all_entries() {
            match mine.get(&e.key) {
                Some(m) if *m == e => seen += 1,
                Some(_) => {
                    seen += 1;
                    n += 1;
                }
                None => n += 1,
            }
        }
        n += mine.len() - seen;
        n += self.stats.iter().filter(|(k, v)| other.stats.get(*k) != Some(v)).count();
        n += other.stats.keys().filter(|k| !self.stats.contains_key(*k)).count();
        let protected = |d: &Declaration| -> BTreeMap<String, Arc<str>> {
            d.pods.iter().filter_map(|(k, r)| Some((k.clone(), r.protect.clone()?))).collect()
        };
        let (a, b) = (protected(self), protected(other));
        n += a.iter().filter(|(k, v)| b.get(*k) != Some(v)).count();
        n += b.keys().filter(|k| !a.contains_key(*k)).count();
        n
    }

    fn all_entries(&self) -> impl Iterator<Item = &DeclaredEntry> {
        self.statics.winners.iter().chain(self.pods.values().flat_map(|r| &r.entries))
    }

    /// Namespace counts and parse failures from `ctx` (the pods' counts are added and
    /// taken away with their records).
    fn set_cr_stats(&mut self, ctx: &Ctx<'_, '_>) {
        let stats = &mut self.stats;
        self.cr_failures.clear();
        for c in &ctx.crs {
            let s = stats.entry(c.source.name.clone()).or_default();
            s.namespaces_selected = c.namespaces_selected;
            s.namespaces_ignored = c.namespaces_ignored;
            if let Err(e) = &c.spec {
                self.cr_failures.push(RenderFailure {
                    source: c.source.clone(),
                    pod: None,
                    field: e.field.clone(),
                    message: e.message.clone(),
                });
            }
        }
    }

    /// Keeps `record` (a pod that no ClusterSPIFFEID selects or protects is not kept: it
    /// has nothing to take back when it changes).
    fn insert(&mut self, key: String, record: PodRecord) {
        if record.stats.is_empty() && record.protect.is_none() {
            return;
        }
        add_stats(&mut self.stats, &record, 1);
        self.pod_entries += record.entries.len();
        if !record.failures.is_empty() {
            self.failing.insert(key.clone());
        }
        self.names.insert((record.namespace.clone(), record.name.clone()), key.clone());
        self.pods.insert(key, record);
    }

    fn remove(&mut self, key: &str) {
        let Some(record) = self.pods.remove(key) else { return };
        add_stats(&mut self.stats, &record, -1);
        self.pod_entries -= record.entries.len();
        self.failing.remove(key);
        let name = (record.namespace, record.name);
        if self.names.get(&name).is_some_and(|k| k == key) {
            self.names.remove(&name);
        }
    }

    /// A static entry naming a pod's `k8s:pod-uid` selector may have the key of one of
    /// that pod's entries: the preferred object wins, as among any other candidates.
    fn mask_statics_against_pods(&mut self) {
        if self.statics.pod_uids.is_empty() {
            return;
        }
        let mut statics = std::mem::take(&mut self.statics.winners);
        statics.retain(|s| {
            let Some(record) = pod_uid_of(&s.entry).and_then(|uid| self.pods.get_mut(uid)) else {
                return true;
            };
            let Some(i) = record.entries.iter().position(|e| e.key == s.key) else {
                return true;
            };
            let pod_wins = prefer(&self.crs, &self.statics_marks, &record.entries[i].source, &s.source);
            let (loser_cr, static_masked) = if pod_wins {
                (None, true)
            } else {
                let e = record.entries.remove(i);
                self.pod_entries -= 1;
                (Some(e.source.name), false)
            };
            if let Some(cr) = loser_cr {
                for (name, st) in &mut record.stats {
                    if **name == *cr {
                        st.to_set -= 1;
                        st.masked += 1;
                    }
                }
                if let Some(s) = self.stats.get_mut(&cr) {
                    s.entries_to_set -= 1;
                    s.entries_masked += 1;
                }
            }
            if static_masked && let Some(o) = self.statics.outcomes.get_mut(&s.source.name) {
                o.masked = true;
            }
            !static_masked
        });
        self.statics.winners = statics;
    }
}

/// Whether a ClusterSPIFFEID's entry wins over a static entry of the same key (the same
/// order as among any candidates).
fn prefer(crs: &[CrMark], statics: &[StaticMark], cr: &SourceRef, cse: &SourceRef) -> bool {
    let a = crs.iter().find(|m| m.name == cr.name).map(|m| Prec {
        created: m.created.as_ref(),
        deleted: m.deleted.as_ref(),
        uid: &m.uid,
        kind: SourceKind::ClusterSPIFFEID,
        name: &m.name,
    });
    let b = statics.iter().find(|m| m.name == cse.name).map(|m| Prec {
        created: m.created.as_ref(),
        deleted: m.deleted.as_ref(),
        uid: &m.uid,
        kind: SourceKind::ClusterStaticEntry,
        name: &m.name,
    });
    match (a, b) {
        (Some(a), Some(b)) => prec_cmp(&a, &b).is_lt(),
        _ => false,
    }
}

fn add_stats(stats: &mut BTreeMap<String, ClusterSPIFFEIDStats>, r: &PodRecord, sign: i64) {
    for (name, p) in &r.stats {
        if let Some(s) = stats.get_mut(&**name) {
            s.pods_selected += sign;
            s.entries_to_set += sign * p.to_set;
            s.entries_masked += sign * p.masked;
            s.pod_entry_render_failures += sign * p.failures;
        }
    }
}
